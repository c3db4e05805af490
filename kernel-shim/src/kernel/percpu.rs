//! What each processor keeps for itself, reached through GS: the top of its kernel stack,
//! the end of the running thread's frame (where an entry from ring 3 starts pushing) and a
//! scratch word for the `syscall` entry, which the entry paths read in assembly at fixed
//! offsets; and its index, which the rest of the kernel reads with [`index`].
//!
//! GS's base is this block's address whenever the kernel runs: at boot each processor writes
//! it ([`install`]); an entry from ring 3 swaps it in with `swapgs` and a return to ring 3
//! swaps it out again (a process's GS base is always 0: no call sets it and `wrgsbase` is
//! off). An entry from ring 0 (an interrupt of an idle processor, a kernel fault) keeps it.

use super::global::Global;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::model_specific::Msr;

/// The most processors the kernel runs on (the others the ACPI tables list stay parked); a
/// power of two.
pub const MAX_RUN_CPUS: usize = 8;
const _: () = assert!(MAX_RUN_CPUS.is_power_of_two());

/// One processor's block.
#[repr(C, align(64))]
pub struct PerCpu {
    /// The top of its kernel stack.
    pub stack_top: u64,
    /// The end of the frame of the thread it runs: where the next entry from ring 3 pushes.
    pub frame_end: u64,
    /// The user stack pointer between `syscall` and the push of the frame.
    pub user_rsp: u64,
    /// Its index, 0 for the booting processor.
    pub index: u64,
    /// How it holds the kernel's mode lock ([`super::lock::Mode`]): written by this
    /// processor, read by one taking the lock exclusive.
    pub mode: AtomicU64,
}

/// Offset of [`PerCpu::stack_top`] (for the entry paths' assembly).
pub const STACK_TOP: usize = offset_of!(PerCpu, stack_top);
/// Offset of [`PerCpu::frame_end`].
pub const FRAME_END: usize = offset_of!(PerCpu, frame_end);
/// Offset of [`PerCpu::user_rsp`].
pub const USER_RSP: usize = offset_of!(PerCpu, user_rsp);
/// Offset of [`PerCpu::index`].
const INDEX: usize = offset_of!(PerCpu, index);
/// Offset of [`PerCpu::mode`].
const MODE: usize = offset_of!(PerCpu, mode);

static BLOCKS: Global<[PerCpu; MAX_RUN_CPUS]> = Global::new(
    [const {
        PerCpu {
            stack_top: 0,
            frame_end: 0,
            user_rsp: 0,
            index: 0,
            mode: AtomicU64::new(0),
        }
    }; MAX_RUN_CPUS],
);

/// The GS base MSR (the kernel's while it runs).
const GS_BASE: u32 = 0xC000_0101;
/// The MSR `swapgs` exchanges with GS's base (a process's GS base, 0, while the kernel runs).
const KERNEL_GS_BASE: u32 = 0xC000_0102;

/// Makes block `index` this processor's (`index` < [`MAX_RUN_CPUS`]) with kernel stack top
/// `stack_top`. Call once per processor at its start, before it enables interrupts or goes to
/// ring 3.
pub fn install(index: usize, stack_top: u64) {
    // SAFETY: each processor writes only its own block, once, before anything reads it (the
    // entry paths read it only once this processor runs threads); the block lives for good.
    let block = unsafe { &mut (*BLOCKS.as_ptr())[index] };
    block.stack_top = stack_top;
    block.index = index as u64;
    block.frame_end = stack_top;
    // SAFETY: the MSRs exist on every x86_64 processor; GS's base becomes a valid block for
    // the rest of the kernel's life, and the swapped-in value for ring 3 is 0.
    unsafe {
        Msr::new(GS_BASE).write(block as *mut PerCpu as u64);
        Msr::new(KERNEL_GS_BASE).write(0);
    }
}

/// The index of the processor running this (0 to [`MAX_RUN_CPUS`] - 1).
#[inline(always)]
pub fn index() -> usize {
    let i: u64;
    // SAFETY: GS's base is this processor's block whenever the kernel runs (module doc); the
    // load reads its index word.
    unsafe {
        core::arch::asm!("mov {}, gs:[{}]", out(reg) i, const INDEX,
                         options(nostack, readonly, preserves_flags))
    };
    // The mask is a no-op (the index is below the power of two MAX_RUN_CPUS) that lets the
    // compiler drop the bounds checks of the per-CPU tables indexed with it.
    i as usize & (MAX_RUN_CPUS - 1)
}

/// This processor's mode word ([`super::lock`]'s).
#[inline(always)]
pub fn mode() -> u64 {
    let m: u64;
    // SAFETY: as in `index`; the word is this processor's own.
    unsafe {
        core::arch::asm!("mov {}, gs:[{}]", out(reg) m, const MODE,
                         options(nostack, readonly, preserves_flags))
    };
    m
}

/// Sets this processor's mode word (a release store: what this processor wrote before is
/// visible to whoever sees the new word).
#[inline(always)]
pub fn set_mode(m: u64) {
    // SAFETY: as in `index`; the word is this processor's own. An aligned `mov` is an atomic
    // release store on x86_64, and the asm (which may touch memory) orders the compiler too.
    unsafe {
        core::arch::asm!("mov gs:[{}], {}", const MODE, in(reg) m,
                         options(nostack, preserves_flags))
    };
}

/// Sets this processor's mode word with a full fence after it (`xchg`): loads this processor
/// makes next come after the store, for every processor.
#[inline(always)]
pub fn set_mode_fenced(m: u64) {
    // SAFETY: as in `set_mode`; `xchg` with memory is locked, a full barrier.
    unsafe {
        core::arch::asm!("xchg gs:[{}], {}", const MODE, inout(reg) m => _,
                         options(nostack, preserves_flags))
    };
}

/// The mode word of processor `cpu` (a sequentially consistent load).
pub fn mode_of(cpu: usize) -> u64 {
    // SAFETY: a reference to the atomic word alone (the block's other words are its
    // processor's); blocks live for good, and `install` (the one `&mut` to a block) runs while
    // the booting processor holds the mode lock exclusive, before anyone reads the word.
    unsafe { (*core::ptr::addr_of!((*BLOCKS.as_ptr())[cpu].mode)).load(Ordering::SeqCst) }
}

/// Sets where this processor's next entry from ring 3 starts pushing its frame.
#[inline(always)]
pub fn set_frame_end(end: u64) {
    // SAFETY: as in `index`; the word is this processor's own, read only by its entries.
    unsafe {
        core::arch::asm!("mov gs:[{}], {}", const FRAME_END, in(reg) end,
                         options(nostack, preserves_flags))
    };
}
