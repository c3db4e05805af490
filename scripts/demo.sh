#!/usr/bin/env bash
# README command 1: the demonstration. Builds everything, boots QEMU (TCG) with memd and init,
# and lets init show the memory system at work (mmap, touch, mprotect, fork with copy-on-write,
# shared memory, heap growth and shrink, a process killed for writing read-only memory), then
# memstat. It powers off by itself and this script exits with 0 when the guest powered off
# cleanly after init said the demonstration passed.
#
#   scripts/demo.sh                 the demonstration, then power-off
#   scripts/demo.sh -i              the same, then init's prompt on this terminal:
#                                   memstat [--json] [--watch N] [--ps | PID], ps,
#                                   run PROGRAM [ARGS], bench, help, poweroff (exits 0);
#                                   backspace, Ctrl-U, arrow up edit; Ctrl-C kills what
#                                   run started; Ctrl-A X leaves QEMU by force (exits 130)
#   scripts/demo.sh [-i] NAME...    also packs the programs NAME... (bins of
#                                   tests/qemu/programs/src/bin) for `run NAME` at the prompt
set -euo pipefail
cd "$(dirname "$0")/.."

interactive=0
extra=()
for arg in "$@"; do
    case "$arg" in
        -i | --interactive) interactive=1 ;;
        -h | --help)
            sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "demo: unknown option $arg (try --help)" >&2
            exit 2
            ;;
        *) extra+=("$arg") ;;
    esac
done

source scripts/setup.sh

# The boot image: memd (module 0), init (module 1, started by memd), and what init and its
# prompt spawn by name (spinner runs 1.5 s: time to try Ctrl-C). At most 16 modules.
programs=(memd init memstat hello segv_ro segv_none segv_null exit7 forktest vmtest statprobe spinner)
if [ -f tests/qemu/programs/src/bin/vmbench.rs ]; then
    programs+=(vmbench)
fi
programs+=("${extra[@]}")

echo "demo: building the host workspace"
cargo build --workspace --quiet
# The boot runner builds the kernel and memd for x86_64-unknown-none and the ring-3 programs for
# x86_64-unknown-linux-musl.
if [ "$interactive" = 1 ]; then
    exec cargo run --quiet -p qemu-tests --bin boot -- --append init=interactive \
        --expect "init: demonstration passed" "${programs[@]}"
else
    exec cargo run --quiet -p qemu-tests --bin boot -- --no-input --timeout 600 \
        --expect "init: demonstration passed" "${programs[@]}"
fi
