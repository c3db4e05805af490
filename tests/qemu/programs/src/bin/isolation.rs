//! Isolation between processes and from memd and the kernel (module 1 of a memd boot).
//!
//! Roles (the argument string says which):
//!
//! - the coordinator (no argument, pid 1):
//!   1. spawns the writer and waits for it (every data frame comes back), then spawns the
//!      reader, which gets twice as many fresh pages of every kind, so the writer's frames
//!      (memd reuses the last freed first) are among them;
//!   2. in forked children (and one spawned probe) reads memd's window onto its frames
//!      (`0x4000_0000_0000` + a physical address memd hands out), the boot pack memd sees
//!      (`0x3000_0000_0000`), the kernel's physical-memory map (`0xFFFF_8000_0000_0000`) and
//!      image (`0xFFFF_FFFF_8000_0000`), the top page of the user half (`0x7FFF_FFFF_F000`),
//!      writes the physical-memory map, and reads a non-canonical address: each child is
//!      killed (a page fault memd refuses with MAPERR at that address, or the kernel's
//!      general-protection kill) and this process goes on;
//!   3. the top page cannot be mapped; the window's address in its own space is its own
//!      memory (a fresh zero page), not memd's;
//! - `writer`: writes a pattern over every word of 256 lazily mapped pages, 256 populated
//!   pages, 256 heap pages (sbrk), 64 stack pages and 128 shared pages, then exits;
//! - `reader`: takes 512, 512, 512, 128 and 256 fresh pages of the same kinds (the stack ones
//!   by growing the stack) and checks that every word of each reads zero before it writes it;
//! - `probe ADDR`: reads `ADDR` (hexadecimal); it is expected to be killed.
#![no_std]
#![no_main]

extern crate alloc;

use libvm::proto::{GlobalStats, wait_status as ws};
use libvm::{MmapFlags as F, ProtectionFlags as P, VmError};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
/// What the writer leaves in every word (with the word's index in the low bits).
const SECRET: u64 = 0x5EC2_E700_0000_0000;
/// Where memd sees its frames (kernel-shim's `abi::WINDOW_BASE`).
const WINDOW: u64 = 0x0000_4000_0000_0000;
/// Where memd sees the boot pack (kernel-shim's `abi::BOOTPACK_BASE`).
const BOOTPACK: u64 = 0x0000_3000_0000_0000;
/// The kernel's map of all physical memory.
const PHYSMAP: u64 = 0xFFFF_8000_0000_0000;
/// The kernel image.
const KERNEL_IMAGE: u64 = 0xFFFF_FFFF_8000_0000;
/// The top page of the user half, never mappable (kernel-shim's `abi::USER_TOP`).
const TOP_PAGE: u64 = 0x0000_7FFF_FFFF_F000;
/// A physical address among the frames memd hands out (32 MiB; memd's frames start near
/// 17 MiB in a 128 MiB guest).
const FRAME: u64 = 0x0200_0000;
/// The first non-canonical address above the user half.
const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;

fn stats() -> GlobalStats {
    let s = vm().global_stats();
    check!(s.is_ok(), "global stats: {:?}", s);
    s.unwrap_or_default()
}

/// Writes the secret over every word of `pages` pages from `addr`.
fn fill(addr: usize, pages: usize) {
    for w in 0..pages * PAGE / 8 {
        write(addr + 8 * w, SECRET | w as u64);
    }
}

/// Checks that every word of `pages` fresh pages from `addr` reads zero, then writes it.
fn fresh(what: &str, addr: usize, pages: usize) {
    for w in 0..pages * PAGE / 8 {
        let at = addr + 8 * w;
        let v = read(at);
        check!(
            v == 0,
            "a fresh {} page holds {:#x} at {:#x}{}",
            what,
            v,
            at,
            if v & !0xFFFF_FFFF == SECRET {
                " (the writer's secret)"
            } else {
                ""
            }
        );
        write(at, !0);
    }
}

fn map(pages: usize, flags: F) -> usize {
    let a = vm().mmap(0, pages * PAGE, P::READ_WRITE, flags);
    check!(a.is_ok(), "mmap of {} pages: {:?}", pages, a);
    a.unwrap_or(0)
}

fn heap(pages: usize) -> usize {
    let old = vm().sbrk((pages * PAGE) as isize);
    check!(old.is_ok(), "sbrk: {:?}", old);
    old.unwrap_or(0)
}

/// The page `skip` pages below this function's frame: the stack below is not in use, and
/// the pages under it are grown into by the accesses below.
#[inline(never)]
fn below_stack(skip: usize) -> usize {
    let marker = 0u8;
    let sp = core::hint::black_box(&marker) as *const u8 as usize;
    (sp & !(PAGE - 1)) - skip * PAGE
}

fn writer() -> u64 {
    fill(map(256, F::anonymous_private()), 256);
    fill(map(256, F::anonymous_private().populate()), 256);
    fill(heap(256), 256);
    // 64 pages of stack, from 16 pages below this frame down.
    fill(below_stack(16 + 64), 64);
    fill(map(128, F::anonymous_shared()), 128);
    0
}

fn reader() -> u64 {
    fresh("mmap", map(512, F::anonymous_private()), 512);
    fresh(
        "MAP_POPULATE",
        map(512, F::anonymous_private().populate()),
        512,
    );
    fresh("heap", heap(512), 512);
    // The stack grows page by page downwards: read from the top of the range down.
    let top = below_stack(16);
    for i in 1..=128 {
        fresh("stack", top - i * PAGE, 1);
    }
    fresh("MAP_SHARED", map(256, F::anonymous_shared()), 256);
    0
}

fn spawn_and_wait(args: &str) -> (u64, u64) {
    let pid = vm().spawn_with_args("isolation", args);
    check!(pid.is_ok(), "spawn isolation {}: {:?}", args, pid);
    let w = vm().wait(pid.unwrap_or(0));
    check!(w.is_ok(), "wait: {:?}", w);
    w.unwrap_or((u64::MAX, 0))
}

fn fresh_pages() {
    let base = stats();
    let w = spawn_and_wait("writer");
    check!(w == (0, 0), "the writer: {:#x?}", w);
    let after = stats();
    check!(
        after.data_frames() == base.data_frames() && after.frames_free == base.frames_free,
        "the writer's frames: data {} -> {}, free {} -> {}",
        base.data_frames(),
        after.data_frames(),
        base.frames_free,
        after.frames_free
    );
    let r = spawn_and_wait("reader");
    check!(r == (0, 0), "the reader: {:#x?}", r);
    println!(
        "PASS fresh pages read zero after another process wrote its secret (mmap, populate, heap, stack, shared)"
    );
}

/// Forks a child that reads (or writes) `addr`; returns its wait status and fault address.
fn touch_in_child(addr: u64, store: bool) -> (u64, u64) {
    let pid = vm().fork();
    check!(pid.is_ok(), "fork: {:?}", pid);
    match pid.unwrap_or(0) {
        0 => {
            if store {
                write(addr as usize, 0xBAD);
                println!("FAIL wrote {:#x}", addr);
            } else {
                let v = read(addr as usize);
                println!("FAIL read {:#x} at {:#x}", v, addr);
            }
            exit(1)
        }
        pid => {
            let w = vm().wait(pid);
            check!(w.is_ok(), "wait: {:?}", w);
            w.unwrap_or((u64::MAX, 0))
        }
    }
}

fn check_maperr(what: &str, w: (u64, u64), addr: u64, access: u64) {
    check!(
        ws::code(w.0).is_none()
            && w.0 & 0xFFFF_FFFF == 14
            && ws::reason(w.0) == ws::MAPERR
            && ws::access(w.0) == access
            && w.1 == addr,
        "{} at {:#x}: status {:#x}, address {:#x}",
        what,
        addr,
        w.0,
        w.1
    );
    println!(
        "PASS {} at {:#x}: killed, page fault MAPERR (status {:#x})",
        what, addr, w.0
    );
}

fn forbidden() {
    let reads = [
        ("read of memd's window", WINDOW + FRAME),
        ("read of the boot pack", BOOTPACK),
        ("read of the kernel's physical map", PHYSMAP + FRAME),
        ("read of the kernel image", KERNEL_IMAGE + 0x10_0000),
        ("read of the top page of the user half", TOP_PAGE),
        ("read of the last word of the user half", TOP_PAGE + 0xFF8),
    ];
    for (what, addr) in reads {
        let w = touch_in_child(addr, false);
        check_maperr(what, w, addr, ws::READ);
    }
    let addr = PHYSMAP + FRAME;
    check_maperr(
        "write to the kernel's physical map",
        touch_in_child(addr, true),
        addr,
        ws::WRITE,
    );
    // A spawned process (its own image, nothing inherited) reads another frame of memd's.
    let addr = WINDOW + 2 * FRAME;
    let w = spawn_and_wait(&alloc::format!("probe {:x}", addr));
    check_maperr(
        "read of memd's window by a spawned process",
        w,
        addr,
        ws::READ,
    );
    // A non-canonical address: a general-protection fault, which the kernel kills for; the
    // WAIT word is then where it happened (the load in this program's code).
    let w = touch_in_child(NON_CANONICAL, false);
    check!(
        w.0 == ws::KILLED | 13
            && ws::vector(w.0) == Some(13)
            && (0x40_0000..0x1000_0000).contains(&w.1),
        "read of a non-canonical address: status {:#x}, rip {:#x}",
        w.0,
        w.1
    );
    println!(
        "PASS read of {:#x} (non-canonical): killed, {} at rip {:#x} (status {:#x})",
        NON_CANONICAL,
        ws::vector_name(13),
        w.1,
        w.0
    );
}

fn mappings() {
    let top = vm().mmap(
        TOP_PAGE as usize,
        PAGE,
        P::READ_WRITE,
        F::anonymous_private().fixed(),
    );
    // Past what may be mapped: ENOMEM, as Linux answers a MAP_FIXED past TASK_SIZE.
    check!(
        top == Err(VmError::OutOfMemory),
        "MAP_FIXED of the top page: {:?}",
        top
    );
    let hint = vm().mmap(
        TOP_PAGE as usize,
        PAGE,
        P::READ_WRITE,
        F::anonymous_private(),
    );
    check!(
        hint.is_ok_and(|a| (a as u64) < TOP_PAGE),
        "a hint at the top page: {:?}",
        hint
    );
    check!(
        vm().munmap(hint.unwrap_or(0), PAGE).is_ok(),
        "munmap hinted"
    );
    // memd's window is memd's: at the same address this process gets its own memory.
    let at = (WINDOW + FRAME) as usize;
    let own = vm().mmap(at, PAGE, P::READ_WRITE, F::anonymous_private().fixed());
    check!(
        own == Ok(at),
        "MAP_FIXED at the window's address: {:?}",
        own
    );
    fresh("window-address", at, 1);
    check!(vm().munmap(at, PAGE).is_ok(), "munmap");
    println!("PASS the top page is never mappable; the window's address is this process's own");
}

fn coordinator() -> u64 {
    let base = stats();
    fresh_pages();
    forbidden();
    mappings();
    // This process goes on.
    let a = map(4, F::anonymous_private());
    write(a + 3 * PAGE, 42);
    check!(read(a + 3 * PAGE) == 42, "this process's own memory");
    check!(vm().munmap(a, 4 * PAGE).is_ok(), "munmap");
    let end = stats();
    check!(
        end.processes == base.processes && end.frames_quarantined == 0,
        "processes {} -> {}, quarantined {}",
        base.processes,
        end.processes,
        end.frames_quarantined
    );
    println!("PASS isolation");
    0
}

fn main(_: Start) -> u64 {
    let args = args();
    match args.first().map(|a| a.as_str()) {
        None => coordinator(),
        Some("writer") => writer(),
        Some("reader") => reader(),
        Some("probe") => {
            let addr = args
                .get(1)
                .and_then(|a| u64::from_str_radix(a, 16).ok())
                .unwrap_or(0);
            let v = read(addr as usize);
            println!("FAIL probe read {:#x} at {:#x}", v, addr);
            1
        }
        Some(other) => {
            println!("FAIL isolation: unknown role {}", other);
            1
        }
    }
}
