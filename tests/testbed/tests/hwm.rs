//! The high-water mark of resident memory (Linux's `VmHWM` in `/proc/PID/status`, reset by
//! writing 5 to `/proc/PID/clear_refs`): `hwm_pages` keeps the most pages a process had
//! resident at once, counting as Linux counts RSS (a page mapping memd's shared zero frame is
//! not resident memory); a fork's child starts from what it has; `CLEAR_REFS` 5 starts it
//! again; the system keeps the most frames in use at once (`frames_peak`).

use libvm::VmError;
use libvm::{MmapFlags, ProtectionFlags as P};
use testbed::system::{Config, System};

const PAGE: u64 = 4096;

fn system() -> System {
    System::new(Config {
        ram_bytes: 32 << 20,
        ..Config::default()
    })
}

#[test]
fn the_high_water_mark_holds_the_peak_and_clear_refs_starts_it_again() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let stats = || vm.process_stats(0).unwrap();
    let s0 = stats();
    let a = vm
        .mmap(
            0,
            100 * PAGE as usize,
            P::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap() as u64;
    // Reads map the zero frame: nothing resident as Linux counts it.
    for i in 0..100 {
        sys.read(p, a + i * PAGE, 8).unwrap();
    }
    let s1 = stats();
    assert_eq!(s1.resident_pages, s0.resident_pages + 100);
    assert_eq!((s1.rss_pages, s1.hwm_pages), (s0.rss_pages, s0.hwm_pages));
    // Writes make them resident (each a zeroed frame of its own).
    for i in 0..100 {
        sys.write(p, a + i * PAGE, &[1]).unwrap();
    }
    let s2 = stats();
    assert_eq!(s2.rss_pages, s0.rss_pages + 100);
    assert_eq!(s2.hwm_pages, s2.rss_pages);
    vm.munmap(a as usize, 60 * PAGE as usize).unwrap();
    let s3 = stats();
    assert_eq!(s3.rss_pages, s2.rss_pages - 60);
    assert_eq!(s3.hwm_pages, s2.rss_pages, "the peak stays");
    assert_eq!(vm.clear_refs(4), Err(VmError::InvalidFlags));
    assert_eq!(
        stats().hwm_pages,
        s2.rss_pages,
        "a refused value changes nothing"
    );
    vm.clear_refs(5).unwrap();
    assert_eq!(stats().hwm_pages, s3.rss_pages);
    let g = vm.global_stats().unwrap();
    assert!(g.frames_peak >= g.frames_used + 60, "{g:?}");
}

#[test]
fn a_forked_child_starts_its_high_water_mark_from_what_it_has() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm
        .mmap(
            0,
            50 * PAGE as usize,
            P::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap() as u64;
    for i in 0..50 {
        sys.write(p, a + i * PAGE, &[1]).unwrap();
    }
    vm.munmap(a as usize, 40 * PAGE as usize).unwrap();
    let parent = vm.process_stats(0).unwrap();
    assert_eq!(parent.hwm_pages, parent.rss_pages + 40);
    let c = sys.fork(p).unwrap();
    let child = sys.client(c).process_stats(0).unwrap();
    assert_eq!(child.rss_pages, parent.rss_pages);
    assert_eq!(child.hwm_pages, child.rss_pages, "not the parent's peak");
    // The child's copies of shared pages are resident memory it already counted.
    for i in 40..50 {
        sys.write(c, a + i * PAGE, &[2]).unwrap();
    }
    let child = sys.client(c).process_stats(0).unwrap();
    assert_eq!(
        (child.rss_pages, child.hwm_pages),
        (parent.rss_pages, parent.rss_pages)
    );
}
