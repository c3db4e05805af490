//! User faults: every CPU exception raised in ring 3 becomes a message to the pager.
//!
//! Fault message (token bit `TOKEN_FAULT`), words: 0 vector, 1 address (CR2 for a page
//! fault, else RIP), 2 access kind ([`ACCESS_WRITE`], [`ACCESS_EXEC`], [`ACCESS_PRESENT`]),
//! 3 RIP, 4 thread id, 5 CPU error code, 6 zero, 7 badge of the faulting space. The thread
//! waits; the pager's reply resumes it (word 0 = 0, the instruction is retried) or kills it
//! (any other word 0). With no pager the thread is killed. A fault of the pager itself is a
//! fatal kernel report: nobody could serve it.
//!
//! A killed thread is said on the console, with the name of its vector and the RIP the CPU
//! saved (the faulting instruction; for a trap, the instruction after it: `int3`, a single
//! step) and why, e.g. `kernel-shim: killed thread 0x10001 of space 0x10001: breakpoint
//! (vector 3) at rip 0x401234 (the pager refused its fault)` ([`Kernel::kill`]); its exit code
//! is `KILLED | vector` and the exit notice carries the RIP too (`abi::EXIT_RIP`), whatever
//! word the pager replied with.

use super::exceptions::{self, PAGE_FAULT};
use super::ipc::{self, PAGER_ENDPOINT};
use super::power;
use super::state::Kernel;
use super::thread::MsgKind;

pub use kernel_shim::abi::{ACCESS_EXEC, ACCESS_PRESENT, ACCESS_WRITE};

/// Handles exception `vector` of thread `t`, whose registers are saved.
pub fn user_fault(k: &mut Kernel, t: usize) {
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
        k.kill(t, f.vector, f.rip, "no pager");
        return;
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
    let th = &mut k.threads[t];
    th.msg = [f.vector, addr, access, f.rip, tid, f.error, 0, badge];
    th.kind = MsgKind::Fault;
    th.lend = (0, 0);
    ipc::send(k, t, PAGER_ENDPOINT);
}
