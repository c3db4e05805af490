//! Measurement for the benchmark programs (`vmbench`, `vmscaled`), the Linux peer's method:
//! `lfence; rdtsc; lfence` around each operation. Under QEMU TCG with `-icount shift=0` the TSC
//! advances one tick per guest instruction, so `med_cyc` is the median number of guest
//! instructions per operation. Each figure prints
//! `RESULT <name> med_cyc=<n> p99_cyc=<n> med_ns=<x> p99_ns=<x> n=<n>`, as the peer's do.

use crate::{clock, exit, println, vm};
use libvm::{MmapFlags, ProtectionFlags};

/// The time-stamp counter, fenced on both sides (the peer's `rdtsc_f`).
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence and rdtsc only read the time-stamp counter (CR4.TSD is clear).
    unsafe {
        core::arch::asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi,
                         options(nostack, preserves_flags));
    }
    (hi as u64) << 32 | lo as u64
}

/// Writes the byte `v` at `addr` (the peer's `volatile char` store).
#[inline]
pub fn touch(addr: usize, v: u8) {
    // SAFETY: the benchmarks write only memory they mapped writable.
    unsafe { core::ptr::write_volatile(addr as *mut u8, v) }
}

/// One timed round trip to memd with a request it decodes and refuses (the bare way through
/// its receive loop); `FATAL` if the kernel refuses the call.
pub fn ipc_rtt() -> u64 {
    let t0 = rdtsc();
    let (st, _, _) = crate::ipc_call(crate::PAGER_ENDPOINT, &[0; 8], &mut []);
    let t1 = rdtsc();
    if st != 0 {
        fatal("ipc call");
    }
    t1 - t0
}

/// One timed fork, exit of the child at once, and wait for it; `FATAL` if a call fails.
pub fn fork_exit_wait() -> u64 {
    let vm = vm();
    let t0 = rdtsc();
    let pid = vm.fork().unwrap_or_else(|_| fatal("fork"));
    if pid == 0 {
        exit(0);
    }
    if vm.wait(pid).is_err() {
        fatal("wait");
    }
    rdtsc() - t0
}

/// Prints `FATAL what` and ends the program with status 1.
pub fn fatal(what: &str) -> ! {
    println!("FATAL {}", what);
    exit(1)
}

/// Maps `len` bytes read/write with `flags` where memd places them; `FATAL` if it refuses.
#[inline]
pub fn map(len: usize, flags: MmapFlags) -> usize {
    match vm().mmap(0, len, ProtectionFlags::READ_WRITE, flags) {
        Ok(a) => a,
        Err(_) => fatal("mmap"),
    }
}

/// Unmaps `len` bytes at `addr`, a mapping the benchmark made; `FATAL` if memd refuses.
pub fn unmap(addr: usize, len: usize) {
    if vm().munmap(addr, len).is_err() {
        fatal("munmap");
    }
}

/// A sample buffer of `n` words, mapped and populated.
pub fn buffer(n: usize) -> &'static mut [u64] {
    let a = map(n * 8, MmapFlags::anonymous_private().populate());
    // SAFETY: `a` is a fresh read/write mapping of `n` words that nothing else refers to and
    // that the benchmarks never unmap while the slice lives (see `release`).
    unsafe { core::slice::from_raw_parts_mut(a as *mut u64, n) }
}

/// Unmaps a buffer of [`buffer`]'s, which its caller no longer uses.
pub fn release(b: &mut [u64]) {
    unmap(b.as_mut_ptr() as usize, b.len() * 8);
}

/// TSC ticks per nanosecond of the kernel's clock (1 ms steps), over 20 ms.
pub fn calibrate() -> f64 {
    let c0 = clock();
    while clock() == c0 {
        core::hint::spin_loop();
    }
    let (n0, t0) = (clock(), rdtsc());
    while clock() - n0 < 20_000_000 {
        core::hint::spin_loop();
    }
    let (n1, t1) = (clock(), rdtsc());
    (t1 - t0) as f64 / (n1 - n0) as f64
}

/// How many operations a figure runs.
pub struct Driver {
    /// Operations before the first sample: at least one when set (the peer's scaled rows),
    /// else none (its fixed rows), then more until [`Driver::warm`] ticks have passed.
    pub warm_once: bool,
    /// Warm-up, in TSC ticks (guest instructions under icount).
    pub warm: u64,
    /// Measurement, in TSC ticks: operations until this many have passed...
    pub target: u64,
    /// ... and at least this many samples (or the sample buffer is full).
    pub min: usize,
}

impl Driver {
    /// The peer's fixed rows: no warm-up operation of its own, 20 ms of warm-up, then 0.2 s of
    /// operations (at one tick per ns).
    pub const FIXED: Driver = Driver {
        warm_once: false,
        warm: 20_000_000,
        target: 200_000_000,
        min: 1,
    };
    /// A smoke run: every figure, a few operations each.
    pub const QUICK: Driver = Driver {
        warm_once: false,
        warm: 100_000,
        target: 1_000_000,
        min: 1,
    };
}

/// A figure's driver, its two sample buffers and the TSC rate for the `_ns` columns.
pub struct Bench {
    /// How each figure runs.
    pub driver: Driver,
    /// TSC ticks per nanosecond.
    pub ghz: f64,
    /// The samples `op` returns.
    pub s: &'static mut [u64],
    /// The secondary samples `op` sets (e.g. a per-page figure of the same operation).
    pub s2: &'static mut [u64],
}

impl Bench {
    /// Runs `op` (which returns its own tick count and may set a secondary sample) as the
    /// peer's `run_bench` (or `run_scaled`) does; returns the sample count.
    pub fn run(&mut self, mut op: impl FnMut(&mut u64) -> u64) -> usize {
        let warm_end = rdtsc() + self.driver.warm;
        let mut dummy = 0;
        if self.driver.warm_once {
            op(&mut dummy);
        }
        while rdtsc() < warm_end {
            op(&mut dummy);
        }
        let end = rdtsc() + self.driver.target;
        let max = self.s.len().min(self.s2.len());
        let mut n = 0;
        while n < max {
            let mut sec = 0;
            self.s[n] = op(&mut sec);
            self.s2[n] = sec;
            n += 1;
            if n >= self.driver.min && rdtsc() >= end {
                break;
            }
        }
        n
    }

    /// Prints the `RESULT` line of `name` from samples `s` (sorting them), `n/a` if none.
    pub fn report(&self, name: &str, s: &mut [u64]) {
        if s.is_empty() {
            println!("RESULT {:<28} n/a", name);
            return;
        }
        s.sort_unstable();
        let n = s.len();
        let med = s[n / 2];
        let p99 = s[((n as f64 * 0.99) as usize).min(n - 1)];
        println!(
            "RESULT {:<28} med_cyc={:<9} p99_cyc={:<9} med_ns={:<10.1} p99_ns={:<10.1} n={}",
            name,
            med,
            p99,
            med as f64 / self.ghz,
            p99 as f64 / self.ghz,
            n
        );
    }

    /// Reports the first `n` samples as `name`.
    pub fn first(&mut self, name: &str, n: usize) {
        let s = core::mem::take(&mut self.s);
        self.report(name, &mut s[..n]);
        self.s = s;
    }

    /// Reports the first `n` secondary samples as `name`.
    pub fn second(&mut self, name: &str, n: usize) {
        let s = core::mem::take(&mut self.s2);
        self.report(name, &mut s[..n]);
        self.s2 = s;
    }
}
