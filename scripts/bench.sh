#!/usr/bin/env bash
# Runs vmbench on the metal (layout randomization off, for figures that repeat) and prints its figures beside Linux's: memd + vmbench boot under
# QEMU TCG with -icount shift=0 -cpu qemu64 -m 512 -smp 1 (rdtsc counts guest instructions, as
# the Linux peer was measured), and each figure (median guest instructions per operation) is
# shown with Linux's (scripts/bench/linux-guest.txt) and the ratio ours/Linux.
# Usage: scripts/bench.sh [--quick]   (--quick: a few operations per figure, a smoke run)
# The raw serial log is left in target/vmbench.log.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

program=vmbench
[ "${1:-}" = --quick ] && program=vmbench_quick
log=target/vmbench.log
mkdir -p target
cargo run -q --release -p qemu-tests --bin boot -- --cpu qemu64 --icount --memory 512 \
    --append aslr=off \
    --no-input --timeout 900 memd "$program" >"$log" 2>&1 || {
    tail -40 "$log" >&2
    echo "bench: the boot failed; the log is in $log" >&2
    exit 1
}
grep -q VMBENCH_END "$log" || { tail -40 "$log" >&2; echo "bench: vmbench did not finish" >&2; exit 1; }

# Our IPC round trip (a null request to memd) sits beside Linux's pipe and futex ping-pong.
awk '
    FNR == NR { if ($0 !~ /^#/ && NF == 2) linux[$1] = $2; next }
    /RESULT / {
        sub(/.*RESULT /, "")
        split($2, m, "=")
        ours[$1] = m[2]
        order[++n] = $1
    }
    function commas(x,   s) {
        s = sprintf("%d", x)
        while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]([,]|$)/, ",&", s)
        return s
    }
    function row(name, peer, l) {
        l = linux[peer]
        if (name in ours && l > 0)
            printf "| %-28s | %11s | %11s | %5.2f |\n", name, commas(ours[name]), commas(l), ours[name] / l
        else if (name in ours)
            printf "| %-28s | %11s | %11s | %5s |\n", name, commas(ours[name]), "-", "-"
    }
    END {
        printf "| %-28s | %11s | %11s | %5s |\n", "figure (guest instructions)", "ours", "Linux", "ratio"
        printf "|%s|%s|%s|%s|\n", "------------------------------", "-------------", "-------------", "-------"
        for (i = 1; i <= n; i++) {
            name = order[i]
            if (name == "g_ipc_rtt_memd") {
                row(name, "g_pipe_rtt_samecpu")
                printf "| %-28s | %11s | %11s | %5s |\n", "  (Linux futex ping-pong)", "", commas(linux["g_futex_rtt_samecpu"]), sprintf("%.2f", ours[name] / linux["g_futex_rtt_samecpu"])
            } else
                row(name, name)
        }
    }
' scripts/bench/linux-guest.txt "$log"
