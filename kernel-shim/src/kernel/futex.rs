//! Futexes: a thread waits on a 32-bit word of its space while the word holds the value it
//! expects, and another thread of the space wakes it, so user code builds locks and condition
//! variables without spinning (Linux's private futexes). The key is the word's address in the
//! space; waiters are queued in [`BUCKETS`] buckets by key, each first come, first woken.
//!
//! No wake-up is lost: the check of the word and the queueing happen in an exclusive entry
//! ([`super::lock`]), and so does every wake; a waker stores to the word before it calls.
//!
//! A thread joining another waits in the same buckets under a key no word has (the thread's
//! id above the user half), woken when that thread ends: the end of a thread is known to the
//! kernel, so `join` needs no word the kernel would have to write (which a copy-on-write page
//! after a fork would refuse).

use super::errno::{EAGAIN, EFAULT, EINVAL, Errno};
use super::pt::USER_TOP;
use super::state::Kernel;
use super::thread::{Queue, State, split_id};
use super::usercopy;

/// Buckets of waiters.
pub const BUCKETS: usize = 64;

/// The bucket of the word at `addr` in space `s`.
fn bucket(s: usize, addr: u64) -> usize {
    let h = (addr >> 2).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (s as u64);
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % BUCKETS
}

/// The user word at `addr` (4-byte aligned, below the user-half end), or the error.
fn word(k: &Kernel, s: usize, addr: u64) -> Result<u32, Errno> {
    if !addr.is_multiple_of(4) || addr >= USER_TOP {
        return Err(EINVAL);
    }
    let mut bytes = [0u8; 4];
    usercopy::copy_in(k.spaces[s].root, addr, &mut bytes).map_err(|_| EFAULT)?;
    Ok(u32::from_le_bytes(bytes))
}

/// `futex_wait(addr, expected)`: blocks thread `t` until a wake of `addr`, if the word there
/// holds `expected`; else `EAGAIN` at once. `EFAULT` when the word is not mapped readable
/// (a page never touched included: the caller touches it and retries), `EINVAL` when it is
/// unaligned or outside the user half.
pub fn wait(k: &mut Kernel, t: usize) -> Result<(), Errno> {
    let f = k.threads[t].frame;
    let s = k.threads[t].space;
    if word(k, s, f.rdi)? != f.rsi as u32 {
        return Err(EAGAIN);
    }
    let b = bucket(s, f.rdi);
    k.park(t);
    let th = &mut k.threads[t];
    th.futex = f.rdi;
    th.state.set(State::FutexBlocked(b as u16));
    th.frame.rax = 0;
    // SAFETY: the mode lock is exclusive (`&mut Kernel`): this entry owns every queue.
    unsafe { k.futexes[b].push(&k.threads, t) };
    Ok(())
}

/// `futex_wake(addr, count)`: wakes up to `count` threads of the caller's space waiting on
/// `addr`; how many.
pub fn wake(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    let f = k.threads[t].frame;
    if !f.rdi.is_multiple_of(4) || f.rdi >= USER_TOP {
        return Err(EINVAL);
    }
    Ok(wake_word(k, k.threads[t].space, f.rdi, f.rsi))
}

/// Wakes up to `count` waiters on the word at `addr` of space `s`; how many.
pub fn wake_word(k: &mut Kernel, s: usize, addr: u64, count: u64) -> u64 {
    let b = bucket(s, addr);
    let mut woken = 0;
    while woken < count {
        // SAFETY: the mode lock is exclusive (`&mut Kernel`): this entry owns every queue.
        let found =
            unsafe { k.futexes[b].find(&k.threads, |th| th.space == s && th.futex == addr) };
        let Some(w) = found else {
            break;
        };
        // SAFETY: as above.
        unsafe { k.futexes[b].remove(&k.threads, w) };
        k.wake(w);
        woken += 1;
    }
    woken
}

/// The key under which the joiners of thread `id` wait: above the user half, so no word's
/// address is equal to it.
fn join_key(id: u64) -> u64 {
    USER_TOP | id
}

/// `thread_join(id)`: blocks thread `t` until thread `id` of its own space has ended; 0 at
/// once when it has already (or never was a thread of the space: its slot is free or another
/// thread's, by the generation in the id). A thread cannot join itself (`EINVAL`).
pub fn join(k: &mut Kernel, t: usize) -> Result<(), Errno> {
    let id = k.threads[t].frame.rdi;
    let s = k.threads[t].space;
    if id == k.thread_id(t) {
        return Err(EINVAL);
    }
    let (slot, generation) = split_id(id);
    let live = k.threads.get(slot).is_some_and(|th| {
        th.state.get() != State::Free && th.generation == generation && th.space == s
    }) && id >> 32 == 0;
    k.threads[t].frame.rax = 0;
    if !live {
        return Ok(());
    }
    let key = join_key(id);
    let b = bucket(s, key);
    k.park(t);
    let th = &mut k.threads[t];
    th.futex = key;
    th.state.set(State::FutexBlocked(b as u16));
    // SAFETY: the mode lock is exclusive (`&mut Kernel`): this entry owns every queue.
    unsafe { k.futexes[b].push(&k.threads, t) };
    Ok(())
}

/// Wakes the joiners of thread `id` of space `s`, which has just ended.
pub fn ended(k: &mut Kernel, s: usize, id: u64) {
    wake_word(k, s, join_key(id), u64::MAX);
}

/// An empty set of buckets.
pub const EMPTY: [Queue; BUCKETS] = [Queue::EMPTY; BUCKETS];
