//! Synchronous IPC: endpoints with call, receive and reply.
//!
//! A message is 8 words in registers; word 7 is overwritten by the kernel with the sender's
//! badge (the id of its address space), so no process can claim another's identity. The
//! reply is 2 words. That is redox_syscall's `Sqe` (8 words, the last being the caller) and
//! `Cqe` (2 words). Bulk data goes through a buffer the caller lends with the call: the
//! receiver reads or writes it with `ipc_read`/`ipc_write` while the caller waits, every byte
//! checked against the caller's tables.
//!
//! Registers: `ipc_call(ep = rdi, words 0..7 = rsi, rdx, r10, r8, r9, r12, r13, lend = r14,
//! lend_len = r15)` returns rax = status, rdi and rsi = the reply. `ipc_receive(ep = rdi)`
//! returns rax = token, words 0..8 in rdi, rsi, rdx, r10, r8, r9, r12, r13, and r14 = the
//! length of the buffer lent with the call (0 for faults and exit notices).
//!
//! The kernel also sends on the pager's endpoint: a thread's fault (token bit
//! [`TOKEN_FAULT`]; reply word 0 = 0 resumes it, anything else kills it for that fault, and
//! the pager's `fault_deliver` resumes it in a handler instead: [`super::fault`]) and
//! the end of a space's last thread (token bit [`TOKEN_EXIT`]; no reply).
//!
//! A server's loop replies and waits for the next message with one call,
//! `ipc_reply_receive(ep = rdi, token = rsi, w0 = rdx, w1 = r10)`, which returns as
//! `ipc_receive` does.

use super::errno::{E2BIG, EINVAL, EPERM, EPIPE, ESRCH, Errno, to_rax};
use super::lock::Guard;
use super::state::Kernel;
use super::thread::{MsgKind, Queue, State, split_id, thread_id};
use super::usercopy;

/// The most endpoints one space may own. Space `s` owns the slots `s * 4 .. s * 4 + 4` of the
/// endpoint table and no other, so no process can take another's.
pub const MAX_ENDPOINTS_PER_SPACE: usize = 4;
/// The pager's endpoint, created at boot and owned by the pager's space (slot 0).
pub const PAGER_ENDPOINT: usize = 0;
pub use kernel_shim::abi::{TOKEN_EXIT, TOKEN_FAULT};
/// The largest buffer a call may lend.
pub const MAX_LEND: u64 = 64 << 20;

/// An endpoint: its owner (the only space whose threads may receive on it) and the queues of
/// waiting senders and receivers. Its lock (the table's: [`Kernel::endpoints`]) guards the
/// queues and every thread blocked on the endpoint (sending, receiving, or waiting for the
/// reply); only exclusive entries open and close it.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// Whether the slot is in use.
    pub live: bool,
    /// The space that may receive.
    pub owner: usize,
    /// Blocked senders, first come first served.
    pub senders: Queue,
    /// Blocked receivers.
    pub receivers: Queue,
}

impl Endpoint {
    /// An unused slot.
    pub const FREE: Endpoint = Endpoint {
        live: false,
        owner: 0,
        senders: Queue::EMPTY,
        receivers: Queue::EMPTY,
    };
}

/// The endpoint slots space `s` may own.
pub fn slots_of(s: usize) -> core::ops::Range<usize> {
    s * MAX_ENDPOINTS_PER_SPACE..(s + 1) * MAX_ENDPOINTS_PER_SPACE
}

/// Opens an endpoint owned by space `owner`; `None` when the space owns
/// [`MAX_ENDPOINTS_PER_SPACE`] already.
pub fn open(k: &mut Kernel, owner: usize) -> Option<usize> {
    let ep =
        slots_of(owner).find(|&ep| ep < k.endpoints.len() && !k.endpoints[ep].get_mut().live)?;
    *k.endpoints[ep].get_mut() = Endpoint {
        live: true,
        owner,
        senders: Queue::EMPTY,
        receivers: Queue::EMPTY,
    };
    Some(ep)
}

/// Closes endpoint `ep`: waiting callers fail with EPIPE, waiting faulters are killed, exit
/// notices are dropped, receivers (of the owner, which is ending) are left to their end.
pub fn close(k: &mut Kernel, ep: usize) {
    k.endpoints[ep].get_mut().live = false;
    // SAFETY (every queue operation below): the mode lock is exclusive (`&mut Kernel`), so
    // this entry owns every queue and thread.
    while let Some(r) = unsafe { k.endpoints[ep].get_mut().receivers.pop(&k.threads) } {
        k.threads[r].frame.rax = to_rax(EPIPE);
        k.wake(r);
    }
    for t in 0..k.threads.len() {
        let st = k.threads[t].state.get();
        if st == State::SendBlocked(ep as u16) || st == State::ReplyBlocked(ep as u16) {
            // SAFETY: as above.
            unsafe { k.endpoints[ep].get_mut().senders.remove(&k.threads, t) };
            match k.threads[t].kind {
                MsgKind::Call => {
                    k.threads[t].frame.rax = to_rax(EPIPE);
                    k.wake(t);
                }
                MsgKind::Fault => k.kill_at_fault(t, "the pager is gone"),
                MsgKind::Exit => k.threads[t].vacate(),
            }
        }
    }
    k.endpoints[ep].get_mut().senders = Queue::EMPTY;
}

/// The live endpoint `ep`, locked.
fn endpoint(k: &Kernel, ep: u64) -> Result<(usize, Guard<'_, Endpoint>), Errno> {
    let ep = usize::try_from(ep).map_err(|_| EINVAL)?;
    let e = k.endpoints.get(ep).ok_or(EINVAL)?.lock();
    if !e.live {
        return Err(EINVAL);
    }
    Ok((ep, e))
}

/// Sends thread `t`'s prepared message (`msg`, `kind`, `lend`) on `ep` (live): to a waiting
/// receiver at once, else onto the queue. The caller owns `t` (it runs here, or the mode lock
/// is exclusive); `t` stops running here.
pub fn send(k: &Kernel, t: usize, ep: usize) {
    send_locked(k, t, ep, k.endpoints[ep].lock());
}

/// [`send`], with `ep`'s lock taken.
fn send_locked(k: &Kernel, t: usize, ep: usize, mut e: Guard<'_, Endpoint>) {
    k.park(t);
    // SAFETY: the endpoint's lock is held.
    match unsafe { e.receivers.pop(&k.threads) } {
        Some(r) => {
            deliver(k, t, ep, r);
            drop(e);
            k.wake(r);
        }
        None => {
            // SAFETY: `t` is the caller's until queued.
            unsafe { k.threads.slot(t) }
                .state
                .set(State::SendBlocked(ep as u16));
            // SAFETY: the endpoint's lock is held; `t` is the caller's.
            unsafe { e.senders.push(&k.threads, t) };
        }
    }
}

/// Hands sender `s`'s message to receiver `r` (in `r`'s saved registers), under `ep`'s lock:
/// both are the caller's (taken off the endpoint's queues, or running here).
fn deliver(k: &Kernel, s: usize, ep: usize, r: usize) {
    // SAFETY: `s` and `r` are the caller's and distinct (a thread cannot be both).
    let (sender, receiver) = unsafe { (k.threads.slot(s), k.threads.slot(r)) };
    let m = sender.msg;
    let kind = sender.kind;
    let token = thread_id(s, sender.generation)
        | match kind {
            MsgKind::Call => 0,
            MsgKind::Fault => TOKEN_FAULT,
            MsgKind::Exit => TOKEN_EXIT,
        };
    let f = &mut receiver.frame;
    f.rax = token;
    f.rdi = m[0];
    f.rsi = m[1];
    f.rdx = m[2];
    f.r10 = m[3];
    f.r8 = m[4];
    f.r9 = m[5];
    f.r12 = m[6];
    f.r13 = m[7];
    f.r14 = sender.lend.1;
    if kind == MsgKind::Exit {
        sender.vacate();
    } else {
        sender.state.set(State::ReplyBlocked(ep as u16));
    }
}

/// `ipc_call`: decode (endpoint, lent range), then block until the reply. Thread `t` runs
/// here.
pub fn call(k: &Kernel, t: usize) -> Result<(), Errno> {
    let f = k.threads[t].frame;
    let (lend, lend_len) = (f.r14, f.r15);
    if lend_len > MAX_LEND {
        return Err(E2BIG);
    }
    usercopy::check_range(lend, lend_len)?;
    let (ep, e) = endpoint(k, f.rdi)?;
    // SAFETY: `t` runs here; the reference ends before `send_locked`.
    let th = unsafe { k.threads.slot(t) };
    th.msg = [
        f.rsi,
        f.rdx,
        f.r10,
        f.r8,
        f.r9,
        f.r12,
        f.r13,
        k.badge(th.space),
    ];
    th.kind = MsgKind::Call;
    th.routed = false;
    th.lend = if lend_len == 0 {
        (0, 0)
    } else {
        (lend, lend_len)
    };
    send_locked(k, t, ep, e);
    Ok(())
}

/// `ipc_receive`: only threads of the endpoint's owner may receive. Thread `t` runs here.
pub fn receive(k: &Kernel, t: usize) -> Result<(), Errno> {
    let (ep, e) = owned_endpoint(k, t)?;
    receive_locked(k, t, ep, e);
    Ok(())
}

/// The live endpoint thread `t` (running here) names in rdi, locked: `EPERM` unless its space
/// owns it.
fn owned_endpoint(k: &Kernel, t: usize) -> Result<(usize, Guard<'_, Endpoint>), Errno> {
    let th = &k.threads[t];
    let (ep, e) = endpoint(k, th.frame.rdi)?;
    if e.owner != th.space {
        return Err(EPERM);
    }
    Ok((ep, e))
}

/// [`receive`] on `ep`, checked, with its lock taken.
fn receive_locked(k: &Kernel, t: usize, ep: usize, mut e: Guard<'_, Endpoint>) {
    // SAFETY: the endpoint's lock is held.
    match unsafe { e.senders.pop(&k.threads) } {
        Some(s) => deliver(k, s, ep, t),
        None => {
            k.park(t);
            // SAFETY: `t` is this entry's until queued.
            unsafe { k.threads.slot(t) }
                .state
                .set(State::RecvBlocked(ep as u16));
            // SAFETY: the endpoint's lock is held; `t` is this entry's.
            unsafe { e.receivers.push(&k.threads, t) };
        }
    }
}

/// The endpoint the thread behind `token` waits on for a reply, if it does (a hint: read
/// again under that endpoint's lock).
fn waits_on(k: &Kernel, token: u64) -> Result<usize, Errno> {
    let (c, _) = split_id(token & !(TOKEN_FAULT | TOKEN_EXIT));
    let slot = k.threads.get_ptr(c).ok_or(ESRCH)?;
    // SAFETY: a shared reference to the slot's state, an atomic any processor may read.
    match unsafe { &(*slot).state }.get() {
        State::ReplyBlocked(ep) => Ok(ep as usize),
        _ => Err(ESRCH),
    }
}

/// The thread behind `token`, if it waits for a reply on `ep`, whose lock `e` is, from the
/// space of thread `t` (running here).
fn replied_on(k: &Kernel, t: usize, token: u64, ep: usize, e: &Endpoint) -> Result<usize, Errno> {
    let (c, generation) = split_id(token & !(TOKEN_FAULT | TOKEN_EXIT));
    if token >> 32 != (token & (TOKEN_FAULT | TOKEN_EXIT)) >> 32 {
        return Err(ESRCH);
    }
    let slot = k.threads.get_ptr(c).ok_or(ESRCH)?;
    // SAFETY: as in `waits_on`.
    if unsafe { &(*slot).state }.get() != State::ReplyBlocked(ep as u16) {
        return Err(ESRCH);
    }
    // SAFETY: `c` waits on `ep`, whose lock the caller holds: its slot is this entry's.
    if unsafe { (*slot).generation } != generation || e.owner != k.threads[t].space {
        return Err(ESRCH);
    }
    Ok(c)
}

/// The thread behind `token`, waiting for a reply from the space of thread `t` (running
/// here), with the lock of the endpoint it waits on.
fn replied(k: &Kernel, t: usize, token: u64) -> Result<(usize, Guard<'_, Endpoint>), Errno> {
    let ep = waits_on(k, token)?;
    let e = k.endpoints[ep].lock();
    let c = replied_on(k, t, token, ep, &e)?;
    Ok((c, e))
}

/// The thread behind `token`, if it waits for a reply from the space of thread `t` (for
/// exclusive entries, which need no lock).
pub fn replied_thread(k: &Kernel, t: usize, token: u64) -> Result<usize, Errno> {
    replied(k, t, token).map(|(c, _)| c)
}

/// What a reply did.
pub enum Replied {
    /// The thread replied to was made ready.
    Woken,
    /// The reply refuses thread `.0`'s fault, which kills its process: an exclusive entry's
    /// work. Nothing was changed.
    Kill(usize),
}

/// `ipc_reply(token, w0, w1)`: a call returns (w0, w1); a fault resumes if w0 is 0, else the
/// thread is killed for its fault (its exit code names the fault's vector, not w0).
pub fn reply(k: &Kernel, t: usize) -> Result<Replied, Errno> {
    let f = k.threads[t].frame;
    let (c, e) = replied(k, t, f.rdi)?;
    Ok(match answer(k, c, f.rsi, f.rdx) {
        Reply::Wake(c) => {
            drop(e);
            k.wake(c);
            Replied::Woken
        }
        Reply::Kill(c) => Replied::Kill(c),
    })
}

/// `ipc_reply_receive(ep, token, w0, w1)`: the reply and the next receive in one call (the
/// server's loop). Both are checked before the reply is performed; a refused reply returns
/// its error and receives nothing. The thread replied to is woken after the receive, so that
/// it runs here at once when the server waits ([`Kernel::wake`]). On [`Replied::Kill`] nothing
/// is done: the exclusive caller kills, then receives. When the thread replied to waited on
/// `ep` itself (a server's usual case), one hold of `ep`'s lock does it all.
pub fn reply_receive(k: &Kernel, t: usize) -> Result<Replied, Errno> {
    let f = k.threads[t].frame;
    let (ep, e) = owned_endpoint(k, t)?;
    let (reply, e) = if waits_on(k, f.rsi) == Ok(ep) {
        let c = replied_on(k, t, f.rsi, ep, &e)?;
        (answer(k, c, f.rdx, f.r10), e)
    } else {
        // Another endpoint's lock is never taken with this one held.
        drop(e);
        let (c, other) = replied(k, t, f.rsi)?;
        let reply = answer(k, c, f.rdx, f.r10);
        drop(other);
        (reply, k.endpoints[ep].lock())
    };
    match reply {
        Reply::Kill(c) => Ok(Replied::Kill(c)),
        Reply::Wake(c) => {
            // Checked above, and only exclusive entries close an endpoint.
            receive_locked(k, t, ep, e);
            k.wake(c);
            Ok(Replied::Woken)
        }
    }
}

/// What [`answer`] leaves the caller to do.
enum Reply {
    /// Wake the thread (its registers set, off every queue: the caller's).
    Wake(usize),
    /// Kill the thread's process (nothing done).
    Kill(usize),
}

/// Answers thread `c`, which waits for a reply on an endpoint whose lock the caller holds,
/// with (`w0`, `w1`): its registers are set and it waits no more (the caller's, to wake), or,
/// for a refused fault, nothing is done.
fn answer(k: &Kernel, c: usize, w0: u64, w1: u64) -> Reply {
    // SAFETY: `c` waits on the endpoint whose lock the caller holds: its slot is this entry's.
    let th = unsafe { k.threads.slot(c) };
    match th.kind {
        // The exit code names the fault's own vector, not what the pager replied.
        MsgKind::Fault if w0 != 0 => return Reply::Kill(c),
        MsgKind::Fault => {}
        MsgKind::Call if th.routed => {
            // A routed redox call returns the reply's result word, as redox_syscall expects.
            th.frame.rax = w1;
            th.routed = false;
        }
        _ => {
            let cf = &mut th.frame;
            cf.rax = 0;
            cf.rdi = w0;
            cf.rsi = w1;
        }
    }
    // No longer waiting on the endpoint: this entry's until woken.
    th.state.set(State::Ready);
    Reply::Wake(c)
}

/// `ipc_read(token, offset, dst, len)` and `ipc_write(token, offset, src, len)`: copy between
/// the caller's lent buffer and the receiver's memory; returns `len` (an exclusive entry: the
/// copies walk two spaces' tables).
pub fn transfer(k: &mut Kernel, t: usize, write: bool) -> Result<u64, Errno> {
    let f = k.threads[t].frame;
    let c = replied_thread(k, t, f.rdi)?;
    let (offset, addr, len) = (f.rsi, f.rdx, f.r10);
    let (lend, lend_len) = k.threads[c].lend;
    match offset.checked_add(len) {
        Some(end) if end <= lend_len => {}
        _ => return Err(EINVAL),
    }
    let mine = k.spaces[k.threads[t].space].root;
    let theirs = k.spaces[k.threads[c].space].root;
    if write {
        usercopy::copy_between(mine, addr, theirs, lend + offset, len)?;
    } else {
        usercopy::copy_between(theirs, lend + offset, mine, addr, len)?;
    }
    Ok(len)
}
