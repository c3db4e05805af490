//! Unmasks the x87 divide-by-zero exception and divides by zero: the next waiting x87
//! instruction, `fwait`, raises the x87 floating-point exception (#MF, vector 16) and the
//! kernel kills it there.
//!
//! It first prints `x87fault: badge B, rip R`, R being the RIP the kernel must report; the
//! QEMU tests check the kill line, the exit notice and memd's `WAIT` status against it.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

core::arch::global_asm!(
    ".pushsection .text",
    ".global x87fault_raise",
    "x87fault_raise:",
    "    sub rsp, 8",
    "    fnstcw [rsp]",
    "    and word ptr [rsp], ~0x4",
    "    fldcw [rsp]",
    "    mov dword ptr [rsp + 4], 0",
    "    fld1",
    "    fdiv dword ptr [rsp + 4]",
    ".global x87fault_rip",
    "x87fault_rip:",
    "    fwait",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    /// Raises the exception; never returns.
    fn x87fault_raise() -> !;
    /// Where the CPU's saved RIP points: the `fwait`, which raises the pending #MF.
    static x87fault_rip: u8;
}

fn main(start: Start) -> u64 {
    println!(
        "x87fault: badge {:#x}, rip {:#x}",
        start.badge, &raw const x87fault_rip as u64
    );
    // SAFETY: deliberately faulting: the exception kills this process, nothing after it runs.
    unsafe { x87fault_raise() }
}
