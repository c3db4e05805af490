//! The timer: the legacy PIC (remapped to vectors 32..48, everything masked but IRQ 0) and the
//! PIT at about 1 kHz. Each tick counts time and, when a user thread's slice is used up,
//! preempts it.

use x86_64::instructions::port::Port;

/// Vector of IRQ 0 (the PIT).
pub const TIMER_VECTOR: u64 = 32;
/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// PIT reload value: 1193 gives 1000.15 Hz.
const DIVISOR: u16 = 1193;
/// Nanoseconds per tick.
pub const TICK_NS: u64 = DIVISOR as u64 * 1_000_000_000 / PIT_HZ;

fn outb(port: u16, v: u8) {
    // SAFETY: the PIC and PIT ports belong to this module; writing them touches no memory.
    unsafe { Port::<u8>::new(port).write(v) }
}

/// Remaps the PIC, masks every line but the timer, and starts the PIT (mode 2, rate
/// generator).
pub fn init() {
    outb(0x20, 0x11);
    outb(0xA0, 0x11);
    outb(0x21, 32);
    outb(0xA1, 40);
    outb(0x21, 4);
    outb(0xA1, 2);
    outb(0x21, 0x01);
    outb(0xA1, 0x01);
    outb(0x21, 0xFE);
    outb(0xA1, 0xFF);
    outb(0x43, 0x34);
    outb(0x40, DIVISOR as u8);
    outb(0x40, (DIVISOR >> 8) as u8);
}

/// Acknowledges interrupt `vector` at the PIC(s).
pub fn end_of_interrupt(vector: u64) {
    if (40..48).contains(&vector) {
        outb(0xA0, 0x20);
    }
    outb(0x20, 0x20);
}
