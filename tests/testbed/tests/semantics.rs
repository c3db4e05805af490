//! The semantics of every memd operation, observed as a process observes them: contents of
//! memory, faults, errno values and statistics.

use libvm::proto::{self, MADV_DONTNEED, MADV_WILLNEED, Request, Words};
use libvm::{MmapFlags, ProtectionFlags as P, VmError};
use memd::daemon::{CHUNK_COST, PAGE_COST, REGION_COST};
use memd::layout::{HEAP_START, MMAP_BASE, STACK_TOP, USER_END};
use memd::{Death, FaultKill, FaultReason, Limits};
use testbed::system::{Config, Fault, FaultKind, System};

const PAGE: u64 = 4096;

fn system() -> System {
    System::new(Config::default())
}

fn anon_shared() -> MmapFlags {
    MmapFlags::anonymous_shared()
}

fn anon() -> MmapFlags {
    MmapFlags::anonymous_private()
}

#[test]
fn the_readme_example_holds() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 3 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    sys.write(p, a + 4096, b"hello").unwrap();
    vm.mprotect(a as usize, 4096, P::READ).unwrap();
    let c = sys.fork(p).unwrap();
    sys.write(c, a + 4096, b"HELLO").unwrap();
    assert_eq!(sys.read(p, a + 4096, 5).unwrap(), b"hello");
    assert_eq!(sys.read(c, a + 4096, 5).unwrap(), b"HELLO");
    assert_eq!(sys.write(p, a, b"x"), Err(Fault::access(a)));
    assert!(matches!(
        sys.reap(p),
        Some(Death::Killed(FaultKill {
            reason: FaultReason::AccErr,
            ..
        }))
    ));
}

#[test]
fn nothing_is_backed_until_first_touch_and_touch_reads_zero() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let before = vm.global_stats().unwrap();
    let a = vm.mmap(0, 64 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    assert_eq!(
        vm.global_stats().unwrap().data_frames(),
        before.data_frames()
    );
    let stats = vm.process_stats(0).unwrap();
    assert_eq!(stats.resident_pages, 0);
    assert!(stats.mapped_pages >= 64);
    // A first read maps the shared zero frame: no frame of its own yet (Linux's zero page).
    assert_eq!(sys.read(p, a + 5 * PAGE, 4096).unwrap(), vec![0u8; 4096]);
    assert_eq!(
        vm.global_stats().unwrap().data_frames(),
        before.data_frames()
    );
    sys.write(p, a + 7 * PAGE + 100, b"abc").unwrap();
    let after = vm.global_stats().unwrap();
    assert_eq!(after.data_frames(), before.data_frames() + 1);
    assert_eq!(after.faults_zero_fill, before.faults_zero_fill + 2);
    assert_eq!(vm.process_stats(0).unwrap().resident_pages, 2);
    let page = sys.read(p, a + 7 * PAGE, 4096).unwrap();
    assert_eq!(&page[100..103], b"abc");
    assert!(page[..100].iter().chain(&page[103..]).all(|&b| b == 0));
    // The first write to the page read before gets a zeroed frame of its own; the zero frame
    // stays zero for every other reader.
    sys.write(p, a + 5 * PAGE + 8, b"xy").unwrap();
    assert_eq!(
        vm.global_stats().unwrap().data_frames(),
        before.data_frames() + 2
    );
    let page = sys.read(p, a + 5 * PAGE, 4096).unwrap();
    assert_eq!(&page[8..10], b"xy");
    assert!(page[..8].iter().chain(&page[10..]).all(|&b| b == 0));
    let q = sys.spawn().unwrap();
    let b = sys
        .client(q)
        .mmap(0, PAGE as usize, P::READ_WRITE, anon())
        .unwrap() as u64;
    assert_eq!(sys.read(q, b, 4096).unwrap(), vec![0u8; 4096]);
}

#[test]
fn a_page_read_before_and_then_protected_is_never_writable_through_the_zero_frame() {
    // Pins: mprotect of memory holding zero-frame mappings keeps them read-only (the zero
    // frame is shared by every reader); a write after mprotect back to read/write gets a frame
    // of its own.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon()).unwrap();
    for i in 0..4 {
        sys.read(p, a as u64 + i * PAGE, 8).unwrap();
    }
    vm.mprotect(a, 4 * 4096, P::READ).unwrap();
    vm.mprotect(a, 4 * 4096, P::READ_WRITE).unwrap();
    vm.mprotect(a + 4096, 4096, P::READ_WRITE).unwrap();
    sys.write(p, a as u64 + PAGE, &[9; 8]).unwrap();
    let q = sys.spawn().unwrap();
    let b = sys.client(q).mmap(0, 4096, P::READ, anon()).unwrap() as u64;
    assert_eq!(
        sys.read(q, b, 4096).unwrap(),
        vec![0u8; 4096],
        "the zero frame"
    );
    assert_eq!(sys.read(p, a as u64 + PAGE, 8).unwrap(), vec![9; 8]);
    assert_eq!(sys.read(p, a as u64, 8).unwrap(), vec![0; 8]);
}

#[test]
fn placement_follows_the_layout_and_honours_hints() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4096, P::READ, anon()).unwrap() as u64;
    assert!((MMAP_BASE..STACK_TOP).contains(&a), "{a:#x}");
    let hint = 0x5000_0000;
    assert_eq!(vm.mmap(hint, 8192, P::READ, anon()).unwrap(), hint);
    // A hint that is taken is not honoured, and nothing there is replaced.
    let b = vm.mmap(hint, 4096, P::READ, anon()).unwrap();
    assert_ne!(b, hint);
    // An unaligned hint is only a hint.
    assert!(vm.mmap(hint + 1, 4096, P::READ, anon()).is_ok());
    // The heap and stack are where the layout puts them.
    assert_eq!(vm.brk(0).unwrap() as u64, HEAP_START);
    sys.write(p, STACK_TOP - 8, b"stack").unwrap();
    assert_eq!(sys.write(p, 0x100, b"null"), Err(Fault::unmapped(0x100)));
}

#[test]
fn arguments_are_validated_and_change_nothing() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon()).unwrap();
    sys.write(p, a as u64, b"keep").unwrap();
    let regions = vm.regions(0).unwrap();
    let stats = vm.process_stats(0).unwrap();

    // Linux's answers, in Linux's order (what Asterinas' mmap error tests and LTP's mmap,
    // mprotect and madvise tests expect of Linux).
    // mmap: an empty length is EINVAL; one that overflows when rounded to pages, ENOMEM.
    assert_eq!(vm.mmap(0, 0, P::READ, anon()), Err(VmError::InvalidSize));
    assert_eq!(
        vm.mmap(0, usize::MAX - 10, P::READ, anon()),
        Err(VmError::OutOfMemory)
    );
    // MAP_FIXED: past the user half ENOMEM (the range is checked before the alignment),
    // unaligned EINVAL, below 64 KiB EPERM.
    assert_eq!(
        vm.mmap(0x4000_0001, 4096, P::READ, anon().fixed()),
        Err(VmError::NotAligned)
    );
    assert_eq!(
        vm.mmap(0xFFFF_8000_0000_0000, 4096, P::READ, anon().fixed()),
        Err(VmError::OutOfMemory)
    );
    assert_eq!(
        vm.mmap((USER_END - 4096) as usize, 8192, P::READ, anon().fixed()),
        Err(VmError::OutOfMemory)
    );
    assert_eq!(
        vm.mmap((USER_END - 4095) as usize, 8192, P::READ, anon().fixed()),
        Err(VmError::OutOfMemory)
    );
    for exact in [a.wrapping_neg() - 1, a.wrapping_neg(), a.wrapping_neg() + 1] {
        assert_eq!(
            vm.mmap(a, exact, P::READ, anon().fixed()),
            Err(VmError::OutOfMemory)
        );
        assert_eq!(vm.munmap(a, exact), Err(VmError::InvalidSize));
    }
    assert_eq!(
        vm.mmap(0x1000, 4096, P::READ, anon().fixed()),
        Err(VmError::NotPermitted)
    );
    assert_eq!(VmError::NotPermitted.errno(), syscall::error::EPERM);
    assert_eq!(
        vm.mmap(0, 4096, P::READ, MmapFlags::ANONYMOUS),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(
        vm.mmap(0, 4096, P::READ, anon() | MmapFlags::SHARED),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(
        vm.mmap(0, 4096, P::READ, MmapFlags::PRIVATE),
        Err(VmError::InvalidFlags)
    );
    // munmap: EINVAL for an unaligned, empty, overflowing or out-of-the-user-half range;
    // a range with nothing mapped is fine.
    assert_eq!(vm.munmap(a + 1, 4096), Err(VmError::NotAligned));
    assert_eq!(vm.munmap(a, 0), Err(VmError::InvalidSize));
    assert_eq!(vm.munmap(a, usize::MAX), Err(VmError::InvalidSize));
    assert_eq!(
        vm.munmap(0xFFFF_8000_0000_0000, 4096),
        Err(VmError::InvalidAddress)
    );
    assert_eq!(vm.munmap(0x1000, 4096), Ok(()));
    // mprotect: unaligned EINVAL; empty succeeds and changes nothing; overflowing ENOMEM;
    // nothing mapped ENOMEM.
    assert_eq!(vm.mprotect(a + 8, 4096, P::READ), Err(VmError::NotAligned));
    assert_eq!(vm.mprotect(a, 0, P::READ), Ok(()));
    assert_eq!(
        vm.mprotect(a, usize::MAX - 10, P::READ),
        Err(VmError::OutOfMemory)
    );
    assert_eq!(
        vm.mprotect(0x1000, 4096, P::READ),
        Err(VmError::RegionNotFound)
    );
    // madvise: an unknown advice is EINVAL before anything else (a hole too); unaligned and
    // overflowing EINVAL; empty succeeds; nothing mapped ENOMEM.
    assert_eq!(vm.madvise(a, 4096, 99), Err(VmError::InvalidFlags));
    assert_eq!(vm.madvise(0x1000, 4096, 99), Err(VmError::InvalidFlags));
    assert_eq!(
        vm.madvise(a + 1, 4096, MADV_DONTNEED),
        Err(VmError::NotAligned)
    );
    assert_eq!(vm.madvise(a, 0, MADV_DONTNEED), Ok(()));
    assert_eq!(
        vm.madvise(a, usize::MAX - 10, MADV_WILLNEED),
        Err(VmError::InvalidSize)
    );
    assert_eq!(
        vm.madvise(0x1000, 4096, MADV_WILLNEED),
        Err(VmError::RegionNotFound)
    );

    // Unknown flag bits and garbage fields, straight on the wire.
    let transport = sys.transport(p);
    let mut bulk = [0u8; 0];
    let mut sqe = Request::Mprotect {
        addr: a,
        len: 4096,
        prot: P::READ,
    }
    .encode();
    sqe.args[2] |= 0x4000_0000;
    let reply = libvm::transport::Transport::call(&transport, &sqe, &mut bulk);
    assert_eq!(proto::decode_reply(&reply), Err(VmError::InvalidFlags));
    for opcode in [0u8, 11, 99, 255] {
        let sqe = libvm::proto::Sqe {
            opcode,
            args: [u64::MAX; 6],
            ..Default::default()
        };
        let reply = libvm::transport::Transport::call(&transport, &sqe, &mut bulk);
        assert_eq!(proto::decode_reply(&reply), Err(VmError::BadRequest));
    }
    let mut sqe = Request::Munmap { addr: a, len: 4096 }.encode();
    sqe.args[4] = 7;
    let reply = libvm::transport::Transport::call(&transport, &sqe, &mut bulk);
    assert_eq!(proto::decode_reply(&reply), Err(VmError::BadRequest));
    // Statistics into a buffer too small.
    let sqe = Request::GlobalStats.encode();
    let reply = libvm::transport::Transport::call(&transport, &sqe, &mut bulk);
    assert_eq!(proto::decode_reply(&reply), Err(VmError::BadBuffer));

    assert_eq!(vm.regions(0).unwrap(), regions);
    assert_eq!(vm.process_stats(0).unwrap(), stats);
    assert_eq!(sys.read(p, a as u64, 4).unwrap(), b"keep");
}

#[test]
fn fixed_replaces_and_fixed_noreplace_refuses() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon()).unwrap();
    sys.write(p, a as u64 + PAGE, b"old").unwrap();
    assert_eq!(
        vm.mmap(a + 4096, 4096, P::READ_WRITE, anon().fixed_noreplace()),
        Err(VmError::AlreadyMapped)
    );
    assert_eq!(sys.read(p, a as u64 + PAGE, 3).unwrap(), b"old");
    assert_eq!(
        vm.mmap(a + 4096, 4096, P::READ_WRITE, anon().fixed()),
        Ok(a + 4096)
    );
    assert_eq!(sys.read(p, a as u64 + PAGE, 3).unwrap(), [0, 0, 0]);
    // A free range takes FIXED_NOREPLACE.
    let free = a + 64 * 4096;
    assert_eq!(
        vm.mmap(free, 4096, P::READ, anon().fixed_noreplace()),
        Ok(free)
    );
}

#[test]
fn munmap_splits_and_accepts_holes() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 5 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    for i in 0..5 {
        sys.write(p, a + i * PAGE, &[i as u8 + 1]).unwrap();
    }
    let used = vm.global_stats().unwrap().data_frames();
    vm.munmap((a + 2 * PAGE) as usize, 4096).unwrap();
    assert_eq!(vm.global_stats().unwrap().data_frames(), used - 1);
    let regions = vm.regions(0).unwrap();
    assert!(
        regions
            .iter()
            .any(|r| r.start == a && r.end == a + 2 * PAGE)
    );
    assert!(
        regions
            .iter()
            .any(|r| r.start == a + 3 * PAGE && r.end == a + 5 * PAGE)
    );
    // Unmapping a range with a hole in it, and a range with nothing at all, succeed.
    vm.munmap(a as usize, 5 * 4096).unwrap();
    vm.munmap(a as usize, 5 * 4096).unwrap();
    assert_eq!(vm.global_stats().unwrap().data_frames(), used - 5);
    let p2 = sys.spawn().unwrap();
    let fresh = sys.fork(p).unwrap();
    for pid in [p, fresh] {
        assert_eq!(
            sys.read(pid, a + 3 * PAGE, 1),
            Err(Fault::unmapped(a + 3 * PAGE))
        );
    }
    let _ = p2;
}

#[test]
fn mprotect_splits_remerges_and_refuses_holes() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 8 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    let count = || vm.process_stats(0).unwrap().region_count;
    let base = count();
    sys.write(p, a + 3 * PAGE, b"x").unwrap();
    vm.mprotect((a + 2 * PAGE) as usize, 2 * 4096, P::READ)
        .unwrap();
    assert_eq!(count(), base + 2);
    assert_eq!(sys.read(p, a + 3 * PAGE, 1).unwrap(), b"x");
    vm.mprotect((a + 2 * PAGE) as usize, 2 * 4096, P::READ_WRITE)
        .unwrap();
    assert_eq!(count(), base);
    sys.write(p, a + 3 * PAGE, b"y").unwrap();
    // Over a hole: ENOMEM, and nothing changed.
    vm.munmap((a + 5 * PAGE) as usize, 4096).unwrap();
    let before = vm.regions(0).unwrap();
    let err = vm.mprotect(a as usize, 8 * 4096, P::READ).unwrap_err();
    assert_eq!(err, VmError::RegionNotFound);
    assert_eq!(err.errno(), syscall::error::ENOMEM);
    assert_eq!(vm.regions(0).unwrap(), before);
    sys.write(p, a, b"still writable").unwrap();
    // PROT_NONE: even a read kills; contents survive a round trip through NONE.
    let q = sys.spawn().unwrap();
    let vq = sys.client(q);
    let b = vq.mmap(0, 4096, P::READ_WRITE, anon()).unwrap() as u64;
    sys.write(q, b, b"kept").unwrap();
    vq.mprotect(b as usize, 4096, P::NONE).unwrap();
    vq.mprotect(b as usize, 4096, P::READ).unwrap();
    assert_eq!(sys.read(q, b, 4).unwrap(), b"kept");
    vq.mprotect(b as usize, 4096, P::NONE).unwrap();
    assert_eq!(sys.read(q, b, 1), Err(Fault::access(b)));
}

#[test]
fn execute_needs_exec_permission() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4096, P::READ_WRITE, anon()).unwrap() as u64;
    sys.write(p, a, &[0x90, 0xc3]).unwrap();
    vm.mprotect(a as usize, 4096, P::READ_EXEC).unwrap();
    assert_eq!(sys.fetch(p, a, 2).unwrap(), [0x90, 0xc3]);
    vm.mprotect(a as usize, 4096, P::READ).unwrap();
    assert_eq!(sys.fetch(p, a, 2), Err(Fault::access(a)));
}

#[test]
fn brk_queries_grows_shrinks_and_refuses() {
    let sys = System::new(Config {
        limits: Limits {
            data: 64 * PAGE,
            ..Limits::default()
        },
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let start = vm.brk(0).unwrap();
    assert_eq!(start as u64, HEAP_START);
    assert_eq!(vm.sbrk(0).unwrap(), start);
    assert_eq!(vm.sbrk(8192).unwrap(), start);
    assert_eq!(vm.brk(0).unwrap(), start + 8192);
    sys.write(p, HEAP_START + 4096, b"heap").unwrap();
    assert_eq!(vm.process_stats(0).unwrap().heap_bytes, 8192);
    // Shrink returns the frame; regrow reads zero.
    let used = vm.global_stats().unwrap().data_frames();
    assert_eq!(vm.sbrk(-4096).unwrap(), start + 8192);
    assert_eq!(vm.global_stats().unwrap().data_frames(), used - 1);
    assert_eq!(
        sys.read(p, HEAP_START + 4096, 1),
        Err(Fault::unmapped(HEAP_START + 4096))
    );
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    vm.sbrk(8192).unwrap();
    sys.write(p, HEAP_START + 4096, b"heap").unwrap();
    vm.sbrk(-4096).unwrap();
    vm.sbrk(4096).unwrap();
    assert_eq!(sys.read(p, HEAP_START + 4096, 4).unwrap(), [0; 4]);
    // Below the start, past the limit, overflowing: refused, break unchanged.
    let brk = vm.brk(0).unwrap();
    assert_eq!(vm.brk(start - 4096), Err(VmError::InvalidAddress));
    assert_eq!(vm.brk(start + 65 * 4096), Err(VmError::LimitExceeded));
    assert_eq!(vm.sbrk(isize::MIN), Err(VmError::InvalidSize));
    assert_eq!(vm.sbrk(-(brk as isize)), Err(VmError::InvalidAddress));
    assert_eq!(vm.brk(0).unwrap(), brk);
    // Exactly the limit is fine; an unaligned break keeps its page.
    assert_eq!(vm.brk(start + 64 * 4096).unwrap(), start + 64 * 4096);
    assert_eq!(vm.brk(start + 100).unwrap(), start + 100);
    sys.write(p, HEAP_START + 4000, b"tail").unwrap();
    // A mapping in the way of the heap stops it growing.
    vm.mmap(start + 8192, 4096, P::READ, anon().fixed())
        .unwrap();
    assert_eq!(vm.brk(start + 3 * 4096), Err(VmError::OutOfMemory));
}

#[test]
fn madvise_dontneed_zeroes_private_and_keeps_shared() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 2 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    let s = vm
        .mmap(0, 4096, P::READ_WRITE, MmapFlags::anonymous_shared())
        .unwrap() as u64;
    sys.write(p, a, b"private").unwrap();
    sys.write(p, s, b"shared").unwrap();
    vm.madvise(a as usize, 2 * 4096, MADV_DONTNEED).unwrap();
    vm.madvise(s as usize, 4096, MADV_DONTNEED).unwrap();
    assert_eq!(sys.read(p, a, 7).unwrap(), [0; 7]);
    assert_eq!(sys.read(p, s, 6).unwrap(), b"shared");
    // WILLNEED backs pages now.
    let b = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon()).unwrap();
    vm.madvise(b, 4 * 4096, MADV_WILLNEED).unwrap();
    let regions = vm.regions(0).unwrap();
    let r = regions.iter().find(|r| r.start == b as u64).unwrap();
    assert_eq!(r.resident_pages, 4);
    assert_eq!(
        vm.madvise(0x7000_0000, 4096, MADV_DONTNEED),
        Err(VmError::RegionNotFound)
    );
}

#[test]
fn populate_backs_every_page_now() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let before = vm.global_stats().unwrap().data_frames();
    let a = vm
        .mmap(0, 16 * 4096, P::READ_WRITE, anon().populate())
        .unwrap() as u64;
    assert_eq!(vm.global_stats().unwrap().data_frames(), before + 16);
    let faults = vm.global_stats().unwrap().faults_zero_fill;
    assert_eq!(sys.read(p, a + 15 * PAGE, 8).unwrap(), [0; 8]);
    // Touching a populated page is not a fault.
    assert_eq!(vm.global_stats().unwrap().faults_zero_fill, faults);
}

#[test]
fn cow_isolates_both_ways_and_across_two_generations() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    for i in 0..4 {
        sys.write(p, a + i * PAGE, format!("page{i}").as_bytes())
            .unwrap();
    }
    let used = vm.global_stats().unwrap().data_frames();
    let c = sys.fork(p).unwrap();
    // Nothing was copied at fork.
    assert_eq!(vm.global_stats().unwrap().data_frames(), used);
    assert_eq!(sys.read(c, a, 5).unwrap(), b"page0");
    // Child writes: parent keeps its data.
    sys.write(c, a, b"CHILD").unwrap();
    assert_eq!(sys.read(p, a, 5).unwrap(), b"page0");
    // Parent writes: child keeps its data.
    sys.write(p, a + PAGE, b"PARNT").unwrap();
    assert_eq!(sys.read(c, a + PAGE, 5).unwrap(), b"page1");
    let g = sys.fork(c).unwrap();
    sys.write(g, a + 2 * PAGE, b"GRAND").unwrap();
    sys.write(c, a + 3 * PAGE, b"CHLD3").unwrap();
    assert_eq!(sys.read(p, a + 2 * PAGE, 5).unwrap(), b"page2");
    assert_eq!(sys.read(c, a + 2 * PAGE, 5).unwrap(), b"page2");
    assert_eq!(sys.read(g, a + 2 * PAGE, 5).unwrap(), b"GRAND");
    assert_eq!(sys.read(g, a + 3 * PAGE, 5).unwrap(), b"page3");
    assert_eq!(sys.read(g, a, 5).unwrap(), b"CHILD");
    assert_eq!(sys.read(p, a + 3 * PAGE, 5).unwrap(), b"page3");
    let stats = vm.global_stats().unwrap();
    assert_eq!(stats.cow_copies, 4);
    // The last owner of a frame regains write access without a copy.
    sys.exit(g, 0).unwrap();
    sys.exit(c, 0).unwrap();
    sys.write(p, a + 3 * PAGE, b"mine!").unwrap();
    let after = vm.global_stats().unwrap();
    assert_eq!(after.cow_copies, 4);
    assert!(after.faults_cow > stats.faults_cow);
    assert_eq!(after.data_frames(), used);
}

#[test]
fn mprotect_toggles_keep_copy_on_write_pages_read_only() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    let mid = a + 2 * PAGE;
    sys.write(p, mid, b"first").unwrap();
    // Before any fork: one page toggled inside the region, then written again.
    let regions = vm.regions(0).unwrap().len();
    for _ in 0..3 {
        vm.mprotect(mid as usize, 4096, P::READ).unwrap();
        assert_eq!(vm.regions(0).unwrap().len(), regions + 2);
        assert_eq!(sys.read(p, mid, 5).unwrap(), b"first");
        vm.mprotect(mid as usize, 4096, P::READ_WRITE).unwrap();
        assert_eq!(vm.regions(0).unwrap().len(), regions);
    }
    sys.write(p, mid, b"again").unwrap();
    assert_eq!(sys.read(p, mid, 5).unwrap(), b"again");
    // After a fork, granting write again must not make the shared frame writable: the
    // writes of either copy stay its own.
    let c = sys.fork(p).unwrap();
    let vc = sys.client(c);
    for (who, v) in [(p, &vm), (c, &vc)] {
        v.mprotect(mid as usize, 4096, P::READ).unwrap();
        v.mprotect(mid as usize, 4096, P::READ_WRITE).unwrap();
        v.mprotect(a as usize, 4 * 4096, P::READ).unwrap();
        v.mprotect(a as usize, 4 * 4096, P::READ_WRITE).unwrap();
        let mine = if who == p { b"PARNT" } else { b"CHILD" };
        sys.write(who, mid, mine).unwrap();
    }
    assert_eq!(sys.read(p, mid, 5).unwrap(), b"PARNT");
    assert_eq!(sys.read(c, mid, 5).unwrap(), b"CHILD");
    assert_eq!(vm.global_stats().unwrap().cow_copies, 1);
}

#[test]
fn shared_memory_is_visible_both_ways_after_fork() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let s = vm
        .mmap(0, 2 * 4096, P::READ_WRITE, MmapFlags::anonymous_shared())
        .unwrap() as u64;
    sys.write(p, s, b"before").unwrap();
    let c = sys.fork(p).unwrap();
    assert_eq!(sys.read(c, s, 6).unwrap(), b"before");
    sys.write(c, s, b"child!").unwrap();
    assert_eq!(sys.read(p, s, 6).unwrap(), b"child!");
    // A page first touched after the fork is shared too.
    sys.write(p, s + PAGE, b"late").unwrap();
    assert_eq!(sys.read(c, s + PAGE, 4).unwrap(), b"late");
    let stats = sys.memd().process_stats(c).unwrap();
    assert_eq!(stats.shared_pages, 2);
    // The object outlives the parent's mapping.
    vm.munmap(s as usize, 2 * 4096).unwrap();
    assert_eq!(sys.read(c, s, 6).unwrap(), b"child!");
}

#[test]
fn no_byte_of_a_freed_frame_reaches_another_process() {
    let sys = System::new(Config {
        ram_bytes: 8 << 20,
        table_frames: 256,
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let frames = vm.global_stats().unwrap().frames_free;
    // Room for the page tables too.
    let len = (frames - 64) * PAGE;
    let a = vm.mmap(0, len as usize, P::READ_WRITE, anon()).unwrap() as u64;
    let mut page = 0;
    while page < len {
        sys.write(p, a + page, &[0xA5; 4096]).unwrap();
        page += PAGE;
    }
    sys.exit(p, 0).unwrap();
    let q = sys.spawn().unwrap();
    let vq = sys.client(q);
    let b = vq.mmap(0, len as usize, P::READ_WRITE, anon()).unwrap() as u64;
    let mut page = 0;
    while page < len {
        assert!(sys.read(q, b + page, 4096).unwrap().iter().all(|&x| x == 0));
        page += PAGE;
    }
}

#[test]
fn exit_returns_every_frame_and_page_table() {
    let sys = system();
    let baseline = sys.memd().global_stats();
    for round in 0..20 {
        let p = sys.spawn().unwrap();
        let vm = sys.client(p);
        let a = vm.mmap(0, 32 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
        let s = vm
            .mmap(0, 4 * 4096, P::READ_WRITE, MmapFlags::anonymous_shared())
            .unwrap() as u64;
        vm.sbrk(3 * 4096).unwrap();
        for i in 0..32 {
            sys.write(p, a + i * PAGE, &[round as u8]).unwrap();
        }
        sys.write(p, s, b"s").unwrap();
        sys.write(p, HEAP_START, b"h").unwrap();
        sys.write(p, STACK_TOP - 64, b"stack").unwrap();
        let c = sys.fork(p).unwrap();
        sys.write(c, a, b"c").unwrap();
        let g = sys.fork(c).unwrap();
        sys.exit(p, 0).unwrap();
        sys.write(g, s + PAGE, b"g").unwrap();
        sys.exit(c, 1).unwrap();
        // A killed process returns everything too.
        assert_eq!(sys.write(g, 0x20, b"x"), Err(Fault::unmapped(0x20)));
        assert_eq!(sys.reap(c), Some(Death::Exited(1)));
    }
    let end = sys.memd().global_stats();
    assert_eq!(end.frames_used, baseline.frames_used);
    assert_eq!(end.frames_free, baseline.frames_free);
    assert_eq!(end.page_table_frames, baseline.page_table_frames);
    assert_eq!(end.processes, 0);
    assert_eq!(sys.memd().bookkeeping(), 0);
}

#[test]
fn limits_refuse_with_enomem() {
    let sys = System::new(Config {
        limits: Limits {
            address_space: 16 << 20,
            data: 64 << 20,
            ..Limits::default()
        },
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    // The stack takes 8 MiB of the 16.
    let a = vm.mmap(0, 4 << 20, P::READ_WRITE, anon()).unwrap();
    let err = vm.mmap(0, 8 << 20, P::READ_WRITE, anon()).unwrap_err();
    assert_eq!(err, VmError::LimitExceeded);
    assert_eq!(err.errno(), syscall::error::ENOMEM);
    // Replacing in place does not count twice.
    assert!(vm.mmap(a, 4 << 20, P::READ, anon().fixed()).is_ok());
    assert_eq!(vm.sbrk(8 << 20), Err(VmError::LimitExceeded));
}

#[test]
fn out_of_memory_kills_only_the_faulting_process() {
    let sys = System::new(Config {
        ram_bytes: 4 << 20,
        table_frames: 128,
        ..Config::default()
    });
    let bystander = sys.spawn().unwrap();
    let b = sys
        .client(bystander)
        .mmap(0, 4096, P::READ_WRITE, anon())
        .unwrap() as u64;
    sys.write(bystander, b, b"alive").unwrap();
    let hog = sys.spawn().unwrap();
    let vm = sys.client(hog);
    let a = vm.mmap(0, 64 << 20, P::READ_WRITE, anon()).unwrap() as u64;
    let mut page = 0;
    let fault = loop {
        match sys.write(hog, a + page, b"more") {
            Ok(()) => page += PAGE,
            Err(f) => break f,
        }
    };
    assert_eq!(fault.kind, FaultKind::OutOfMemory);
    assert_eq!(sys.read(bystander, b, 5).unwrap(), b"alive");
    // The hog's frames came back: a new process gets memory again.
    let q = sys.spawn().unwrap();
    let c = sys
        .client(q)
        .mmap(0, 64 * 4096, P::READ_WRITE, anon())
        .unwrap() as u64;
    for i in 0..64 {
        sys.write(q, c + i * PAGE, b"ok").unwrap();
    }
}

#[test]
fn out_of_memory_kills_the_largest_process_not_whoever_faults() {
    let sys = System::new(Config {
        ram_bytes: 4 << 20,
        ..Config::default()
    });
    let worker = sys.spawn().unwrap();
    let vm = sys.client(worker);
    let w = vm.mmap(0, 8 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    // A hog takes every frame (populate stops quietly when none is left).
    let hog = sys.spawn().unwrap();
    let h = sys
        .client(hog)
        .mmap(0, 64 << 20, P::READ_WRITE, anon().populate())
        .unwrap() as u64;
    assert_eq!(sys.memd().global_stats().frames_free, 0);
    sys.write(hog, h, b"hog").unwrap();
    // The small worker's first touch finds no frame: the hog, the largest, is killed for it.
    for i in 0..8 {
        sys.write(worker, w + i * PAGE, b"work").unwrap();
    }
    assert_eq!(sys.read(worker, w + 7 * PAGE, 4).unwrap(), b"work");
    assert_eq!(
        sys.reap(hog),
        Some(Death::Killed(FaultKill {
            addr: 0,
            access: memd::Access::Read,
            reason: FaultReason::OutOfMemory
        }))
    );
    assert_eq!(sys.memd().take_oom_victims(), vec![hog]);
    assert_eq!(vm.global_stats().unwrap().oom_kills, 1);
    // The exempt process is never picked, however large: the faulting one goes instead.
    let sys = System::new(Config {
        ram_bytes: 4 << 20,
        oom_exempt: Some(1),
        ..Config::default()
    });
    let init = sys.spawn().unwrap();
    assert_eq!(init, 1);
    let small = sys.spawn().unwrap();
    let s = sys
        .client(small)
        .mmap(0, 4096, P::READ_WRITE, anon())
        .unwrap() as u64;
    sys.client(init)
        .mmap(0, 64 << 20, P::READ_WRITE, anon().populate())
        .unwrap();
    assert_eq!(
        sys.write(small, s, b"x").map_err(|f| f.kind),
        Err(FaultKind::OutOfMemory)
    );
    assert!(sys.memd().space_of(init).is_ok());
    assert!(sys.memd().take_oom_victims().is_empty());
}

#[test]
fn a_range_of_any_size_is_unmapped_and_its_frames_are_free_only_after() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let before = vm.global_stats().unwrap();
    // 5 GiB, a page touched every GiB and at the start.
    let len = 5u64 << 30;
    let a = vm.mmap(0, len as usize, P::READ_WRITE, anon()).unwrap() as u64;
    let touched: Vec<u64> = (0..5).map(|g| a + (g << 30)).chain([a + PAGE]).collect();
    for &t in &touched {
        sys.write(p, t, b"secret").unwrap();
    }
    let space = sys.memd().space_of(p).unwrap();
    vm.madvise(a as usize, len as usize, MADV_DONTNEED).unwrap();
    for &t in &touched {
        assert!(sys.memd().kernel().translate(space, t).is_none());
        assert_eq!(sys.read(p, t, 6).unwrap(), [0; 6]);
    }
    vm.mprotect(a as usize, len as usize, P::NONE).unwrap();
    for &t in &touched {
        assert!(sys.memd().kernel().translate(space, t).is_none());
    }
    vm.mprotect(a as usize, len as usize, P::READ_WRITE)
        .unwrap();
    for &t in &touched {
        sys.write(p, t, b"secret").unwrap();
    }
    vm.munmap(a as usize, len as usize).unwrap();
    for &t in &touched {
        assert!(sys.memd().kernel().translate(space, t).is_none());
    }
    assert_eq!(
        vm.global_stats().unwrap().data_frames(),
        before.data_frames()
    );
    // The emptied tables went back too, but for the few spare ones a process keeps.
    let tables = vm.global_stats().unwrap().page_table_frames;
    assert!(tables <= before.page_table_frames + memd::tables::MAX_SPARE);
}

#[test]
fn an_unmap_keeps_the_page_table_while_a_region_is_near_and_gives_it_back_once_none_is() {
    // Pins Linux's rule (free_pgtables between the neighbouring mappings): the page table an
    // unmap empties stays while another region has a byte of its 2 MiB (the next mapping
    // there reuses it, no donation), and goes once none has; MADV_DONTNEED keeps it, and so
    // does PROT_NONE while the table maps another page (it gives back only tables that then
    // map nothing).
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let space = sys.memd().space_of(p).unwrap();
    let k = sys.memd().kernel();
    let span = 2u64 << 20;
    // Two pages in one 2 MiB span, and nothing else in it.
    let block = vm.mmap(0, 4 * span as usize, P::NONE, anon()).unwrap() as u64;
    let at = block.next_multiple_of(span) + span / 2;
    vm.munmap(block as usize, 4 * span as usize).unwrap();
    let fixed = anon().fixed();
    vm.mmap(at as usize, PAGE as usize, P::READ_WRITE, fixed)
        .unwrap();
    vm.mmap(
        (at + 8 * PAGE) as usize,
        PAGE as usize,
        P::READ_WRITE,
        fixed,
    )
    .unwrap();
    sys.write(p, at, b"one").unwrap();
    sys.write(p, at + 8 * PAGE, b"two").unwrap();
    assert!(k.page_table_at(space, at));
    vm.madvise(at as usize, PAGE as usize, MADV_DONTNEED)
        .unwrap();
    vm.mprotect(at as usize, PAGE as usize, P::NONE).unwrap();
    assert!(
        k.page_table_at(space, at),
        "DONTNEED and PROT_NONE keep it here"
    );
    vm.munmap(at as usize, PAGE as usize).unwrap();
    assert!(k.page_table_at(space, at), "a region is near: kept");
    let tables = k.stats().page_table_frames;
    // A map there again needs no table: no donation.
    vm.mmap(at as usize, PAGE as usize, P::READ_WRITE, fixed)
        .unwrap();
    sys.write(p, at, b"three").unwrap();
    assert_eq!(k.stats().page_table_frames, tables, "the kept table reused");
    vm.munmap(at as usize, PAGE as usize).unwrap();
    // The last region of the span goes: so does its table (to the spare frames).
    vm.munmap((at + 8 * PAGE) as usize, PAGE as usize).unwrap();
    assert!(!k.page_table_at(space, at), "no region near: given back");
    assert_eq!(sys.read(p, at, 1), Err(Fault::unmapped(at)));
}

#[test]
fn a_hint_is_rounded_down_raised_to_the_minimum_and_falls_back_when_taken() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    // An unaligned hint is rounded down to its page (Linux's round_hint_to_min).
    let h = vm.mmap(0x5000_0000_0123, 4096, P::READ, anon()).unwrap();
    assert_eq!(h, 0x5000_0000_0000);
    // A hint below the lowest address a process may map is raised to it.
    let low = vm.mmap(0x1000, 4096, P::READ, anon()).unwrap();
    assert_eq!(low as u64, memd::layout::MIN_ADDR);
    // A hint that is taken: the mapping goes where memd places it.
    let again = vm.mmap(h, 4096, P::READ, anon()).unwrap();
    assert_ne!(again, h);
    assert_eq!(again as u64, MMAP_BASE);
}

#[test]
fn program_segments_load_as_code_and_data() {
    use memd::image::Segment;
    let sys = system();
    let p = sys.spawn().unwrap();
    let code = [0x90u8, 0x90, 0xc3];
    let data = b"initialised";
    sys.memd()
        .load_segment(
            p,
            &Segment {
                vaddr: 0x40_0000,
                mem_size: 3,
                data: &code,
                prot: P::READ_EXEC,
            },
        )
        .unwrap();
    // Data with a .bss tail, starting mid-page.
    sys.memd()
        .load_segment(
            p,
            &Segment {
                vaddr: 0x40_1010,
                mem_size: 3 * PAGE,
                data,
                prot: P::READ_WRITE,
            },
        )
        .unwrap();
    assert_eq!(sys.fetch(p, 0x40_0000, 3).unwrap(), code);
    assert_eq!(sys.read(p, 0x40_1000, 16).unwrap(), [0; 16]);
    assert_eq!(sys.read(p, 0x40_1010, data.len()).unwrap(), data);
    assert_eq!(sys.read(p, 0x40_3000, 16).unwrap(), [0; 16]);
    let kinds: Vec<u64> = sys
        .client(p)
        .regions(0)
        .unwrap()
        .iter()
        .filter(|r| r.start < 0x100_0000)
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            memd::region::RegionKind::Code.code(),
            memd::region::RegionKind::Data.code()
        ]
    );
    // Overlapping, kernel-half and empty segments are refused and change nothing.
    let overlapping = Segment {
        vaddr: 0x40_2000,
        mem_size: 4,
        data: &[],
        prot: P::READ,
    };
    assert_eq!(
        sys.memd().load_segment(p, &overlapping),
        Err(VmError::AlreadyMapped)
    );
    let kernel = Segment {
        vaddr: 0xFFFF_8000_0000_0000,
        mem_size: 4,
        data: &[],
        prot: P::READ,
    };
    assert_eq!(
        sys.memd().load_segment(p, &kernel),
        Err(VmError::InvalidAddress)
    );
    let empty = Segment {
        vaddr: 0x50_0000,
        mem_size: 0,
        data: &[],
        prot: P::READ,
    };
    assert_eq!(
        sys.memd().load_segment(p, &empty),
        Err(VmError::InvalidSize)
    );
    // Code is not writable; a fork shares the data copy-on-write.
    let c = sys.fork(p).unwrap();
    sys.write(c, 0x40_1010, b"CHILD").unwrap();
    assert_eq!(sys.read(p, 0x40_1010, 5).unwrap(), b"initi");
    assert_eq!(sys.write(p, 0x40_0000, b"x"), Err(Fault::access(0x40_0000)));
}

#[test]
fn processes_lists_every_live_pid_from_the_one_asked_and_args_are_the_metal_sides() {
    let sys = system();
    let a = sys.spawn().unwrap();
    let b = sys.spawn().unwrap();
    let c = sys.fork(a).unwrap();
    let vm = sys.client(b);
    let pids: Vec<u64> = vm.processes().unwrap().iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![a, b, c]);
    assert!(
        vm.processes()
            .unwrap()
            .iter()
            .all(|p| p.parent == 0 && p.name().is_empty())
    );
    sys.exit(b, 0).unwrap();
    let pids: Vec<u64> = sys
        .client(a)
        .processes()
        .unwrap()
        .iter()
        .map(|p| p.pid)
        .collect();
    assert_eq!(pids, vec![a, c]);
    // From a pid on, and a buffer too small for one entry is refused.
    let mut buf = [0u8; 64];
    let cqe = sys.memd().handle(
        a,
        testbed::system::THREAD,
        &Request::Processes { from: c }.encode(),
        &mut buf,
    );
    assert_eq!(proto::decode_reply(&cqe), Ok(1));
    assert_eq!(proto::ProcessInfo::read_from(&buf).map(|p| p.pid), Some(c));
    let cqe = sys.memd().handle(
        a,
        testbed::system::THREAD,
        &Request::Processes { from: 0 }.encode(),
        &mut buf[..63],
    );
    assert_eq!(proto::decode_reply(&cqe), Err(VmError::BadBuffer));
    // The argument string lives with the boot modules, on the metal.
    assert_eq!(sys.client(a).args(), Err(VmError::BadRequest));
}

#[test]
fn region_limits_refuse_splitting_without_end() {
    // Per process, like Linux's vm.max_map_count: ENOMEM, nothing changed.
    let sys = System::new(Config {
        limits: Limits {
            regions: 8,
            ..Limits::default()
        },
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 64 * 4096, P::READ_WRITE, anon()).unwrap();
    // stack + mapping = 2 regions; every other page read-only splits off more.
    let mut refused = None;
    for i in (0..64).step_by(2) {
        if let Err(e) = vm.mprotect(a + i * 4096, 4096, P::READ) {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("the limit was never reached");
    assert_eq!(e, VmError::LimitExceeded);
    assert_eq!(e.errno(), syscall::error::ENOMEM);
    let count = vm.process_stats(0).unwrap().region_count;
    assert!(count <= 8, "{count} regions");
    // The refused page kept its protection; memory stays usable; unmapping frees room.
    sys.write(p, (a + i * 4096) as u64, b"still writable")
        .unwrap();
    assert_eq!(
        vm.mmap(0, 4096, P::READ, anon().populate())
            .map(|_| ())
            .ok(),
        None
    );
    vm.munmap(a, 64 * 4096).unwrap();
    assert!(vm.mmap(0, 4096, P::READ, anon()).is_ok());

    // For all processes together: what memd's own memory can hold (the regions, and the
    // page-table root of each of two spaces).
    let sys = System::new(Config {
        bookkeeping: 6 * REGION_COST + 2 * PAGE_COST,
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 16 * 4096, P::READ_WRITE, anon()).unwrap();
    vm.mprotect(a, 4096, P::READ).unwrap();
    // 1 stack + 2 pieces = 3; a fork would need 3 more (6) and then a split none is left.
    let c = sys.fork(p).unwrap();
    assert_eq!(
        vm.mprotect(a + 8 * 4096, 4096, P::READ),
        Err(VmError::OutOfMemory)
    );
    assert_eq!(sys.fork(c), Err(VmError::OutOfMemory));
    assert_eq!(sys.spawn(), Err(VmError::OutOfMemory));
    sys.exit(c, 0).unwrap();
    vm.mprotect(a + 8 * 4096, 4096, P::READ).unwrap();
    assert!(sys.spawn().is_ok());
}

#[test]
fn resident_pages_count_against_memds_bookkeeping() {
    // Room for the bookkeeping of 6 regions and 60 resident pages in one chunk, in all.
    let sys = System::new(Config {
        bookkeeping: 6 * REGION_COST + 60 * PAGE_COST + CHUNK_COST,
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 40 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    for i in 0..40 {
        sys.write(p, a + i * PAGE, &[i as u8]).unwrap();
    }
    // A fork would copy 40 page entries: more than is left. Refused, nothing changed.
    assert_eq!(sys.fork(p), Err(VmError::OutOfMemory));
    assert_eq!(sys.memd().global_stats().processes, 1);
    // Populate stops quietly at the budget; a fault past it kills only that process.
    let b = vm
        .mmap(0, 64 * 4096, P::READ_WRITE, anon().populate())
        .unwrap() as u64;
    let resident = vm.process_stats(0).unwrap().resident_pages;
    assert!(resident > 40 && resident < 40 + 64, "{resident}");
    let mut page = 0;
    let fault = loop {
        match sys.write(p, b + page * PAGE, b"x") {
            Ok(()) => page += 1,
            Err(f) => break f,
        }
    };
    assert_eq!(fault.kind, FaultKind::OutOfMemory);
    // Everything came back: a new process has the whole budget again.
    let q = sys.spawn().unwrap();
    let c = sys
        .client(q)
        .mmap(0, 50 * 4096, P::READ_WRITE, anon())
        .unwrap() as u64;
    for i in 0..50 {
        sys.write(q, c + i * PAGE, b"ok").unwrap();
    }
}

#[test]
fn layout_randomization_places_each_process_apart() {
    use memd::aslr::{MMAP_RANDOM_BASE, STACK_RANDOM_TOP};
    let with_seed = |seed: u8| {
        System::new(Config {
            aslr_seed: Some([seed; 32]),
            ..Config::default()
        })
    };
    let sys = with_seed(1);
    let mut mmaps = std::collections::BTreeSet::new();
    let mut stacks = std::collections::BTreeSet::new();
    let mut heaps = std::collections::BTreeSet::new();
    for _ in 0..32 {
        let p = sys.spawn().unwrap();
        let vm = sys.client(p);
        let at = sys.memd().placement(p).unwrap();
        let a = vm.mmap(0, 4096, P::READ_WRITE, anon()).unwrap() as u64;
        assert_eq!(a, at.mmap_base);
        assert!((MMAP_RANDOM_BASE..MMAP_RANDOM_BASE + (1 << 40)).contains(&a));
        assert!(at.stack_top <= STACK_RANDOM_TOP && at.stack_top > STACK_RANDOM_TOP - (16 << 30));
        let brk = vm.brk(0).unwrap() as u64;
        assert!((HEAP_START..HEAP_START + (32 << 20)).contains(&brk));
        // The stack is where the layout says: its top page is usable, above it nothing.
        sys.write(p, at.stack_top - 8, b"stack!!!").unwrap();
        assert_eq!(sys.read(p, at.stack_top - 8, 8).unwrap(), b"stack!!!");
        // A fork keeps the layout.
        let c = sys.fork(p).unwrap();
        assert_eq!(sys.memd().placement(c).unwrap(), at);
        sys.exit(c, 0).unwrap();
        mmaps.insert(a);
        stacks.insert(at.stack_top);
        heaps.insert(brk);
        let p2 = sys.spawn().unwrap();
        assert_eq!(
            sys.write(p2, at.stack_top, b"x").map_err(|f| f.kind),
            Err(FaultKind::Unmapped),
            "nothing above the stack top"
        );
    }
    assert!(
        mmaps.len() == 32 && stacks.len() == 32,
        "{mmaps:?} {stacks:?}"
    );
    assert!(heaps.len() >= 28, "{heaps:?}");
    // Another seed, another layout; the same seed, the same (reproducible).
    let first = |sys: &System| {
        let p = sys.spawn().unwrap();
        sys.memd().placement(p).unwrap()
    };
    assert_ne!(first(&with_seed(1)), first(&with_seed(2)));
    assert_eq!(first(&with_seed(3)), first(&with_seed(3)));
    // Off: the fixed layout.
    assert_eq!(first(&system()), memd::layout::Placement::FIXED);
}

#[test]
fn deny_write_exec_refuses_writable_code_for_good_and_for_forks() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    // Before: writable and executable memory is allowed.
    let rwx = vm.mmap(0, 4096, P::READ_WRITE_EXEC, anon()).unwrap();
    vm.munmap(rwx, 4096).unwrap();
    let code = vm.mmap(0, 4096, P::READ_EXEC, anon()).unwrap();
    let data = vm.mmap(0, 2 * 4096, P::READ_WRITE, anon()).unwrap();
    vm.deny_write_exec().unwrap();
    let denied = Err(VmError::PermissionDenied);
    assert_eq!(VmError::PermissionDenied.errno(), syscall::error::EACCES);
    assert_eq!(
        vm.mmap(0, 4096, P::READ_WRITE_EXEC, anon()).map(drop),
        denied
    );
    assert_eq!(vm.mprotect(data, 4096, P::READ_WRITE_EXEC), denied);
    // Written data never becomes code, even without write access.
    assert_eq!(vm.mprotect(data, 4096, P::READ_EXEC), denied);
    assert_eq!(vm.mprotect(data, 4096, P::READ), Ok(()));
    assert_eq!(vm.mprotect(data, 4096, P::READ_EXEC), denied);
    // A range over code and data: refused whole, nothing changed.
    assert_eq!(vm.mprotect(code, 2 * 4096, P::READ_EXEC), denied);
    // Code stays code; fresh read-only code may be mapped.
    assert_eq!(vm.mprotect(code, 4096, P::READ), Ok(()));
    assert_eq!(vm.mprotect(code, 4096, P::READ_EXEC), denied);
    assert!(vm.mmap(0, 4096, P::READ_EXEC, anon()).is_ok());
    let regions = vm.regions(0).unwrap();
    assert!(
        regions
            .iter()
            .all(|r| r.prot & 6 != 6 && (r.start != data as u64 || r.prot == 1)),
        "{regions:?}"
    );
    // A fork inherits it; there is no way back.
    let c = sys.fork(p).unwrap();
    assert!(sys.memd().denies_write_exec(c).unwrap());
    assert_eq!(
        sys.client(c)
            .mmap(0, 4096, P::READ_WRITE_EXEC, anon())
            .map(drop),
        denied
    );
    vm.deny_write_exec().unwrap();
    assert!(sys.memd().denies_write_exec(p).unwrap());
    // Others are not touched.
    let q = sys.spawn().unwrap();
    assert!(
        sys.client(q)
            .mmap(0, 4096, P::READ_WRITE_EXEC, anon())
            .is_ok()
    );
}

#[test]
fn fork_advice_keeps_a_range_from_the_child_or_gives_it_empty_across_generations() {
    use libvm::proto::{MADV_DOFORK, MADV_DONTFORK, MADV_KEEPONFORK, MADV_WIPEONFORK};
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 3 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    for i in 0..3 {
        sys.write(p, a + i * PAGE, format!("page{i}").as_bytes())
            .unwrap();
    }
    // Page 0 is not forked, page 1 is wiped, page 2 is copied.
    vm.madvise(a as usize, 4096, MADV_DONTFORK).unwrap();
    vm.madvise((a + PAGE) as usize, 4096, MADV_WIPEONFORK)
        .unwrap();
    let c = sys.fork(p).unwrap();
    assert_eq!(
        sys.read(c, a, 1).map_err(|f| f.kind),
        Err(FaultKind::Unmapped)
    );
    let c = sys.fork(p).unwrap();
    assert_eq!(sys.read(c, a + PAGE, 5).unwrap(), [0; 5]);
    assert_eq!(sys.read(c, a + 2 * PAGE, 5).unwrap(), b"page2");
    // The child's wiped range is wiped again at its own fork (the advice is inherited).
    sys.write(c, a + PAGE, b"child").unwrap();
    let g = sys.fork(c).unwrap();
    assert_eq!(sys.read(g, a + PAGE, 5).unwrap(), [0; 5]);
    assert_eq!(sys.read(c, a + PAGE, 5).unwrap(), b"child");
    // The parent keeps every page; DOFORK and KEEPONFORK undo the advice.
    assert_eq!(sys.read(p, a, 5).unwrap(), b"page0");
    assert_eq!(sys.read(p, a + PAGE, 5).unwrap(), b"page1");
    vm.madvise(a as usize, 4096, MADV_DOFORK).unwrap();
    vm.madvise((a + PAGE) as usize, 4096, MADV_KEEPONFORK)
        .unwrap();
    let d = sys.fork(p).unwrap();
    assert_eq!(sys.read(d, a, 5).unwrap(), b"page0");
    assert_eq!(sys.read(d, a + PAGE, 5).unwrap(), b"page1");
    // The advice is an attribute of the regions: they split, and merge back once undone.
    assert_eq!(vm.process_stats(0).unwrap().region_count, 2);
    // Wiping is for private anonymous memory only.
    let s = vm.mmap(0, 4096, P::READ_WRITE, anon_shared()).unwrap();
    assert_eq!(
        vm.madvise(s, 4096, MADV_WIPEONFORK),
        Err(VmError::InvalidFlags)
    );
}

#[test]
fn populate_advice_backs_pages_or_says_where_a_fault_would_be_refused() {
    use libvm::proto::{
        MADV_COLD, MADV_FREE, MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE, MADV_RANDOM,
        MADV_SEQUENTIAL,
    };
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon()).unwrap();
    vm.madvise(a, 4 * 4096, MADV_POPULATE_WRITE).unwrap();
    assert_eq!(vm.process_stats(0).unwrap().resident_pages, 4);
    // Copy-on-write is broken by POPULATE_WRITE: no copy is left to make.
    sys.write(p, a as u64, b"mine").unwrap();
    let c = sys.fork(p).unwrap();
    let cvm = sys.client(c);
    let copies = cvm.global_stats().unwrap().cow_copies;
    cvm.madvise(a, 4 * 4096, MADV_POPULATE_WRITE).unwrap();
    assert_eq!(cvm.global_stats().unwrap().cow_copies, copies + 4);
    sys.write(c, a as u64, b"kid!").unwrap();
    assert_eq!(cvm.global_stats().unwrap().cow_copies, copies + 4);
    assert_eq!(sys.read(p, a as u64, 4).unwrap(), b"mine");
    // Where the access would fault: EFAULT, nothing backed.
    let r = vm.mmap(0, 2 * 4096, P::READ, anon()).unwrap();
    assert_eq!(
        vm.madvise(r, 2 * 4096, MADV_POPULATE_WRITE),
        Err(VmError::BadBuffer)
    );
    let n = vm.mmap(0, 4096, P::NONE, anon()).unwrap();
    assert_eq!(
        vm.madvise(n, 4096, MADV_POPULATE_READ),
        Err(VmError::BadBuffer)
    );
    let before = vm.process_stats(0).unwrap().resident_pages;
    vm.madvise(r, 2 * 4096, MADV_POPULATE_READ).unwrap();
    assert_eq!(vm.process_stats(0).unwrap().resident_pages, before + 2);
    // Accepted hints change nothing; MADV_FREE frees private pages (they read zero).
    for advice in [MADV_RANDOM, MADV_SEQUENTIAL, MADV_COLD, MADV_PAGEOUT] {
        vm.madvise(a, 4 * 4096, advice).unwrap();
    }
    assert_eq!(sys.read(p, a as u64, 4).unwrap(), b"mine");
    vm.madvise(a, 4 * 4096, MADV_FREE).unwrap();
    assert_eq!(sys.read(p, a as u64, 4).unwrap(), [0; 4]);
    let s = vm.mmap(0, 4096, P::READ_WRITE, anon_shared()).unwrap();
    assert_eq!(vm.madvise(s, 4096, MADV_FREE), Err(VmError::InvalidFlags));
}

#[test]
fn a_process_lists_its_mappings_as_proc_self_maps() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 2 * 4096, P::READ_WRITE, anon()).unwrap();
    vm.mprotect(a + 4096, 4096, P::NONE).unwrap();
    let s = vm.mmap(0, 4096, P::READ, anon_shared()).unwrap();
    let maps = vm.proc_maps(0).unwrap();
    let lines: Vec<&str> = maps.lines().collect();
    assert_eq!(lines.len(), vm.regions(0).unwrap().len());
    let line = |addr: usize| {
        let prefix = format!("{addr:08x}-");
        *lines.iter().find(|l| l.starts_with(&prefix)).unwrap()
    };
    assert_eq!(
        line(a),
        format!("{:08x}-{:08x} rw-p 00000000 00:00 0", a, a + 4096)
    );
    assert!(line(a + 4096).contains(" ---p "));
    assert!(line(s).contains(" r--s ") && line(s).ends_with("/dev/zero (deleted)"));
    assert!(lines.last().unwrap().ends_with("[stack]"));
}

#[test]
fn resource_limits_are_set_by_the_process_enforced_and_inherited_by_fork() {
    use libvm::proto::{RLIM_INFINITY, RLIMIT_AS, RLIMIT_DATA, RLIMIT_MEMLOCK, RLIMIT_STACK};
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    // Linux's defaults.
    assert_eq!(vm.getrlimit(RLIMIT_AS), Ok((RLIM_INFINITY, RLIM_INFINITY)));
    assert_eq!(
        vm.getrlimit(RLIMIT_DATA),
        Ok((RLIM_INFINITY, RLIM_INFINITY))
    );
    assert_eq!(vm.getrlimit(RLIMIT_STACK), Ok((8 << 20, RLIM_INFINITY)));
    assert_eq!(vm.getrlimit(RLIMIT_MEMLOCK), Ok((8 << 20, 8 << 20)));
    assert_eq!(vm.getrlimit(5), Err(VmError::InvalidFlags));
    // The address space: what is mapped counts (the stack's 8 MiB among it).
    let mapped = vm.process_stats(0).unwrap().mapped_pages * PAGE;
    vm.setrlimit(RLIMIT_AS, mapped + (1 << 20), RLIM_INFINITY)
        .unwrap();
    let m = vm.mmap(0, 1 << 20, P::READ, anon()).unwrap();
    assert_eq!(
        vm.mmap(0, 4096, P::READ, anon()),
        Err(VmError::LimitExceeded)
    );
    vm.munmap(m, 1 << 20).unwrap();
    // The soft limit at most the hard one; the hard one only lowered.
    assert_eq!(
        vm.setrlimit(RLIMIT_AS, 2 << 30, 1 << 30),
        Err(VmError::InvalidSize)
    );
    vm.setrlimit(RLIMIT_DATA, 8192, 1 << 20).unwrap();
    assert_eq!(
        vm.setrlimit(RLIMIT_DATA, 8192, 2 << 20),
        Err(VmError::NotPermitted)
    );
    assert_eq!(vm.prlimit(RLIMIT_DATA, None), Ok((8192, 1 << 20)));
    // The data limit bounds the heap.
    assert!(vm.sbrk(8192).is_ok());
    assert_eq!(vm.sbrk(4096), Err(VmError::LimitExceeded));
    // A fork inherits the limits.
    let c = sys.fork(p).unwrap();
    let cvm = sys.client(c);
    assert_eq!(cvm.getrlimit(RLIMIT_DATA), Ok((8192, 1 << 20)));
    assert_eq!(cvm.sbrk(4096), Err(VmError::LimitExceeded));
    assert_eq!(
        cvm.getrlimit(RLIMIT_AS),
        Ok((mapped + (1 << 20), RLIM_INFINITY))
    );
}

#[test]
fn mincore_says_what_is_resident_and_msync_checks_as_linux_does() {
    use libvm::proto::{MS_ASYNC, MS_INVALIDATE, MS_SYNC};
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon()).unwrap();
    sys.write(p, (a + 4096) as u64, b"x").unwrap();
    sys.write(p, (a + 3 * 4096) as u64, b"y").unwrap();
    let mut vec = [9u8; 4];
    vm.mincore(a, 4 * 4096, &mut vec).unwrap();
    assert_eq!(vec, [0, 1, 0, 1]);
    // A partial last page counts as a page; an empty range is nothing.
    let mut one = [9u8; 1];
    vm.mincore(a + 4096, 10, &mut one).unwrap();
    assert_eq!(one, [1]);
    assert_eq!(vm.mincore(a, 0, &mut []), Ok(()));
    // Linux's answers: unaligned EINVAL, a page not mapped ENOMEM, too short a vector EFAULT.
    assert_eq!(vm.mincore(a + 1, 4096, &mut vec), Err(VmError::NotAligned));
    assert_eq!(
        vm.mincore(a, 5 * 4096, &mut [0; 5]),
        Err(VmError::RegionNotFound)
    );
    assert_eq!(
        vm.mincore(a, 4 * 4096, &mut [0; 3]),
        Err(VmError::BadBuffer)
    );
    // msync: the checks of Linux, in its order; nothing to write back.
    assert_eq!(vm.msync(a, 4 * 4096, MS_SYNC), Ok(()));
    assert_eq!(vm.msync(a, 4096, MS_ASYNC | MS_INVALIDATE), Ok(()));
    assert_eq!(vm.msync(a, 4096, 8), Err(VmError::InvalidFlags));
    assert_eq!(vm.msync(a + 1, 4096, 8), Err(VmError::InvalidFlags));
    assert_eq!(vm.msync(a + 1, 4096, MS_SYNC), Err(VmError::NotAligned));
    assert_eq!(
        vm.msync(a, 4096, MS_ASYNC | MS_SYNC),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(vm.msync(a, 0, 0), Ok(()));
    // A length that wraps to 0 when rounded up is empty (Linux's own answer).
    assert_eq!(vm.msync(a, usize::MAX - 1, 0), Ok(()));
    for exact in [a.wrapping_neg() - 1, a.wrapping_neg() + 1] {
        assert_eq!(vm.msync(a, exact, 0), Err(VmError::OutOfMemory));
    }
    assert_eq!(vm.msync(a, 5 * 4096, MS_SYNC), Err(VmError::RegionNotFound));
}

#[test]
fn locked_pages_are_resident_kept_and_counted_against_memlock() {
    use libvm::proto::{MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, RLIMIT_MEMLOCK};
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 8 * 4096, P::READ_WRITE, anon()).unwrap();
    // mlock rounds the start down and the length up, and backs every page at once.
    vm.mlock(a + 4096 + 100, 2 * 4096).unwrap();
    let mut vec = [9u8; 8];
    vm.mincore(a, 8 * 4096, &mut vec).unwrap();
    assert_eq!(vec, [0, 1, 1, 1, 0, 0, 0, 0]);
    // Locked pages stay: DONTNEED is refused, nothing dropped.
    sys.write(p, (a + 4096) as u64, b"kept").unwrap();
    assert_eq!(
        vm.madvise(a, 8 * 4096, MADV_DONTNEED),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(sys.read(p, (a + 4096) as u64, 4).unwrap(), b"kept");
    // A page not mapped: ENOMEM, nothing locked.
    assert_eq!(vm.mlock(a, 9 * 4096), Err(VmError::RegionNotFound));
    // RLIMIT_MEMLOCK: 8 pages allowed, 3 locked; 6 more are too many.
    vm.setrlimit(RLIMIT_MEMLOCK, 8 * 4096, 8 * 4096).unwrap();
    let b = vm.mmap(0, 6 * 4096, P::READ_WRITE, anon()).unwrap();
    assert_eq!(vm.mlock(b, 6 * 4096), Err(VmError::OutOfMemory));
    vm.mlock(b, 5 * 4096).unwrap();
    vm.munlock(a, 8 * 4096).unwrap();
    vm.mlock(b, 6 * 4096).unwrap();
    vm.madvise(a, 8 * 4096, MADV_DONTNEED).unwrap();
    // mlockall: unknown flags or ONFAULT alone EINVAL; CURRENT over the limit ENOMEM.
    assert_eq!(vm.mlockall(0), Err(VmError::InvalidFlags));
    assert_eq!(vm.mlockall(MCL_ONFAULT), Err(VmError::InvalidFlags));
    assert_eq!(vm.mlockall(8 | MCL_CURRENT), Err(VmError::InvalidFlags));
    assert_eq!(vm.mlockall(MCL_CURRENT), Err(VmError::OutOfMemory));
    vm.munlockall().unwrap();
    assert_eq!(
        vm.setrlimit(RLIMIT_MEMLOCK, 1 << 30, 1 << 30),
        Err(VmError::NotPermitted)
    );
    // MCL_FUTURE: every mapping to come is locked, backed at once, within the limit.
    let q = sys.spawn().unwrap();
    let qvm = sys.client(q);
    qvm.setrlimit(RLIMIT_MEMLOCK, 4 * 4096, 4 * 4096).unwrap();
    qvm.mlockall(MCL_FUTURE).unwrap();
    let before = qvm.process_stats(0).unwrap().resident_pages;
    qvm.mmap(0, 2 * 4096, P::READ_WRITE, anon()).unwrap();
    assert_eq!(qvm.process_stats(0).unwrap().resident_pages, before + 2);
    assert_eq!(
        qvm.mmap(0, 3 * 4096, P::READ_WRITE, anon()),
        Err(VmError::OutOfMemory)
    );
    qvm.munlockall().unwrap();
    qvm.mmap(0, 3 * 4096, P::READ_WRITE, anon()).unwrap();
    assert_eq!(qvm.process_stats(0).unwrap().resident_pages, before + 2);
}

#[test]
fn mmap_flags_programs_use_below_2g_locked_stack_noreserve_and_growsdown_refused() {
    // With layout randomization on: MAP_32BIT still places below 2 GiB.
    let sys = System::new(Config {
        aslr_seed: Some([7; 32]),
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let low = vm
        .mmap(0, 4096, P::READ_WRITE, anon().union(MmapFlags::BELOW_2G))
        .unwrap() as u64;
    assert!((MMAP_BASE..0x8000_0000).contains(&low), "{low:#x}");
    let anywhere = vm.mmap(0, 4096, P::READ_WRITE, anon()).unwrap() as u64;
    assert!(anywhere >= 0x1000_0000_0000, "{anywhere:#x}");
    // MAP_LOCKED: every page resident at once, and kept.
    let locked = vm
        .mmap(0, 3 * 4096, P::READ_WRITE, anon().union(MmapFlags::LOCKED))
        .unwrap();
    let mut vec = [0u8; 3];
    vm.mincore(locked, 3 * 4096, &mut vec).unwrap();
    assert_eq!(vec, [1; 3]);
    assert_eq!(
        vm.madvise(locked, 3 * 4096, MADV_DONTNEED),
        Err(VmError::InvalidFlags)
    );
    // MAP_STACK and MAP_NORESERVE: accepted, lazily backed as any mapping.
    let s = vm
        .mmap(
            0,
            2 * 4096,
            P::READ_WRITE,
            anon().union(MmapFlags::STACK | MmapFlags::NORESERVE),
        )
        .unwrap();
    vm.mincore(s, 2 * 4096, &mut vec[..2]).unwrap();
    assert_eq!(vec[..2], [0, 0]);
    // MAP_GROWSDOWN is not offered.
    assert_eq!(
        vm.mmap(0, 4096, P::READ_WRITE, anon().union(MmapFlags::GROWSDOWN)),
        Err(VmError::InvalidFlags)
    );
}

#[test]
fn remove_advice_punches_a_hole_every_mapping_of_shared_memory_sees() {
    use libvm::proto::MADV_REMOVE;
    let sys = system();
    let observer = sys.client(sys.spawn().unwrap());
    let baseline = observer.global_stats().unwrap().data_frames();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let s = vm.mmap(0, 4 * 4096, P::READ_WRITE, anon_shared()).unwrap() as u64;
    for i in 0..4 {
        sys.write(p, s + i * PAGE, &[b'a' + i as u8]).unwrap();
    }
    let c = sys.fork(p).unwrap();
    assert_eq!(sys.read(c, s + PAGE, 1).unwrap(), b"b");
    let used = observer.global_stats().unwrap().data_frames();
    // Pages 1 and 2 punched from the parent: both processes read zero there, the frames are
    // free, the other pages are untouched and still shared.
    vm.madvise((s + PAGE) as usize, 2 * 4096, MADV_REMOVE)
        .unwrap();
    assert_eq!(observer.global_stats().unwrap().data_frames(), used - 2);
    assert_eq!(sys.read(c, s + PAGE, 1).unwrap(), [0]);
    assert_eq!(sys.read(p, s + 2 * PAGE, 1).unwrap(), [0]);
    sys.write(c, s + 2 * PAGE, b"C").unwrap();
    assert_eq!(sys.read(p, s + 2 * PAGE, 1).unwrap(), b"C");
    assert_eq!(sys.read(c, s + 3 * PAGE, 1).unwrap(), b"d");
    // Private memory, or locked: EINVAL; read-only: EACCES; a hole: ENOMEM; nothing done.
    let private = vm.mmap(0, 4096, P::READ_WRITE, anon()).unwrap();
    sys.write(p, private as u64, b"x").unwrap();
    assert_eq!(
        vm.madvise(private, 4096, MADV_REMOVE),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(sys.read(p, private as u64, 1).unwrap(), b"x");
    vm.mprotect(s as usize, 4096, P::READ).unwrap();
    assert_eq!(
        vm.madvise(s as usize, 2 * 4096, MADV_REMOVE),
        Err(VmError::PermissionDenied)
    );
    assert_eq!(sys.read(c, s, 1).unwrap(), b"a");
    vm.mlock((s + 3 * PAGE) as usize, 4096).unwrap();
    assert_eq!(
        vm.madvise((s + 3 * PAGE) as usize, 4096, MADV_REMOVE),
        Err(VmError::InvalidFlags)
    );
    let gap = vm.mmap(0, 2 * 4096, P::READ_WRITE, anon_shared()).unwrap();
    vm.munmap(gap + 4096, 4096).unwrap();
    assert_eq!(
        vm.madvise(gap, 2 * 4096, MADV_REMOVE),
        Err(VmError::RegionNotFound)
    );
    assert_eq!(sys.read(c, s + 3 * PAGE, 1).unwrap(), b"d");
    // When both end, every frame is back.
    sys.exit(p, 0).unwrap();
    sys.exit(c, 0).unwrap();
    sys.reap(p);
    sys.reap(c);
    assert_eq!(observer.global_stats().unwrap().data_frames(), baseline);
}

#[test]
fn linux_numeric_mmap_ignores_unknown_bits_and_refuses_other_mapping_types() {
    // Linux's values: PROT_READ 1, PROT_WRITE 2; MAP_SHARED 1, MAP_PRIVATE 2,
    // MAP_SHARED_VALIDATE 3, MAP_ANONYMOUS 0x20; 0x80_0000 is no flag of Linux's.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let unknown = 0x80_0000;
    let a = vm.mmap_linux(0, 4096, 3 | 0x100, 0x22 | unknown).unwrap() as u64;
    sys.write(p, a, b"rw").unwrap();
    let s = vm.mmap_linux(0, 4096, 3, 0x21 | unknown).unwrap() as u64;
    let c = sys.fork(p).unwrap();
    sys.write(c, s, b"shared").unwrap();
    assert_eq!(sys.read(p, s, 6).unwrap(), b"shared");
    // MAP_SHARED_VALIDATE is refused for anonymous memory, as is no type at all, or a type
    // Linux does not know: EINVAL.
    for flags in [0x23, 0x20, 0x2f, 0x24] {
        assert_eq!(
            vm.mmap_linux(0, 4096, 3, flags),
            Err(VmError::InvalidFlags),
            "{flags:#x}"
        );
    }
    // An unknown protection bit adds nothing: read-only stays read-only.
    let r = vm.mmap_linux(0, 4096, 1 | 0x10, 0x22).unwrap() as u64;
    assert_eq!(sys.read(p, r, 1).unwrap(), [0]);
    assert_eq!(sys.write(p, r, b"x"), Err(Fault::access(r)));
}

#[test]
fn mprotect_after_fork_never_makes_a_shared_frame_writable() {
    // Pins: however many mprotects a process makes after a fork (each lets memd check whether
    // its private frames are still shared), a frame its child still shares is never made
    // writable: the parent's stores go to copies; once the child is gone they stay the
    // parent's own.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 8 * 4096, P::READ_WRITE, anon()).unwrap();
    for i in 0..8 {
        sys.write(p, a as u64 + i * PAGE, &[1]).unwrap();
    }
    let child = sys.fork(p).unwrap();
    for round in 0..200 {
        let page = a + (round % 8) * 4096;
        vm.mprotect(page, 4096, P::READ).unwrap();
        vm.mprotect(page, 4096, P::READ_WRITE).unwrap();
    }
    for i in 0..8 {
        sys.write(p, a as u64 + i * PAGE, &[2]).unwrap();
        assert_eq!(sys.read(child, a as u64 + i * PAGE, 1).unwrap(), vec![1]);
    }
    sys.exit(child, 0).unwrap();
    sys.reap(child);
    for round in 0..200 {
        let page = a + (round % 8) * 4096;
        vm.mprotect(page, 4096, P::READ).unwrap();
        vm.mprotect(page, 4096, P::READ_WRITE).unwrap();
    }
    for i in 0..8 {
        sys.write(p, a as u64 + i * PAGE, &[3]).unwrap();
        assert_eq!(sys.read(p, a as u64 + i * PAGE, 1).unwrap(), vec![3]);
    }
}

#[test]
fn a_write_that_regains_a_page_regains_the_next_ones_of_the_region_too() {
    // Pins: after a fork whose child is gone, the first write to a page no longer shared
    // gives write access back to it and to the following pages that are the process's alone,
    // in one fault (at most 16 pages, never past the region): 32 pages written, 2 faults.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 32 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    for i in 0..32 {
        sys.write(p, a + i * PAGE, &[1]).unwrap();
    }
    let child = sys.fork(p).unwrap();
    sys.exit(child, 0).unwrap();
    sys.reap(child);
    let before = vm.global_stats().unwrap();
    for i in 0..32 {
        sys.write(p, a + i * PAGE, &[2]).unwrap();
    }
    let after = vm.global_stats().unwrap();
    assert_eq!(after.faults_cow - before.faults_cow, 2);
    assert_eq!(after.cow_copies, before.cow_copies, "nothing copied");
    for i in 0..32 {
        assert_eq!(sys.read(p, a + i * PAGE, 1).unwrap(), vec![2]);
    }
}

#[test]
fn a_walk_of_copy_on_write_faults_copies_sixteen_pages_a_fault() {
    // Pins: a child writing its shared memory page after page takes one fault for the first
    // page and one for every 16 after (copy-on-write fault-around: the last batch copies a
    // page ahead of the walk), each copy its own; the parent's pages stay as they were; an
    // isolated write copies one page only.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 80 * 4096, P::READ_WRITE, anon()).unwrap() as u64;
    for i in 0..80 {
        sys.write(p, a + i * PAGE, &[i as u8]).unwrap();
    }
    let c = sys.fork(p).unwrap();
    let before = vm.global_stats().unwrap();
    for i in 0..64 {
        sys.write(c, a + i * PAGE, &[200]).unwrap();
    }
    let after = vm.global_stats().unwrap();
    assert_eq!(
        after.faults_cow - before.faults_cow,
        1 + 63usize.div_ceil(16) as u64
    );
    assert_eq!(after.cow_copies - before.cow_copies, 1 + 4 * 16);
    for i in 0..80 {
        assert_eq!(
            sys.read(p, a + i * PAGE, 1).unwrap(),
            vec![i as u8],
            "parent {i}"
        );
    }
    assert_eq!(sys.read(c, a + 63 * PAGE, 1).unwrap(), vec![200]);
    assert_eq!(sys.read(c, a + 64 * PAGE, 1).unwrap(), vec![64]);
    // An isolated write far from the walk copies its page alone.
    sys.write(c, a + 70 * PAGE, &[1]).unwrap();
    assert_eq!(vm.global_stats().unwrap().cow_copies - after.cow_copies, 1);
}
