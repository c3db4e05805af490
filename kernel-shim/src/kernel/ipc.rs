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
/// waiting senders and receivers.
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
    let ep = slots_of(owner).find(|&ep| k.endpoints.get(ep).is_some_and(|e| !e.live))?;
    k.endpoints[ep] = Endpoint {
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
    k.endpoints[ep].live = false;
    while let Some(r) = k.endpoints[ep].receivers.pop(k.threads) {
        k.threads[r].frame.rax = to_rax(EPIPE);
        k.make_ready(r);
    }
    for t in 0..k.threads.len() {
        let st = k.threads[t].state;
        if st == State::SendBlocked(ep as u16) || st == State::ReplyBlocked(ep as u16) {
            k.endpoints[ep].senders.remove(k.threads, t);
            match k.threads[t].kind {
                MsgKind::Call => {
                    k.threads[t].frame.rax = to_rax(EPIPE);
                    k.make_ready(t);
                }
                MsgKind::Fault => {
                    k.threads[t].state = State::Running;
                    let f = k.threads[t].frame;
                    k.kill(t, f.vector, f.rip, "the pager is gone");
                }
                MsgKind::Exit => {
                    k.threads[t].state = State::Free;
                    k.threads[t].generation = k.threads[t].generation.wrapping_add(1).max(1);
                }
            }
        }
    }
    k.endpoints[ep].senders = Queue::EMPTY;
}

/// Sends thread `t`'s prepared message (`msg`, `kind`, `lend`) on `ep`: to a waiting
/// receiver at once, else onto the queue.
pub fn send(k: &mut Kernel, t: usize, ep: usize) {
    match k.endpoints[ep].receivers.pop(k.threads) {
        Some(r) => {
            deliver(k, t, ep, r);
            k.make_ready(r);
        }
        None => {
            k.threads[t].state = State::SendBlocked(ep as u16);
            k.endpoints[ep].senders.push(k.threads, t);
        }
    }
}

/// Hands sender `s`'s message to receiver `r` (in `r`'s saved registers).
fn deliver(k: &mut Kernel, s: usize, ep: usize, r: usize) {
    let m = k.threads[s].msg;
    let kind = k.threads[s].kind;
    let token = thread_id(s, k.threads[s].generation)
        | match kind {
            MsgKind::Call => 0,
            MsgKind::Fault => TOKEN_FAULT,
            MsgKind::Exit => TOKEN_EXIT,
        };
    let f = &mut k.threads[r].frame;
    f.rax = token;
    f.rdi = m[0];
    f.rsi = m[1];
    f.rdx = m[2];
    f.r10 = m[3];
    f.r8 = m[4];
    f.r9 = m[5];
    f.r12 = m[6];
    f.r13 = m[7];
    f.r14 = k.threads[s].lend.1;
    if kind == MsgKind::Exit {
        let th = &mut k.threads[s];
        th.state = State::Free;
        th.generation = th.generation.wrapping_add(1).max(1);
    } else {
        k.threads[s].state = State::ReplyBlocked(ep as u16);
    }
}

fn endpoint(k: &Kernel, ep: u64) -> Result<usize, Errno> {
    let ep = usize::try_from(ep).map_err(|_| EINVAL)?;
    match k.endpoints.get(ep) {
        Some(e) if e.live => Ok(ep),
        _ => Err(EINVAL),
    }
}

/// `ipc_call`: decode (endpoint, lent range), then block until the reply.
pub fn call(k: &mut Kernel, t: usize) -> Result<(), Errno> {
    let f = k.threads[t].frame;
    let ep = endpoint(k, f.rdi)?;
    let (lend, lend_len) = (f.r14, f.r15);
    if lend_len > MAX_LEND {
        return Err(E2BIG);
    }
    usercopy::check_range(lend, lend_len)?;
    let badge = k.badge(k.threads[t].space);
    let th = &mut k.threads[t];
    th.msg = [f.rsi, f.rdx, f.r10, f.r8, f.r9, f.r12, f.r13, badge];
    th.kind = MsgKind::Call;
    th.routed = false;
    th.lend = if lend_len == 0 {
        (0, 0)
    } else {
        (lend, lend_len)
    };
    send(k, t, ep);
    Ok(())
}

/// `ipc_receive`: only threads of the endpoint's owner may receive.
pub fn receive(k: &mut Kernel, t: usize) -> Result<(), Errno> {
    let ep = endpoint(k, k.threads[t].frame.rdi)?;
    if k.endpoints[ep].owner != k.threads[t].space {
        return Err(EPERM);
    }
    match k.endpoints[ep].senders.pop(k.threads) {
        Some(s) => deliver(k, s, ep, t),
        None => {
            k.threads[t].state = State::RecvBlocked(ep as u16);
            k.endpoints[ep].receivers.push(k.threads, t);
        }
    }
    Ok(())
}

/// The thread behind `token`, if it waits for a reply from the space of thread `t`.
pub fn replied_thread(k: &Kernel, t: usize, token: u64) -> Result<usize, Errno> {
    let (c, generation) = split_id(token & !(TOKEN_FAULT | TOKEN_EXIT));
    let th = k.threads.get(c).ok_or(ESRCH)?;
    if token >> 32 != (token & (TOKEN_FAULT | TOKEN_EXIT)) >> 32 || th.generation != generation {
        return Err(ESRCH);
    }
    match th.state {
        State::ReplyBlocked(ep) if k.endpoints[ep as usize].owner == k.threads[t].space => Ok(c),
        _ => Err(ESRCH),
    }
}

/// `ipc_reply(token, w0, w1)`: a call returns (w0, w1); a fault resumes if w0 is 0, else the
/// thread is killed for its fault (its exit code names the fault's vector, not w0).
pub fn reply(k: &mut Kernel, t: usize) -> Result<(), Errno> {
    let f = k.threads[t].frame;
    reply_to(k, t, f.rdi, f.rsi, f.rdx)
}

/// `ipc_reply_receive(ep, token, w0, w1)`: the reply and the next receive in one call (the
/// server's loop). Both are checked before the reply is performed; a refused reply returns
/// its error and receives nothing.
pub fn reply_receive(k: &mut Kernel, t: usize) -> Result<(), Errno> {
    let f = k.threads[t].frame;
    let ep = endpoint(k, f.rdi)?;
    if k.endpoints[ep].owner != k.threads[t].space {
        return Err(EPERM);
    }
    reply_to(k, t, f.rsi, f.rdx, f.r10)?;
    receive(k, t)
}

fn reply_to(k: &mut Kernel, t: usize, token: u64, w0: u64, w1: u64) -> Result<(), Errno> {
    let c = replied_thread(k, t, token)?;
    match k.threads[c].kind {
        MsgKind::Fault if w0 != 0 => {
            // The exit code names the fault's own vector, not what the pager replied.
            k.threads[c].state = State::Running;
            let f = k.threads[c].frame;
            k.kill(c, f.vector, f.rip, "the pager refused its fault");
        }
        MsgKind::Fault => k.make_ready(c),
        MsgKind::Call if k.threads[c].routed => {
            // A routed redox call returns the reply's result word, as redox_syscall expects.
            k.threads[c].frame.rax = w1;
            k.threads[c].routed = false;
            k.make_ready(c);
        }
        _ => {
            let cf = &mut k.threads[c].frame;
            cf.rax = 0;
            cf.rdi = w0;
            cf.rsi = w1;
            k.make_ready(c);
        }
    }
    Ok(())
}

/// `ipc_read(token, offset, dst, len)` and `ipc_write(token, offset, src, len)`: copy between
/// the caller's lent buffer and the receiver's memory; returns `len`.
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
