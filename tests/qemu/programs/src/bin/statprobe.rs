//! statprobe: does known things, then runs `memstat --json` while they hold, for the QEMU test
//! (`tests/qemu/tests/memstat.rs`) to check memstat's figures against them.
//!
//! It prints its baseline (`statprobe: before ...`), maps N private pages and touches M of them,
//! maps K shared pages and touches them all, forks a child that writes the M private pages (M
//! copy-on-write copies, counted by the child itself), runs `memstat --json` while the child
//! waits, then lets the child go and prints `PASS statprobe`.
#![no_std]
#![no_main]

extern crate alloc;

use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const N: usize = 32;
const M: usize = 12;
const K: usize = 3;

fn main(start: Start) -> u64 {
    let me = start.badge;
    let g = global_stats();
    let s = process_stats(0);
    println!(
        "statprobe: before pid={} rss={} vsz={} regions={} heap={} frames_used={} tables={} cow_copies={}",
        me,
        s.resident_pages,
        s.mapped_pages,
        s.region_count,
        s.heap_bytes,
        g.frames_used,
        g.page_table_frames,
        g.cow_copies
    );
    let a = vm()
        .mmap(0, N * PAGE, P::READ_WRITE, F::anonymous_private())
        .unwrap_or(0);
    let sh = vm()
        .mmap(0, K * PAGE, P::READ_WRITE, F::anonymous_shared())
        .unwrap_or(0);
    check!(a != 0 && sh != 0, "mmap");
    for i in 0..M {
        write(a + i * PAGE, i as u64 + 1);
    }
    for i in 0..K {
        write(sh + i * PAGE, 0);
    }
    let child = vm().fork().unwrap_or(u64::MAX);
    if child == 0 {
        // Let the parent reach its yield loop first (it says so in the shared page, after its
        // own copy-on-write faults of the stack it uses there), so the copies counted are
        // ours: on several processors it runs meanwhile.
        while read(sh + 24) == 0 {
            yield_now();
        }
        let c0 = global_stats().cow_copies;
        for i in 0..M {
            write(a + i * PAGE, 100 + i as u64);
        }
        let c1 = global_stats().cow_copies;
        println!("statprobe child: wrote {} pages, {} copies", M, c1 - c0);
        write(sh + 8, 1);
        while read(sh + 16) == 0 {
            yield_now();
        }
        exit(0);
    }
    check!(child != u64::MAX, "fork");
    yield_now();
    write(sh + 24, 1);
    while read(sh + 8) == 0 {
        yield_now();
    }
    println!(
        "statprobe: did N={} M={} K={} pid={} child={}",
        N, M, K, me, child
    );
    let r = vm().spawn_with_args("memstat", "--json");
    let status = r.and_then(|pid| vm().wait(pid)).map(|w| w.0);
    check!(status == Ok(0), "memstat --json: {:?}", status);
    write(sh + 16, 1);
    check!(vm().wait(child).map(|w| w.0) == Ok(0), "child");
    check!(read(a) == 1, "the child's write reached the parent");
    // (After the checked figures: this may grow the heap.)
    let r = vm().spawn_with_args("memstat", &alloc::format!("--json {}", me));
    check!(
        r.and_then(|pid| vm().wait(pid)).map(|w| w.0) == Ok(0),
        "memstat --json PID"
    );
    println!("PASS statprobe");
    high_water_mark();
    0
}

/// The high-water mark of resident memory (Linux's `VmHWM`, reset with `clear_refs` 5): it
/// keeps the most pages resident at once while resident memory falls, counts no page that
/// maps memd's zero frame, and starts again at a `CLEAR_REFS` 5; the system's peak of frames
/// in use is never below the frames in use.
fn high_water_mark() {
    let vm = vm();
    let stats = || process_stats(0);
    check!(vm.clear_refs(5).is_ok(), "clear_refs 5");
    let s0 = stats();
    check!(
        s0.hwm_pages == s0.rss_pages,
        "after clear_refs: hwm {} rss {}",
        s0.hwm_pages,
        s0.rss_pages
    );
    let a = vm
        .mmap(0, 64 * PAGE, P::READ_WRITE, F::anonymous_private())
        .unwrap_or(0);
    // Read-only, so no region merges it with `a` (whose fault-around would back its pages).
    let z = vm
        .mmap(0, 16 * PAGE, P::READ, F::anonymous_private())
        .unwrap_or(0);
    check!(a != 0 && z != 0, "mmap");
    for i in 0..64 {
        write(a + i * PAGE, 1);
    }
    let mut zeros = 0;
    for i in 0..16 {
        zeros += read(z + i * PAGE);
    }
    let s1 = stats();
    check!(
        zeros == 0 && s1.rss_pages >= s0.rss_pages + 64 && s1.resident_pages >= s1.rss_pages + 16,
        "64 written and 16 read: rss {} resident {} (before {})",
        s1.rss_pages,
        s1.resident_pages,
        s0.rss_pages
    );
    check!(
        vm.munmap(a, 64 * PAGE).is_ok() && vm.munmap(z, 16 * PAGE).is_ok(),
        "munmap"
    );
    let s2 = stats();
    check!(
        s2.rss_pages + 64 <= s1.rss_pages && s2.hwm_pages == s1.rss_pages,
        "after munmap: rss {} hwm {}, peak rss {}",
        s2.rss_pages,
        s2.hwm_pages,
        s1.rss_pages
    );
    check!(
        vm.clear_refs(1) == Err(libvm::VmError::InvalidFlags),
        "clear_refs 1"
    );
    check!(vm.clear_refs(5).is_ok(), "clear_refs 5 again");
    let s3 = stats();
    check!(
        s3.hwm_pages == s3.rss_pages && s3.hwm_pages < s1.rss_pages,
        "reset: hwm {} rss {}",
        s3.hwm_pages,
        s3.rss_pages
    );
    let g = global_stats();
    check!(
        g.frames_peak >= g.frames_used + 64,
        "frames peak {} used {}",
        g.frames_peak,
        g.frames_used
    );
    println!(
        "PASS statprobe hwm: {} pages at the peak, {} after the unmap, {} after clear_refs",
        s1.rss_pages, s2.hwm_pages, s3.hwm_pages
    );
}
