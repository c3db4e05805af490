//! The system calls memd makes, over libvm's raw ones ([`libvm::sys::raw`]), with one twist:
//! a reply is held back to go out with the next receive in one `ipc_reply_receive`, and any
//! other system call sends it first, so the kernel sees every reply where memd made it,
//! relative to all else memd asks of it.

use core::fmt;
use kernel_shim::abi as nr;
use libvm::sys::raw;
pub use libvm::sys::raw::Received;
use spin::Mutex;

/// A system call with up to five arguments: rax (a value or -errno) and rdx.
#[inline(always)]
pub fn syscall5(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64) -> (i64, u64) {
    send_pending_reply();
    raw::syscall6_rdx(n, a, b, c, d, e, 0)
}

/// A system call with up to four arguments: rax (a value or -errno) and rdx.
#[inline(always)]
pub fn syscall4(n: u64, a: u64, b: u64, c: u64, d: u64) -> (i64, u64) {
    syscall5(n, a, b, c, d, 0)
}

/// A system call returning only rax.
pub fn call(n: u64, a: u64, b: u64, c: u64, d: u64) -> i64 {
    syscall4(n, a, b, c, d).0
}

/// Ends memd's thread (the kernel reports the pager's end).
pub fn exit(code: u64) -> ! {
    send_pending_reply();
    raw::exit(code)
}

/// The reply held back: token, w0, w1.
static PENDING: Mutex<Option<(u64, u64, u64)>> = Mutex::new(None);

fn send_pending_reply() {
    let pending = PENDING.lock().take();
    if let Some((token, w0, w1)) = pending {
        raw::ipc_reply(token, w0, w1);
    }
}

/// Waits for the next message on the pager's endpoint (sending the pending reply, if any, in
/// the same system call).
pub fn receive() -> Received {
    let pending = PENDING.lock().take();
    match pending {
        Some((token, w0, w1)) => raw::ipc_reply_receive(nr::PAGER_ENDPOINT, token, w0, w1),
        None => raw::ipc_receive(nr::PAGER_ENDPOINT),
    }
}

/// Replies to the message behind `token`: the reply goes out with the next system call (with
/// the next receive, in the same call). The kernel's answer is not reported (a reply to a
/// caller that is gone is simply dropped).
pub fn reply(token: u64, w0: u64, w1: u64) {
    let previous = PENDING.lock().replace((token, w0, w1));
    if let Some((token, w0, w1)) = previous {
        raw::ipc_reply(token, w0, w1);
    }
}

/// Copies from the buffer lent with the call behind `token`.
pub fn ipc_read(token: u64, offset: u64, dst: &mut [u8]) -> i64 {
    send_pending_reply();
    raw::ipc_read(token, offset, dst)
}

/// Copies into the buffer lent with the call behind `token`.
pub fn ipc_write(token: u64, offset: u64, src: &[u8]) -> i64 {
    send_pending_reply();
    raw::ipc_write(token, offset, src)
}

/// The kernel command line (cut to 256 bytes; empty if the kernel gives none).
pub fn cmdline() -> alloc::string::String {
    let mut line = [0u8; 256];
    let n = call(
        nr::CMDLINE,
        line.as_mut_ptr() as u64,
        line.len() as u64,
        0,
        0,
    );
    let n = usize::try_from(n).unwrap_or(0).min(line.len());
    alloc::string::String::from_utf8_lossy(&line[..n]).into_owned()
}

/// Prints to the debug console (after the pending reply, as every other call).
pub fn print_fmt(args: fmt::Arguments) {
    send_pending_reply();
    raw::print_fmt(args);
}

/// Prints a line to the debug console.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::metal::sys::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use println;
