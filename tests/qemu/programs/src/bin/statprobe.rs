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
    let g = vm().global_stats().unwrap_or_default();
    let s = vm().process_stats(0).unwrap_or_default();
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
        // Let the parent block in its yield loop first, so the copies counted are ours.
        for _ in 0..10 {
            yield_now();
        }
        let c0 = vm().global_stats().unwrap_or_default().cow_copies;
        for i in 0..M {
            write(a + i * PAGE, 100 + i as u64);
        }
        let c1 = vm().global_stats().unwrap_or_default().cow_copies;
        println!("statprobe child: wrote {} pages, {} copies", M, c1 - c0);
        write(sh + 8, 1);
        while read(sh + 16) == 0 {
            yield_now();
        }
        exit(0);
    }
    check!(child != u64::MAX, "fork");
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
    0
}
