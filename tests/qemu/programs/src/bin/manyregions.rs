//! A million regions in one process (boot with `max_map_count=1100000`): a lazy mapping of
//! 1,000,000 pages is cut into 1,000,000 regions by making every other page read-only; with
//! all of them, every call still works: a fault in the last region, an mprotect and a munmap
//! in the middle, a new mapping placed first fit among them, the region count memd reports.
//! memd's heap grows to hold them (`memd: heap grown to ...`). Then one munmap takes them all
//! away and memd's frames in use are back where they were.
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const REGIONS: usize = 1_000_000;

fn regions() -> u64 {
    vm().process_stats(0).map(|s| s.region_count).unwrap_or(0)
}

fn main(_: Start) -> u64 {
    let vm = vm();
    let before = regions();
    let base = global_stats();
    let len = REGIONS * PAGE;
    let a = vm
        .mmap(0, len, P::READ_WRITE, MmapFlags::anonymous_private())
        .unwrap_or(0);
    check!(a != 0, "mmap of {} pages", REGIONS);
    for i in 0..REGIONS / 2 {
        let r = vm.mprotect(a + (2 * i + 1) * PAGE, PAGE, P::READ);
        check!(r.is_ok(), "mprotect {}: {:?}", i, r);
    }
    let n = regions();
    check!(
        n >= before + REGIONS as u64 - 1,
        "{} regions (before: {})",
        n,
        before
    );
    println!("manyregions: {} regions", n);
    // Every call still works among them.
    let last = a + len - 2 * PAGE;
    write(last, 42);
    check!(read(last) == 42, "a fault in the last region");
    let mid = a + REGIONS / 2 * PAGE;
    check!(
        vm.mprotect(mid, 2 * PAGE, P::READ_WRITE).is_ok(),
        "mprotect in the middle"
    );
    check!(vm.munmap(mid, 2 * PAGE).is_ok(), "munmap in the middle");
    let b = vm.mmap(0, PAGE, P::READ_WRITE, MmapFlags::anonymous_private());
    check!(b.is_ok(), "mmap among a million regions: {:?}", b);
    let b = b.unwrap_or(0);
    write(b, 7);
    check!(read(b) == 7, "a fault in the new mapping");
    println!("PASS a million regions");
    check!(vm.munmap(b, PAGE).is_ok(), "munmap");
    check!(vm.munmap(a, len).is_ok(), "munmap of them all");
    check!(regions() == before, "{} regions left", regions());
    check_data_frames_back(&base);
    println!("PASS every region gone, memory back");
    0
}
