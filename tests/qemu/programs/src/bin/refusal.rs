//! Break 5 of "Isolation holds under attack" (module 1 of a memd boot): a request the kernel
//! cannot perform for want of memory is refused whole and changes nothing, on the metal.
//!
//! Three processes share a page to step together:
//!
//! 1. The holder (a forked child) maps a region of [`GIBS`] GiB alone in its own 512 GiB of
//!    address space, writes a pattern into one page of each GiB and makes the region
//!    `PROT_NONE`: its page tables (a PDPT, and a PD and a PT for each page) are emptied, and
//!    memd takes back all but the few spare ones a process keeps.
//! 2. The hog (another forked child) takes every frame memd has with `MAP_POPULATE` of
//!    512 MiB (populate stops quietly when frames run out) and tops up with smaller populated
//!    mappings until no frame (or fewer than the three tables) is left.
//! 3. The holder asks for `mprotect(READ_WRITE)` of its region: the tables cannot be had, so
//!    the call fails with ENOMEM and the region is still `PROT_NONE`.
//! 4. The hog unmaps its memory; the same `mprotect` now succeeds and the pages hold their old
//!    contents.
//!
//! `frames_quarantined` stays 0 all along, and at the end every frame is back.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicUsize, Ordering};
use libvm::proto::{self, GlobalStats, RegionInfo, Request, Words};
use libvm::{MmapFlags as F, ProtectionFlags as P, Transport, VmError};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
/// The holder's region: alone in its 512 GiB (PML4 slot).
const LONE: usize = 0x5000_0000_0000;
/// GiB of the holder's region, a page touched in each: mapping them again needs a PDPT, and a
/// PD and a PT for each, far more than the spare table frames a process keeps (3 to 8).
const GIBS: usize = 6;
/// Its length.
const LEN: usize = GIBS << 30;
/// Table frames its pages need.
const TABLES: u64 = 1 + 2 * GIBS as u64;
/// Spare table frames a process may keep (memd's `tables::KEEP_SPARE`, after a reclaim).
const KEEP_SPARE: u64 = 3;
/// What the holder writes into its page.
const PATTERN: u64 = 0x0A11_0E5E_0F7A_B1E5;
/// The hog's first populated mapping: more than memd's frames in a 128 MiB guest.
const HUGE: usize = 512 << 20;
/// The most top-up mappings the hog makes.
const TOP_UPS: usize = 32;

/// The page shared by the three processes.
static SHARED: AtomicUsize = AtomicUsize::new(0);

// Words of the shared page.
/// Progress (the `STAGE_*` values).
const STAGE: usize = 0;
/// Set by this process once it has settled after forking the hog: the hog may start.
const GO: usize = 1;
/// Frames free when the hog was done.
const FREE: usize = 2;
/// Pages the hog held.
const HELD: usize = 3;

/// The holder's page is `PROT_NONE` and its tables are given back.
const STAGE_READY: u64 = 1;
/// The hog holds every frame.
const STAGE_EXHAUSTED: u64 = 2;
/// The holder's request was refused (and checked).
const STAGE_REFUSED: u64 = 3;
/// The hog gave its memory back.
const STAGE_FREED: u64 = 4;

/// Nanoseconds to wait for another process before giving up.
const TIMEOUT_NS: u64 = 30_000_000_000;

fn word(w: usize) -> u64 {
    read(SHARED.load(Ordering::Relaxed) + 8 * w)
}

fn set(w: usize, v: u64) {
    write(SHARED.load(Ordering::Relaxed) + 8 * w, v)
}

fn stats() -> GlobalStats {
    let s = vm().global_stats();
    check!(s.is_ok(), "global stats: {:?}", s);
    let s = s.unwrap_or_default();
    check!(
        s.frames_quarantined == 0,
        "{} frames quarantined",
        s.frames_quarantined
    );
    s
}

/// Writes 32 KiB of stack, so that no later call of this process faults on its stack: once
/// memory is exhausted, any fault would make the out-of-memory policy kill the hog, and a
/// fault of the holder would give its space spare table frames.
#[inline(never)]
fn warm_stack() {
    let mut buf = [0u8; 32 * 1024];
    core::hint::black_box(&mut buf);
}

/// Waits until shared word `w` reaches `want`; `false` after [`TIMEOUT_NS`].
fn wait_for(w: usize, want: u64) -> bool {
    let t0 = clock();
    while word(w) < want {
        if clock().saturating_sub(t0) > TIMEOUT_NS {
            return false;
        }
        core::hint::spin_loop();
        yield_now();
    }
    true
}

/// The region of this process that holds `addr`, asked with a buffer on the stack (no heap:
/// the heap could fault).
fn region_at(addr: usize) -> Option<RegionInfo> {
    let mut buf = [0u8; <RegionInfo as Words>::WORDS * 8];
    let request = Request::Regions { pid: 0, from: addr }.encode();
    let n = proto::decode_reply(&TRANSPORT.call(&request, &mut buf)).ok()?;
    let r = RegionInfo::read_from(&buf).filter(|_| n >= 1)?;
    (r.start as usize <= addr && addr < r.end as usize).then_some(r)
}

/// The holder: steps 1, 3 and 4.
fn holder() -> u64 {
    warm_stack();
    let r = vm().mmap(
        LONE,
        LEN,
        P::READ_WRITE,
        F::anonymous_private().fixed_noreplace(),
    );
    check!(r == Ok(LONE), "mmap of the lone region: {:?}", r);
    for g in 0..GIBS {
        write(LONE + (g << 30), PATTERN ^ g as u64);
    }
    let t0 = stats().page_table_frames;
    let r = vm().mprotect(LONE, LEN, P::NONE);
    check!(r.is_ok(), "mprotect NONE: {:?}", r);
    let t1 = stats().page_table_frames;
    check!(
        t1 + TABLES - KEEP_SPARE <= t0,
        "PROT_NONE gave back {} table frames, not at least {}",
        t0 as i64 - t1 as i64,
        TABLES - KEEP_SPARE
    );
    set(STAGE, STAGE_READY);
    check!(wait_for(STAGE, STAGE_EXHAUSTED), "the hog did not finish");
    let s = stats();
    check!(
        s.frames_free < TABLES - KEEP_SPARE,
        "the hog left {} frames free, enough for the tables",
        s.frames_free
    );
    let r = vm().mprotect(LONE, LEN, P::READ_WRITE);
    check!(
        r == Err(VmError::OutOfMemory),
        "mprotect READ_WRITE with {} frames free: {:?}",
        s.frames_free,
        r
    );
    let region = region_at(LONE);
    check!(
        region.is_some_and(|r| r.prot == u64::from(P::NONE.bits())
            && r.start == LONE as u64
            && r.end == (LONE + LEN) as u64),
        "the refused mprotect changed the region: {:?}",
        region
    );
    let after = stats();
    check!(
        after.data_frames() == s.data_frames() && after.frames_free == s.frames_free,
        "the refused mprotect changed the frames: free {} -> {}",
        s.frames_free,
        after.frames_free
    );
    println!(
        "refusal: mprotect READ_WRITE refused with ENOMEM ({} frames free), the region still PROT_NONE",
        s.frames_free
    );
    set(STAGE, STAGE_REFUSED);
    check!(
        wait_for(STAGE, STAGE_FREED),
        "the hog did not free its memory"
    );
    let r = vm().mprotect(LONE, LEN, P::READ_WRITE);
    check!(
        r.is_ok(),
        "mprotect READ_WRITE once memory is back: {:?}",
        r
    );
    let region = region_at(LONE);
    check!(
        region.is_some_and(|r| r.prot == u64::from(P::READ_WRITE.bits())),
        "the region after mprotect: {:?}",
        region
    );
    for g in 0..GIBS {
        let v = read(LONE + (g << 30));
        check!(
            v == PATTERN ^ g as u64,
            "page {} lost its contents: {:#x}",
            g,
            v
        );
    }
    write(LONE + 8, 1);
    check!(vm().munmap(LONE, LEN).is_ok(), "munmap");
    0
}

/// The hog: step 2, then gives everything back when the holder is done.
fn hog() -> u64 {
    warm_stack();
    check!(wait_for(GO, 1), "never told to go");
    let mut held = [(0usize, 0usize); TOP_UPS + 1];
    let mut n = 0;
    let a = vm().mmap(0, HUGE, P::READ_WRITE, F::anonymous_private().populate());
    check!(a.is_ok(), "mmap populate of 512 MiB: {:?}", a);
    held[0] = (a.unwrap_or(0), HUGE);
    n += 1;
    let mut free = stats().frames_free;
    println!("refusal: populate of 512 MiB left {} frames free", free);
    while free > 0 && n < held.len() {
        let len = free as usize * PAGE;
        let b = vm().mmap(0, len, P::READ_WRITE, F::anonymous_private().populate());
        check!(b.is_ok(), "a top-up mapping of {} pages: {:?}", free, b);
        held[n] = (b.unwrap_or(0), len);
        n += 1;
        let now = stats().frames_free;
        if now >= free {
            break;
        }
        free = now;
    }
    let pages = vm().process_stats(0).map(|p| p.resident_pages).unwrap_or(0);
    set(FREE, free);
    set(HELD, pages);
    set(STAGE, STAGE_EXHAUSTED);
    check!(wait_for(STAGE, STAGE_REFUSED), "the holder did not finish");
    for &(addr, len) in &held[..n] {
        check!(vm().munmap(addr, len).is_ok(), "munmap {:#x}", addr);
    }
    set(STAGE, STAGE_FREED);
    0
}

fn main(_: Start) -> u64 {
    let sh = vm().mmap(0, PAGE, P::READ_WRITE, F::anonymous_shared());
    check!(sh.is_ok(), "shared page: {:?}", sh);
    SHARED.store(sh.unwrap_or(0), Ordering::Relaxed);
    set(STAGE, 0);
    set(GO, 0);
    warm_stack();
    let base = stats();
    let holder_pid = vm().fork();
    check!(holder_pid.is_ok(), "fork: {:?}", holder_pid);
    let holder_pid = holder_pid.unwrap_or(0);
    if holder_pid == 0 {
        exit(holder());
    }
    check!(wait_for(STAGE, STAGE_READY), "the holder is not ready");
    let hog_pid = vm().fork();
    check!(hog_pid.is_ok(), "fork: {:?}", hog_pid);
    let hog_pid = hog_pid.unwrap_or(0);
    if hog_pid == 0 {
        exit(hog());
    }
    // This process's copy-on-write faults come now, before the hog takes every frame.
    warm_stack();
    set(GO, 1);
    let w = vm().wait(holder_pid);
    check!(w == Ok((0, 0)), "the holder: {:#x?}", w);
    let w = vm().wait(hog_pid);
    check!(w == Ok((0, 0)), "the hog: {:#x?}", w);
    let end = stats();
    check!(
        end.data_frames() == base.data_frames()
            && end.page_table_frames <= base.page_table_frames + 3
            && end.processes == base.processes,
        "data frames {} -> {}, table frames {} -> {}, processes {} -> {}",
        base.data_frames(),
        end.data_frames(),
        base.page_table_frames,
        end.page_table_frames,
        base.processes,
        end.processes
    );
    println!(
        "PASS refused mprotect changed nothing: the hog held {} pages, {} of {} frames left free; granted once memory was back",
        word(HELD),
        word(FREE),
        base.frames_total
    );
    check!(vm().munmap(sh.unwrap_or(0), PAGE).is_ok(), "munmap shared");
    0
}
