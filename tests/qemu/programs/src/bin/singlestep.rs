//! Sets the trap flag: the instruction after `popfq` runs, then the single-step trap kills it
//! (#DB, vector 1); the CPU saves the address of the next instruction.
//!
//! It first prints `singlestep: badge B, rip R`, R being the RIP the kernel must report;
//! the QEMU tests check the kill line, the exit notice and memd's `WAIT` status against it.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

core::arch::global_asm!(
    ".pushsection .text",
    ".global singlestep_raise",
    "singlestep_raise:",
    "    pushfq",
    "    or qword ptr [rsp], 0x100",
    "    popfq",
    "    nop",
    ".global singlestep_rip",
    "singlestep_rip:",
    "    ud2",
    ".popsection",
);

unsafe extern "C" {
    /// Raises the exception; never returns.
    fn singlestep_raise() -> !;
    /// Where the CPU's saved RIP points: after the `nop`, where the single-step trap is taken.
    static singlestep_rip: u8;
}

fn main(start: Start) -> u64 {
    println!(
        "singlestep: badge {:#x}, rip {:#x}",
        start.badge, &raw const singlestep_rip as u64
    );
    // SAFETY: deliberately faulting: the exception kills this process, nothing after it runs.
    unsafe { singlestep_raise() }
}
