//! Fault-around: a first touch that continues a sequential walk through a large private
//! anonymous region backs the next pages in the same batch (bounded by `memd::FAULT_AROUND`,
//! the region and the next resident page); an isolated touch backs exactly one page. Every
//! page backed ahead reads zero and is released like any other.

use libvm::{MmapFlags, ProtectionFlags as P};
use memd::fault::{FAULT_AROUND, FAULT_AROUND_MIN_REGION};
use testbed::system::{Config, System};

const PAGE: u64 = 4096;

fn resident(sys: &System, p: u64) -> u64 {
    sys.memd().process_stats(p).unwrap().resident_pages
}

#[test]
fn a_sequential_walk_backs_pages_ahead_and_an_isolated_touch_does_not() {
    let sys = System::new(Config::default());
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let base_used = vm.global_stats().unwrap().data_frames();
    let pages = 2 * FAULT_AROUND_MIN_REGION;
    const { assert!(2 * FAULT_AROUND + 1 < 40 && 40 < 2 * FAULT_AROUND_MIN_REGION - 3) };
    let a = vm
        .mmap(
            0,
            (pages * PAGE) as usize,
            P::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap() as u64;
    let before = resident(&sys, p);
    // An isolated touch: one page.
    sys.write(p, a + 40 * PAGE, b"x").unwrap();
    assert_eq!(resident(&sys, p), before + 1);
    // The walk: page 0 alone, page 1 continues it and backs FAULT_AROUND pages from 1 on.
    sys.write(p, a, b"0").unwrap();
    assert_eq!(resident(&sys, p), before + 2);
    let faults = vm.global_stats().unwrap().faults_zero_fill;
    sys.write(p, a + PAGE, b"1").unwrap();
    assert_eq!(resident(&sys, p), before + 2 + FAULT_AROUND);
    for i in 2..=FAULT_AROUND {
        assert_eq!(sys.read(p, a + i * PAGE, 8).unwrap(), [0; 8], "page {i}");
    }
    assert_eq!(vm.global_stats().unwrap().faults_zero_fill, faults + 1);
    // The next step backs FAULT_AROUND more; the one after stops at the resident page 40.
    sys.write(p, a + (FAULT_AROUND + 1) * PAGE, b"2").unwrap();
    assert_eq!(resident(&sys, p), before + 2 + 2 * FAULT_AROUND);
    sys.write(p, a + (2 * FAULT_AROUND + 1) * PAGE, b"3")
        .unwrap();
    assert_eq!(resident(&sys, p), before + 41);
    assert_eq!(sys.read(p, a + 40 * PAGE, 1).unwrap(), b"x");
    // Near the end it never goes past the region.
    sys.write(p, a + (pages - 3) * PAGE, b"4").unwrap();
    sys.write(p, a + (pages - 2) * PAGE, b"5").unwrap();
    assert_eq!(resident(&sys, p), before + 44);
    vm.munmap(a as usize, (pages * PAGE) as usize).unwrap();
    assert_eq!(vm.global_stats().unwrap().data_frames(), base_used);
}

#[test]
fn small_regions_and_reads_of_holes_back_one_page_per_fault() {
    let sys = System::new(Config::default());
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let pages = FAULT_AROUND_MIN_REGION - 1;
    let a = vm
        .mmap(
            0,
            (pages * PAGE) as usize,
            P::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap() as u64;
    let before = resident(&sys, p);
    for i in 0..4 {
        sys.write(p, a + i * PAGE, b"s").unwrap();
    }
    assert_eq!(resident(&sys, p), before + 4);
}
