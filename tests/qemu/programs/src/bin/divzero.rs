//! Divides by zero: the kernel kills it for a divide error (#DE, vector 0), at the `div`.
//!
//! It first prints `divzero: badge B, rip R`, R being the RIP the kernel must report; the
//! QEMU tests check the kill line, the exit notice and memd's `WAIT` status against it.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

core::arch::global_asm!(
    ".pushsection .text",
    ".global divzero_raise",
    "divzero_raise:",
    "    xor ecx, ecx",
    "    mov eax, 1",
    "    xor edx, edx",
    ".global divzero_rip",
    "divzero_rip:",
    "    div ecx",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    /// Raises the exception; never returns.
    fn divzero_raise() -> !;
    /// Where the CPU's saved RIP points: the `div`, which raises #DE.
    static divzero_rip: u8;
}

fn main(start: Start) -> u64 {
    println!(
        "divzero: badge {:#x}, rip {:#x}",
        start.badge, &raw const divzero_rip as u64
    );
    // SAFETY: deliberately faulting: the exception kills this process, nothing after it runs.
    unsafe { divzero_raise() }
}
