//! The memory benchmark, shared by `vmbench` (the full run) and `vmbench_quick` (a smoke run
//! for the QEMU tests): the figures of the Linux peer's `vmbench.c`, measured the same way.
//!
//! Timing ([`user_rt::bench`]): `lfence; rdtsc; lfence` around each operation. Under QEMU TCG
//! with `-icount shift=0` the TSC advances one tick per guest instruction, so `med_cyc` is the
//! median number of guest instructions per operation. Each figure: a warm-up of [`FULL`]'s
//! `warm` ticks, then operations until its `target` ticks have passed (or the sample buffer is
//! full); median and 99th percentile of the per-operation samples. The lines read
//! `RESULT <name> med_cyc=<n> p99_cyc=<n> med_ns=<x> p99_ns=<x> n=<n>`, as the peer's do.
//!
//! Our operations for the peer's: the null system call is `clock` (Linux: `getppid`); the IPC
//! round trip is a call to memd with an opcode it refuses (decoded, answered with an error:
//! a full request/reply through the pager's receive loop; Linux: pipe and futex ping-pong);
//! mmap/munmap/mprotect/brk/fork/wait are libvm's calls to memd.

use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::bench::{
    Bench, Driver, buffer, calibrate, fatal, fork_exit_wait, ipc_rtt, map, rdtsc, release, touch,
    unmap,
};
use user_rt::*;

const PAGE: usize = 4096;
const MB1: usize = 1 << 20;
/// Pages of the copy-on-write figure (the peer's `cow_pages`).
const COW_PAGES: usize = 256;

/// How long each figure runs.
struct Mode {
    /// Warm-up and measurement (the peer's `run_bench`: no forced warm-up operation, one
    /// sample at least).
    driver: Driver,
    /// Samples per figure (the buffers' size).
    max_samples: usize,
    /// Calibrate the TSC against the kernel's clock (else assume 1 tick per ns).
    calibrate: bool,
}

/// The full run: the peer's 20 ms warm-up and 0.2 s of measurement (at one tick per ns).
const FULL: Mode = Mode {
    driver: Driver::FIXED,
    max_samples: 1 << 18,
    calibrate: true,
};

/// A smoke run: every figure, a few operations each.
const QUICK: Mode = Mode {
    driver: Driver::QUICK,
    max_samples: 1 << 12,
    calibrate: false,
};

/// Runs every figure and prints its line: the full run, or a smoke run when `quick`.
pub fn run(quick: bool) -> u64 {
    let mode = if quick { QUICK } else { FULL };
    println!("VMBENCH_BEGIN");
    let ghz = if mode.calibrate { calibrate() } else { 1.0 };
    println!("INFO tsc_ghz: {:.4}", ghz);
    let mut b = Bench {
        driver: mode.driver,
        ghz,
        s: buffer(mode.max_samples),
        s2: buffer(mode.max_samples),
    };
    let vm = vm();

    let n = b.run(|_| {
        let t0 = rdtsc();
        rdtsc() - t0
    });
    b.first("timer_overhead", n);

    let n = b.run(|_| {
        let t0 = rdtsc();
        core::hint::black_box(clock());
        rdtsc() - t0
    });
    b.first("h_getppid", n);

    // A request memd decodes and refuses: the bare round trip through its receive loop.
    let n = b.run(|_| ipc_rtt());
    b.first("g_ipc_rtt_memd", n);

    let n = b.run(|_| {
        let t0 = rdtsc();
        let p = map(PAGE, F::anonymous_private());
        let r = vm.munmap(p, PAGE);
        let t1 = rdtsc();
        if r.is_err() {
            fatal("munmap");
        }
        t1 - t0
    });
    b.first("a_mmap4k_munmap", n);

    let n = b.run(|_| {
        let t0 = rdtsc();
        let p = map(PAGE, F::anonymous_private());
        touch(p, 1);
        let r = vm.munmap(p, PAGE);
        let t1 = rdtsc();
        if r.is_err() {
            fatal("munmap");
        }
        t1 - t0
    });
    b.first("a2_mmap4k_touch_munmap", n);

    let n = b.run(|per_page| {
        let t0 = rdtsc();
        let p = map(MB1, F::anonymous_private());
        let ta = rdtsc();
        for off in (0..MB1).step_by(PAGE) {
            touch(p + off, 1);
        }
        let tb = rdtsc();
        let r = vm.munmap(p, MB1);
        let t1 = rdtsc();
        if r.is_err() {
            fatal("munmap");
        }
        *per_page = (tb - ta) / (MB1 / PAGE) as u64;
        t1 - t0
    });
    b.first("b_mmap1m_touch_munmap_total", n);
    for x in &mut b.s[..n] {
        *x /= (MB1 / PAGE) as u64;
    }
    b.first("b_per_page_incl_mmap_munmap", n);
    b.second("b_touch_fault_per_page", n);

    {
        let p = map(PAGE, F::anonymous_private());
        touch(p, 1);
        let mut state = false;
        let n = b.run(|_| {
            let prot = if state { P::READ_WRITE } else { P::READ };
            let t0 = rdtsc();
            let r = vm.mprotect(p, PAGE, prot);
            let t1 = rdtsc();
            if r.is_err() {
                fatal("mprotect");
            }
            state = !state;
            t1 - t0
        });
        b.first("c_mprotect_toggle_4k", n);
        unmap(p, PAGE);
    }
    {
        let p = map(256 * PAGE, F::anonymous_private());
        for i in 0..256 {
            touch(p + i * PAGE, 1);
        }
        let mid = p + 96 * PAGE;
        let n = b.run(|merge| {
            let t0 = rdtsc();
            let r1 = vm.mprotect(mid, 64 * PAGE, P::READ);
            let t1 = rdtsc();
            let r2 = vm.mprotect(mid, 64 * PAGE, P::READ_WRITE);
            let t2 = rdtsc();
            if r1.is_err() || r2.is_err() {
                fatal("mprotect split/merge");
            }
            *merge = t2 - t1;
            t1 - t0
        });
        b.first("d_mprotect64_split", n);
        b.second("d_mprotect64_merge", n);
        unmap(p, 256 * PAGE);
    }
    {
        let base = vm.brk(0).unwrap_or_else(|_| fatal("brk"));
        let n = b.run(|shrink| {
            let t0 = rdtsc();
            let r = vm.brk(base + PAGE);
            let t1 = rdtsc();
            let r2 = vm.brk(base);
            let t2 = rdtsc();
            if r != Ok(base + PAGE) || r2 != Ok(base) {
                fatal("brk");
            }
            *shrink = t2 - t1;
            t1 - t0
        });
        b.first("e_brk_grow4k", n);
        b.second("e_brk_shrink4k", n);
    }
    {
        // The peer keeps its sample buffers out of forked children (MADV_DONTFORK), so fork
        // measures a small process: ours shrink to a few pages for the fork figures.
        release(b.s);
        release(b.s2);
        b.s = buffer(4096);
        b.s2 = buffer(4096);
        let len = COW_PAGES * PAGE;
        let buf = map(len, F::anonymous_private());
        let shm = map(PAGE, F::anonymous_shared()) as *mut u64;
        for off in (0..len).step_by(PAGE) {
            touch(buf + off, 1);
        }
        let n = b.run(|total| {
            // SAFETY: `shm` is a shared read/write page of ours (and the child's).
            unsafe { shm.write_volatile(0) };
            let t0 = rdtsc();
            let pid = vm.fork().unwrap_or_else(|_| fatal("fork"));
            if pid == 0 {
                let a = rdtsc();
                for i in 0..COW_PAGES {
                    touch(buf + i * PAGE, 2);
                }
                let e = rdtsc();
                // SAFETY: as above.
                unsafe { shm.write_volatile(e - a) };
                exit(0);
            }
            if vm.wait(pid).is_err() {
                fatal("wait");
            }
            let t1 = rdtsc();
            *total = t1 - t0;
            // SAFETY: as above.
            unsafe { shm.read_volatile() / COW_PAGES as u64 }
        });
        b.first("f_cow_fault_per_page", n);
        b.second("f_fork_cow256_exit_wait", n);
        let n = b.run(|_| fork_exit_wait());
        b.first("f_fork_exit_wait_nocow", n);
        unmap(buf, len);
        unmap(shm as usize, PAGE);
    }
    println!("VMBENCH_END");
    0
}
