//! The backtrace of a ring-0 fault or a kernel panic, by the chain of frame pointers.
//!
//! The bare-metal crates are built with `-C force-frame-pointers=yes` (the target's
//! `rustflags` in `.cargo/config.toml`): every function's prologue pushes rbp and points rbp
//! at that slot, so `[rbp]` is the caller's rbp and `[rbp + 8]` the return address into the
//! caller. (The precompiled `core` may omit them: a function of it in the chain is skipped, or
//! ends the walk where it used rbp for something else.)
//!
//! The walk reads only the kernel's own stacks and never faults: it stops at an rbp of 0 (the
//! entry paths set rbp to 0 before calling Rust: `trap_common` before `dispatch`, the boot
//! trampoline before `kmain_entry`), at an rbp that is unaligned, not inside the kernel stack
//! or the double-fault stack (with room for both words), or not above the one before (no
//! loop), at a return address of 0, and after [`MAX_FRAMES`] lines.
//!
//! The format is fixed (the host runner symbolizes it): a header line, then one line per
//! frame, `#N` and the address as `0x` and 16 hex digits:
//!
//! ```text
//! backtrace (kernel-shim):
//!   #0 0xffffffff80101234
//!   #1 0xffffffff80105678
//! ```
//!
//! `#0` is the faulting instruction (the RIP the CPU saved), or for a panic the return address
//! of the backtrace's own call; every further line is a return address, the instruction after
//! a `call` (symbolize `address - 1` to name the call's line).

use super::boot;
use super::percpu::MAX_RUN_CPUS;
use core::arch::asm;

/// The most lines of a backtrace (`#0` to `#31`).
pub const MAX_FRAMES: usize = 32;

/// Prints the backtrace of a fault at `rip` whose frame pointer was `rbp`.
pub fn print(rip: u64, rbp: u64) {
    kprintln!("backtrace (kernel-shim):");
    kprintln!("  #0 {:#018x}", rip);
    walk(rbp, 1);
}

/// Prints the backtrace of the caller (for a panic): its return addresses, from the caller's
/// own frame on.
#[inline(never)]
pub fn print_here() {
    let rbp: u64;
    // SAFETY: reads the frame-pointer register; no memory is touched.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    kprintln!("backtrace (kernel-shim):");
    walk(rbp, 0);
}

/// Prints `#n` and each return address of the chain from `rbp` on, `n` counting from `first`.
fn walk(mut rbp: u64, first: usize) {
    let mut last = 0;
    for n in first..MAX_FRAMES {
        if rbp <= last || !on_a_kernel_stack(rbp) {
            return;
        }
        // SAFETY: `rbp` is 8-byte aligned and `[rbp, rbp + 16)` lies inside one of the kernel's
        // stacks (checked just above), which are mapped read/write for good.
        let (caller_rbp, ret) = unsafe {
            (
                core::ptr::read_volatile(rbp as *const u64),
                core::ptr::read_volatile((rbp + 8) as *const u64),
            )
        };
        if ret == 0 {
            return;
        }
        kprintln!("  #{} {:#018x}", n, ret);
        last = rbp;
        rbp = caller_rbp;
    }
}

/// Whether the two words at `rbp` (a saved rbp and a return address) lie inside the kernel
/// stack or the double-fault stack, 8-byte aligned.
fn on_a_kernel_stack(rbp: u64) -> bool {
    let inside =
        |bottom: u64, top: u64| rbp >= bottom && rbp.checked_add(16).is_some_and(|end| end <= top);
    rbp.is_multiple_of(8)
        && (0..MAX_RUN_CPUS).any(|cpu| {
            inside(boot::kernel_stack_bottom(cpu), boot::kernel_stack_top(cpu))
                || inside(
                    boot::double_fault_stack_top(cpu) - boot::DOUBLE_FAULT_STACK_SIZE as u64,
                    boot::double_fault_stack_top(cpu),
                )
        })
}
