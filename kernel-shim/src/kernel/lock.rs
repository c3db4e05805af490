//! The kernel lock: one ticket lock over all kernel state ([`super::state::Kernel`]), taken
//! at every entry before the state is touched and given back just before the return to ring 3
//! (or before an idle processor halts), as seL4 does on many processors. Kernel entries are
//! short and never block, so one lock costs little and leaves no lock order to get wrong.
//!
//! A processor waiting for the lock keeps answering TLB shootdowns
//! ([`super::shootdown::service`]): the holder may be waiting for its answer.

use core::sync::atomic::{AtomicU32, Ordering};

/// The next ticket to hand out.
static NEXT: AtomicU32 = AtomicU32::new(0);
/// The ticket whose holder may enter.
static SERVING: AtomicU32 = AtomicU32::new(0);

/// Takes the lock (interrupts are off in the kernel, so the wait is not interrupted: it
/// answers shootdowns itself and executes `pause` each round).
#[inline(always)]
pub fn acquire() {
    let ticket = NEXT.fetch_add(1, Ordering::Relaxed);
    while SERVING.load(Ordering::Acquire) != ticket {
        super::shootdown::service();
        core::hint::spin_loop();
    }
}

/// Gives the lock back (its holder's writes are visible to the next holder).
#[inline(always)]
pub fn release() {
    SERVING.fetch_add(1, Ordering::Release);
}
