//! Break 1 of "Isolation holds under attack" (module 1 of a memd boot): memory given up over a
//! range larger than 4 GiB is gone for good.
//!
//! Each case runs in a forked child that maps 5 GiB lazily, writes a pattern into six pages
//! (one near the start, one at every GiB, the last one), then gives the range up:
//!
//! - `MADV_DONTNEED` over the 5 GiB: the frames come back (global `data_frames()` as before)
//!   and every page reads zero afterwards;
//! - `MAP_FIXED` over the 5 GiB: the frames come back and every page reads zero;
//! - `mprotect(PROT_NONE)` over the 5 GiB succeeds; a forked grandchild reading any of the
//!   pages is killed with ACCERR, the pages keep their contents (read back after making them
//!   readable again), and the child itself is killed with ACCERR when it reads one;
//! - `munmap` of the 5 GiB: a forked grandchild reading any of the pages is killed with
//!   MAPERR; and in a second child, the frames come back, then another process (forked)
//!   takes 2,048 fresh pages (each reads zero before it writes its own pattern over it; its
//!   stack holds the pattern too) and, while it holds them, the child reads its old
//!   addresses: it is killed with MAPERR at the first one and never sees the other's data
//!   (nor its own).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicUsize, Ordering};
use libvm::proto::{GlobalStats, MADV_DONTNEED, wait_status as ws};
use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const GIB: usize = 1 << 30;
/// The size of the range: more than the 4 GiB one page-table operation could cover before.
const LEN: usize = 5 * GIB;
/// Offsets of the touched pages: near the start, every GiB, the last page.
const OFFSETS: [usize; 6] = [PAGE, GIB, 2 * GIB, 3 * GIB, 4 * GIB, LEN - PAGE];
/// Pages the second process takes and writes in the munmap case.
const FRESH_PAGES: usize = 2048;
/// What the second process writes into every word of its pages.
const THEIRS: u64 = 0x0DD5_EC2E_7000_0000;

/// The page shared by this process and its children (mapped first thing in `main`).
static SHARED: AtomicUsize = AtomicUsize::new(0);

// Words of the shared page.
/// Forks so far whose parent has settled (see [`fork_settled`]).
const GO: usize = 0;
/// Progress of the munmap case (the `STAGE_*` values).
const STAGE: usize = 1;
/// Where the munmap child's 5 GiB were.
const ADDR: usize = 2;
/// First of the six words the munmap child read at its old addresses (if it could).
const SEEN: usize = 8;

/// The munmap child has unmapped its 5 GiB.
const STAGE_UNMAPPED: u64 = 1;
/// The second process has written its pages.
const STAGE_WRITTEN: u64 = 2;
/// The second process may check its pages once more and exit.
const STAGE_DONE: u64 = 3;

/// Nanoseconds to wait for another process before giving up.
const TIMEOUT_NS: u64 = 30_000_000_000;

/// The pattern of touched page `i`.
fn mine(i: usize) -> u64 {
    0x5EC2_E7B1_6000_0000 | i as u64
}

fn stats() -> GlobalStats {
    let s = vm().global_stats();
    check!(s.is_ok(), "global stats: {:?}", s);
    s.unwrap_or_default()
}

/// Writes 32 KiB of stack: a forked child copies its stack pages here, once, so that the
/// statistics it compares do not move with its own copy-on-write faults.
#[inline(never)]
fn warm_stack() {
    let mut buf = [0u8; 32 * 1024];
    core::hint::black_box(&mut buf);
}

/// Fills 32 KiB of stack with the second process's mark: the first frames it takes (memd
/// reuses the last freed first) are those of its stack pages, copied after the fork.
#[inline(never)]
fn mark_stack() {
    let mut buf = [THEIRS; 4096];
    core::hint::black_box(&mut buf);
}

/// Waits until `word` of the shared page `sh` reaches `want`; `false` after [`TIMEOUT_NS`].
fn wait_for(sh: usize, word: usize, want: u64) -> bool {
    let t0 = clock();
    while read(sh + 8 * word) < want {
        if clock().saturating_sub(t0) > TIMEOUT_NS {
            return false;
        }
        core::hint::spin_loop();
        yield_now();
    }
    true
}

/// Maps 5 GiB lazily and writes the pattern into the six pages; checks that exactly six
/// frames were taken for data. Returns the address.
fn map_and_touch(base: &GlobalStats) -> usize {
    let a = vm().mmap(0, LEN, P::READ_WRITE, F::anonymous_private());
    check!(a.is_ok(), "mmap 5 GiB: {:?}", a);
    let a = a.unwrap_or(0);
    for (i, &off) in OFFSETS.iter().enumerate() {
        write(a + off, mine(i));
    }
    let s = stats();
    check!(
        s.data_frames() == base.data_frames() + OFFSETS.len() as u64,
        "six touched pages took {} data frames",
        s.data_frames() as i64 - base.data_frames() as i64
    );
    a
}

fn shared() -> usize {
    SHARED.load(Ordering::Relaxed)
}

/// Forks. The child copies its stack pages, waits until the parent has copied its own (so
/// that the data frames it counts do not move with the parent's copy-on-write faults), and
/// returns `None`; the parent returns the child's pid.
fn fork_settled() -> Option<u64> {
    let sh = shared();
    let next = read(sh + 8 * GO) + 1;
    let pid = vm().fork();
    check!(pid.is_ok(), "fork: {:?}", pid);
    let pid = pid.unwrap_or(0);
    warm_stack();
    if pid == 0 {
        check!(wait_for(sh, GO, next), "the parent did not settle");
        None
    } else {
        write(sh + 8 * GO, next);
        Some(pid)
    }
}

/// Forks; the child runs `f` and exits with its value. Returns the child's wait status and
/// fault address.
fn in_child(f: impl FnOnce() -> u64) -> (u64, u64) {
    match fork_settled() {
        None => exit(f()),
        Some(pid) => {
            let w = vm().wait(pid);
            check!(w.is_ok(), "wait: {:?}", w);
            w.unwrap_or((u64::MAX, 0))
        }
    }
}

/// Whether `status` is a kill for a refused read with `reason` at `addr`.
fn killed_reading(status: (u64, u64), reason: u64, addr: usize) -> bool {
    ws::code(status.0).is_none()
        && ws::reason(status.0) == reason
        && ws::access(status.0) == ws::READ
        && status.1 == addr as u64
}

fn dontneed() {
    let code = in_child(|| {
        let base = stats();
        let a = map_and_touch(&base);
        let r = vm().madvise(a, LEN, MADV_DONTNEED);
        check!(r.is_ok(), "MADV_DONTNEED over 5 GiB: {:?}", r);
        let s = stats();
        check!(
            s.data_frames() == base.data_frames(),
            "MADV_DONTNEED kept {} data frames",
            s.data_frames() as i64 - base.data_frames() as i64
        );
        for (i, &off) in OFFSETS.iter().enumerate() {
            let v = read(a + off);
            check!(v == 0, "after MADV_DONTNEED page {} reads {:#x}", i, v);
        }
        check!(vm().munmap(a, LEN).is_ok(), "munmap");
        check!(
            stats().data_frames() == base.data_frames(),
            "munmap kept data frames"
        );
        0
    });
    check!(code == (0, 0), "MADV_DONTNEED child: {:#x?}", code);
    println!("PASS MADV_DONTNEED over 5 GiB: frames back, pages read zero");
}

fn fixed() {
    let code = in_child(|| {
        let base = stats();
        let a = map_and_touch(&base);
        let r = vm().mmap(a, LEN, P::READ_WRITE, F::anonymous_private().fixed());
        check!(r == Ok(a), "MAP_FIXED over 5 GiB: {:?}", r);
        check!(
            stats().data_frames() == base.data_frames(),
            "MAP_FIXED kept the old frames"
        );
        for (i, &off) in OFFSETS.iter().enumerate() {
            let v = read(a + off);
            check!(v == 0, "after MAP_FIXED page {} reads {:#x}", i, v);
        }
        check!(vm().munmap(a, LEN).is_ok(), "munmap");
        0
    });
    check!(code == (0, 0), "MAP_FIXED child: {:#x?}", code);
    println!("PASS MAP_FIXED over 5 GiB: frames back, pages read zero");
}

fn protect_none() {
    let status = in_child(|| {
        let base = stats();
        let a = map_and_touch(&base);
        write(shared() + 8 * ADDR, a as u64);
        let r = vm().mprotect(a, LEN, P::NONE);
        check!(r.is_ok(), "mprotect NONE over 5 GiB: {:?}", r);
        for &off in &OFFSETS {
            let w = in_child(|| {
                let v = read(a + off);
                println!("FAIL a PROT_NONE page read {:#x} in a forked child", v);
                1
            });
            check!(
                killed_reading(w, ws::ACCERR, a + off),
                "a forked child reading a PROT_NONE page at {:#x}: status {:#x}, address {:#x}",
                a + off,
                w.0,
                w.1
            );
        }
        let r = vm().mprotect(a, LEN, P::READ);
        check!(r.is_ok(), "mprotect READ over 5 GiB: {:?}", r);
        for (i, &off) in OFFSETS.iter().enumerate() {
            let v = read(a + off);
            check!(v == mine(i), "page {} lost its contents: {:#x}", i, v);
        }
        let r = vm().mprotect(a, LEN, P::NONE);
        check!(r.is_ok(), "mprotect NONE again: {:?}", r);
        // This process's own page tables: the read must fault.
        let v = read(a + OFFSETS[0]);
        println!("FAIL a PROT_NONE page of this process read {:#x}", v);
        1
    });
    let at = read(shared() + 8 * ADDR) as usize + OFFSETS[0];
    check!(
        killed_reading(status, ws::ACCERR, at),
        "the child reading its own PROT_NONE page: status {:#x}, address {:#x}",
        status.0,
        status.1
    );
    println!(
        "PASS mprotect NONE over 5 GiB: forked readers and the owner killed (ACCERR at {:#x}), contents kept",
        at
    );
}

fn unmap_forked_readers() {
    let code = in_child(|| {
        let base = stats();
        let a = map_and_touch(&base);
        let r = vm().munmap(a, LEN);
        check!(r.is_ok(), "munmap 5 GiB: {:?}", r);
        for &off in &OFFSETS {
            let w = in_child(|| {
                let v = read(a + off);
                println!("FAIL an unmapped page read {:#x} in a forked child", v);
                1
            });
            check!(
                killed_reading(w, ws::MAPERR, a + off),
                "a forked child reading an unmapped page at {:#x}: status {:#x}, address {:#x}",
                a + off,
                w.0,
                w.1
            );
        }
        0
    });
    check!(code == (0, 0), "munmap child: {:#x?}", code);
    println!("PASS munmap of 5 GiB: forked readers killed (MAPERR)");
}

fn unmap() {
    let sh = shared();
    let Some(child) = fork_settled() else {
        let base = stats();
        let a = map_and_touch(&base);
        let r = vm().munmap(a, LEN);
        check!(r.is_ok(), "munmap 5 GiB: {:?}", r);
        let s = stats();
        check!(
            s.data_frames() == base.data_frames(),
            "munmap kept {} data frames",
            s.data_frames() as i64 - base.data_frames() as i64
        );
        write(sh + 8 * ADDR, a as u64);
        write(sh + 8 * STAGE, STAGE_UNMAPPED);
        check!(
            wait_for(sh, STAGE, STAGE_WRITTEN),
            "the second process did not write"
        );
        // Nothing is mapped there any more: the first read kills this process.
        for (i, &off) in OFFSETS.iter().enumerate() {
            write(sh + 8 * (SEEN + i), read(a + off));
        }
        exit(99);
    };
    check!(
        wait_for(sh, STAGE, STAGE_UNMAPPED),
        "the munmap child did not unmap"
    );
    let a = read(sh + 8 * ADDR) as usize;
    // The second process: fresh pages read zero, then hold its data while the child reads.
    let Some(other) = fork_settled() else {
        mark_stack();
        let p = vm().mmap(0, FRESH_PAGES * PAGE, P::READ_WRITE, F::anonymous_private());
        check!(p.is_ok(), "mmap: {:?}", p);
        let p = p.unwrap_or(0);
        for page in 0..FRESH_PAGES {
            for w in 0..PAGE / 8 {
                let at = p + page * PAGE + 8 * w;
                let v = read(at);
                check!(v == 0, "a fresh page holds {:#x} at {:#x}", v, at);
                write(at, THEIRS | w as u64);
            }
        }
        write(sh + 8 * STAGE, STAGE_WRITTEN);
        check!(wait_for(sh, STAGE, STAGE_DONE), "never told to finish");
        for page in 0..FRESH_PAGES {
            for w in (0..PAGE / 8).step_by(61) {
                let at = p + page * PAGE + 8 * w;
                check!(read(at) == THEIRS | w as u64, "lost a write at {:#x}", at);
            }
        }
        exit(0);
    };
    let w = vm().wait(child);
    check!(w.is_ok(), "wait: {:?}", w);
    let w = w.unwrap_or((0, 0));
    if !killed_reading(w, ws::MAPERR, a + OFFSETS[0]) {
        let mut theirs = 0;
        let mut own = 0;
        for i in 0..OFFSETS.len() {
            let v = read(sh + 8 * (SEEN + i));
            theirs += usize::from(v & !0xFFF == THEIRS);
            own += usize::from(v == mine(i));
            println!("bigunmap: old page {} read {:#x}", i, v);
        }
        println!(
            "FAIL the munmap child read its unmapped pages (status {:#x}, address {:#x}): {} held the other process's data, {} its own",
            w.0, w.1, theirs, own
        );
        write(sh + 8 * STAGE, STAGE_DONE);
        exit(1);
    }
    write(sh + 8 * STAGE, STAGE_DONE);
    let o = vm().wait(other);
    check!(o == Ok((0, 0)), "the second process: {:#x?}", o);
    println!(
        "PASS munmap of 5 GiB: frames back; the owner killed reading {:#x} (MAPERR) while another process held {} fresh zeroed pages",
        a + OFFSETS[0],
        FRESH_PAGES
    );
}

fn main(_: Start) -> u64 {
    let sh = vm().mmap(0, PAGE, P::READ_WRITE, F::anonymous_shared());
    check!(sh.is_ok(), "shared page: {:?}", sh);
    let sh = sh.unwrap_or(0);
    write(sh, 0);
    SHARED.store(sh, Ordering::Relaxed);
    // The stack pages every fork copies are there from the start: the baseline holds them.
    warm_stack();
    let base = stats();
    dontneed();
    fixed();
    protect_none();
    unmap_forked_readers();
    unmap();
    let end = stats();
    check!(
        end.data_frames() == base.data_frames() && end.processes == base.processes,
        "data frames {} -> {}, processes {} -> {}",
        base.data_frames(),
        end.data_frames(),
        base.processes,
        end.processes
    );
    check!(end.frames_quarantined == 0, "frames quarantined");
    check!(vm().munmap(sh, PAGE).is_ok(), "munmap shared");
    println!("PASS bigunmap");
    0
}
