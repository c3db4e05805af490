//! Executes `int3`: the kernel kills it for a breakpoint (#BP, vector 3); the CPU saves the
//! address after the `int3` (a trap).
//!
//! It first prints `breakpoint: badge B, rip R`, R being the RIP the kernel must report; the
//! QEMU tests check the kill line, the exit notice and memd's `WAIT` status against it.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

core::arch::global_asm!(
    ".pushsection .text",
    ".global breakpoint_raise",
    "breakpoint_raise:",
    "    int3",
    ".global breakpoint_rip",
    "breakpoint_rip:",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    /// Raises the exception; never returns.
    fn breakpoint_raise() -> !;
    /// Where the CPU's saved RIP points: after the `int3`, a trap (#BP).
    static breakpoint_rip: u8;
}

fn main(start: Start) -> u64 {
    println!(
        "breakpoint: badge {:#x}, rip {:#x}",
        start.badge, &raw const breakpoint_rip as u64
    );
    // SAFETY: deliberately faulting: the exception kills this process, nothing after it runs.
    unsafe { breakpoint_raise() }
}
