#!/usr/bin/env bash
# Runs vmbench on the metal (layout randomization off, for figures that repeat) and prints its figures beside Linux's: memd + vmbench boot under
# QEMU TCG with -icount shift=0 -cpu qemu64 -m 512 -smp 1 (rdtsc counts guest instructions, as
# the Linux peer was measured), and each figure (median guest instructions per operation) is
# shown with Linux's (scripts/bench/linux-guest.txt) and the ratio ours/Linux.
# Usage: scripts/bench.sh [--scaled | --realwork | --smp] [--quick]
#   --scaled    the scaled rows instead (vmscaled: how each cost grows with pages, regions and
#               processes, and the probes), beside Linux's (scripts/bench/linux-guest-scaled.txt),
#               then the growth of each family of sized rows from its smallest size to its
#               largest, then the region rows at a million regions (a second boot, 2 GiB), ours
#               only
#   --realwork  real programs instead (realwork: the Linux peer's workloads, miniz_oxide deflate,
#               a hashbrown map, alloc's sort, three 64 MiB touch probes): instructions, peak
#               resident memory and faults beside Linux's (scripts/bench/linux-realwork.txt),
#               and each checksum checked against Linux's
#   --smp       the multi-CPU rows instead (vmsmp, booted with -smp 4: first-touch faults of 1,
#               2 and 4 threads or processes at once, munmap/mprotect/fork with 0, 1 and 3 other
#               threads running, thread create and join, a futex ping-pong on one processor
#               and across two), each figure the instructions of all processors together,
#               beside Linux's (scripts/bench/linux-smp.txt), then vmsmp's INFO lines (where
#               the threads ran, and how our method differs from Linux's)
#   --quick     a few operations per figure, a smoke run (vmbench_quick, vmscaled_quick,
#               vmsmp_quick; realwork_quick: small sizes, ours only)
# The raw serial log is left in target/vmbench.log (target/vmscaled.log with --scaled,
# target/realwork.log with --realwork, target/vmsmp.log with --smp).
set -euo pipefail
cd "$(dirname "$0")/.."

program=vmbench
peer=scripts/bench/linux-guest.txt
timeout=900
quick=
cpus=1
for arg in "$@"; do
    case "$arg" in
        --quick) quick=_quick ;;
        --scaled) program=vmscaled peer=scripts/bench/linux-guest-scaled.txt timeout=3600 ;;
        --realwork) program=realwork peer=scripts/bench/linux-realwork.txt ;;
        --smp) program=vmsmp peer=scripts/bench/linux-smp.txt cpus=4 ;;
        *) echo "usage: scripts/bench.sh [--scaled | --realwork | --smp] [--quick]" >&2; exit 2 ;;
    esac
done
end=VMBENCH_END
[ "$program" = realwork ] && end=REALWORK_END
log=target/$program.log
program=$program$quick

source scripts/setup.sh
mkdir -p target
cargo run -q --release -p qemu-tests --bin boot -- --cpu qemu64 --icount --memory 512 \
    --append aslr=off --smp "$cpus" \
    --no-input --timeout "$timeout" memd "$program" >"$log" 2>&1 || {
    tail -40 "$log" >&2
    echo "bench: the boot failed; the log is in $log" >&2
    exit 1
}
grep -q "$end" "$log" || { tail -40 "$log" >&2; echo "bench: $program did not finish" >&2; exit 1; }

if [ "$peer" = scripts/bench/linux-realwork.txt ]; then
    # Each workload beside Linux's: instructions and their ratio; resident memory (ours:
    # memd's high-water mark over the workload, hwm_kb, and what is left after it; Linux's
    # VmHWM; an older log without hwm_kb shows the probes' peak, starred), against the target of
    # Linux's requested peak plus 5%; the bytes asked of the allocator at the peak; faults;
    # and whether the checksum is Linux's. The quick run's sizes are not Linux's: ours only.
    awk -v quick="$quick" '
        FNR == NR {
            if ($0 !~ /^#/ && NF >= 6) { instr[$1] = $2; hwm[$1] = $3; flt[$1] = $4; req[$1] = $5; sum[$1] = $6 }
            next
        }
        /RW / {
            sub(/.*RW /, "")
            name = $1
            order[++n] = name
            for (i = 2; i <= NF; i++) { split($i, kv, "="); f[name, kv[1]] = kv[2] }
        }
        function commas(x,   s) {
            s = sprintf("%.0f", x)
            while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]([,]|$)/, ",&", s)
            return s
        }
        function linux(table, name) { return (quick == "" && (name in table)) ? commas(table[name]) : "-" }
        END {
            printf "| %-13s | %13s | %13s | %5s | %15s | %9s | %19s | %13s | %15s | %8s |\n", "workload",
                "instr: ours", "Linux", "ratio", "RSS peak / end", "Linux HWM", "asked: ours / Linux",
                "RSS target", "faults / Linux", "checksum"
            printf "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", "---------------", "---------------",
                "---------------", "-------", "-----------------", "-----------", "---------------------",
                "---------------", "-----------------", "----------"
            for (i = 1; i <= n; i++) {
                name = order[i]
                ours_hwm = ((name, "hwm_kb") in f)
                peak = ours_hwm ? f[name, "hwm_kb"] : f[name, "rss_peak_kb"]
                if (!ours_hwm) probed = 1
                ratio = (quick == "" && instr[name] > 0) ? sprintf("%.3f", f[name, "instr"] / instr[name]) : "-"
                target = (quick == "" && req[name] > 0) ? req[name] * 1.05 : 0
                goal = "-"
                if (target > 0) goal = commas(target) ((peak <= target) ? " met" : " over") (ours_hwm ? "" : "*")
                check = "-"
                if (quick == "") check = (f[name, "sum"] "" == sum[name] "") ? "Linux'"'"'s" : "DIFFERS"
                rss = commas(peak) " / " commas(f[name, "rss_after_kb"])
                asked = commas(f[name, "req_peak_kb"]) " / " linux(req, name)
                faults = commas(f[name, "minflt"]) " / " linux(flt, name)
                printf "| %-13s | %13s | %13s | %5s | %15s | %9s | %19s | %13s | %15s | %8s |\n", name,
                    commas(f[name, "instr"]), linux(instr, name), ratio, rss, linux(hwm, name),
                    asked, goal, faults, check
            }
            if (probed) print "\n* our peak is the most resident memory the probes saw (a log without hwm_kb)"
        }
    ' "$peer" "$log"
    exit 0
fi

if [ "$peer" = scripts/bench/linux-smp.txt ]; then
    # Every row beside Linux's (our IPC round trip to memd beside Linux's pipe ping-pong on one
    # CPU), then Linux's rows we have no counterpart for, then vmsmp's INFO lines.
    awk '
        FNR == NR { if ($0 !~ /^#/ && NF == 2) { linux[$1] = $2; peer[++p] = $1 } next }
        /RESULT / {
            sub(/.*RESULT /, "")
            order[++n] = $1
            seen[$1] = 1
            if ($2 ~ /^med_cyc=/) { split($2, m, "="); ours[$1] = m[2] }
        }
        /INFO / { sub(/.*INFO /, ""); info[++k] = $0 }
        function commas(x,   s) {
            s = sprintf("%d", x)
            while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]([,]|$)/, ",&", s)
            return s
        }
        # ours (0: the text missing), Linux (0: -), and the ratio
        function row(label, o, l, missing) {
            printf "| %-32s | %11s | %11s | %5s |\n", label, (o > 0) ? commas(o) : missing,
                (l > 0) ? commas(l) : "-", (o > 0 && l > 0) ? sprintf("%.2f", o / l) : "-"
        }
        END {
            printf "| %-32s | %11s | %11s | %5s |\n", "row (instructions, all CPUs)", "ours", "Linux", "ratio"
            printf "|%s|%s|%s|%s|\n", "----------------------------------", "-------------", "-------------", "-------"
            for (i = 1; i <= n; i++) {
                name = order[i]
                if (name == "m_ipc_rtt_memd") row(name " (vs pipe)", ours[name], linux["m_pipe_rtt_samecpu"], "n/a")
                else row(name, ours[name], linux[name], "n/a")
            }
            for (i = 1; i <= p; i++)
                if (!(peer[i] in seen)) row(peer[i], 0, linux[peer[i]], "none")
            if (k) print ""
            for (i = 1; i <= k; i++) print "INFO " info[i]
        }
    ' "$peer" "$log"
    exit 0
fi

if [ "$peer" = scripts/bench/linux-guest-scaled.txt ]; then
    # Every row beside Linux's; then, for each family of rows that differ only in their last
    # number (a size: pages, MiB, regions, processes), the growth from the smallest to the
    # largest, ours and Linux's.
    awk '
        FNR == NR { if ($0 !~ /^#/ && NF == 2) linux[$1] = $2; next }
        /RESULT / {
            sub(/.*RESULT /, "")
            order[++n] = $1
            if ($2 ~ /^med_cyc=/) { split($2, m, "="); ours[$1] = m[2] }
        }
        function commas(x,   s) {
            s = sprintf("%d", x)
            while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]([,]|$)/, ",&", s)
            return s
        }
        function ratio(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "-" }
        END {
            printf "| %-30s | %11s | %11s | %5s |\n", "row (guest instructions)", "ours", "Linux", "ratio"
            printf "|%s|%s|%s|%s|\n", "--------------------------------", "-------------", "-------------", "-------"
            for (i = 1; i <= n; i++) {
                name = order[i]
                o = (name in ours) ? ours[name] : 0
                l = (name in linux) ? linux[name] : 0
                printf "| %-30s | %11s | %11s | %5s |\n", name, o ? commas(o) : "n/a", l ? commas(l) : "-", ratio(o, l)
                if (!match(name, /[0-9]+[^0-9]*$/)) continue
                rest = substr(name, RSTART)
                match(rest, /^[0-9]+/)
                size = substr(rest, 1, RLENGTH) + 0
                family = substr(name, 1, length(name) - length(rest)) "*" substr(rest, RLENGTH + 1)
                if (!(family in members)) { families[++f] = family; lo[family] = hi[family] = name; los[family] = his[family] = size }
                members[family]++
                if (size < los[family]) { los[family] = size; lo[family] = name }
                if (size > his[family]) { his[family] = size; hi[family] = name }
            }
            printf "\n| %-30s | %-13s | %7s | %7s |\n", "growth (largest / smallest)", "sizes", "ours", "Linux"
            printf "|%s|%s|%s|%s|\n", "--------------------------------", "---------------", "---------", "---------"
            for (i = 1; i <= f; i++) {
                family = families[i]
                if (members[family] < 2) continue
                printf "| %-30s | %-13s | %7s | %7s |\n", family, los[family] " -> " his[family],
                    ratio(ours[hi[family]], ours[lo[family]]), ratio(linux[hi[family]], linux[lo[family]])
            }
        }
    ' "$peer" "$log"
    [ -n "$quick" ] && exit 0
    # Past the peer's sizes: the region rows at a million regions (vmscaled=million), in a boot
    # of their own that allows them (max_map_count) and has the frames for their records.
    million=target/vmscaled-million.log
    cargo run -q --release -p qemu-tests --bin boot -- --cpu qemu64 --icount --memory 2048 \
        --append "aslr=off max_map_count=2100000 vmscaled=million" \
        --no-input --timeout "$timeout" memd vmscaled >"$million" 2>&1 || {
        tail -40 "$million" >&2
        echo "bench: the million-region boot failed; the log is in $million" >&2
        exit 1
    }
    awk '
        /RESULT / { sub(/.*RESULT /, ""); split($2, m, "="); name[++n] = $1; ours[$1] = m[2] }
        END {
            printf "\n| %-30s | %11s |\n", "past the peer (instructions)", "ours"
            printf "|%s|%s|\n", "--------------------------------", "-------------"
            for (i = 1; i <= n; i++) printf "| %-30s | %11d |\n", name[i], ours[name[i]]
        }
    ' "$million"
    exit 0
fi

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
' "$peer" "$log"
