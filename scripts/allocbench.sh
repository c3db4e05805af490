#!/usr/bin/env bash
# Runs allocbench on the metal and prints its table: libvm's allocator beside the allocators it
# was measured against, over the same deterministic allocation trace, each in a process of its
# own. memd + allocbench boot under QEMU TCG with -icount shift=0 -cpu qemu64 -m 512 -smp 1
# (rdtsc counts guest instructions) and layout randomization off.
# Usage: scripts/allocbench.sh [--quick]   (--quick: a small trace, a smoke run)
# The raw serial log is left in target/allocbench.log.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

program=allocbench
[ "${1:-}" = --quick ] && program=allocbench_quick
log=target/allocbench.log
mkdir -p target
cargo run -q --release -p qemu-tests --bin boot -- --cpu qemu64 --icount --memory 512 \
    --append aslr=off \
    --no-input --timeout 900 memd "$program" >"$log" 2>&1 || {
    tail -40 "$log" >&2
    echo "allocbench: the boot failed; the log is in $log" >&2
    exit 1
}
grep -q ALLOCBENCH_END "$log" || { tail -40 "$log" >&2; echo "allocbench: it did not finish" >&2; exit 1; }

awk '
    BEGIN {
        label["pow2"] = "power-of-two blocks (libvm before)"
        label["talc"] = "talc 4.4"
        label["dlmalloc"] = "dlmalloc 0.2"
        label["libvm"] = "VmAllocator (talc + giving back)"
    }
    function commas(x,   s) {
        s = sprintf("%d", x)
        while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]([,]|$)/, ",&", s)
        return s
    }
    function kib(bytes) { return commas(bytes / 1024) }
    function over(rss, req) { return req > 0 ? sprintf("%.1f%%", (rss - req) * 100 / req) : "-" }
    /RESULT / {
        sub(/.*RESULT /, "")
        name = $1
        delete f
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        if (!(name in label)) label[name] = name
        printf "| %-34s | %9s | %9s | %6s | %9s | %9s | %6s | %9s | %11s | %11s | %13s | %9s |\n", \
            label[name], kib(f["peak_req"]), kib(f["peak_rss"]), over(f["peak_rss"], f["peak_req"]), \
            kib(f["end_req"]), kib(f["end_rss"]), over(f["end_rss"], f["end_req"]), kib(f["freed_rss"]), \
            f["malloc_mean"] " / " f["malloc_med"], f["free_mean"] " / " f["free_med"], \
            f["realloc_mean"] " / " f["realloc_med"], sprintf("%.1f M", f["total"] / 1e6)
    }
    BEGIN {
        printf "| %-34s | %9s | %9s | %6s | %9s | %9s | %6s | %9s | %11s | %11s | %13s | %9s |\n", \
            "allocator", "peak KiB", "RSS KiB", "over", "end KiB", "RSS KiB", "over", "freed RSS", \
            "malloc", "free", "realloc", "trace"
        printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "------------------------------------", \
            "-----------", "-----------", "--------", "-----------", "-----------", "--------", \
            "-----------", "-------------", "-------------", "---------------", "-----------"
    }
    /ALLOCBENCH_END/ {
        print ""
        print "peak / end: KiB requested and live, and resident (RSS, beyond what was resident before"
        print "the trace); over: RSS beyond the bytes requested; freed RSS: KiB still resident once every"
        print "block is freed. malloc, free, realloc: guest instructions per call, mean / median."
        print "trace: guest instructions of the whole trace up to the end, page faults included."
    }
' "$log"
