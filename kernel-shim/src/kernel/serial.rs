//! The serial console: COM1, a 16550 UART, through the `uart_16550` driver (port I/O,
//! polled: the kernel never takes its interrupt, IRQ 4 stays masked at the PIC). The driver
//! sets 38400 baud, 8 data bits, no parity, one stop bit, FIFOs on.

use core::fmt;
use uart_16550::SerialPort;

/// COM1's first I/O port.
const COM1: u16 = 0x3F8;

/// A handle on COM1. The driver keeps nothing but the port's address, so a handle made for
/// each use is as good as one kept (and needs no lock: the fatal reports may print while
/// another print was interrupted).
fn com1() -> SerialPort {
    // SAFETY: ports 0x3F8..0x400 are COM1's registers, and only this module uses them; they
    // touch no memory.
    unsafe { SerialPort::new(COM1) }
}

/// Programs COM1 (the driver's settings, above).
pub fn init() {
    com1().init();
}

/// Sends bytes as they are, waiting for the transmitter (`\n` becomes `\r\n`).
pub fn write_bytes(bytes: &[u8]) {
    let mut port = com1();
    for &b in bytes {
        if b == b'\n' {
            port.send_raw(b'\r');
        }
        port.send_raw(b);
    }
}

/// A received byte, if one is waiting.
pub fn read_byte() -> Option<u8> {
    com1().try_receive().ok()
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
