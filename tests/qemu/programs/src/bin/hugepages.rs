//! Huge pages on the metal: 8 MiB given `MADV_HUGEPAGE`, placed on a 2 MiB boundary, is backed
//! by 4 huge pages at its first writes (one fault each); a munmap of one page in the middle
//! splits that one and keeps every other byte; a forked child shares the huge pages and
//! writes its own copy of a page (splitting its own mapping of that one only); everything comes back at munmap.
#![no_std]
#![no_main]

use libvm::proto::{MADV_HUGEPAGE, wait_status as ws};
use libvm::{MmapFlags, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const HUGE: usize = 2 << 20;
const LEN: usize = 4 * HUGE;

fn main(_: Start) -> u64 {
    let vm = vm();
    let base = global_stats();
    let a = vm
        .mmap(0, LEN, P::READ_WRITE, MmapFlags::anonymous_private())
        .unwrap_or(0);
    check!(a != 0 && a.is_multiple_of(HUGE), "mmap at {:#x}", a);
    check!(vm.madvise(a, LEN, MADV_HUGEPAGE).is_ok(), "MADV_HUGEPAGE");
    for i in 0..LEN / PAGE {
        write(a + i * PAGE, i as u64 + 1);
    }
    let stats = process_stats(0);
    let g = global_stats();
    check!(stats.huge_pages == 4, "{} huge pages", stats.huge_pages);
    check!(
        g.faults_huge - base.faults_huge == 4,
        "{} huge faults",
        g.faults_huge - base.faults_huge
    );
    println!("PASS 4 huge pages, one fault each");
    check!(
        vm.munmap(a + HUGE + 5 * PAGE, PAGE).is_ok(),
        "munmap one page"
    );
    let stats = process_stats(0);
    check!(
        stats.huge_pages == 3,
        "{} huge pages after",
        stats.huge_pages
    );
    for i in (0..LEN / PAGE).filter(|&i| i != HUGE / PAGE + 5) {
        check!(read(a + i * PAGE) == i as u64 + 1, "page {}", i);
    }
    println!("PASS a split keeps every byte");
    match vm.fork() {
        Ok(0) => {
            // The parent's three huge pages are the child's too, until it writes one.
            let before = process_stats(0).huge_pages;
            write(a + 7 * PAGE, 7777);
            let after = process_stats(0).huge_pages;
            exit(
                if read(a + 7 * PAGE) == 7777
                    && read(a + 8 * PAGE) == 9
                    && (before, after) == (3, 2)
                {
                    0
                } else {
                    1
                },
            )
        }
        Ok(pid) => {
            let w = vm.wait(pid).unwrap_or((u64::MAX, 0));
            check!(ws::code(w.0) == Some(0), "child: {:#x}", w.0);
            check!(read(a + 7 * PAGE) == 8, "the parent's page is its own");
            let huge = process_stats(0).huge_pages;
            check!(
                huge == 3,
                "{} huge pages in the parent after the fork",
                huge
            );
        }
        Err(e) => check!(false, "fork: {:?}", e),
    }
    check!(vm.munmap(a, LEN).is_ok(), "munmap");
    check_data_frames_back(&base);
    println!("PASS huge pages");
    shared(&base);
    0
}

/// Shared memory backed by huge pages, mapped whole by a parent and its child.
fn shared(base: &libvm::proto::GlobalStats) {
    let vm = vm();
    let len = 2 * HUGE;
    let a = vm
        .mmap(0, len, P::READ_WRITE, MmapFlags::anonymous_shared())
        .unwrap_or(0);
    check!(a != 0 && a.is_multiple_of(HUGE), "shared mmap at {:#x}", a);
    check!(vm.madvise(a, len, MADV_HUGEPAGE).is_ok(), "MADV_HUGEPAGE");
    let before = global_stats();
    match vm.fork() {
        Ok(0) => {
            for i in 0..len / PAGE {
                write(a + i * PAGE, 100 + i as u64);
            }
            let huge = process_stats(0).huge_pages;
            exit(if huge == 2 { 0 } else { 10 + huge })
        }
        Ok(pid) => {
            let w = vm.wait(pid).unwrap_or((u64::MAX, 0));
            check!(ws::code(w.0) == Some(0), "shared child: {:#x}", w.0);
        }
        Err(e) => check!(false, "fork: {:?}", e),
    }
    for i in 0..len / PAGE {
        check!(read(a + i * PAGE) == 100 + i as u64, "shared page {}", i);
    }
    let stats = process_stats(0);
    let g = global_stats();
    check!(
        stats.huge_pages == 2,
        "{} shared huge pages",
        stats.huge_pages
    );
    check!(
        g.faults_huge - before.faults_huge == 4,
        "{} huge faults for two sharers of two blocks",
        g.faults_huge - before.faults_huge
    );
    // One copy of each page: the child's two runs are the parent's (it is gone, the object
    // keeps them), 1,024 frames in all.
    check!(
        g.data_frames() - base.data_frames() == (len / PAGE) as u64,
        "{} frames for the shared 4 MiB",
        g.data_frames() - base.data_frames()
    );
    check!(vm.munmap(a, len).is_ok(), "munmap shared");
    check_data_frames_back(base);
    println!("PASS shared huge pages, one run mapped whole by each sharer");
}
