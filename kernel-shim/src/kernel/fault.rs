//! User faults: every CPU exception raised in ring 3 becomes a message to the pager.
//!
//! Fault message (token bit `TOKEN_FAULT`), words: 0 vector, 1 address (CR2 for a page
//! fault, else RIP), 2 access kind ([`ACCESS_WRITE`], [`ACCESS_EXEC`], [`ACCESS_PRESENT`]),
//! 3 RIP, 4 thread id, 5 CPU error code, 6 RSP, 7 badge of the faulting space. The thread
//! waits; the pager's reply resumes it (word 0 = 0, the instruction is retried) or kills it
//! (any other word 0), or the pager redirects it to a handler in its process
//! ([`fault_deliver`]). With no pager the thread is killed. A fault of the pager itself is a
//! fatal kernel report: nobody could serve it.
//!
//! **Handlers.** Whether a process handles its own faults, where its handler and its stack
//! are, and what signal and code a fault is, are the pager's to decide; the kernel only moves
//! the thread. `fault_deliver(token, entry, frame, info)` writes the thread's
//! [`fault_frame`] (the pager's `info`, the fault, every register) at `frame` in the thread's
//! space, through its page tables (each page must be present and writable: the pager backs
//! them first), and resumes the thread at `entry` with rsp = rdi = `frame`, rax = 0 and
//! RFLAGS reset (no single step, direction up). A refused delivery (a page of the frame not
//! writable) changes nothing: the thread still waits for the pager's reply.
//! `fault_return(frame)` is the way back, for any thread: its registers become those of the
//! frame in its own memory (as a process may set its own registers anyway; RFLAGS, RIP and
//! the selectors are sanitized by [`super::trap::return_to_user`] as on every return), and it
//! leaves by `iretq`, so rcx and r11 come back too.
//!
//! A killed thread is said on the console, with the name of its vector and the RIP the CPU
//! saved (the faulting instruction; for a trap, the instruction after it: `int3`, a single
//! step) and why, e.g. `kernel-shim: killed thread 0x10001 of space 0x10001: breakpoint
//! (vector 3) at rip 0x401234 (the pager refused its fault)` ([`Kernel::kill`]); its exit code
//! is `KILLED | vector` and the exit notice carries the RIP too (`abi::EXIT_RIP`), whatever
//! word the pager replied with.

use super::errno::{EINVAL, Errno};
use super::exceptions::{self, PAGE_FAULT};
use super::ipc::{self, PAGER_ENDPOINT};
use super::power;
use super::pt::USER_TOP;
use super::state::Kernel;
use super::thread::MsgKind;
use super::trap::{TrapFrame, rflags};
use super::usercopy;
use kernel_shim::abi::fault_frame::{self as ff, BYTES, WORDS};

pub use kernel_shim::abi::{ACCESS_EXEC, ACCESS_PRESENT, ACCESS_WRITE};

/// The `vector` of a frame `fault_return` loaded: not a system call's, so the thread leaves
/// by `iretq` with every register it asked for.
pub const RESTORED_VECTOR: u64 = 0x101;

/// Handles the exception of thread `t` (running here), whose registers are saved: a message to
/// the pager. `false` when there is no pager: the thread is to be killed, an exclusive
/// entry's work ([`Kernel::kill_at_fault`]); nothing was changed.
pub fn user_fault(k: &Kernel, t: usize) -> bool {
    let f = k.threads[t].frame;
    let s = k.threads[t].space;
    let (addr, access) = if f.vector == PAGE_FAULT {
        let mut a = 0;
        if f.error & 2 != 0 {
            a |= ACCESS_WRITE;
        }
        if f.error & 16 != 0 {
            a |= ACCESS_EXEC;
        }
        if f.error & 1 != 0 {
            a |= ACCESS_PRESENT;
        }
        (exceptions::cr2(), a)
    } else {
        (f.rip, ACCESS_EXEC)
    };
    if k.is_pager(s) {
        kprintln!(
            "PAGER FAULT: vector {} ({}) at {:#x}, rip {:#x}, error {:#x}, thread {:#x}",
            f.vector,
            exceptions::Named(f.vector),
            addr,
            f.rip,
            f.error,
            k.thread_id(t)
        );
        kprintln!("kernel halted");
        power::exit(power::EXIT_FATAL);
    }
    if k.pager.is_none() {
        return false;
    }
    let badge = k.badge(s);
    let tid = k.thread_id(t);
    log::debug!(
        "kernel-shim: fault vector {} at {:#x} (rip {:#x}) of thread {:#x} in space {:#x}, to \
         the pager",
        f.vector,
        addr,
        f.rip,
        tid,
        badge
    );
    // SAFETY: `t` runs here, so its slot is this entry's; the reference ends before `send`.
    let th = unsafe { k.threads.slot(t) };
    th.msg = [f.vector, addr, access, f.rip, tid, f.error, f.rsp, badge];
    th.kind = MsgKind::Fault;
    th.lend = (0, 0);
    // The pager's endpoint is live while there is a pager (both change in exclusive entries).
    ipc::send(k, t, PAGER_ENDPOINT);
    true
}

/// The general registers in [`fault_frame`] order from [`ff::RAX`].
fn registers(f: &mut TrapFrame) -> [&mut u64; 15] {
    [
        &mut f.rax, &mut f.rbx, &mut f.rcx, &mut f.rdx, &mut f.rsi, &mut f.rdi, &mut f.rbp,
        &mut f.r8, &mut f.r9, &mut f.r10, &mut f.r11, &mut f.r12, &mut f.r13, &mut f.r14,
        &mut f.r15,
    ]
}

/// `fault_deliver(token, entry, frame, info)`: the thread behind `token`, waiting on its
/// fault, resumes at `entry` with its [`fault_frame`] at `frame` (see the module doc).
pub fn fault_deliver(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    super::pager::pager_only(k, t)?;
    let f = k.threads[t].frame;
    let c = ipc::replied_thread(k, t, f.rdi)?;
    let (entry, at, info) = (f.rsi, f.rdx, f.r10);
    if k.threads[c].kind != MsgKind::Fault || entry >= USER_TOP || !at.is_multiple_of(16) {
        return Err(EINVAL);
    }
    usercopy::check_range(at, BYTES)?;
    let th = &k.threads[c];
    let mut saved = th.frame;
    let mut words = [0u64; WORDS];
    words[ff::SIGNAL] = info & 0xFFFF_FFFF;
    words[ff::CODE] = info >> 32;
    // The address of a page fault (CR2); no other exception has one.
    words[ff::ADDR] = if saved.vector == PAGE_FAULT {
        th.msg[kernel_shim::abi::FAULT_ADDR]
    } else {
        0
    };
    words[ff::ACCESS] = th.msg[kernel_shim::abi::FAULT_ACCESS];
    words[ff::VECTOR] = saved.vector;
    words[ff::ERROR] = saved.error;
    words[ff::RIP] = saved.rip;
    words[ff::RSP] = saved.rsp;
    words[ff::RFLAGS] = saved.rflags;
    for (w, r) in words[ff::RAX..].iter_mut().zip(registers(&mut saved)) {
        *w = *r;
    }
    let mut bytes = [0u8; BYTES as usize];
    for (b, w) in bytes.chunks_exact_mut(8).zip(words) {
        b.copy_from_slice(&w.to_le_bytes());
    }
    let root = k.spaces[th.space].root;
    // Every page first: a refused delivery writes nothing.
    usercopy::check_writable(root, at, BYTES)?;
    usercopy::copy_out(root, at, &bytes)?;
    let cf = &mut k.threads[c].frame;
    cf.rip = entry;
    cf.rsp = at;
    cf.rdi = at;
    cf.rax = 0;
    cf.rflags = rflags::IF | rflags::FIXED;
    k.wake(c);
    Ok(0)
}

/// `fault_return(frame)`: the caller's registers become those of the [`fault_frame`] at
/// `frame` in its own memory; it leaves by `iretq` (see the module doc).
pub fn fault_return(k: &mut Kernel, t: usize) -> Result<(), Errno> {
    let at = k.threads[t].frame.rdi;
    let mut bytes = [0u8; BYTES as usize];
    let root = k.spaces[k.threads[t].space].root;
    usercopy::copy_in(root, at, &mut bytes)?;
    let mut words = [0u64; WORDS];
    for (w, b) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        *w = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    }
    let f = &mut k.threads[t].frame;
    f.rip = words[ff::RIP];
    f.rsp = words[ff::RSP];
    f.rflags = words[ff::RFLAGS];
    f.vector = RESTORED_VECTOR;
    f.error = 0;
    for (r, w) in registers(f).into_iter().zip(&words[ff::RAX..]) {
        *r = *w;
    }
    Ok(())
}
