//! Keeps its badge in xmm0..xmm3 across ~0.3 s of preemptions; another copy of this program
//! does the same with another value. Each finds its own values intact.
#![no_std]
#![no_main]

use core::arch::asm;
use user_rt::*;

entry!(main);

fn main(start: Start) -> u64 {
    let v = start.badge ^ 0x5A5A_0000_0000;
    let t0 = clock();
    let mut rounds = 0u64;
    while clock() - t0 < 300_000_000 {
        let (a, b): (u64, u64);
        // SAFETY: only xmm registers are touched, declared as clobbered.
        unsafe {
            asm!("movq xmm0, {v}", "movq xmm3, {v}", "pause", "pause", "movq {a}, xmm0", "movq {b}, xmm3",
                 v = in(reg) v, a = out(reg) a, b = out(reg) b, out("xmm0") _, out("xmm3") _);
        }
        check!(
            a == v && b == v,
            "xmm state clobbered: {:#x} {:#x} want {:#x}",
            a,
            b,
            v
        );
        let c: u64;
        // SAFETY: as above; the value stays in xmm1 across a system call (which may switch).
        unsafe {
            asm!("movq xmm1, {v}", v = in(reg) v, out("xmm1") _);
        }
        yield_now();
        // SAFETY: as above.
        unsafe { asm!("movq {c}, xmm1", c = out(reg) c) };
        check!(c == v, "xmm1 lost across a switch: {:#x} want {:#x}", c, v);
        rounds += 1;
    }
    println!("PASS fpu {:#x} ({} rounds)", start.badge, rounds);
    0
}
