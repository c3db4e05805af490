//! The local APIC of the running processor (xAPIC, its registers memory mapped at
//! 0xFEE0_0000, reached through the physical window): interprocessor interrupts, the timer,
//! end of interrupt.

use super::boot::phys_to_virt;

/// The registers' physical address.
pub const BASE: u64 = 0xFEE0_0000;
/// End of interrupt.
const EOI: u64 = 0xB0;
/// Spurious-interrupt vector register (bit 8: the APIC is enabled).
const SVR: u64 = 0xF0;
/// Interrupt command register, low and high words.
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
/// ICR: delivery status (an IPI not yet accepted).
const ICR_PENDING: u32 = 1 << 12;
/// Local vector table: the timer.
const LVT_TIMER: u64 = 0x320;
/// Timer: initial count, current count, divide configuration.
const TIMER_INITIAL: u64 = 0x380;
const TIMER_CURRENT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3E0;
/// LVT: masked.
const LVT_MASKED: u32 = 1 << 16;
/// LVT timer: periodic.
const LVT_PERIODIC: u32 = 1 << 17;
/// Divide configuration for a divisor of 16.
const DIVIDE_BY_16: u32 = 0x3;

fn write(reg: u64, value: u32) {
    // SAFETY: the local APIC's page lies in the window (below 4 GiB); a 32-bit write of one of
    // its registers is how it is programmed, and the kernel runs on one processor at a time.
    unsafe { core::ptr::write_volatile(phys_to_virt(BASE + reg) as *mut u32, value) };
}

fn read(reg: u64) -> u32 {
    // SAFETY: as in `write`: a 32-bit read of one of its registers.
    unsafe { core::ptr::read_volatile(phys_to_virt(BASE + reg) as *const u32) }
}

/// Enables the local APIC with spurious interrupts on `spurious` (a vector with a stub).
pub fn enable(spurious: u8) {
    write(SVR, 0x100 | u32::from(spurious));
}

/// Sends the IPI `low` (ICR low word: delivery mode, level, vector) to the processor with
/// local APIC id `id`, and waits until the local APIC has accepted it.
pub fn ipi(id: u32, low: u32) {
    write(ICR_HIGH, id << 24);
    write(ICR_LOW, low);
    while read(ICR_LOW) & ICR_PENDING != 0 {
        core::hint::spin_loop();
    }
}

/// Starts the timer counting down from the largest count (divided by 16), masked: for
/// [`elapsed`] to measure against another clock.
pub fn start_count() {
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_MASKED);
    write(TIMER_INITIAL, u32::MAX);
}

/// Counts the timer went down since [`start_count`].
pub fn elapsed() -> u32 {
    u32::MAX - read(TIMER_CURRENT)
}

/// Makes the timer raise `vector` every `count` counts (divided by 16), for good.
pub fn start_periodic(vector: u8, count: u32) {
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_PERIODIC | u32::from(vector));
    write(TIMER_INITIAL, count.max(1));
}

/// Acknowledges the interrupt in service.
pub fn end_of_interrupt() {
    write(EOI, 0);
}
