//! The real-program benchmark, shared by `realwork` (the peer's sizes) and `realwork_quick`
//! (a small run for the QEMU test): the Linux peer's workloads ([`work`]: miniz_oxide's
//! deflate and inflate, a hashbrown map, alloc's sort, three 64 MiB touch probes), each timed
//! and measured as the peer measures it.
//!
//! Each line `RW name instr=... rss_base_kb=... rss_peak_kb=... hwm_kb=... rss_after_kb=...
//! minflt=... req_peak_kb=... alloc_calls=... big_calls=... zeroed_calls=... probes=... sum=...` has the
//! peer's names and meanings: guest instructions (`lfence; rdtsc; lfence` around the workload;
//! under QEMU TCG with `-icount shift=0` one tick a guest instruction, memd's and the kernel's
//! included, as Linux's kernel is in the peer's), the resident memory before it, at its
//! probes (the most) and after it (memd's `PROCESS_STATS`, as the peer reads
//! `/proc/self/statm`; see [`resident_kb`]), the faults memd resolved meanwhile (its global
//! counters: this program is the only one running), the peak of the bytes asked of the
//! allocator above what was live before ([`user_rt::asked`]), the allocator's calls, how many
//! probes ran, and the checksum. `hwm_kb` is memd's high-water mark of the process's resident
//! memory over the workload (`hwm_pages`, started again with `CLEAR_REFS` 5 before it, as
//! Linux's `VmHWM` after `clear_refs`): unlike the probes' peak it sees a peak between two
//! probes (a hash table's resize, old and new tables both live).

mod work;

use user_rt::bench::{fatal, rdtsc};
use user_rt::*;

/// Resident memory of this process as Linux counts it, KiB: the frames it maps, not the pages
/// that map memd's shared zero frame (a first read of fresh memory maps it; Linux's zero
/// page is not in its resident count either). memd's `private_pages` is just that here: the
/// program never forks nor maps shared memory, so the zero frame is the one frame it shares.
fn resident_kb() -> u64 {
    match vm().process_stats(0) {
        Ok(s) => s.private_pages * 4,
        Err(_) => fatal("process_stats"),
    }
}

/// The high-water mark of resident memory since the last [`restart_hwm`], KiB (memd counts it
/// as Linux counts RSS: not the pages mapping its zero frame).
fn hwm_kb() -> u64 {
    match vm().process_stats(0) {
        Ok(s) => s.hwm_pages * 4,
        Err(_) => fatal("process_stats"),
    }
}

/// Starts the high-water mark again from what is resident now (Linux's `clear_refs` 5).
fn restart_hwm() {
    if vm()
        .clear_refs(libvm::proto::CLEAR_REFS_MM_HIWATER_RSS)
        .is_err()
    {
        fatal("clear_refs")
    }
}

/// Faults memd has resolved, all processes (zero fill, copy-on-write, shared).
fn faults() -> u64 {
    match vm().global_stats() {
        Ok(g) => g.faults_zero_fill + g.faults_cow + g.faults_shared,
        Err(_) => fatal("global_stats"),
    }
}

/// Runs every workload at the peer's sizes ([`work::FULL`]), or at small ones when `quick`
/// ([`work::QUICK`]), and prints its line.
pub fn run(quick: bool) -> u64 {
    let scale = if quick { &work::QUICK } else { &work::FULL };
    println!("REALWORK_BEGIN {:?}", scale);
    for (name, workload) in work::WORKLOADS {
        restart_hwm();
        let base = resident_kb();
        let mut peak = base;
        let mut probes = 0u64;
        ALLOCATOR.restart_peak();
        let before = ALLOCATOR.asked();
        let faults_before = faults();
        let t0 = rdtsc();
        let sum = workload(scale, &mut || {
            peak = peak.max(resident_kb());
            probes += 1;
        });
        let t1 = rdtsc();
        let hwm = hwm_kb();
        let faulted = faults() - faults_before;
        let after = ALLOCATOR.asked();
        println!(
            "RW {} instr={} rss_base_kb={} rss_peak_kb={} hwm_kb={} rss_after_kb={} minflt={} \
             req_peak_kb={} alloc_calls={} big_calls={} zeroed_calls={} probes={} sum={}",
            name,
            t1 - t0,
            base,
            peak,
            hwm,
            resident_kb(),
            faulted,
            (after.peak - before.live) / 1024,
            after.calls - before.calls,
            after.big - before.big,
            after.zeroed - before.zeroed,
            probes,
            sum
        );
    }
    println!("REALWORK_END");
    0
}
