//! The scaled benchmark rows, shared by `vmscaled` (the full run) and `vmscaled_quick` (a smoke
//! run for the QEMU tests): the rows of the Linux peer's `vmbench.c` built with `-DSCALED`, the
//! same names measured the same way, to show how each cost grows with the work (pages, regions,
//! processes), and probes that give the floor of the operations on the emulated CPU.
//!
//! Method (the peer's `run_scaled`, [`user_rt::bench`]): `lfence; rdtsc; lfence` around each
//! operation; a warm-up of at least one operation and [`SCALED`]'s `warm` ticks, then operations
//! until at least `min` samples and `target` ticks (at most [`SCALE_MAX`] samples); median.
//! Under `-icount shift=0` a tick is a guest instruction. Where the peer times one operation
//! over a whole size (a mapping touched page by page, a fork whose child writes every page),
//! so does this, and the per-page figure is that time divided by the pages.
//!
//! Ours for the peer's: the null system call (`h_getppid`) is `clock`; `p_bad_syscall` is
//! system call 999, which the kernel answers with ENOSYS; `MADV_NOHUGEPAGE` has no counterpart
//! (memd maps 4 KiB pages only); `s_pipe_rtt_P*` is the IPC round trip to memd of
//! `g_ipc_rtt_memd` (a request memd decodes and refuses), with P other processes alive and
//! blocked, each in `ipc_receive` on an endpoint of its own that nobody calls (Linux: children
//! blocked in `read` on a pipe).

use core::arch::asm;
use libvm::proto::{MADV_DONTFORK, MADV_HUGEPAGE, MADV_POPULATE_WRITE};
use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::bench::{Bench, Driver, buffer, calibrate, fatal, ipc_rtt, map, rdtsc, touch, unmap};
use user_rt::*;

const PAGE: usize = 4096;
/// Samples per row at most (the peer's `SCALE_MAX`).
const SCALE_MAX: usize = 4096;
/// System call number the kernel does not know (the peer's, 999).
const BAD_SYSCALL: i64 = 999;
/// Processes blocked during the `_P` rows, at most.
const MAX_BLOCKED: usize = 24;

/// Regions of the rows past the peer's sizes ([`run_million`]).
const MILLION: usize = 1_000_000;

/// The full run: the peer's `SCALE_WARM` (2 M ticks), `SCALE_TARGET` (20 M) and `SCALE_MIN`
/// (5 samples).
const SCALED: Driver = Driver {
    warm_once: true,
    warm: 2_000_000,
    target: 20_000_000,
    min: 5,
};

/// A smoke run: every row at the full run's sizes, one warm-up operation and one sample.
const QUICK: Driver = Driver {
    warm_once: true,
    warm: 0,
    target: 0,
    min: 1,
};

/// The number of regions of this process (the peer's `regions_now`, which counts the lines of
/// `/proc/self/maps`).
fn regions_now() -> u64 {
    vm().process_stats(0).map_or(0, |s| s.region_count)
}

/// Whether memd has `frames` free frames for a row, and a margin for page tables; else prints
/// why and the `RESULT <row> n/a` line of each of `rows`.
fn fits(b: &Bench, frames: usize, rows: &[&str]) -> bool {
    let free = vm().global_stats().map_or(0, |g| g.frames_free) as usize;
    let need = frames + frames / 256 + 64;
    if free >= need {
        return true;
    }
    println!(
        "INFO {}: needs {} free frames, memd has {}",
        rows[0], need, free
    );
    for row in rows {
        b.report(row, &mut []);
    }
    false
}

/// `r` pages alternating no access (even) and read/write (odd): `r` regions (the peer's
/// `striped`).
fn striped(r: usize) -> usize {
    let p = map(r * PAGE, F::anonymous_private());
    if r > 1 {
        for i in (0..r).step_by(2) {
            if vm().mprotect(p + i * PAGE, PAGE, P::NONE).is_err() {
                fatal("mprotect stripe");
            }
        }
    }
    p
}

/// Toggles `p` between read/write and read only (the peer's `op_mprotect_toggle`).
fn mprotect_toggle(b: &mut Bench, p: usize) -> usize {
    let mut state = false;
    b.run(|_| {
        let prot = if state { P::READ_WRITE } else { P::READ };
        let t0 = rdtsc();
        let r = vm().mprotect(p, PAGE, prot);
        let t1 = rdtsc();
        if r.is_err() {
            fatal("mprotect");
        }
        state = !state;
        t1 - t0
    })
}

/// mmap of `len` bytes and munmap, untouched (the peer's `op_mmap_munmap_n`).
fn mmap_munmap(b: &mut Bench, len: usize) -> usize {
    b.run(|_| {
        let t0 = rdtsc();
        let p = map(len, F::anonymous_private());
        let r = vm().munmap(p, len);
        let t1 = rdtsc();
        if r.is_err() {
            fatal("munmap");
        }
        t1 - t0
    })
}

/// fork, the child exits at once, the parent waits (the peer's `op_fork_exit`).
fn fork_exit_wait(b: &mut Bench) -> usize {
    b.run(|_| {
        let t0 = rdtsc();
        let pid = vm().fork().unwrap_or_else(|_| fatal("fork"));
        if pid == 0 {
            exit(0);
        }
        if vm().wait(pid).is_err() {
            fatal("wait");
        }
        rdtsc() - t0
    })
}

/// Zeroes the 4 KiB page at `buf` with `rep stosq`; its ticks.
#[inline(never)]
fn zero_rep_stosq(buf: usize) -> u64 {
    let t0 = rdtsc();
    // SAFETY: writes the 512 quadwords at `buf`, a page the benchmark mapped writable (the
    // direction flag is clear, as the ABI keeps it).
    unsafe {
        asm!("rep stosq", inout("rdi") buf => _, inout("rcx") 512usize => _, in("rax") 0u64,
             options(nostack, preserves_flags));
    }
    rdtsc() - t0
}

/// Zeroes the 4 KiB page at `buf` with `rep stosb`; its ticks.
#[inline(never)]
fn zero_rep_stosb(buf: usize) -> u64 {
    let t0 = rdtsc();
    // SAFETY: as `zero_rep_stosq`: the 4,096 bytes at `buf`, mapped writable.
    unsafe {
        asm!("rep stosb", inout("rdi") buf => _, inout("rcx") 4096usize => _, in("al") 0u8,
             options(nostack, preserves_flags));
    }
    rdtsc() - t0
}

/// Zeroes the 4 KiB page at `buf` with a loop of quadword stores; its ticks.
#[inline(never)]
fn zero_loop_qword(buf: usize) -> u64 {
    let t0 = rdtsc();
    // SAFETY: as `zero_rep_stosq`: 512 quadword stores from `buf`, a page mapped writable.
    unsafe {
        asm!("2:", "mov qword ptr [{p}], 0", "add {p}, 8", "dec {n}", "jnz 2b",
             p = inout(reg) buf => _, n = inout(reg) 512usize => _, options(nostack));
    }
    rdtsc() - t0
}

/// Zeroes the 4 KiB page at `buf` with an unrolled loop of 16-byte SSE stores; its ticks.
#[inline(never)]
fn zero_loop_sse128(buf: usize) -> u64 {
    let t0 = rdtsc();
    // SAFETY: as `zero_rep_stosq`: 256 aligned 16-byte stores from `buf`, a page mapped
    // writable; xmm0 is declared clobbered (the kernel keeps each thread's SSE state).
    unsafe {
        asm!("xorps xmm0, xmm0", "2:", "movaps [{p}], xmm0", "movaps [{p} + 16], xmm0",
             "movaps [{p} + 32], xmm0", "movaps [{p} + 48], xmm0", "movaps [{p} + 64], xmm0",
             "movaps [{p} + 80], xmm0", "movaps [{p} + 96], xmm0", "movaps [{p} + 112], xmm0",
             "add {p}, 128", "dec {n}", "jnz 2b",
             p = inout(reg) buf => _, n = inout(reg) 32usize => _, out("xmm0") _,
             options(nostack));
    }
    rdtsc() - t0
}

/// Copies the 4 KiB page at `src` to `dst` with `rep movsq`; its ticks.
#[inline(never)]
fn copy_rep_movsq(dst: usize, src: usize) -> u64 {
    let t0 = rdtsc();
    // SAFETY: reads the page at `src` and writes the page at `dst`, both mapped read/write by
    // the benchmark, not overlapping.
    unsafe {
        asm!("rep movsq", inout("rdi") dst => _, inout("rsi") src => _,
             inout("rcx") 512usize => _, options(nostack, preserves_flags));
    }
    rdtsc() - t0
}

/// A system call the kernel does not know; its ticks.
#[inline(never)]
fn bad_syscall() -> u64 {
    let t0 = rdtsc();
    let r: i64;
    // SAFETY: the kernel's system-call ABI (rcx and r11 clobbered); an unknown number only
    // returns -ENOSYS in rax.
    unsafe {
        asm!("syscall", inlateout("rax") BAD_SYSCALL => r, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    let t1 = rdtsc();
    if r != -errno::ENOSYS {
        fatal("bad syscall not ENOSYS");
    }
    t1 - t0
}

/// A child of the `_P` rows: says it is there in word `i` of the shared page `ready`, then
/// blocks for good in `ipc_receive` on an endpoint of its own that nobody calls (its parent
/// kills it).
fn blocked(ready: usize, i: usize) -> ! {
    let ep = endpoint_create();
    if ep < 0 {
        fatal("endpoint_create");
    }
    write(ready + i * 8, 1);
    let r = ipc_receive(ep as u64);
    println!("FATAL blocked child received {}", r.token);
    exit(1)
}

/// Runs every scaled row and prints its line: the full run, or a smoke run when `quick`; the
/// rows at a million regions instead with `vmscaled=million` on the command line
/// ([`run_million`]).
pub fn run(quick: bool) -> u64 {
    let mut line = [0u8; 256];
    if !quick
        && cmdline(&mut line)
            .split(' ')
            .any(|w| w == "vmscaled=million")
    {
        return run_million();
    }
    println!("VMBENCH_BEGIN");
    let ghz = if quick { 1.0 } else { calibrate() };
    println!("INFO tsc_ghz: {:.4}", ghz);
    let mut b = Bench {
        driver: if quick { QUICK } else { SCALED },
        ghz,
        s: buffer(SCALE_MAX),
        s2: buffer(SCALE_MAX),
    };
    // As the peer: the sample buffers stay out of forked children, so a fork copies a small
    // process.
    for s in [b.s.as_ptr() as usize, b.s2.as_ptr() as usize] {
        if vm().madvise(s, SCALE_MAX * 8, MADV_DONTFORK).is_err() {
            fatal("madvise DONTFORK");
        }
    }
    let n = b.run(|_| {
        let t0 = rdtsc();
        rdtsc() - t0
    });
    b.first("timer_overhead", n);
    probes(&mut b);
    regions(&mut b);
    sizes(&mut b);
    forks(&mut b);
    processes(&mut b);
    println!("VMBENCH_END");
    0
}

/// The probes: zero fills, a page copy, the floor of a system call, the null system call.
fn probes(b: &mut Bench) {
    let z = map(2 * PAGE, F::anonymous_private());
    touch(z, 1);
    touch(z + PAGE, 1);
    let n = b.run(|_| zero_rep_stosq(z));
    b.first("p_zero4k_rep_stosq", n);
    let n = b.run(|_| zero_rep_stosb(z));
    b.first("p_zero4k_rep_stosb", n);
    let n = b.run(|_| zero_loop_qword(z));
    b.first("p_zero4k_loop_qword", n);
    let n = b.run(|_| zero_loop_sse128(z));
    b.first("p_zero4k_loop_sse128", n);
    let n = b.run(|_| copy_rep_movsq(z, z + PAGE));
    b.first("p_copy4k_rep_movsq", n);
    let n = b.run(|_| bad_syscall());
    b.first("p_bad_syscall", n);
    let n = b.run(|_| {
        let t0 = rdtsc();
        core::hint::black_box(clock());
        rdtsc() - t0
    });
    b.first("h_getppid", n);
    unmap(z, 2 * PAGE);
}

/// The two region rows at [`MILLION`] regions, past the peer's sizes (it has no such row):
/// `s_mprotect_toggle_R1000000` and `s_mmap2p_munmap_holes_R1000000`, measured as the rows at
/// 10,000 are; the full run makes them instead of the others when the kernel command line
/// says `vmscaled=million`. memd must allow the regions (`max_map_count` on the command line)
/// and have the frames for their records (`scripts/bench.sh --scaled` boots it with 2 GiB).
fn run_million() -> u64 {
    println!("VMBENCH_BEGIN");
    let mut b = Bench {
        driver: SCALED,
        ghz: calibrate(),
        s: buffer(SCALE_MAX),
        s2: buffer(SCALE_MAX),
    };
    let vm = vm();
    let p = striped(MILLION);
    let page = p + ((MILLION / 2) | 1) * PAGE;
    touch(page, 1);
    println!(
        "INFO s_mprotect_toggle_R{}: {} regions in the process",
        MILLION,
        regions_now()
    );
    let n = mprotect_toggle(&mut b, page);
    b.first("s_mprotect_toggle_R1000000", n);
    unmap(p, MILLION * PAGE);
    let blk = map(2 * MILLION * PAGE, F::anonymous_private());
    for j in 0..MILLION {
        if vm.munmap(blk + (2 * j + 1) * PAGE, PAGE).is_err() {
            fatal("munmap hole");
        }
    }
    println!(
        "INFO s_mmap2p_munmap_holes_R{}: {} regions in the process",
        MILLION,
        regions_now()
    );
    let n = mmap_munmap(&mut b, 2 * PAGE);
    b.first("s_mmap2p_munmap_holes_R1000000", n);
    unmap(blk, 2 * MILLION * PAGE);
    println!("VMBENCH_END");
    0
}

/// The rows over the number of regions in the process: an mprotect toggle, and the placement
/// of a 2-page mapping below one-page holes.
fn regions(b: &mut Bench) {
    let vm = vm();
    for (name, r) in [
        ("s_mprotect_toggle_R1", 1),
        ("s_mprotect_toggle_R1000", 1000),
        ("s_mprotect_toggle_R10000", 10000),
    ] {
        let blk = usize::max(r, 3);
        let p = striped(blk);
        let page = p + ((blk / 2) | 1) * PAGE;
        touch(page, 1);
        println!("INFO {}: {} regions in the process", name, regions_now());
        let n = mprotect_toggle(b, page);
        b.first(name, n);
        unmap(p, blk * PAGE);
    }
    for (name, r) in [
        ("s_mmap2p_munmap_holes_R1", 1),
        ("s_mmap2p_munmap_holes_R1000", 1000),
        ("s_mmap2p_munmap_holes_R10000", 10000),
    ] {
        let blk = map(2 * r * PAGE, F::anonymous_private());
        for j in 0..r {
            if vm.munmap(blk + (2 * j + 1) * PAGE, PAGE).is_err() {
                fatal("munmap hole");
            }
        }
        println!("INFO {}: {} regions in the process", name, regions_now());
        let n = mmap_munmap(b, 2 * PAGE);
        b.first(name, n);
        unmap(blk, 2 * r * PAGE);
    }
}

/// The rows over the size of a mapping: mmap + munmap untouched, munmap of populated pages,
/// first write and read faults.
fn sizes(b: &mut Bench) {
    let vm = vm();
    for (name, pages) in [
        ("s_mmap_munmap_lazy_1p", 1),
        ("s_mmap_munmap_lazy_256p", 256),
        ("s_mmap_munmap_lazy_65536p", 65536),
    ] {
        let n = mmap_munmap(b, pages * PAGE);
        b.first(name, n);
    }
    for (name, pages) in [
        ("s_munmap_populated_1p", 1),
        ("s_munmap_populated_256p", 256),
        ("s_munmap_populated_65536p", 65536),
    ] {
        if !fits(b, pages, &[name]) {
            continue;
        }
        let len = pages * PAGE;
        let n = b.run(|_| {
            let p = map(len, F::anonymous_private());
            if vm.madvise(p, len, MADV_POPULATE_WRITE).is_err() {
                fatal("MADV_POPULATE_WRITE");
            }
            let t0 = rdtsc();
            let r = vm.munmap(p, len);
            let t1 = rdtsc();
            if r.is_err() {
                fatal("munmap");
            }
            t1 - t0
        });
        b.first(name, n);
    }
    // First writes at each size; the 64 MiB again with huge pages (`MADV_HUGEPAGE`, ours
    // only); then first reads (the row without a whole-operation figure).
    for (fault, total, mib, huge) in [
        (
            "s_touch_fault_per_page_1M",
            Some("s_mmap_touch_munmap_pp_1M"),
            1,
            false,
        ),
        (
            "s_touch_fault_per_page_64M",
            Some("s_mmap_touch_munmap_pp_64M"),
            64,
            false,
        ),
        (
            "s_touch_fault_per_page_256M",
            Some("s_mmap_touch_munmap_pp_256M"),
            256,
            false,
        ),
        (
            "s_touch_fault_per_page_64M_huge",
            Some("s_mmap_touch_munmap_pp_64M_huge"),
            64,
            true,
        ),
        ("s_read_fault_per_page_1M", None, 1, false),
    ] {
        let len = mib << 20;
        let reads = total.is_none();
        let rows = match total {
            Some(total) => &[total, fault][..],
            None => &[fault][..],
        };
        if !fits(b, len / PAGE, rows) {
            continue;
        }
        let pages = (len / PAGE) as u64;
        let n = b.run(|per_fault| {
            let t0 = rdtsc();
            let p = map(len, F::anonymous_private());
            if huge && vm.madvise(p, len, MADV_HUGEPAGE).is_err() {
                fatal("MADV_HUGEPAGE");
            }
            let ta = rdtsc();
            for off in (0..len).step_by(PAGE) {
                if reads {
                    core::hint::black_box(read(p + off));
                } else {
                    touch(p + off, 1);
                }
            }
            let tb = rdtsc();
            let r = vm.munmap(p, len);
            let t1 = rdtsc();
            if r.is_err() {
                fatal("munmap");
            }
            *per_fault = (tb - ta) / pages;
            (t1 - t0) / pages
        });
        if let Some(total) = total {
            b.first(total, n);
        }
        b.second(fault, n);
    }
}

/// The rows over the pages a fork shares copy-on-write, the reuse of a page whose sharer is
/// gone, and fork over the number of regions.
fn forks(b: &mut Bench) {
    let vm = vm();
    let shm = map(PAGE, F::anonymous_shared());
    for (cow, total, pages) in [
        ("s_cow_fault_per_page_256", "s_fork_cow256_exit_wait", 256),
        (
            "s_cow_fault_per_page_4096",
            "s_fork_cow4096_exit_wait",
            4096,
        ),
        (
            "s_cow_fault_per_page_32768",
            "s_fork_cow32768_exit_wait",
            32768,
        ),
    ] {
        // The parent's pages and the child's copies.
        if !fits(b, 2 * pages, &[cow, total]) {
            continue;
        }
        let len = pages * PAGE;
        let buf = map(len, F::anonymous_private());
        for off in (0..len).step_by(PAGE) {
            touch(buf + off, 1);
        }
        let n = b.run(|whole| {
            write(shm, 0);
            let t0 = rdtsc();
            let pid = vm.fork().unwrap_or_else(|_| fatal("fork"));
            if pid == 0 {
                let a = rdtsc();
                for i in 0..pages {
                    touch(buf + i * PAGE, 2);
                }
                let e = rdtsc();
                write(shm, e - a);
                exit(0);
            }
            if vm.wait(pid).is_err() {
                fatal("wait");
            }
            *whole = rdtsc() - t0;
            read(shm) / pages as u64
        });
        b.first(cow, n);
        b.second(total, n);
        unmap(buf, len);
    }
    unmap(shm, PAGE);

    const WP_PAGES: usize = 256;
    let buf = map(WP_PAGES * PAGE, F::anonymous_private());
    for i in 0..WP_PAGES {
        touch(buf + i * PAGE, 1);
    }
    let n = b.run(|_| {
        let pid = vm.fork().unwrap_or_else(|_| fatal("fork"));
        if pid == 0 {
            exit(0);
        }
        if vm.wait(pid).is_err() {
            fatal("wait");
        }
        let t0 = rdtsc();
        for i in 0..WP_PAGES {
            touch(buf + i * PAGE, 3);
        }
        (rdtsc() - t0) / WP_PAGES as u64
    });
    b.first("s_wp_reuse_fault_per_page", n);
    unmap(buf, WP_PAGES * PAGE);

    for (name, r) in [
        ("s_fork_exit_wait_R1", 1),
        ("s_fork_exit_wait_R1000", 1000),
        ("s_fork_exit_wait_R10000", 10000),
    ] {
        let p = striped(r);
        println!("INFO {}: {} regions in the process", name, regions_now());
        let n = fork_exit_wait(b);
        b.first(name, n);
        unmap(p, r * PAGE);
    }

    // The R1 toggle again, now that the process has forked.
    let p = striped(3);
    touch(p + PAGE, 1);
    let n = mprotect_toggle(b, p + PAGE);
    b.first("s_mprotect_toggle_R1_afterfork", n);
    unmap(p, 3 * PAGE);
}

/// The rows over the number of other processes alive, blocked: the IPC round trip to memd and
/// fork + exit + wait.
fn processes(b: &mut Bench) {
    let vm = vm();
    let ready = map(PAGE, F::anonymous_shared());
    let mut kids = [0u64; MAX_BLOCKED];
    let mut alive = 0;
    for (rtt, fork, procs) in [
        ("s_pipe_rtt_P0", "s_fork_exit_wait_nocow_P0", 0),
        ("s_pipe_rtt_P8", "s_fork_exit_wait_nocow_P8", 8),
        ("s_pipe_rtt_P24", "s_fork_exit_wait_nocow_P24", MAX_BLOCKED),
    ] {
        while alive < procs {
            let pid = vm.fork().unwrap_or_else(|_| fatal("fork blocked child"));
            if pid == 0 {
                blocked(ready, alive);
            }
            kids[alive] = pid;
            alive += 1;
        }
        // Until every child has reached its `ipc_receive` (or is about to).
        while (0..alive).any(|i| read(ready + i * 8) == 0) {
            yield_now();
            core::hint::spin_loop();
        }
        // A request memd decodes and refuses, as `g_ipc_rtt_memd`.
        let n = b.run(|_| ipc_rtt());
        b.first(rtt, n);
        let n = fork_exit_wait(b);
        b.first(fork, n);
    }
    for &pid in &kids[..alive] {
        if vm.kill(pid).is_err() || vm.wait(pid).is_err() {
            fatal("kill blocked child");
        }
    }
    unmap(ready, PAGE);
}
