//! The FPU and SSE state of a process is its own across preemption, faults and system calls
//! (module 1 of a memd boot).
//!
//! The program forks. Both processes run *windows*, each one asm block that loads values of
//! their own into all sixteen xmm registers, MXCSR and the x87 control word, spins (`pause`)
//! long enough for several 10 ms time slices, and stores the registers back: Rust code never
//! runs between the load and the store, so nothing but the kernel's context switches can
//! touch them meanwhile. The parent only spins (it is preempted); the child also makes system
//! calls inside its windows (`CLOCK`, answered at once, and `YIELD`, which switches to the
//! parent) and writes to pages it never touched (page faults that memd resolves while the
//! child waits). Each window is checked: every register as loaded. Through a shared page each
//! process counts its spins, so a window also tells whether the other process ran inside it
//! (with its own values in the same registers); both go on until each has seen enough such
//! windows. A kernel that did not save and restore the state per thread fails this.
#![no_std]
#![no_main]

use core::arch::asm;
use core::mem::offset_of;
use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;

/// How long a window should take on its own (nanoseconds): three time slices.
const WINDOW_NS: u64 = 30_000_000;

/// Windows each process must see the other run inside before it is done.
const INTERLEAVED: u64 = 6;

/// The least time each process runs windows (nanoseconds).
const MIN_RUN_NS: u64 = 300_000_000;

/// Past this the test fails: the other process never ran inside a window (nanoseconds).
const MAX_RUN_NS: u64 = 20_000_000_000;

/// Page faults (and pairs of system calls) the child makes in each window.
const STEPS: u64 = 8;

/// One window: what the asm block reads and writes.
#[repr(C, align(16))]
struct Window {
    /// The values loaded into xmm0..xmm15 (low, high quadword).
    set: [[u64; 2]; 16],
    /// xmm0..xmm15 as found at the end.
    got: [[u64; 2]; 16],
    /// MXCSR to load, and as found at the end.
    mxcsr_set: u32,
    mxcsr_got: u32,
    /// The caller's MXCSR, put back at the end.
    mxcsr_saved: u32,
    /// x87 control word to load, as found at the end, and the caller's.
    fcw_set: u16,
    fcw_got: u16,
    fcw_saved: u16,
    /// Spins between two steps of the child (0: none, the parent).
    every: u64,
    /// The other process's spin count at the start and at the end.
    other_start: u64,
    other_end: u64,
}

// The asm block addresses `set` and `got` by these offsets.
const _: () = assert!(offset_of!(Window, set) == 0 && offset_of!(Window, got) == 256);

/// The page both processes share: each one's spin count, and whether it is done.
#[repr(C)]
struct Shared {
    spins: [u64; 2],
    done: [u64; 2],
}

/// The values of process `role` (0 parent, 1 child) for window `round`: different for every
/// register, both halves, each process and each window.
fn values(role: u64, round: u64) -> [[u64; 2]; 16] {
    core::array::from_fn(|i| {
        let lo = 0x5EE0_0000_0000_0000 | role << 40 | (round & 0xFF_FFFF) << 8 | i as u64;
        [lo, !lo.rotate_left(17)]
    })
}

/// Spins between two of the child's steps in a window of `spins` spins: at least [`STEPS`]
/// steps a window.
fn every(spins: u64) -> u64 {
    (spins / STEPS).max(1)
}

/// Runs one window of `spins` spins with the values of `role` for `round` and checks them;
/// the child's steps touch the pages `[pages, pages + STEPS * PAGE)`, which it has not
/// touched yet. Returns whether the other process ran inside the window.
fn window(role: u64, round: u64, spins: u64, shared: *mut Shared, pages: usize) -> bool {
    let mut w = Window {
        set: values(role, round),
        got: [[0; 2]; 16],
        // Rounding down (parent) or up (child), all exceptions masked: neither is the state a
        // new thread starts with (0x1F80, 0x37F).
        mxcsr_set: [0x3F80, 0x5F80][role as usize],
        mxcsr_got: 0,
        mxcsr_saved: 0,
        fcw_set: [0x077F, 0x0B7F][role as usize],
        fcw_got: 0,
        fcw_saved: 0,
        every: if role == 1 { every(spins) } else { 0 },
        other_start: 0,
        other_end: 0,
    };
    // SAFETY: `shared` points to the shared page, mapped for the whole run: only addresses
    // of its fields are taken.
    let (mine, other) = unsafe {
        (
            &raw mut (*shared).spins[role as usize],
            &raw const (*shared).spins[1 - role as usize],
        )
    };
    let end = pages + STEPS as usize * PAGE;
    // SAFETY: `w` is a live, 16-byte aligned Window the block reads and writes through `w`
    // (offsets from `offset_of!`); `mine` and `other` point into the shared page, mapped for
    // the whole run, and only this process writes `mine`; the child writes one byte of each
    // page of `[pages, end)`, which it mapped writable for this window (the parent's `every`
    // is 0: it never steps). The system calls are `CLOCK` and `YIELD`, which change rax, rcx
    // and r11 only (declared); every xmm register is declared clobbered; MXCSR and the x87
    // control word are put back as they were; DF is never touched; `spins` is at least 1.
    unsafe {
        asm!(
            "stmxcsr dword ptr [{w} + {mxcsr_saved}]",
            "fnstcw word ptr [{w} + {fcw_saved}]",
            "ldmxcsr dword ptr [{w} + {mxcsr_set}]",
            "fldcw word ptr [{w} + {fcw_set}]",
            "movdqu xmm0, [{w} + 0]",
            "movdqu xmm1, [{w} + 16]",
            "movdqu xmm2, [{w} + 32]",
            "movdqu xmm3, [{w} + 48]",
            "movdqu xmm4, [{w} + 64]",
            "movdqu xmm5, [{w} + 80]",
            "movdqu xmm6, [{w} + 96]",
            "movdqu xmm7, [{w} + 112]",
            "movdqu xmm8, [{w} + 128]",
            "movdqu xmm9, [{w} + 144]",
            "movdqu xmm10, [{w} + 160]",
            "movdqu xmm11, [{w} + 176]",
            "movdqu xmm12, [{w} + 192]",
            "movdqu xmm13, [{w} + 208]",
            "movdqu xmm14, [{w} + 224]",
            "movdqu xmm15, [{w} + 240]",
            "mov {t}, [{other}]",
            "mov [{w} + {other_start}], {t}",
            "mov {k}, [{w} + {every}]",
            "2:",
            "pause",
            "add qword ptr [{mine}], 1",
            // The child's step, every `every` spins (the parent's `k` starts at 0: dec makes
            // it all ones, never reaching 0 again within a window).
            "dec {k}",
            "jnz 4f",
            "mov eax, {clock}",
            "syscall",
            "cmp {page}, {end}",
            "jae 3f",
            "mov byte ptr [{page}], 1",
            "add {page}, {page_size}",
            "3:",
            "mov eax, {yield_}",
            "syscall",
            "mov {k}, [{w} + {every}]",
            "4:",
            "dec {n}",
            "jnz 2b",
            "mov {t}, [{other}]",
            "mov [{w} + {other_end}], {t}",
            "movdqu [{w} + 256], xmm0",
            "movdqu [{w} + 272], xmm1",
            "movdqu [{w} + 288], xmm2",
            "movdqu [{w} + 304], xmm3",
            "movdqu [{w} + 320], xmm4",
            "movdqu [{w} + 336], xmm5",
            "movdqu [{w} + 352], xmm6",
            "movdqu [{w} + 368], xmm7",
            "movdqu [{w} + 384], xmm8",
            "movdqu [{w} + 400], xmm9",
            "movdqu [{w} + 416], xmm10",
            "movdqu [{w} + 432], xmm11",
            "movdqu [{w} + 448], xmm12",
            "movdqu [{w} + 464], xmm13",
            "movdqu [{w} + 480], xmm14",
            "movdqu [{w} + 496], xmm15",
            "stmxcsr dword ptr [{w} + {mxcsr_got}]",
            "fnstcw word ptr [{w} + {fcw_got}]",
            "ldmxcsr dword ptr [{w} + {mxcsr_saved}]",
            "fldcw word ptr [{w} + {fcw_saved}]",
            w = in(reg) &raw mut w,
            mine = in(reg) mine,
            other = in(reg) other,
            n = inout(reg) spins.max(1) => _,
            page = inout(reg) pages => _,
            end = in(reg) end,
            k = out(reg) _,
            t = out(reg) _,
            mxcsr_set = const offset_of!(Window, mxcsr_set),
            mxcsr_got = const offset_of!(Window, mxcsr_got),
            mxcsr_saved = const offset_of!(Window, mxcsr_saved),
            fcw_set = const offset_of!(Window, fcw_set),
            fcw_got = const offset_of!(Window, fcw_got),
            fcw_saved = const offset_of!(Window, fcw_saved),
            every = const offset_of!(Window, every),
            other_start = const offset_of!(Window, other_start),
            other_end = const offset_of!(Window, other_end),
            clock = const nr::CLOCK,
            yield_ = const nr::YIELD,
            page_size = const PAGE,
            out("rax") _, out("rcx") _, out("r11") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nostack)
        );
    }
    let name = ["parent", "child"][role as usize];
    for (i, (got, set)) in w.got.iter().zip(&w.set).enumerate() {
        check!(
            got == set,
            "{} window {}: xmm{} is {:#x}:{:#x}, loaded {:#x}:{:#x}",
            name,
            round,
            i,
            got[1],
            got[0],
            set[1],
            set[0]
        );
    }
    check!(
        w.mxcsr_got == w.mxcsr_set,
        "{} window {}: MXCSR is {:#x}, loaded {:#x}",
        name,
        round,
        w.mxcsr_got,
        w.mxcsr_set
    );
    check!(
        w.fcw_got == w.fcw_set,
        "{} window {}: x87 control word is {:#x}, loaded {:#x}",
        name,
        round,
        w.fcw_got,
        w.fcw_set
    );
    w.other_end != w.other_start
}

/// Spins per window: doubled from 4,096 until a window alone takes [`WINDOW_NS`].
fn calibrate(shared: *mut Shared) -> u64 {
    let mut spins = 4096;
    loop {
        let t0 = clock();
        window(0, 0, spins, shared, 0);
        if clock() - t0 >= WINDOW_NS || spins >= 1 << 40 {
            return spins;
        }
        spins *= 2;
    }
}

/// Runs windows as process `role` until it has seen [`INTERLEAVED`] windows with the other
/// running inside, for at least [`MIN_RUN_NS`], and the other is done too; the parent is
/// given the child's pid, and fails at once should the child end before it is done.
fn run(role: u64, spins: u64, shared: *mut Shared, child: Option<u64>) {
    let name = ["parent", "child"][role as usize];
    let done = move |r: u64| {
        // SAFETY: the shared page is mapped for the whole run; the other process writes its
        // own flag, read here as it is at this moment.
        unsafe { core::ptr::read_volatile(&raw const (*shared).done[r as usize]) }
    };
    let t0 = clock();
    let (mut windows, mut interleaved, mut faults, mut calls) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let elapsed = clock() - t0;
        if interleaved >= INTERLEAVED && elapsed >= MIN_RUN_NS {
            // SAFETY: as above; only this process writes its own flag.
            unsafe { core::ptr::write_volatile(&raw mut (*shared).done[role as usize], 1) };
            if done(1 - role) != 0 {
                break;
            }
        }
        if let Some(pid) = child {
            let w = vm().try_wait(pid);
            check!(w == Ok(None), "parent: the child ended early: {:?}", w);
        }
        check!(
            elapsed < MAX_RUN_NS,
            "{}: {} windows in {} ms, only {} with the other process running inside",
            name,
            windows,
            elapsed / 1_000_000,
            interleaved
        );
        let pages = if role == 1 {
            let pages = vm().mmap(
                0,
                STEPS as usize * PAGE,
                P::READ_WRITE,
                F::anonymous_private(),
            );
            check!(pages.is_ok(), "child: mmap: {:?}", pages);
            pages.unwrap_or(0)
        } else {
            0
        };
        windows += 1;
        if window(role, windows, spins, shared, pages) {
            interleaved += 1;
        }
        if role == 1 {
            let touched = (0..STEPS as usize)
                .filter(|p| read(pages + p * PAGE) & 0xFF == 1)
                .count();
            check!(
                touched == STEPS as usize,
                "child: the window wrote {} of its {} pages",
                touched,
                STEPS
            );
            faults += STEPS;
            calls += 2 * (spins / every(spins));
            let r = vm().munmap(pages, STEPS as usize * PAGE);
            check!(r.is_ok(), "child: munmap: {:?}", r);
        }
    }
    println!(
        "PASS fpu {}: {} windows of 16 xmm registers, MXCSR and x87 control word intact, {} with the other process running inside, {} page faults and {} system calls inside",
        name, windows, interleaved, faults, calls
    );
}

fn main(_: Start) -> u64 {
    let shared = vm().mmap(0, PAGE, P::READ_WRITE, F::anonymous_shared());
    check!(shared.is_ok(), "mmap of the shared page: {:?}", shared);
    let shared = shared.unwrap_or(0) as *mut Shared;
    let spins = calibrate(shared);
    println!("fpu: {} spins a window", spins);
    let pid = vm().fork();
    check!(pid.is_ok(), "fork: {:?}", pid);
    match pid.unwrap_or(0) {
        0 => {
            run(1, spins, shared, None);
            0
        }
        pid => {
            run(0, spins, shared, Some(pid));
            let w = vm().wait(pid);
            check!(w.map(|w| w.0) == Ok(0), "the child ended with {:?}", w);
            0
        }
    }
}
