//! `mremap` as Linux answers it: shrinking, growing in place, moving (the pages go with the
//! mapping, no copy), `MREMAP_FIXED`, `MREMAP_DONTUNMAP`, a second view of shared memory, and
//! every refusal with its errno and nothing changed.

use libvm::proto::{MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE, RLIMIT_MEMLOCK};
use libvm::{MmapFlags, ProtectionFlags as P, VmError};
use testbed::system::{Config, Fault, System};

const PAGE: usize = 4096;

fn anon() -> MmapFlags {
    MmapFlags::anonymous_private()
}

fn system() -> System {
    System::new(Config::default())
}

/// Fills page `i` of `[addr, addr + pages * PAGE)` with byte `i + 1` at its start.
fn stamp(sys: &System, p: memd::Pid, addr: usize, pages: usize) {
    for i in 0..pages {
        sys.write(p, (addr + i * PAGE) as u64, &[i as u8 + 1])
            .unwrap();
    }
}

fn stamped(sys: &System, p: memd::Pid, addr: usize, i: usize) -> u8 {
    sys.read(p, (addr + i * PAGE) as u64, 1).unwrap()[0]
}

#[test]
fn shrink_frees_the_tail_and_grow_in_place_keeps_the_address() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let mapped = vm.process_stats(0).unwrap().mapped_pages;
    let a = vm.mmap(0, 4 * PAGE, P::READ_WRITE, anon()).unwrap();
    stamp(&sys, p, a, 4);
    let used = vm.global_stats().unwrap().frames_used;
    // Shrink: the tail's frames go back, the head keeps its contents.
    assert_eq!(vm.mremap(a, 4 * PAGE, 2 * PAGE, 0, 0), Ok(a));
    assert_eq!(vm.global_stats().unwrap().frames_used, used - 2);
    assert_eq!(stamped(&sys, p, a, 1), 2);
    assert_eq!(vm.process_stats(0).unwrap().mapped_pages, mapped + 2);
    // Grow in place (the pages after are free): same address, new pages read zero.
    assert_eq!(vm.mremap(a, 2 * PAGE, 6 * PAGE, 0, 0), Ok(a));
    assert_eq!(stamped(&sys, p, a, 0), 1);
    assert_eq!(stamped(&sys, p, a, 5), 0);
    sys.write(p, (a + 5 * PAGE) as u64, b"z").unwrap();
    // A length is rounded up to pages, as Linux does.
    assert_eq!(vm.mremap(a, 6 * PAGE, 5 * PAGE + 1, 0, 0), Ok(a));
    assert_eq!(stamped(&sys, p, a, 5), b'z');
}

#[test]
fn a_move_carries_the_pages_without_copying_them() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 3 * PAGE, P::READ_WRITE, anon()).unwrap();
    stamp(&sys, p, a, 3);
    // Block growth in place.
    let wall = vm
        .mmap(a + 3 * PAGE, PAGE, P::READ, anon().fixed_noreplace())
        .unwrap();
    assert_eq!(wall, a + 3 * PAGE);
    assert_eq!(
        vm.mremap(a, 3 * PAGE, 8 * PAGE, 0, 0),
        Err(VmError::OutOfMemory)
    );
    let used = vm.global_stats().unwrap().frames_used;
    let b = vm.mremap(a, 3 * PAGE, 8 * PAGE, MREMAP_MAYMOVE, 0).unwrap();
    assert_ne!(b, a);
    // No frame was copied; the contents moved.
    assert_eq!(vm.global_stats().unwrap().frames_used, used);
    for i in 0..3 {
        assert_eq!(stamped(&sys, p, b, i), i as u8 + 1);
    }
    assert_eq!(stamped(&sys, p, b, 7), 0);
    // The old range is gone: mincore says ENOMEM, a touch faults as unmapped.
    let mut vec = [0u8; 1];
    assert_eq!(vm.mincore(a, PAGE, &mut vec), Err(VmError::RegionNotFound));
    assert_eq!(sys.write(p, a as u64, b"x"), Err(Fault::unmapped(a as u64)));
}

#[test]
fn protection_and_copy_on_write_survive_a_move() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 2 * PAGE, P::READ_WRITE, anon()).unwrap();
    stamp(&sys, p, a, 2);
    let c = sys.fork(p).unwrap();
    // The parent moves its (copy-on-write) pages; the child keeps its own view.
    let b = vm
        .mremap(
            a,
            2 * PAGE,
            2 * PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            0x7000_0000,
        )
        .unwrap();
    assert_eq!(b, 0x7000_0000);
    sys.write(p, b as u64, b"P").unwrap();
    assert_eq!(sys.read(c, a as u64, 1).unwrap(), [1]);
    assert_eq!(sys.read(p, b as u64, 1).unwrap(), b"P");
    sys.write(c, (a + PAGE) as u64, b"C").unwrap();
    assert_eq!(stamped(&sys, p, b, 1), 2);
    // Read-only moves as read-only.
    vm.mprotect(b, 2 * PAGE, P::READ).unwrap();
    let d = vm
        .mremap(
            b,
            2 * PAGE,
            4 * PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            0x9000_0000,
        )
        .unwrap();
    assert_eq!(stamped(&sys, p, d, 1), 2);
    assert_eq!(sys.write(p, d as u64, b"x"), Err(Fault::access(d as u64)));
}

#[test]
fn shared_memory_moves_shared_and_old_len_zero_maps_it_twice() {
    let sys = system();
    let observer = sys.client(sys.spawn().unwrap());
    let baseline = observer.global_stats().unwrap().frames_used;
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let s = vm
        .mmap(0, 3 * PAGE, P::READ_WRITE, MmapFlags::anonymous_shared())
        .unwrap();
    sys.write(p, s as u64, b"one").unwrap();
    let c = sys.fork(p).unwrap();
    let moved = vm
        .mremap(
            s,
            3 * PAGE,
            3 * PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            0x6000_0000,
        )
        .unwrap();
    sys.write(c, s as u64, b"two").unwrap();
    assert_eq!(sys.read(p, moved as u64, 3).unwrap(), b"two");
    // Old length 0: a second view of the same memory.
    let twin = vm.mremap(moved, 0, 2 * PAGE, MREMAP_MAYMOVE, 0).unwrap();
    assert_ne!(twin, moved);
    sys.write(p, (twin + PAGE) as u64, b"3").unwrap();
    assert_eq!(sys.read(c, (s + PAGE) as u64, 1).unwrap(), b"3");
    assert_eq!(sys.read(p, moved as u64, 3).unwrap(), b"two");
    // ... but only of shared memory, and only with MAYMOVE.
    let private = vm.mmap(0, PAGE, P::READ_WRITE, anon()).unwrap();
    assert_eq!(
        vm.mremap(private, 0, PAGE, MREMAP_MAYMOVE, 0),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(vm.mremap(moved, 0, PAGE, 0, 0), Err(VmError::InvalidFlags));
    // Every view counted: the memory outlives the moving process's views while the child
    // maps it, and when both processes end, every frame is back.
    sys.exit(p, 0).unwrap();
    sys.reap(p);
    sys.write(c, (s + 2 * PAGE) as u64, b"4").unwrap();
    assert_eq!(sys.read(c, s as u64, 3).unwrap(), b"two");
    sys.exit(c, 0).unwrap();
    sys.reap(c);
    assert_eq!(observer.global_stats().unwrap().frames_used, baseline);
}

#[test]
fn dontunmap_leaves_the_old_range_mapped_and_empty() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 2 * PAGE, P::READ_WRITE, anon()).unwrap();
    stamp(&sys, p, a, 2);
    let used = vm.global_stats().unwrap().frames_used;
    let b = vm
        .mremap(a, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0)
        .unwrap();
    assert_eq!(vm.global_stats().unwrap().frames_used, used);
    assert_eq!(stamped(&sys, p, b, 1), 2);
    let mut vec = [9u8; 2];
    vm.mincore(a, 2 * PAGE, &mut vec).unwrap();
    assert_eq!(vec, [0, 0]);
    assert_eq!(stamped(&sys, p, a, 1), 0);
    // A change of length, or DONTUNMAP without MAYMOVE: EINVAL.
    assert_eq!(
        vm.mremap(b, 2 * PAGE, 3 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0),
        Err(VmError::InvalidFlags)
    );
    assert_eq!(
        vm.mremap(b, 2 * PAGE, 2 * PAGE, MREMAP_DONTUNMAP, 0),
        Err(VmError::InvalidFlags)
    );
}

#[test]
fn refusals_carry_linux_errnos_and_change_nothing() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm.mmap(0, 2 * PAGE, P::READ_WRITE, anon()).unwrap();
    stamp(&sys, p, a, 2);
    let before = vm.regions(0).unwrap();
    let used = vm.global_stats().unwrap().frames_used;
    let cases: &[(usize, usize, usize, u64, usize, VmError)] = &[
        // Unknown flags, FIXED without MAYMOVE: EINVAL.
        (a, 2 * PAGE, PAGE, 8, 0, VmError::InvalidFlags),
        (
            a,
            2 * PAGE,
            PAGE,
            MREMAP_FIXED,
            0x7000_0000,
            VmError::InvalidFlags,
        ),
        // Unaligned address: EINVAL.
        (a + 1, PAGE, PAGE, 0, 0, VmError::NotAligned),
        // New length 0: EINVAL.
        (a, 2 * PAGE, 0, 0, 0, VmError::InvalidSize),
        // A FIXED target unaligned, past the user half, or overlapping the old range: EINVAL.
        (a, PAGE, PAGE, 3, 0x7000_0001, VmError::NotAligned),
        (
            a,
            PAGE,
            PAGE,
            3,
            usize::MAX & !0xfff,
            VmError::InvalidAddress,
        ),
        (a, 2 * PAGE, 2 * PAGE, 3, a + PAGE, VmError::InvalidFlags),
        // Not mapped, or the old range runs past its mapping: EFAULT.
        (0x5555_0000, PAGE, 2 * PAGE, 1, 0, VmError::BadBuffer),
        (a, 3 * PAGE, 4 * PAGE, 1, 0, VmError::BadBuffer),
    ];
    for &(old, old_len, new_len, flags, new_addr, err) in cases {
        assert_eq!(
            vm.mremap(old, old_len, new_len, flags, new_addr),
            Err(err),
            "mremap({old:#x}, {old_len:#x}, {new_len:#x}, {flags}, {new_addr:#x})"
        );
    }
    assert_eq!(vm.regions(0).unwrap(), before);
    assert_eq!(vm.global_stats().unwrap().frames_used, used);
    assert_eq!(stamped(&sys, p, a, 1), 2);
    // No room anywhere: ENOMEM, nothing moved; a length near 2^64 too.
    assert_eq!(
        vm.mremap(a, 2 * PAGE, 1 << 50, MREMAP_MAYMOVE, 0),
        Err(VmError::LimitExceeded)
    );
    assert_eq!(
        vm.mremap(a, 2 * PAGE, usize::MAX - 2 * PAGE, MREMAP_MAYMOVE, 0),
        Err(VmError::LimitExceeded)
    );
    assert_eq!(vm.regions(0).unwrap(), before);
}

#[test]
fn a_locked_mapping_grows_locked_and_within_its_limit() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    vm.setrlimit(RLIMIT_MEMLOCK, 4 * PAGE as u64, 4 * PAGE as u64)
        .unwrap();
    let a = vm.mmap(0, 2 * PAGE, P::READ_WRITE, anon()).unwrap();
    vm.mlock(a, 2 * PAGE).unwrap();
    assert_eq!(
        vm.mremap(a, 2 * PAGE, 5 * PAGE, MREMAP_MAYMOVE, 0),
        Err(VmError::OutOfMemory)
    );
    let b = vm.mremap(a, 2 * PAGE, 4 * PAGE, MREMAP_MAYMOVE, 0).unwrap();
    let mut vec = [0u8; 4];
    vm.mincore(b, 4 * PAGE, &mut vec).unwrap();
    assert_eq!(vec, [1, 1, 1, 1]);
    // DONTUNMAP of locked memory: the new range is locked, the old one empty and unlocked
    // (its pages may be dropped), the count of locked pages the same.
    let c = vm
        .mremap(b, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0)
        .unwrap();
    vm.mincore(c, 4 * PAGE, &mut vec).unwrap();
    assert_eq!(vec, [1, 1, 1, 1]);
    vm.mincore(b, 4 * PAGE, &mut vec).unwrap();
    assert_eq!(vec, [0, 0, 0, 0]);
    vm.madvise(b, 4 * PAGE, libvm::proto::MADV_DONTNEED)
        .unwrap();
    assert_eq!(
        vm.madvise(c, 4 * PAGE, libvm::proto::MADV_DONTNEED),
        Err(VmError::InvalidFlags)
    );
}

#[test]
fn the_only_view_of_shared_memory_moved_keeps_its_memory() {
    // Moving the sole mapping of a shared object (dropping the old view) must not free the
    // object: the pages not yet touched, and those grown, still belong to it.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let s = vm
        .mmap(0, 4 * PAGE, P::READ_WRITE, MmapFlags::anonymous_shared())
        .unwrap();
    stamp(&sys, p, s, 2);
    let flags = MREMAP_MAYMOVE | MREMAP_FIXED;
    let to = vm
        .mremap(s, 4 * PAGE, 6 * PAGE, flags, 0x7100_0000)
        .unwrap();
    assert_eq!(stamped(&sys, p, to, 1), 2);
    let c = sys.fork(p).unwrap();
    for page in [3, 5] {
        sys.write(c, (to + page * PAGE) as u64, b"c").unwrap();
        assert_eq!(sys.read(p, (to + page * PAGE) as u64, 1).unwrap(), b"c");
    }
}

#[test]
fn moving_the_heap_or_the_stack_away_leaves_memd_whole() {
    // A process may move any of its mappings, its heap and stack included (as on Linux); brk
    // and faults go on answering, and nothing of memd's breaks.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let heap = vm.sbrk(4 * PAGE as isize).unwrap();
    sys.write(p, heap as u64, b"heap").unwrap();
    let flags = MREMAP_MAYMOVE | MREMAP_FIXED;
    let moved = vm
        .mremap(heap, 4 * PAGE, 4 * PAGE, flags, 0x7200_0000)
        .unwrap();
    assert_eq!(sys.read(p, moved as u64, 4).unwrap(), b"heap");
    // The break moves over the hole the heap left, both ways.
    let top = vm.sbrk(0).unwrap();
    assert_eq!(vm.sbrk(-(2 * PAGE as isize)), Ok(top));
    assert_eq!(vm.sbrk(3 * PAGE as isize), Ok(top - 2 * PAGE));
    sys.write(p, (top - PAGE) as u64, b"again").unwrap();
    // The stack moved away too; a touch of its old place is a fault, a kill with a reason.
    let stack = vm
        .regions(0)
        .unwrap()
        .into_iter()
        .find(|r| r.end == memd::layout::STACK_TOP)
        .unwrap();
    let len = (stack.end - stack.start) as usize;
    let to = vm
        .mremap(stack.start as usize, len, len, flags, 0x7300_0000)
        .unwrap();
    sys.write(p, to as u64, b"s").unwrap();
    let other = sys.spawn().unwrap();
    assert_eq!(
        sys.write(p, stack.end - 8, b"x"),
        Err(Fault::unmapped(stack.end - 8))
    );
    assert!(sys.reap(p).is_some());
    sys.write(other, memd::layout::STACK_TOP - 8, b"ok")
        .unwrap();
}
