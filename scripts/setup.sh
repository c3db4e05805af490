#!/usr/bin/env bash
# Installs what building and booting the system needs, where it is missing:
# the Rust targets x86_64-unknown-none (the kernel and memd) and x86_64-unknown-linux-musl (the
# ring-3 programs: SSE2 on stable Rust, tests/qemu/programs/.cargo/config.toml), rustfmt and
# clippy, and QEMU (through apt-get).
# Sourced by demo.sh, test.sh and bench.sh; safe to run again.
set -euo pipefail

need_qemu=${NEED_QEMU:-1}

for target in x86_64-unknown-none x86_64-unknown-linux-musl; do
    if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
        echo "setup: installing the Rust target $target"
        rustup target add "$target"
    fi
done
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
        echo "setup: installing $component"
        rustup component add "$component"
    fi
done

if [ "$need_qemu" = 1 ] && ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing QEMU (qemu-system-x86) with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null
    else
        echo "setup: qemu-system-x86_64 is missing and cannot be installed here." >&2
        echo "       Install QEMU 7.2 or later (Debian/Ubuntu: sudo apt-get install qemu-system-x86)." >&2
        exit 1
    fi
fi
