//! The timer: the local APIC's, periodic at the PIT's 1 kHz, measured against the PIT at boot
//! (the PIT then stays masked at the legacy PIC, remapped to vectors 32..48 with every line
//! masked); the PIT itself, through the PIC, if the measure fails. Every processor's local
//! APIC ticks at the rate measured once by the first; the first processor's ticks count time,
//! and each processor's tick preempts its thread when its slice is used up.

use super::global::Global;
use super::lapic;
use x86_64::instructions::port::Port;

/// Vector of IRQ 0 (the PIT).
pub const TIMER_VECTOR: u64 = 32;
/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// PIT reload value: 1193 gives 1000.15 Hz.
const DIVISOR: u16 = 1193;
/// Nanoseconds per tick.
pub const TICK_NS: u64 = DIVISOR as u64 * 1_000_000_000 / PIT_HZ;
/// The local APIC's spurious-interrupt vector: IRQ 7's, which has a stub (the PIC's own
/// spurious interrupts arrive there too) and needs no acknowledgement.
const SPURIOUS_VECTOR: u8 = 39;
/// PIT periods the local APIC's timer is measured over.
const CALIBRATION_TICKS: u32 = 10;

/// Whether the ticks come from the local APIC's timer (else from the PIT, through the PIC).
static LAPIC_TIMER: Global<bool> = Global::new(false);
/// The local APIC timer's count (divided by 16) per tick, as measured at boot.
static PER_TICK: Global<u32> = Global::new(0);

fn outb(port: u16, v: u8) {
    // SAFETY: the PIC and PIT ports belong to this module; writing them touches no memory.
    unsafe { Port::<u8>::new(port).write(v) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: as in `outb`; reading them touches no memory.
    unsafe { Port::<u8>::new(port).read() }
}

/// The PIT's channel 0 count now (latched, then read low byte first).
fn pit_count() -> u16 {
    outb(0x43, 0x00);
    let low = u16::from(inb(0x40));
    low | u16::from(inb(0x40)) << 8
}

/// Waits for the PIT's count to start a new period (it counts down from [`DIVISOR`], then
/// reloads).
fn next_pit_period() {
    let mut last = pit_count();
    loop {
        core::hint::spin_loop();
        let now = pit_count();
        if now > last {
            return;
        }
        last = now;
    }
}

/// The local APIC timer's counts in one PIT period (divided by 16), measured over
/// [`CALIBRATION_TICKS`] periods with interrupts off.
fn calibrate() -> u32 {
    next_pit_period();
    lapic::start_count();
    for _ in 0..CALIBRATION_TICKS {
        next_pit_period();
    }
    lapic::elapsed() / CALIBRATION_TICKS
}

/// Remaps the PIC, starts the PIT (mode 2, rate generator), measures the local APIC's timer
/// against it and, if the measure is sound, makes the local APIC's timer the tick and masks
/// every line of the PIC; else the PIT stays the tick (the PIC's line 0 unmasked). Says which;
/// whether the local APIC's timer is the tick.
pub fn init() -> bool {
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
    lapic::enable(SPURIOUS_VECTOR);
    let per_tick = calibrate();
    if per_tick < 16 {
        log::warn!(
            "kernel-shim: the local APIC timer measured {} counts a tick; the PIT stays the tick",
            per_tick
        );
        return false;
    }
    outb(0x21, 0xFF);
    lapic::start_periodic(TIMER_VECTOR as u8, per_tick);
    // SAFETY: written at boot before the other processors start; only read afterwards.
    unsafe {
        *LAPIC_TIMER.as_ptr() = true;
        *PER_TICK.as_ptr() = per_tick;
    };
    log::info!(
        "kernel-shim: timer: the local APIC's, {} counts (divided by 16) a 1 ms tick, measured \
         against the PIT",
        per_tick
    );
    true
}

/// Starts this application processor's local APIC and its timer at the rate [`init`]
/// measured (called only when that timer is the tick).
pub fn start_here() {
    lapic::enable(SPURIOUS_VECTOR);
    // SAFETY: written once at boot before this processor started; only read afterwards.
    let per_tick = unsafe { *PER_TICK.as_ptr() };
    lapic::start_periodic(TIMER_VECTOR as u8, per_tick);
}

/// Acknowledges interrupt `vector`: the tick at the local APIC (when its timer is the tick),
/// a PIC line at the PIC(s); the local APIC's spurious interrupt needs none.
pub fn end_of_interrupt(vector: u64) {
    // SAFETY: written once at boot, only read afterwards.
    let lapic_timer = unsafe { *LAPIC_TIMER.as_ptr() };
    if vector == TIMER_VECTOR && lapic_timer {
        lapic::end_of_interrupt();
        return;
    }
    if vector == u64::from(SPURIOUS_VECTOR) && lapic_timer {
        return;
    }
    if (40..48).contains(&vector) {
        outb(0xA0, 0x20);
    }
    outb(0x20, 0x20);
}
