//! Faults a process handles itself, as with `sigaction(SIGSEGV, SA_SIGINFO | SA_ONSTACK)` on
//! Linux: the signal numbers and codes memd gives a fault, and the [`FaultFrame`] a handler
//! gets.
//!
//! A process registers an entry point and, for the calling thread, an alternate stack with
//! memd ([`crate::Vm::set_fault_handler`]; on the metal `sys::handle_faults` registers
//! libvm's own entry, which calls a Rust function, and `sys::alt_stack` gives another thread a
//! stack of its own). The entry is the process's; the alternate stack is each thread's, as
//! Linux's `sigaltstack` (a thread started later has none until it registers one). A fault
//! memd would kill the process for (nothing mapped, a protection, a general-protection fault)
//! then resumes the thread at the entry, on its alternate stack (or, with none, on its own
//! stack below the 128-byte red zone), with a [`FaultFrame`]: the signal and code, the
//! address, the access, and every register the thread had. The handler may change mappings and
//! return (the thread goes on with the frame's registers, changed or not: the faulting
//! instruction is tried again unless `rip` was moved), or exit. A fault while the thread runs
//! on its alternate stack (inside the handler), or one that leaves no room for the frame,
//! kills the process as if no handler were registered. A fork keeps the handler and the
//! forking thread's alternate stack (the child has the same memory); a spawned program starts
//! without one.

use kernel_shim::abi::fault_frame as ff;

/// `SIGSEGV`: an access to memory not mapped, or not allowed.
pub const SIGSEGV: u32 = 11;
/// `SIGBUS`: an access to memory that is mapped but has no page behind it (reserved for
/// memory objects of a fixed size: no fault of anonymous memory raises it).
pub const SIGBUS: u32 = 7;
/// `SEGV_MAPERR`: nothing is mapped at the address.
pub const SEGV_MAPERR: u32 = 1;
/// `SEGV_ACCERR`: the mapping forbids the access.
pub const SEGV_ACCERR: u32 = 2;
/// `BUS_ADRERR`: no page exists at the address of a mapped object.
pub const BUS_ADRERR: u32 = 2;
/// `SI_KERNEL`: a general-protection fault (a non-canonical address, a privileged
/// instruction); the address is 0, as on Linux.
pub const SI_KERNEL: u32 = 0x80;
/// The smallest alternate stack memd accepts (Linux's `MINSIGSTKSZ`): the frame, libvm's
/// save of the FPU state, and a little room for the handler.
pub const MIN_STACK: u64 = 2048;

/// The frame of a delivered fault, at the handler's stack pointer on entry: the layout of
/// [`kernel_shim::abi::fault_frame`]. The handler may change the registers: the thread goes
/// on with them when the handler returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct FaultFrame {
    /// [`SIGSEGV`] or [`SIGBUS`].
    pub signal: u64,
    /// [`SEGV_MAPERR`], [`SEGV_ACCERR`], [`BUS_ADRERR`] or [`SI_KERNEL`].
    pub code: u64,
    /// The address the access faulted at (0 for [`SI_KERNEL`]).
    pub addr: u64,
    /// The access (`kernel_shim::abi::ACCESS_*` bits: write, execute, page present).
    pub access: u64,
    /// The exception vector (14 for a page fault, 13 for a general-protection fault).
    pub vector: u64,
    /// The CPU's error code.
    pub error: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

const _: () = {
    assert!(core::mem::size_of::<FaultFrame>() == ff::BYTES as usize);
    assert!(core::mem::offset_of!(FaultFrame, signal) == ff::SIGNAL * 8);
    assert!(core::mem::offset_of!(FaultFrame, code) == ff::CODE * 8);
    assert!(core::mem::offset_of!(FaultFrame, addr) == ff::ADDR * 8);
    assert!(core::mem::offset_of!(FaultFrame, access) == ff::ACCESS * 8);
    assert!(core::mem::offset_of!(FaultFrame, vector) == ff::VECTOR * 8);
    assert!(core::mem::offset_of!(FaultFrame, error) == ff::ERROR * 8);
    assert!(core::mem::offset_of!(FaultFrame, rip) == ff::RIP * 8);
    assert!(core::mem::offset_of!(FaultFrame, rsp) == ff::RSP * 8);
    assert!(core::mem::offset_of!(FaultFrame, rflags) == ff::RFLAGS * 8);
    assert!(core::mem::offset_of!(FaultFrame, rax) == ff::RAX * 8);
    assert!(core::mem::offset_of!(FaultFrame, r15) == (ff::WORDS - 1) * 8);
};

impl FaultFrame {
    /// Whether the access was a write.
    pub fn is_write(&self) -> bool {
        self.access & kernel_shim::abi::ACCESS_WRITE != 0
    }

    /// Whether the access was an instruction fetch.
    pub fn is_exec(&self) -> bool {
        self.access & kernel_shim::abi::ACCESS_EXEC != 0
    }

    /// The signal and code in one word, as the pager passes them to the kernel's
    /// `fault_deliver` (signal in the low 32 bits).
    pub fn info(signal: u32, code: u32) -> u64 {
        u64::from(signal) | u64::from(code) << 32
    }
}
