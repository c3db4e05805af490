//! Device memory: a range of physical memory that is not memd's, mapped into the processes
//! holding its capability, as a process and the device itself observe it.

use kernel_shim::paging::PageTableFlags as F;
use libvm::proto::{
    MADV_DONTFORK, MADV_DONTNEED, MADV_WILLNEED, MREMAP_FIXED, MREMAP_MAYMOVE, RLIMIT_MEMLOCK,
};
use libvm::{Caching, Device, MmapFlags, ProtectionFlags as P, VmError};
use memd::region::RegionKind;
use testbed::system::{Config, DEVICE_NAME, FaultKind, System};

const PAGE: u64 = 4096;
/// The device's size in the tests.
const DEVICE: u64 = 16 * PAGE;

fn shared() -> MmapFlags {
    MmapFlags::SHARED
}

fn private() -> MmapFlags {
    MmapFlags::PRIVATE
}

/// A machine with a device of [`DEVICE`] bytes whose every page starts with its index and a
/// marker (what the device holds; never zero), and a process holding the device.
fn system() -> (System, u64) {
    let sys = System::new(Config {
        device_bytes: DEVICE,
        ..Config::default()
    });
    for i in 0..DEVICE / PAGE {
        sys.device_write(i * PAGE, &[0xD0, i as u8, 0x5A]);
    }
    let p = sys.spawn().unwrap();
    sys.memd()
        .grant_devices(p, sys.memd().all_devices())
        .unwrap();
    (sys, p)
}

/// The device's first two pages mapped shared, read-write and uncached into `p`; the address.
fn two_shared_pages(sys: &System, p: u64) -> usize {
    sys.client(p)
        .map_device(
            0,
            2 * 4096,
            P::READ_WRITE,
            shared(),
            0,
            0,
            Caching::Uncached,
        )
        .unwrap()
}

#[test]
fn a_device_is_found_by_name() {
    let (sys, p) = system();
    let vm = sys.client(p);
    assert_eq!(
        vm.device(DEVICE_NAME),
        Ok(Device {
            index: 0,
            len: DEVICE
        })
    );
    assert_eq!(vm.device("nothing"), Err(VmError::NoSuchDevice));
    assert_eq!(vm.device(""), Err(VmError::BadRequest));
}

#[test]
fn loads_and_stores_reach_the_device_never_a_frame_of_memd() {
    let (sys, p) = system();
    let vm = sys.client(p);
    let before = sys.memd().global_stats();
    let a = vm
        .map_device(
            0,
            4 * 4096,
            P::READ_WRITE,
            shared(),
            0,
            0,
            Caching::Uncached,
        )
        .unwrap() as u64;
    // What the device held, never zeroed, at the right page of it.
    for i in 0..4 {
        assert_eq!(sys.read(p, a + i * PAGE, 3).unwrap(), [0xD0, i as u8, 0x5A]);
    }
    sys.write(p, a + 2 * PAGE + 100, b"to the device").unwrap();
    assert_eq!(sys.device_read(2 * PAGE + 100, 13), b"to the device");
    // The device's own store is seen at once.
    sys.device_write(3 * PAGE + 8, b"from it");
    assert_eq!(sys.read(p, a + 3 * PAGE + 8, 7).unwrap(), b"from it");
    // Uncached: PCD and PWT.
    let flags = sys.page_flags(p, a).unwrap();
    assert!(flags.contains(F::NO_CACHE | F::WRITE_THROUGH | F::WRITABLE));
    // Not resident memory of the process, not one of memd's frames.
    let stats = vm.process_stats(0).unwrap();
    assert_eq!((stats.resident_pages, stats.rss_pages), (0, 0));
    let after = sys.memd().global_stats();
    assert_eq!(after.data_frames(), before.data_frames());
    let regions = vm.regions(0).unwrap();
    let r = regions.iter().find(|r| r.start == a).unwrap();
    assert_eq!(
        (r.end, r.kind, r.shared, r.resident_pages),
        (a + 4 * PAGE, RegionKind::Device.code(), 1, 0)
    );
    // Its end returns every frame it held (no data frame was ever taken for the device's
    // pages); the device keeps what was stored.
    sys.exit(p, 0).unwrap();
    let end = sys.memd().global_stats();
    assert_eq!(end.data_frames(), before.data_frames());
    assert_eq!(end.processes, before.processes - 1);
    assert_eq!(sys.device_read(2 * PAGE + 100, 13), b"to the device");
}

#[test]
fn write_combining_is_pwt_alone_and_an_offset_picks_the_page() {
    let (sys, p) = system();
    let vm = sys.client(p);
    let a = vm
        .map_device(
            0,
            4096,
            P::READ_WRITE,
            private(),
            0,
            5 * PAGE,
            Caching::WriteCombining,
        )
        .unwrap() as u64;
    assert_eq!(sys.read(p, a, 3).unwrap(), [0xD0, 5, 0x5A]);
    let flags = sys.page_flags(p, a).unwrap();
    assert!(flags.contains(F::WRITE_THROUGH) && !flags.contains(F::NO_CACHE));
    // Private device memory is still the device's: a store is never copied.
    sys.write(p, a, &[0xEE]).unwrap();
    assert_eq!(sys.device_read(5 * PAGE, 1), [0xEE]);
}

#[test]
fn only_a_holder_maps_a_device_and_only_a_holder_grants_it() {
    let (sys, p) = system();
    let q = sys.spawn().unwrap();
    let map = |pid| {
        sys.client(pid)
            .map_device(0, 4096, P::READ, shared(), 0, 0, Caching::Uncached)
    };
    assert_eq!(map(q), Err(VmError::NotPermitted));
    assert_eq!(
        sys.memd().grant_device(q, p, 0),
        Err(VmError::NotPermitted),
        "q holds nothing to give"
    );
    assert_eq!(sys.memd().grant_device(p, q, 1), Err(VmError::NoSuchDevice));
    sys.memd().grant_device(p, q, 0).unwrap();
    let a = map(q).unwrap() as u64;
    assert_eq!(sys.read(q, a, 3).unwrap(), [0xD0, 0, 0x5A]);
    // A fork's child holds no device.
    let c = sys.fork(p).unwrap();
    assert_eq!(map(c), Err(VmError::NotPermitted));
    // Refused calls left nothing behind.
    assert_eq!(
        sys.memd().process_stats(c).unwrap().region_count,
        sys.memd().process_stats(p).unwrap().region_count
    );
}

#[test]
fn bad_arguments_are_refused_with_nothing_mapped() {
    let (sys, p) = system();
    let vm = sys.client(p);
    let regions = || vm.regions(0).unwrap().len();
    let n = regions();
    let map = |addr: usize, len: usize, flags: MmapFlags, device: u32, offset: u64| {
        vm.map_device(
            addr,
            len,
            P::READ_WRITE,
            flags,
            device,
            offset,
            Caching::Uncached,
        )
    };
    assert_eq!(map(0, 0, shared(), 0, 0), Err(VmError::InvalidSize));
    assert_eq!(map(0, 4096, shared(), 0, 100), Err(VmError::NotAligned));
    assert_eq!(
        map(0, 2 * 4096, shared(), 0, DEVICE - PAGE),
        Err(VmError::InvalidSize),
        "past the device's end"
    );
    assert_eq!(map(0, 4096, shared(), 0, !4095), Err(VmError::InvalidSize));
    assert_eq!(map(0, 4096, shared(), 3, 0), Err(VmError::NoSuchDevice));
    assert_eq!(
        map(0, 4096, shared() | private(), 0, 0),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(
        map(0, 4096, MmapFlags::empty(), 0, 0),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(
        map(0, 4096, MmapFlags::anonymous_shared(), 0, 0),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(
        map(0, 4096, shared() | MmapFlags::POPULATE, 0, 0),
        Err(VmError::InvalidFlags)
    );
    let taken = vm
        .mmap(0, 4096, P::READ, MmapFlags::anonymous_private())
        .unwrap();
    assert_eq!(
        map(taken, 4096, shared() | MmapFlags::FIXED_NOREPLACE, 0, 0),
        Err(VmError::AlreadyMapped)
    );
    assert_eq!(
        map(taken + 1, 4096, shared() | MmapFlags::FIXED, 0, 0),
        Err(VmError::NotAligned)
    );
    assert_eq!(regions(), n + 1);
    // FIXED replaces what was there.
    assert_eq!(
        map(taken, 4096, shared() | MmapFlags::FIXED, 0, PAGE),
        Ok(taken)
    );
    assert_eq!(sys.read(p, taken as u64, 2).unwrap(), [0xD0, 1]);
    assert_eq!(regions(), n + 1);
}

#[test]
fn mprotect_keeps_the_caching_and_prot_none_comes_back_on_the_next_touch() {
    let (sys, p) = system();
    let vm = sys.client(p);
    let a = two_shared_pages(&sys, p);
    let a64 = a as u64;
    sys.write(p, a64, &[1]).unwrap();
    vm.mprotect(a, 2 * 4096, P::READ).unwrap();
    let flags = sys.page_flags(p, a64).unwrap();
    assert!(!flags.contains(F::WRITABLE));
    assert!(flags.contains(F::NO_CACHE | F::WRITE_THROUGH), "{flags:?}");
    vm.mprotect(a, 4096, P::NONE).unwrap();
    assert_eq!(sys.page_flags(p, a64), None);
    vm.mprotect(a, 2 * 4096, P::READ_WRITE).unwrap();
    sys.write(p, a64 + 1, &[2]).unwrap();
    assert_eq!(sys.device_read(0, 2), [1, 2]);
    let flags = sys.page_flags(p, a64).unwrap();
    assert!(flags.contains(F::NO_CACHE | F::WRITE_THROUGH | F::WRITABLE));
    // A store where the protection forbids it is refused like any other.
    vm.mprotect(a, 4096, P::READ).unwrap();
    let e = sys.write(p, a64, &[3]).unwrap_err();
    assert_eq!(e.kind, FaultKind::Access);
    assert_eq!(sys.device_read(0, 1), [1]);
}

#[test]
fn munmap_takes_device_pages_away() {
    let (sys, p) = system();
    let vm = sys.client(p);
    let a = vm
        .map_device(
            0,
            3 * 4096,
            P::READ_WRITE,
            shared(),
            0,
            0,
            Caching::Uncached,
        )
        .unwrap();
    let a64 = a as u64;
    for i in 0..3 {
        sys.read(p, a64 + i * PAGE, 1).unwrap();
    }
    vm.munmap(a + 4096, 4096).unwrap();
    assert_eq!(sys.page_flags(p, a64 + PAGE), None);
    // The pieces left still map their own device pages.
    assert_eq!(sys.read(p, a64 + 2 * PAGE, 2).unwrap(), [0xD0, 2]);
    assert_eq!(sys.read(p, a64, 2).unwrap(), [0xD0, 0]);
    let e = sys.read(p, a64 + PAGE, 1).unwrap_err();
    assert_eq!(e.kind, FaultKind::Unmapped);
}

#[test]
fn a_fork_keeps_shared_device_memory_and_drops_private() {
    let (sys, p) = system();
    let vm = sys.client(p);
    let private_at = vm
        .map_device(0, 4096, P::READ_WRITE, private(), 0, 0, Caching::Uncached)
        .unwrap() as u64;
    let shared_at = vm
        .map_device(0, 4096, P::READ_WRITE, shared(), 0, PAGE, Caching::Uncached)
        .unwrap() as u64;
    sys.read(p, private_at, 1).unwrap();
    let c = sys.fork(p).unwrap();
    assert_eq!(sys.read(c, shared_at, 2).unwrap(), [0xD0, 1]);
    sys.write(c, shared_at + 9, b"child").unwrap();
    assert_eq!(sys.read(p, shared_at + 9, 5).unwrap(), b"child");
    assert!(sys.page_flags(c, shared_at).unwrap().contains(F::NO_CACHE));
    let e = sys.read(c, private_at, 1).unwrap_err();
    assert_eq!(e.kind, FaultKind::Unmapped);
    // The parent's private mapping is the device's still.
    assert_eq!(sys.read(p, private_at, 2).unwrap(), [0xD0, 0]);
}

#[test]
fn madvise_mremap_and_mlock_treat_device_memory_as_linux_treats_pfn_maps() {
    let (sys, p) = system();
    let vm = sys.client(p);
    let a = two_shared_pages(&sys, p);
    sys.write(p, a as u64, &[7]).unwrap();
    for advice in [MADV_DONTNEED, MADV_DONTFORK] {
        assert_eq!(vm.madvise(a, 4096, advice), Err(VmError::InvalidFlags));
    }
    assert_eq!(vm.madvise(a, 2 * 4096, MADV_WILLNEED), Ok(()));
    assert_eq!(sys.device_read(0, 1), [7], "nothing was dropped");
    assert_eq!(
        vm.mremap(a, 2 * 4096, 4 * 4096, MREMAP_MAYMOVE, 0),
        Err(VmError::BadBuffer)
    );
    assert_eq!(
        vm.mremap(
            a,
            2 * 4096,
            2 * 4096,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            a + (1 << 30)
        ),
        Err(VmError::InvalidFlags)
    );
    // Shrinking is an unmap of the tail.
    assert_eq!(vm.mremap(a, 2 * 4096, 4096, 0, 0), Ok(a));
    assert_eq!(sys.page_flags(p, a as u64 + PAGE), None);
    // mlock accepts it and locks nothing: no page of it counts against RLIMIT_MEMLOCK.
    vm.setrlimit(RLIMIT_MEMLOCK, 4096, 4096).unwrap();
    vm.mlock(a, 4096).unwrap();
    let anon = vm
        .mmap(0, 2 * 4096, P::READ_WRITE, MmapFlags::anonymous_private())
        .unwrap();
    vm.mlock(anon, 4096).unwrap();
    assert_eq!(vm.mlock(anon + 4096, 4096), Err(VmError::OutOfMemory));
    assert_eq!(vm.process_stats(0).unwrap().resident_pages, 1);
}

#[test]
fn adjacent_mappings_of_consecutive_device_pages_are_one_region() {
    let (sys, p) = system();
    let vm = sys.client(p);
    let a = vm
        .map_device(0, 2 * 4096, P::READ, shared(), 0, 0, Caching::Uncached)
        .unwrap();
    let n = vm.regions(0).unwrap().len();
    let fixed = shared() | MmapFlags::FIXED_NOREPLACE;
    // Continuing the device's pages: merged.
    vm.map_device(
        a + 2 * 4096,
        4096,
        P::READ,
        fixed,
        0,
        2 * PAGE,
        Caching::Uncached,
    )
    .unwrap();
    assert_eq!(vm.regions(0).unwrap().len(), n);
    // Not continuing them: a region of its own, on its own page.
    vm.map_device(
        a + 3 * 4096,
        4096,
        P::READ,
        fixed,
        0,
        9 * PAGE,
        Caching::Uncached,
    )
    .unwrap();
    assert_eq!(vm.regions(0).unwrap().len(), n + 1);
    assert_eq!(sys.read(p, a as u64 + 2 * PAGE, 2).unwrap(), [0xD0, 2]);
    assert_eq!(sys.read(p, a as u64 + 3 * PAGE, 2).unwrap(), [0xD0, 9]);
}
