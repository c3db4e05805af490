//! The kernel's locks.
//!
//! **Shared and exclusive entries.** Every kernel entry holds the kernel *mode* lock until
//! its return to ring 3 (or until its processor halts), in one of two modes:
//!
//! - *Shared* ([`enter_shared`]): the entries of the fault path and of IPC — a fault sent to
//!   the pager, `ipc_call`, `ipc_receive`, `ipc_reply`, `ipc_reply_receive`, `space_apply`,
//!   `space_apply1`, the timer tick, a reschedule — run on every processor at once. They
//!   touch only what a finer lock guards, or what they own: an endpoint's queues and the
//!   threads blocked on it under the endpoint's lock, a space's page tables and reserve under
//!   the space's lock, the run queue under its lock, the kernel pool under its lock, their
//!   processor's own record, the thread they run.
//! - *Exclusive* ([`acquire`]): everything else (creating and ending threads, spaces and
//!   endpoints, killing, futexes, copies between spaces) runs alone, as on one processor: no
//!   shared entry is in progress while it runs, so it reaches all kernel state directly.
//!
//! A shared entry that finds it must do more (a reply that kills a process, a fault with no
//! pager) changes nothing and is run again, from the start, in exclusive mode.
//!
//! The mode lock is a big-reader lock (as Linux's per-CPU rw-semaphore): a shared entry
//! writes only its processor's own mode word (in its per-CPU block), so shared entries never
//! contend for a cache line; an exclusive entry raises [`EXCLUSIVE`] and waits until no
//! processor's word says shared.
//!
//! A processor that spins here — for the mode lock or for a [`SpinLock`] — keeps answering
//! TLB shootdowns ([`super::shootdown::service`]): whoever holds what it waits for may be
//! waiting for its answer. Every spin executes `pause`.
//!
//! Lock order: the mode lock, then an endpoint's lock, then the run queue's; a space's lock,
//! then the pager's space lock, then the kernel pool's. No code holds an endpoint's lock and a
//! space's lock at once.

use super::percpu::{self, MAX_RUN_CPUS};
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// The next ticket of an exclusive entry.
static NEXT: AtomicU32 = AtomicU32::new(0);
/// The ticket whose exclusive entry may raise [`EXCLUSIVE`].
static SERVING: AtomicU32 = AtomicU32::new(0);
/// Raised while an exclusive entry runs or waits for the shared ones to end.
static EXCLUSIVE: AtomicBool = AtomicBool::new(false);

/// What a processor holds: its per-CPU mode word ([`percpu::mode`]), which is also the flag
/// an exclusive entry waits on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Nothing.
    None = 0,
    /// The mode lock, shared.
    Shared = 1,
    /// The mode lock, exclusive.
    Exclusive = 2,
}

/// The mode this processor holds.
#[inline(always)]
pub fn mode() -> Mode {
    match percpu::mode() {
        1 => Mode::Shared,
        2 => Mode::Exclusive,
        _ => Mode::None,
    }
}

/// One round of a spin: answer shootdowns, `pause`.
#[inline(always)]
fn spin() {
    super::shootdown::service();
    core::hint::spin_loop();
}

/// Takes the mode lock shared (see the module doc): this processor's word says so, then (after
/// a full fence) no exclusive entry runs or waits.
#[inline(always)]
pub fn enter_shared() {
    loop {
        percpu::set_mode_fenced(Mode::Shared as u64);
        if !EXCLUSIVE.load(Ordering::SeqCst) {
            return;
        }
        percpu::set_mode(Mode::None as u64);
        while EXCLUSIVE.load(Ordering::Acquire) {
            spin();
        }
    }
}

/// Takes the mode lock exclusive: waits for the exclusive entries before it, then for every
/// shared entry in progress to end.
pub fn acquire() {
    let ticket = NEXT.fetch_add(1, Ordering::Relaxed);
    while SERVING.load(Ordering::Acquire) != ticket {
        spin();
    }
    EXCLUSIVE.store(true, Ordering::SeqCst);
    for c in 0..MAX_RUN_CPUS {
        while percpu::mode_of(c) == Mode::Shared as u64 {
            spin();
        }
    }
    percpu::set_mode(Mode::Exclusive as u64);
}

/// Gives the mode lock back, whichever way it is held (its holder's writes are visible to
/// the next holder).
#[inline(always)]
pub fn release() {
    match mode() {
        Mode::Shared => percpu::set_mode(Mode::None as u64),
        Mode::Exclusive => {
            percpu::set_mode(Mode::None as u64);
            EXCLUSIVE.store(false, Ordering::Release);
            SERVING.fetch_add(1, Ordering::Release);
        }
        Mode::None => {}
    }
}

/// Makes this processor's hold exclusive: a shared hold is given back first, so whatever a
/// shared entry saw may have changed when this returns (only what the caller owns — the thread
/// it runs, a thread it took off every queue — is as it was).
pub fn exclusive() {
    if mode() != Mode::Exclusive {
        release();
        acquire();
    }
}

/// A ticket spin lock over a `T`, for the state shared entries change at once (see the
/// module doc).
pub struct SpinLock<T> {
    next: AtomicU32,
    serving: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and one guard exists at a time (the
// ticket protocol), or through `get_mut` with the lock borrowed mutably.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A lock over `value`.
    pub const fn new(value: T) -> Self {
        SpinLock {
            next: AtomicU32::new(0),
            serving: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock (spinning: see the module doc).
    #[inline(always)]
    pub fn lock(&self) -> Guard<'_, T> {
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        while self.serving.load(Ordering::Acquire) != ticket {
            spin();
        }
        Guard { lock: self }
    }

    /// The value, with no other reference possible.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// The value of a taken [`SpinLock`]; dropping it gives the lock back.
pub struct Guard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (the ticket protocol).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.lock.serving.fetch_add(1, Ordering::Release);
    }
}
