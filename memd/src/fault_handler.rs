//! Faults a process handles itself: the handler and alternate stack it registers (`FAULT_HANDLER`,
//! Linux's `sigaction(SIGSEGV, SA_SIGINFO | SA_ONSTACK)` with `sigaltstack`), and memd's
//! decision to hand a fault to it instead of killing the process.
//!
//! memd decides; the kernel only moves the thread. A fault memd refuses (nothing mapped:
//! `SEGV_MAPERR`; a protection: `SEGV_ACCERR`; a general-protection fault: `SI_KERNEL`) of a
//! process with a handler becomes a [`Delivery`]: the frame goes at the top of the alternate
//! stack, whose pages memd backs and makes writable first (lazy zero fill, copy-on-write broken),
//! and the host asks the kernel to write the frame and resume the thread at the entry
//! (`fault_deliver` on the metal). No delivery, and the process is killed as without a handler,
//! when the thread's stack pointer is on the alternate stack already (the fault is inside the
//! handler: Linux's default, the signal blocked while its handler runs), when a page of the
//! frame is not mapped writable or cannot be had, or when the kernel refuses the delivery.
//! Out of memory is never delivered: the out-of-memory policy decides as before.

use crate::daemon::{Memd, Pid, cost};
use crate::fault::{Access, allows};
use crate::kernel::{Kernel, PAGE_SIZE};
use crate::layout::USER_END;
use crate::space::AddressSpace;
use crate::stats::bump;
use kernel_shim::abi::fault_frame::BYTES;
use libvm::VmError;
use libvm::fault::{FaultFrame, MIN_STACK};

/// A process's fault handler: its entry point and alternate stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultHandler {
    /// Where the thread resumes.
    pub entry: u64,
    /// The lowest byte of the alternate stack.
    pub stack: u64,
    /// Bytes of the alternate stack.
    pub stack_len: u64,
}

impl FaultHandler {
    /// Whether a thread whose stack pointer is `sp` runs on the alternate stack (as Linux's
    /// `on_sig_stack`: above its lowest byte, at most its top).
    pub fn on_stack(&self, sp: u64) -> bool {
        sp > self.stack && sp - self.stack <= self.stack_len
    }

    /// Where the frame goes: a frame below the top of the stack, 16-byte aligned.
    pub fn frame(&self) -> u64 {
        (self.stack + self.stack_len - BYTES) & !15
    }
}

/// A fault handed to the process's handler: the kernel writes the frame (with the signal and
/// code) at `frame` and resumes the thread at `entry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The handler's entry.
    pub entry: u64,
    /// Where the frame goes (the thread's stack pointer at the entry).
    pub frame: u64,
    /// `SIGSEGV` or `SIGBUS`.
    pub signal: u32,
    /// `SEGV_MAPERR`, `SEGV_ACCERR`, `BUS_ADRERR` or `SI_KERNEL`.
    pub code: u32,
}

impl Delivery {
    /// The signal and code in one word, as the kernel's `fault_deliver` takes them.
    pub fn info(&self) -> u64 {
        FaultFrame::info(self.signal, self.code)
    }
}

impl<K: Kernel> Memd<K> {
    /// Registers `entry` and the alternate stack `[stack, stack + stack_len)` as the fault
    /// handler of `pid` (entry 0: none); the entry registered before (0: none). An entry or a
    /// stack outside the user half is `InvalidAddress`, a stack below [`MIN_STACK`] bytes
    /// `OutOfMemory` (`sigaltstack`'s ENOMEM). Nothing is mapped or checked in the stack
    /// now: a delivery needs it writable.
    pub fn set_fault_handler(
        &self,
        pid: Pid,
        entry: u64,
        stack: u64,
        stack_len: u64,
    ) -> Result<u64, VmError> {
        let handler = if entry == 0 {
            None
        } else {
            if entry >= USER_END || stack.checked_add(stack_len).is_none_or(|e| e > USER_END) {
                return Err(VmError::InvalidAddress);
            }
            if stack_len < MIN_STACK {
                return Err(VmError::OutOfMemory);
            }
            Some(FaultHandler {
                entry,
                stack,
                stack_len,
            })
        };
        self.with_space(pid, |space| {
            let old = space.fault_handler.map_or(0, |h| h.entry);
            space.fault_handler = handler;
            Ok(old)
        })
    }

    /// The delivery of a fault of process `pid` (`signal`, `code`) to its handler, for a
    /// thread whose stack pointer is `sp`; `None` when the process is to be killed (see the
    /// module doc).
    pub(crate) fn delivery(&self, pid: Pid, signal: u32, code: u32, sp: u64) -> Option<Delivery> {
        let process = self.process(pid).ok()?;
        let mut space = process.lock();
        let handler = space.fault_handler?;
        if handler.on_stack(sp) {
            return None;
        }
        let before = cost(&space);
        let frame = handler.frame();
        let ready = self.frame_ready(&mut space, frame);
        self.bookkeeping_changed(before, cost(&space));
        ready.then_some(Delivery {
            entry: handler.entry,
            frame,
            signal,
            code,
        })
    }

    /// Backs the pages of a frame at `frame` for writing (every one in a writable region).
    fn frame_ready(&self, space: &mut AddressSpace, frame: u64) -> bool {
        let first = frame & !(PAGE_SIZE - 1);
        let end = (frame + BYTES).next_multiple_of(PAGE_SIZE);
        let writable = (first..end).step_by(PAGE_SIZE as usize).all(|page| {
            space
                .regions
                .find(page)
                .is_some_and(|r| allows(r.prot, Access::Write))
        });
        writable && self.populate_for(space, first, end, Access::Write).is_ok()
    }

    /// The delivery of exception `vector` (other than a page fault) of `pid`, whose thread's
    /// stack pointer is `sp`, to its handler: a general-protection fault (a non-canonical
    /// address, a privileged instruction) is `SIGSEGV` with `SI_KERNEL` and address 0, as on
    /// Linux; `None` for any other exception, or when the process is to be killed.
    pub fn exception_delivery(&self, pid: Pid, vector: u64, sp: u64) -> Option<Delivery> {
        if vector != GENERAL_PROTECTION {
            return None;
        }
        self.delivery(pid, libvm::fault::SIGSEGV, libvm::fault::SI_KERNEL, sp)
    }

    /// Counts a fault the kernel delivered to a process's handler.
    pub fn count_handled(&self) {
        bump(&self.counters.handled);
    }
}

/// The general-protection vector.
const GENERAL_PROTECTION: u64 = 13;
