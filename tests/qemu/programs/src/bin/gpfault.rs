//! Executes `hlt` in ring 3: the kernel kills it for a general protection fault (#GP,
//! vector 13), at the `hlt`.
//!
//! It first prints `gpfault: badge B, rip R`, R being the RIP the kernel must report; the
//! QEMU tests check the kill line, the exit notice and memd's `WAIT` status against it.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

core::arch::global_asm!(
    ".pushsection .text",
    ".global gpfault_raise",
    "gpfault_raise:",
    ".global gpfault_rip",
    "gpfault_rip:",
    "    hlt",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    /// Raises the exception; never returns.
    fn gpfault_raise() -> !;
    /// Where the CPU's saved RIP points: the `hlt`, which raises #GP in ring 3.
    static gpfault_rip: u8;
}

fn main(start: Start) -> u64 {
    println!(
        "gpfault: badge {:#x}, rip {:#x}",
        start.badge, &raw const gpfault_rip as u64
    );
    // SAFETY: deliberately faulting: the exception kills this process, nothing after it runs.
    unsafe { gpfault_raise() }
}
