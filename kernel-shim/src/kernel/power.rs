//! Leaving the machine: QEMU's `isa-debug-exit` device (port 0xf4), then halt.
//!
//! Writing `v` makes QEMU exit with status `(v << 1) | 1`; the runner reads the status.

use x86_64::instructions::port::Port;

/// Nothing can run any more and nothing went wrong: QEMU exits with status 33.
pub const EXIT_CLEAN: u32 = 0x10;
/// The kernel stopped on a fatal error (ring-0 exception, panic): QEMU exits with status 35.
pub const EXIT_FATAL: u32 = 0x11;

/// Exits QEMU with `code`, or halts forever on a machine without the device.
pub fn exit(code: u32) -> ! {
    // SAFETY: port 0xf4 is the debug-exit device on the QEMU machines the runner starts; on
    // other machines the write goes nowhere. No memory is touched.
    unsafe { Port::<u32>::new(0xf4).write(code) };
    halt_forever()
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
