//! Sets the RFLAGS bits a ring-3 program controls (NT, AC, ID, DF; IOPL it cannot) with
//! `popfq` and makes system calls while another program is runnable, so the kernel switches
//! between a `sysretq` and an `iretq` return with those bits in play. The kernel must keep
//! running, and every return to ring 3 must clear NT (and leave IOPL 0) while keeping the
//! harmless bits (AC, ID, DF) the program set. Then NT is set once more and the program spins
//! without a system call: the return from the next timer interrupt must clear it too.
//!
//! Boot it beside a program that stays runnable (`spinner`).
#![no_std]
#![no_main]

use core::arch::asm;
use user_rt::*;

entry!(main);

const DF: u64 = 1 << 10;
const IOPL: u64 = 3 << 12;
const NT: u64 = 1 << 14;
const AC: u64 = 1 << 18;
const ID: u64 = 1 << 21;

/// Sets `bits` in RFLAGS with `popfq`, makes system call `n` with no arguments, reads RFLAGS
/// right after it, and clears DF, AC, NT and ID again before any compiled code runs: the
/// result of the call and RFLAGS as the kernel returned them.
fn syscall_with_flags(n: u64, bits: u64) -> (i64, u64) {
    let (ret, after): (i64, u64);
    // SAFETY: the flags are changed only inside this block, and restored (DF clear, as the
    // Rust ABI requires) before it ends; the system call has no pointer argument and clobbers
    // only rax, rcx and r11, declared.
    unsafe {
        asm!(
            "pushfq",
            "or qword ptr [rsp], {bits}",
            "popfq",
            "syscall",
            "pushfq",
            "pop {after}",
            "pushfq",
            "and qword ptr [rsp], {keep}",
            "popfq",
            bits = in(reg) bits,
            keep = in(reg) !(DF | NT | AC | ID),
            after = out(reg) after,
            inlateout("rax") n as i64 => ret,
            in("rdi") 0u64, in("rsi") 0u64, in("rdx") 0u64,
            lateout("rcx") _, lateout("r11") _,
        );
    }
    (ret, after)
}

/// Sets NT and spins (no system call, `pause` in the loop) until RFLAGS shows it clear or
/// `spins` iterations pass: the iterations it took, or `None`.
fn spin_until_nt_cleared(spins: u64) -> Option<u64> {
    let left: u64;
    // SAFETY: only RFLAGS.NT changes (harmless in ring 3 unless `iret` runs, which this code
    // does not), and it is cleared again before the block ends.
    unsafe {
        asm!(
            "pushfq",
            "or qword ptr [rsp], {nt}",
            "popfq",
            "2:",
            "pause",
            "pushfq",
            "test qword ptr [rsp], {nt}",
            "lea rsp, [rsp + 8]",
            "jz 3f",
            "dec {left}",
            "jnz 2b",
            "3:",
            "pushfq",
            "and qword ptr [rsp], {keep}",
            "popfq",
            nt = in(reg) NT,
            keep = in(reg) !NT,
            left = inout(reg) spins => left,
        );
    }
    (left != 0).then_some(spins - left)
}

fn main(_: Start) -> u64 {
    let rounds = 200;
    for i in 0..rounds {
        let (r, after) = syscall_with_flags(nr::YIELD, NT);
        check!(r == 0, "yield {} with NT set returned {}", i, r);
        check!(
            after & NT == 0,
            "yield {}: NT still set after the return: rflags {:#x}",
            i,
            after
        );
    }
    println!("ntflag: {} yields with NT set, NT clear after each", rounds);

    let (r, after) = syscall_with_flags(nr::YIELD, NT | AC | ID | DF | IOPL);
    check!(r == 0, "yield with NT AC ID DF IOPL returned {}", r);
    check!(
        after & (NT | IOPL) == 0,
        "NT or IOPL set after the return: rflags {:#x}",
        after
    );
    check!(
        after & (AC | ID | DF) == AC | ID | DF,
        "AC, ID or DF lost across the call: rflags {:#x}",
        after
    );
    let (t, after) = syscall_with_flags(nr::CLOCK, NT | AC);
    check!(t > 0, "clock with NT and AC set returned {}", t);
    check!(
        after & (NT | AC) == AC,
        "clock: rflags {:#x} after the return",
        after
    );
    println!("ntflag: AC, ID and DF kept, NT and IOPL clear");

    match spin_until_nt_cleared(200_000_000) {
        Some(n) => println!(
            "ntflag: NT cleared by an interrupt return after {} spins",
            n
        ),
        None => check!(
            false,
            "NT still set after 200,000,000 spins across interrupts"
        ),
    }
    println!("PASS ntflag");
    0
}
