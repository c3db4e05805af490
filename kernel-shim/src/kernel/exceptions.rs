//! CPU exceptions: names, the decoding of a user fault, and the fatal report for a fault in
//! ring 0 (the kernel's own bug: print everything, the backtrace last, and stop).

use super::backtrace;
use super::power;
use super::trap::TrapFrame;
use core::fmt;
use kernel_shim::abi::{vector_mnemonic, vector_name};

/// Page-fault vector.
pub const PAGE_FAULT: u64 = 14;

/// Exception `vector` as the fatal reports say it: its mnemonic and name (`#PF page fault`),
/// from the ABI's [`vector_mnemonic`] and [`vector_name`].
pub struct Named(pub u64);

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match vector_mnemonic(self.0) {
            "" => f.write_str(vector_name(self.0)),
            m => write!(f, "{m} {}", vector_name(self.0)),
        }
    }
}

/// The faulting address of the last page fault.
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Prints a fatal report of a ring-0 exception (vector, error code, RIP, CR2, registers)
/// and stops the machine with the fatal exit status.
pub fn kernel_fault(frame: &TrapFrame) -> ! {
    let f = frame;
    kprintln!();
    kprintln!(
        "KERNEL FAULT: vector {} ({}) error {:#x}",
        f.vector,
        Named(f.vector),
        f.error
    );
    kprintln!(
        "  rip {:#018x}  cs {:#x}  rflags {:#x}",
        f.rip,
        f.cs,
        f.rflags
    );
    kprintln!("  rsp {:#018x}  ss {:#x}  cr2 {:#018x}", f.rsp, f.ss, cr2());
    if f.vector == PAGE_FAULT {
        kprintln!(
            "  page fault: {}, {}",
            if f.error & 1 != 0 {
                "protection violation"
            } else {
                "page not present"
            },
            if f.error & 16 != 0 {
                "instruction fetch"
            } else if f.error & 2 != 0 {
                "write"
            } else {
                "read"
            }
        );
    }
    kprintln!(
        "  rax {:#018x}  rbx {:#018x}  rcx {:#018x}",
        f.rax,
        f.rbx,
        f.rcx
    );
    kprintln!(
        "  rdx {:#018x}  rsi {:#018x}  rdi {:#018x}",
        f.rdx,
        f.rsi,
        f.rdi
    );
    kprintln!(
        "  rbp {:#018x}  r8  {:#018x}  r9  {:#018x}",
        f.rbp,
        f.r8,
        f.r9
    );
    kprintln!(
        "  r10 {:#018x}  r11 {:#018x}  r12 {:#018x}",
        f.r10,
        f.r11,
        f.r12
    );
    kprintln!(
        "  r13 {:#018x}  r14 {:#018x}  r15 {:#018x}",
        f.r13,
        f.r14,
        f.r15
    );
    backtrace::print(f.rip, f.rbp);
    kprintln!("kernel halted");
    power::exit(power::EXIT_FATAL)
}
