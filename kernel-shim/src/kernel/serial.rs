//! The serial console: COM1 (16550 UART) by port I/O, polled.

use core::fmt;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3F8;

fn outb(port: u16, value: u8) {
    // SAFETY: the COM1 registers are I/O ports owned by this driver; writing them has no
    // effect on memory.
    unsafe { Port::<u8>::new(port).write(value) }
}

fn inb(port: u16) -> u8 {
    // SAFETY: as in `outb`; reading the UART registers has no effect on memory.
    unsafe { Port::<u8>::new(port).read() }
}

/// Programs COM1 for 115200 baud, 8 data bits, no parity, one stop bit, FIFOs on.
pub fn init() {
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xC7);
    outb(COM1 + 4, 0x0B);
}

/// Sends one byte, waiting until the transmitter is ready.
pub fn write_byte(byte: u8) {
    while inb(COM1 + 5) & 0x20 == 0 {
        core::hint::spin_loop();
    }
    outb(COM1, byte);
}

/// Sends bytes (`\n` becomes `\r\n`).
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            write_byte(b'\r');
        }
        write_byte(b);
    }
}

/// A received byte, if one is waiting.
pub fn read_byte() -> Option<u8> {
    if inb(COM1 + 5) & 1 != 0 {
        Some(inb(COM1))
    } else {
        None
    }
}

/// `core::fmt` sink onto the serial port.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Prints to the serial console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::kernel::serial::Console, format_args!($($arg)*));
    }};
}

/// Prints a line to the serial console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => {{
        $crate::kprint!($($arg)*);
        $crate::kprint!("\n");
    }};
}
