//! Faults a process handles itself: the handler it registers (`FAULT_HANDLER`, Linux's
//! `sigaction(SIGSEGV, SA_SIGINFO | SA_ONSTACK)`), the alternate stack each of its threads
//! registers (Linux's `sigaltstack`, which is per thread), and memd's decision to hand a fault
//! to the handler instead of killing the process.
//!
//! memd decides; the kernel only moves the thread. A fault memd refuses (nothing mapped:
//! `SEGV_MAPERR`; a protection: `SEGV_ACCERR`; a general-protection fault: `SI_KERNEL`) of a
//! process with a handler becomes a [`Delivery`]: the frame goes at the top of the faulting
//! thread's alternate stack, or, for a thread that has none, on its own stack under the
//! 128-byte red zone below its stack pointer (as Linux does without an alternate stack); memd
//! backs the frame's pages and makes them writable first (lazy zero fill, copy-on-write
//! broken), and the host asks the kernel to write the frame and resume the thread at the entry
//! (`fault_deliver` on the metal). No delivery, and the process is killed as without a
//! handler, when the thread's stack pointer is on its alternate stack already (the fault is
//! inside the handler: Linux's default, the signal blocked while its handler runs), when a page
//! of the frame is not mapped writable or cannot be had, or when the kernel refuses the
//! delivery. Out of memory is never delivered: the out-of-memory policy decides as before.
//!
//! Threads are the kernel's thread ids (the token of a request, word 4 of a fault message):
//! a process keeps at most [`MAX_ALT_STACKS`] alternate stacks. A thread that ends should
//! take its own back (libvm's threads do); ids carry a generation, so one left behind never
//! applies to a later thread, it only takes room. A fork's child has the forking thread's
//! alternate stack only, its thread's until the host names that thread
//! ([`Memd::forked_thread`]; a fault of the child before, of its one thread, finds it too).

use crate::daemon::{ALT_STACK_COST, Memd, Pid, cost};
use crate::fault::{Access, allows};
use crate::kernel::{Kernel, PAGE_SIZE};
use crate::layout::USER_END;
use crate::space::AddressSpace;
use crate::stats::bump;
use alloc::vec::Vec;
use kernel_shim::abi::fault_frame::BYTES;
use libvm::VmError;
use libvm::fault::{FaultFrame, MIN_STACK};

/// A process's fault handler: its entry point, and its threads' alternate stacks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultHandler {
    /// Where the thread resumes.
    pub entry: u64,
    /// The alternate stacks of the threads that registered one.
    stacks: Vec<AltStack>,
}

/// One thread's alternate stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AltStack {
    /// The thread (the kernel's id).
    pub thread: u64,
    /// The lowest byte of the stack.
    pub stack: u64,
    /// Bytes of the stack.
    pub len: u64,
}

/// The most alternate stacks a process keeps (the kernel's threads a process may have).
pub const MAX_ALT_STACKS: usize = kernel_shim::abi::MAX_THREADS_PER_SPACE as usize;

/// The bytes below a thread's stack pointer that the code it runs may use without moving it
/// (the System V ABI's red zone): a frame on the thread's own stack goes below them.
const RED_ZONE: u64 = 128;

impl AltStack {
    /// Whether a thread whose stack pointer is `sp` runs on this stack (as Linux's
    /// `on_sig_stack`: above its lowest byte, at most its top).
    pub fn on_stack(&self, sp: u64) -> bool {
        sp > self.stack && sp - self.stack <= self.len
    }

    /// Where the frame goes: a frame below the top of the stack, 16-byte aligned.
    pub fn frame(&self) -> u64 {
        (self.stack + self.len - BYTES) & !15
    }
}

/// The thread of a fork's child's alternate stack until the host names the child's thread.
const FORKED: u64 = u64::MAX;

impl FaultHandler {
    /// Alternate stacks registered.
    pub fn stacks(&self) -> usize {
        self.stacks.len()
    }

    /// The alternate stack of `thread`, if it registered one (a fork's child's one thread: the
    /// forking thread's, until the host names it).
    pub fn stack_of(&self, thread: u64) -> Option<&AltStack> {
        let mut stacks = self.stacks.iter();
        stacks
            .clone()
            .find(|s| s.thread == thread)
            .or_else(|| stacks.find(|s| s.thread == FORKED))
    }

    /// The handler of a fork's child, forked by thread `thread`: the same entry, and that
    /// thread's alternate stack only.
    pub fn forked(&self, thread: u64) -> FaultHandler {
        let stacks = self
            .stacks
            .iter()
            .filter(|s| s.thread == thread)
            .map(|s| AltStack {
                thread: FORKED,
                ..*s
            })
            .collect();
        FaultHandler {
            entry: self.entry,
            stacks,
        }
    }

    /// Where the frame of a fault of `thread`, whose stack pointer is `sp`, goes; `None` when
    /// it is on its alternate stack already (a fault inside the handler), or when its own
    /// stack has no room below `sp` for one.
    pub fn frame_for(&self, thread: u64, sp: u64) -> Option<u64> {
        match self.stack_of(thread) {
            Some(s) if s.on_stack(sp) => None,
            Some(s) => Some(s.frame()),
            None => Some(sp.checked_sub(RED_ZONE + BYTES)? & !15),
        }
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
    /// Registers `entry` as the fault handler of `pid` (entry 0: none, and no alternate
    /// stack of any thread), and `[stack, stack + stack_len)` as the alternate stack of its
    /// thread `thread` (stack and length 0: `thread` has none, Linux's `SS_DISABLE`); the entry
    /// registered before (0: none). An entry or a stack outside the user half is
    /// `InvalidAddress`, a stack below [`MIN_STACK`] bytes `OutOfMemory` (`sigaltstack`'s
    /// ENOMEM), a stack for a thread beyond [`MAX_ALT_STACKS`] of them `LimitExceeded`;
    /// a refusal changes nothing. Nothing is mapped or checked in the stack now: a delivery
    /// needs it writable.
    pub fn set_fault_handler(
        &self,
        pid: Pid,
        thread: u64,
        entry: u64,
        stack: u64,
        stack_len: u64,
    ) -> Result<u64, VmError> {
        let disable = stack == 0 && stack_len == 0;
        if entry != 0 {
            if entry >= USER_END || stack.checked_add(stack_len).is_none_or(|e| e > USER_END) {
                return Err(VmError::InvalidAddress);
            }
            if !disable && stack_len < MIN_STACK {
                return Err(VmError::OutOfMemory);
            }
        }
        self.with_space(pid, |space| {
            let old = space.fault_handler.as_ref().map_or(0, |h| h.entry);
            if entry == 0 {
                space.fault_handler = None;
                return Ok(old);
            }
            // A fork's child's thread registering before the host named it replaces the stack
            // it inherited.
            let replaced = |s: &AltStack| s.thread == thread || s.thread == FORKED;
            let (now, gone) = space.fault_handler.as_ref().map_or((0, 0), |h| {
                (
                    h.stacks.len(),
                    h.stacks.iter().filter(|s| replaced(s)).count(),
                )
            });
            let after = now - gone + usize::from(!disable);
            // Decided before anything changes: a refusal changes nothing.
            if after > MAX_ALT_STACKS {
                return Err(VmError::LimitExceeded);
            }
            if after > now {
                // Its entry is counted in memd's bookkeeping (`with_space`).
                self.room(ALT_STACK_COST)?;
            }
            let room = usize::from(!disable);
            let handler = match space.fault_handler.as_mut() {
                Some(handler) => handler,
                None => space.fault_handler.insert(FaultHandler {
                    entry,
                    stacks: Vec::new(),
                }),
            };
            if handler.stacks.try_reserve(room).is_err() {
                // The empty handler made just above goes: a refusal changes nothing.
                if old == 0 {
                    space.fault_handler = None;
                }
                return Err(VmError::OutOfMemory);
            }
            handler.entry = entry;
            handler.stacks.retain(|s| !replaced(s));
            if !disable {
                handler.stacks.push(AltStack {
                    thread,
                    stack,
                    len: stack_len,
                });
            }
            Ok(old)
        })
    }

    /// The child `child` of a fork runs the forking thread as its thread `child_thread`: the
    /// forking thread's alternate stack ([`Memd::fork`] kept it) is that thread's.
    pub fn forked_thread(&self, child: Pid, child_thread: u64) {
        let Ok(process) = self.process(child) else {
            return;
        };
        let Ok(mut space) = Self::lock_live(&process) else {
            return;
        };
        if let Some(handler) = space.fault_handler.as_mut()
            && let Some(s) = handler.stacks.iter_mut().find(|s| s.thread == FORKED)
        {
            s.thread = child_thread;
        }
    }

    /// The delivery of a fault of thread `thread` of process `pid` (`signal`, `code`) to its
    /// handler, for a thread whose stack pointer is `sp`; `None` when the process is to be
    /// killed (see the module doc).
    pub(crate) fn delivery(
        &self,
        pid: Pid,
        thread: u64,
        signal: u32,
        code: u32,
        sp: u64,
    ) -> Option<Delivery> {
        let process = self.process(pid).ok()?;
        let mut space = Self::lock_live(&process).ok()?;
        let handler = space.fault_handler.as_ref()?;
        let entry = handler.entry;
        let frame = handler.frame_for(thread, sp)?;
        let before = cost(&space);
        let ready = self.frame_ready(&mut space, frame);
        self.bookkeeping_changed(before, cost(&space));
        ready.then_some(Delivery {
            entry,
            frame,
            signal,
            code,
        })
    }

    /// Backs the pages of a frame at `frame` for writing (every one in a writable region), each
    /// as a write fault there would: a page still mapped read-only from its copy-on-write days,
    /// whose frame is its own again, is mapped writable too (the kernel writes the frame
    /// through the page tables).
    fn frame_ready(&self, space: &mut AddressSpace, frame: u64) -> bool {
        let first = frame & !(PAGE_SIZE - 1);
        let end = (frame + BYTES).next_multiple_of(PAGE_SIZE);
        (first..end).step_by(PAGE_SIZE as usize).all(|page| {
            space
                .regions
                .find(page)
                .is_some_and(|r| allows(r.prot, Access::Write))
                && self.resolve(space, page, Access::Write).is_ok()
        })
    }

    /// The delivery of exception `vector` (other than a page fault) of thread `thread` of
    /// `pid`, whose stack pointer is `sp`, to its handler: a general-protection fault (a
    /// non-canonical address, a privileged instruction) is `SIGSEGV` with `SI_KERNEL` and
    /// address 0, as on Linux; `None` for any other exception, or when the process is to be
    /// killed.
    pub fn exception_delivery(
        &self,
        pid: Pid,
        thread: u64,
        vector: u64,
        sp: u64,
    ) -> Option<Delivery> {
        if vector != GENERAL_PROTECTION {
            return None;
        }
        self.delivery(
            pid,
            thread,
            libvm::fault::SIGSEGV,
            libvm::fault::SI_KERNEL,
            sp,
        )
    }

    /// Counts a fault the kernel delivered to a process's handler.
    pub fn count_handled(&self) {
        bump(&self.counters.handled);
    }
}

/// The general-protection vector.
const GENERAL_PROTECTION: u64 = 13;
