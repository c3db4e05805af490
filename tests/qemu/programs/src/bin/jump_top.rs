//! Jumps to the end of the user half (0x0000_8000_0000_0000, the first non-canonical address):
//! the fault kills this process, and a pager that resumes it anyway cannot make the kernel
//! return there.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    println!("jump_top: jumping to 0x800000000000");
    // SAFETY: deliberately faulting: the target is not a canonical address, so the jump
    // raises #GP and the process is killed; nothing after it runs.
    unsafe { core::arch::asm!("jmp {}", in(reg) 0x0000_8000_0000_0000u64, options(noreturn)) }
}
