//! Huge pages: in a range given `MADV_HUGEPAGE`, a first write to a 2 MiB block of private
//! anonymous memory backs it with one 2 MiB page (one page-directory entry, 512 consecutive
//! frames); every change to part of it (munmap, mprotect, `MADV_DONTNEED`, mremap, fork) splits
//! it into 512 pages first, the contents kept; without the advice, or with `MADV_NOHUGEPAGE`,
//! pages are 4 KiB. The memory reads and writes as with 4 KiB pages throughout.

use kernel_shim::paging::{HUGE_PAGE_SIZE, PageTableFlags};
use libvm::proto::{MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MREMAP_MAYMOVE};
use libvm::{MmapFlags, ProtectionFlags as P};
use memd::Pid;
use testbed::system::{Config, System};

const PAGE: u64 = 4096;
const HUGE: u64 = HUGE_PAGE_SIZE;

fn system() -> System {
    System::new(Config {
        ram_bytes: 64 << 20,
        ..Config::default()
    })
}

fn anon() -> MmapFlags {
    MmapFlags::anonymous_private()
}

/// A private anonymous mapping of `len` bytes given `MADV_HUGEPAGE`.
fn huge_map(sys: &System, p: Pid, len: u64) -> u64 {
    let vm = sys.client(p);
    let a = vm.mmap(0, len as usize, P::READ_WRITE, anon()).unwrap();
    vm.madvise(a, len as usize, MADV_HUGEPAGE).unwrap();
    a as u64
}

/// Whether the 2 MiB at `addr` of `p` is one huge page in its page tables.
fn huge_at(sys: &System, p: Pid, addr: u64) -> bool {
    let space = sys.memd().space_of(p).unwrap();
    sys.memd().kernel().huge_at(space, addr)
}

/// Writes a word at the start of each page of `[a, a + len)`: page `i` gets `i + 1 + salt`.
fn stamp(sys: &System, p: Pid, a: u64, len: u64, salt: u64) {
    for i in 0..len / PAGE {
        sys.write(p, a + i * PAGE, &(i + 1 + salt).to_le_bytes())
            .unwrap();
    }
}

fn word(sys: &System, p: Pid, addr: u64) -> u64 {
    u64::from_le_bytes(sys.read(p, addr, 8).unwrap().try_into().unwrap())
}

#[test]
fn a_first_write_backs_an_aligned_2_mib_with_one_huge_page() {
    // Pins: a 4 MiB mapping is placed on a 2 MiB boundary; one write backs its whole block
    // with one huge page (512 resident pages, one fault, consecutive frames, reads zero
    // elsewhere); a read alone does not (the zero frame); the statistics count them.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = huge_map(&sys, p, 2 * HUGE);
    assert_eq!(a % HUGE, 0, "{a:#x}");
    let before = vm.global_stats().unwrap();
    sys.write(p, a + 5 * PAGE + 3, b"x").unwrap();
    let after = vm.global_stats().unwrap();
    assert_eq!(after.faults_huge - before.faults_huge, 1);
    assert!(huge_at(&sys, p, a));
    let stats = vm.process_stats(0).unwrap();
    assert_eq!((stats.resident_pages, stats.huge_pages), (512, 1));
    assert_eq!(sys.read(p, a + 5 * PAGE + 3, 1).unwrap(), b"x");
    assert_eq!(sys.read(p, a + HUGE - 8, 8).unwrap(), vec![0; 8]);
    let kernel = sys.memd().kernel();
    let space = sys.memd().space_of(p).unwrap();
    let t0 = kernel.translate(space, a).unwrap();
    let t1 = kernel.translate(space, a + HUGE - PAGE).unwrap();
    assert_eq!(t1.frame.as_u64() - t0.frame.as_u64(), HUGE - PAGE);
    assert!(t0.flags.contains(PageTableFlags::HUGE_PAGE));
    // The second block is only read: the zero frame, no huge page.
    sys.read(p, a + HUGE, 8).unwrap();
    assert!(!huge_at(&sys, p, a + HUGE));
    assert_eq!(vm.process_stats(0).unwrap().huge_pages, 1);
}

#[test]
fn a_change_to_part_of_a_huge_page_splits_it_and_keeps_every_byte() {
    // Pins: munmap, mprotect and MADV_DONTNEED of one page, each on its own huge page, split
    // it first: the other 511 pages keep their contents and access.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = huge_map(&sys, p, 3 * HUGE);
    stamp(&sys, p, a, 3 * HUGE, 0);
    for b in 0..3 {
        assert!(huge_at(&sys, p, a + b * HUGE), "block {b}");
    }
    vm.munmap((a + 7 * PAGE) as usize, PAGE as usize).unwrap();
    vm.mprotect((a + HUGE + 9 * PAGE) as usize, PAGE as usize, P::READ)
        .unwrap();
    vm.madvise((a + 2 * HUGE) as usize, PAGE as usize, MADV_DONTNEED)
        .unwrap();
    for b in 0..3 {
        assert!(!huge_at(&sys, p, a + b * HUGE), "block {b} split");
    }
    assert_eq!(vm.process_stats(0).unwrap().huge_pages, 0);
    // Every page but the one unmapped (7) as written, the dropped one (1024) zero again.
    for i in (0..3 * HUGE / PAGE).filter(|&i| i != 7) {
        let want = if i == 2 * HUGE / PAGE { 0 } else { i + 1 };
        assert_eq!(word(&sys, p, a + i * PAGE), want, "page {i}");
    }
    // The protected page refuses a write, its neighbours take one.
    sys.write(p, a + HUGE + 10 * PAGE, &[1]).unwrap();
    assert!(sys.write(p, a + HUGE + 9 * PAGE, &[1]).is_err());
}

#[test]
fn fork_keeps_huge_pages_in_both_and_a_write_splits_the_writers_alone() {
    // Pins: after a fork parent and child map the same 512 frames as one read-only huge page
    // each; a write splits the writer's mapping and copies one page (copy-on-write page by
    // page), the other keeps its huge page; once the child is gone, the parent's write makes
    // its huge page writable again whole (its frames are its alone).
    let sys = system();
    let p = sys.spawn().unwrap();
    let a = huge_map(&sys, p, 2 * HUGE);
    stamp(&sys, p, a, 2 * HUGE, 0);
    assert!(huge_at(&sys, p, a) && huge_at(&sys, p, a + HUGE));
    let child = sys.fork(p).unwrap();
    assert!(
        huge_at(&sys, p, a) && huge_at(&sys, child, a),
        "kept across the fork"
    );
    let kernel = sys.memd().kernel();
    let (sp, sc) = (
        sys.memd().space_of(p).unwrap(),
        sys.memd().space_of(child).unwrap(),
    );
    let (tp, tc) = (
        kernel.translate(sp, a).unwrap(),
        kernel.translate(sc, a).unwrap(),
    );
    assert_eq!(tp.frame, tc.frame, "the same frames");
    assert!(
        !tp.flags.contains(PageTableFlags::WRITABLE)
            && !tc.flags.contains(PageTableFlags::WRITABLE)
    );
    sys.write(child, a + 3 * PAGE, &77u64.to_le_bytes())
        .unwrap();
    assert_eq!(word(&sys, child, a + 3 * PAGE), 77);
    assert!(
        !huge_at(&sys, child, a) && huge_at(&sys, p, a),
        "the writer's split"
    );
    assert_eq!(
        word(&sys, p, a + 3 * PAGE),
        4,
        "the parent's page is its own"
    );
    assert_eq!(word(&sys, child, a + 4 * PAGE), 5);
    assert_eq!(sys.client(child).process_stats(0).unwrap().huge_pages, 1);
    sys.exit(child, 0).unwrap();
    // The second block's frames are the parent's alone again: a write reuses it whole.
    sys.write(p, a + HUGE + 8 * PAGE, &9u64.to_le_bytes())
        .unwrap();
    assert!(huge_at(&sys, p, a + HUGE), "reused whole");
    assert!(
        kernel
            .translate(sp, a + HUGE)
            .unwrap()
            .flags
            .contains(PageTableFlags::WRITABLE)
    );
    assert_eq!(word(&sys, p, a + HUGE + 8 * PAGE), 9);
    assert_eq!(word(&sys, p, a + HUGE + 9 * PAGE), HUGE / PAGE + 10);
    sys.write(p, a + 3 * PAGE, &1u64.to_le_bytes()).unwrap();
    assert_eq!(word(&sys, p, a + 3 * PAGE), 1);
}

#[test]
fn mremap_moves_a_huge_page_as_pages_and_nohugepage_is_honoured() {
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = huge_map(&sys, p, HUGE);
    stamp(&sys, p, a, HUGE, 10);
    assert!(huge_at(&sys, p, a));
    let b = vm
        .mremap(
            a as usize,
            HUGE as usize,
            2 * HUGE as usize,
            MREMAP_MAYMOVE,
            0,
        )
        .unwrap() as u64;
    for i in [0, 1, 511] {
        assert_eq!(word(&sys, p, b + i * PAGE), i + 11, "page {i}");
    }
    // NOHUGEPAGE: a first write backs one page (with fault-around, never a huge page).
    let c = vm.mmap(0, HUGE as usize, P::READ_WRITE, anon()).unwrap() as u64;
    vm.madvise(c as usize, HUGE as usize, MADV_NOHUGEPAGE)
        .unwrap();
    sys.write(p, c, &[1]).unwrap();
    assert!(!huge_at(&sys, p, c));
    assert!(vm.process_stats(0).unwrap().resident_pages < 1024 + 512);
    // HUGEPAGE turns it back on for a block with nothing resident.
    let d = vm.mmap(0, HUGE as usize, P::READ_WRITE, anon()).unwrap() as u64;
    vm.madvise(d as usize, HUGE as usize, MADV_NOHUGEPAGE)
        .unwrap();
    vm.madvise(d as usize, HUGE as usize, MADV_HUGEPAGE)
        .unwrap();
    sys.write(p, d, &[1]).unwrap();
    assert!(huge_at(&sys, p, d));
}

#[test]
fn without_a_wholly_free_2_mib_of_frames_a_write_backs_4_kib_pages() {
    // Pins: huge pages are an optimisation: with frames for pages but no wholly free 2 MiB of
    // them, the write still succeeds, with 4 KiB pages.
    let sys = System::new(Config {
        ram_bytes: 8 << 20,
        ..Config::default()
    });
    // Another process holds every other frame: free ones are scattered, no block is whole.
    let q = sys.spawn().unwrap();
    let qvm = sys.client(q);
    let len = qvm.global_stats().unwrap().frames_free * PAGE - 64 * PAGE;
    let b = qvm.mmap(0, len as usize, P::READ_WRITE, anon()).unwrap() as u64;
    qvm.madvise(b as usize, len as usize, MADV_NOHUGEPAGE)
        .unwrap();
    stamp(&sys, q, b, len, 0);
    for i in (0..len / PAGE).step_by(2) {
        qvm.munmap((b + i * PAGE) as usize, PAGE as usize).unwrap();
    }
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = huge_map(&sys, p, HUGE);
    sys.write(p, a, b"ok").unwrap();
    assert!(!huge_at(&sys, p, a));
    assert_eq!(sys.read(p, a, 2).unwrap(), b"ok");
    assert_eq!(vm.global_stats().unwrap().faults_huge, 0);
}

#[test]
fn munmap_of_whole_huge_pages_takes_them_whole() {
    // Pins: an unmap that covers huge pages whole needs no split: they go in one operation,
    // and the huge page beside the range stays one.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = huge_map(&sys, p, 3 * HUGE);
    stamp(&sys, p, a, 3 * HUGE, 0);
    let tables = vm.process_stats(0).unwrap().page_table_frames;
    vm.munmap(a as usize, 2 * HUGE as usize).unwrap();
    let stats = vm.process_stats(0).unwrap();
    assert_eq!((stats.huge_pages, stats.resident_pages), (1, 512));
    assert!(
        stats.page_table_frames <= tables,
        "no page table made for a split"
    );
    assert!(huge_at(&sys, p, a + 2 * HUGE));
    assert_eq!(word(&sys, p, a + 2 * HUGE + 3 * PAGE), 2 * HUGE / PAGE + 4);
}

#[test]
fn in_always_mode_every_block_may_be_huge_unless_advised_not() {
    // Pins: with `huge_always` (Linux's `always` mode, `thp=always` on the metal) a plain
    // mapping's first write maps a huge page; MADV_NOHUGEPAGE keeps a range on 4 KiB pages.
    let sys = System::new(Config {
        ram_bytes: 64 << 20,
        huge_always: true,
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm
        .mmap(0, 2 * HUGE as usize, P::READ_WRITE, anon())
        .unwrap() as u64;
    vm.madvise((a + HUGE) as usize, HUGE as usize, MADV_NOHUGEPAGE)
        .unwrap();
    sys.write(p, a, &[1]).unwrap();
    sys.write(p, a + HUGE, &[2]).unwrap();
    assert!(huge_at(&sys, p, a));
    assert!(!huge_at(&sys, p, a + HUGE));
    assert_eq!(vm.process_stats(0).unwrap().huge_pages, 1);
}

/// A shared anonymous mapping of `len` bytes given `MADV_HUGEPAGE`.
fn shared_huge_map(sys: &System, p: Pid, len: u64) -> u64 {
    let vm = sys.client(p);
    let a = vm
        .mmap(
            0,
            len as usize,
            P::READ_WRITE,
            MmapFlags::anonymous_shared(),
        )
        .unwrap();
    vm.madvise(a, len as usize, MADV_HUGEPAGE).unwrap();
    a as u64
}

#[test]
fn shared_memory_is_backed_by_one_huge_run_that_every_sharer_maps_whole() {
    // Pins: a first touch (a read too) of an aligned 2 MiB block of shared memory given the
    // advice maps it as one huge page; a forked child's touch maps the same 512 frames as one
    // huge page of its own (the parent's mapping split by the fork, the object's run kept);
    // a write by either is seen by the other; once both are gone the frames are free.
    let sys = system();
    let p = sys.spawn().unwrap();
    let data0 = sys.client(p).global_stats().unwrap().data_frames();
    let a = shared_huge_map(&sys, p, 2 * HUGE);
    assert_eq!(a % HUGE, 0, "{a:#x}");
    assert_eq!(word(&sys, p, a + 9 * PAGE), 0, "a read backs the block");
    assert!(huge_at(&sys, p, a));
    assert!(!huge_at(&sys, p, a + HUGE), "the other block untouched");
    stamp(&sys, p, a, HUGE, 100);
    let child = sys.fork(p).unwrap();
    assert!(
        huge_at(&sys, p, a) && huge_at(&sys, child, a),
        "kept across the fork"
    );
    assert_eq!(word(&sys, child, a + 3 * PAGE), 104);
    sys.write(child, a + 5 * PAGE, &7u64.to_le_bytes()).unwrap();
    assert_eq!(word(&sys, p, a + 5 * PAGE), 7, "one copy of each page");
    // A second process maps a fresh block through the child: the run is made once and both
    // map it whole.
    sys.write(child, a + HUGE + 8, &9u64.to_le_bytes()).unwrap();
    assert!(huge_at(&sys, child, a + HUGE));
    assert_eq!(word(&sys, p, a + HUGE + 8), 9);
    assert!(
        huge_at(&sys, p, a + HUGE),
        "the parent maps the same run whole"
    );
    let kernel = sys.memd().kernel();
    let (sp, sc) = (
        sys.memd().space_of(p).unwrap(),
        sys.memd().space_of(child).unwrap(),
    );
    assert_eq!(
        kernel.translate(sp, a + HUGE).unwrap().frame,
        kernel.translate(sc, a + HUGE).unwrap().frame
    );
    sys.exit(child, 0).unwrap();
    assert_eq!(
        word(&sys, p, a + HUGE + 8),
        9,
        "the object outlives a sharer"
    );
    sys.client(p)
        .munmap(a as usize, (2 * HUGE) as usize)
        .unwrap();
    assert_eq!(
        sys.client(p).global_stats().unwrap().data_frames(),
        data0,
        "every frame back"
    );
}

#[test]
fn a_shared_block_already_backed_by_pages_stays_in_pages() {
    // Pins: once the object has 4 KiB pages in a block (touched before the advice), a later
    // touch there maps pages, not a huge page, and sees what was written.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = vm
        .mmap(
            0,
            HUGE as usize,
            P::READ_WRITE,
            MmapFlags::anonymous_shared(),
        )
        .unwrap() as u64;
    sys.write(p, a, &5u64.to_le_bytes()).unwrap();
    let child = sys.fork(p).unwrap();
    sys.client(child)
        .madvise(a as usize, HUGE as usize, MADV_HUGEPAGE)
        .unwrap();
    assert_eq!(word(&sys, child, a + 10 * PAGE), 0);
    assert!(!huge_at(&sys, child, a));
    assert_eq!(word(&sys, child, a), 5);
    assert_eq!(sys.client(child).process_stats(0).unwrap().huge_pages, 0);
}

#[test]
fn mprotect_of_whole_huge_pages_keeps_them_and_of_part_splits_them() {
    // Pins: an mprotect covering huge pages whole changes them whole (still one 2 MiB entry
    // each, with the new access); one that covers a block in part splits that block only; to
    // and from PROT_NONE splits; the contents stay throughout.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = huge_map(&sys, p, 3 * HUGE);
    stamp(&sys, p, a, 3 * HUGE, 0);
    vm.mprotect(a as usize, (2 * HUGE) as usize, P::READ)
        .unwrap();
    assert!(
        huge_at(&sys, p, a) && huge_at(&sys, p, a + HUGE),
        "kept whole"
    );
    let kernel = sys.memd().kernel();
    let space = sys.memd().space_of(p).unwrap();
    for at in [a + 5 * PAGE, a + HUGE + 5 * PAGE] {
        let t = kernel.translate(space, at).unwrap();
        assert!(
            t.flags.contains(PageTableFlags::HUGE_PAGE)
                && !t.flags.contains(PageTableFlags::WRITABLE),
            "read-only now: {:?}",
            t.flags
        );
    }
    assert_eq!(word(&sys, p, a + HUGE + 7 * PAGE), HUGE / PAGE + 8);
    vm.mprotect(a as usize, (2 * HUGE) as usize, P::READ_WRITE)
        .unwrap();
    assert!(huge_at(&sys, p, a));
    sys.write(p, a + 5 * PAGE, &9u64.to_le_bytes()).unwrap();
    assert_eq!(word(&sys, p, a + 5 * PAGE), 9);
    // Part of the third block: that one splits, the others stay.
    vm.mprotect((a + 2 * HUGE) as usize, PAGE as usize, P::READ)
        .unwrap();
    assert!(huge_at(&sys, p, a) && !huge_at(&sys, p, a + 2 * HUGE));
    // PROT_NONE over a whole block: split (its pages leave the page tables).
    vm.mprotect((a + HUGE) as usize, HUGE as usize, P::NONE)
        .unwrap();
    assert!(!huge_at(&sys, p, a + HUGE));
    vm.mprotect((a + HUGE) as usize, HUGE as usize, P::READ_WRITE)
        .unwrap();
    for i in (0..3 * HUGE / PAGE).filter(|&i| i != 5) {
        assert_eq!(word(&sys, p, a + i * PAGE), i + 1, "page {i}");
    }
    assert_eq!(vm.process_stats(0).unwrap().huge_pages, 1);
}

#[test]
fn a_huge_page_partly_kept_from_the_child_is_split_and_the_child_sees_none_of_that_part() {
    // Pins: MADV_DONTFORK on one page of a huge page: the fork splits it, the child maps the
    // other 511 pages (copy-on-write) and nothing at that page; a block the advice does not
    // meet stays huge in both.
    let sys = system();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let a = huge_map(&sys, p, 2 * HUGE);
    stamp(&sys, p, a, 2 * HUGE, 0);
    vm.madvise(
        (a + 6 * PAGE) as usize,
        PAGE as usize,
        libvm::proto::MADV_DONTFORK,
    )
    .unwrap();
    let child = sys.fork(p).unwrap();
    let kernel = sys.memd().kernel();
    let sc = sys.memd().space_of(child).unwrap();
    assert!(!huge_at(&sys, p, a) && !huge_at(&sys, child, a));
    assert!(huge_at(&sys, p, a + HUGE) && huge_at(&sys, child, a + HUGE));
    assert!(
        kernel.translate(sc, a + 6 * PAGE).is_none(),
        "kept from the child"
    );
    assert_eq!(word(&sys, child, a + 5 * PAGE), 6);
    assert_eq!(word(&sys, child, a + HUGE + 5 * PAGE), HUGE / PAGE + 6);
    assert_eq!(word(&sys, p, a + 6 * PAGE), 7);
}
