//! Executes `ud2`: the kernel kills it for an invalid opcode (#UD, vector 6), at the `ud2`.
//!
//! It first prints `badopcode: badge B, rip R`, R being the RIP the kernel must report; the
//! QEMU tests check the kill line, the exit notice and memd's `WAIT` status against it.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

core::arch::global_asm!(
    ".pushsection .text",
    ".global badopcode_raise",
    "badopcode_raise:",
    ".global badopcode_rip",
    "badopcode_rip:",
    "    ud2",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    /// Raises the exception; never returns.
    fn badopcode_raise() -> !;
    /// Where the CPU's saved RIP points: the `ud2`, which raises #UD.
    static badopcode_rip: u8;
}

fn main(start: Start) -> u64 {
    println!(
        "badopcode: badge {:#x}, rip {:#x}",
        start.badge, &raw const badopcode_rip as u64
    );
    // SAFETY: deliberately faulting: the exception kills this process, nothing after it runs.
    unsafe { badopcode_raise() }
}
