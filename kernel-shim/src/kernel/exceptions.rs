//! CPU exceptions: names, the decoding of a user fault, and the fatal report for a fault in
//! ring 0 (the kernel's own bug: print everything and stop).

use super::power;
use super::trap::TrapFrame;

/// Page-fault vector.
pub const PAGE_FAULT: u64 = 14;

/// The mnemonic of exception `vector`.
pub fn name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 floating point",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD floating point",
        20 => "#VE virtualization",
        21 => "#CP control protection",
        _ => "reserved exception",
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
        name(f.vector),
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
    kprintln!("kernel halted");
    power::exit(power::EXIT_FATAL)
}
