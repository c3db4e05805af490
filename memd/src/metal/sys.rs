//! The raw system calls of kernel-shim that memd makes (numbers and registers from
//! [`kernel_shim::abi`]), and console printing.

use core::arch::asm;
use core::fmt;
use kernel_shim::abi as nr;
use spin::Mutex;

/// A raw system call with up to four arguments; rax (a value or -errno) and rdx.
#[inline(always)]
pub fn syscall4(n: u64, a: u64, b: u64, c: u64, d: u64) -> (i64, u64) {
    send_pending_reply();
    raw4(n, a, b, c, d)
}

/// A raw system call with five arguments (the fifth in r8); rax (a value or -errno) and rdx.
#[inline(always)]
pub fn syscall5(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64) -> (i64, u64) {
    send_pending_reply();
    let (ret, rdx): (i64, u64);
    // SAFETY: as `raw4`, with r8 as one more argument register (the kernel only reads it).
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a, in("rsi") b,
             inlateout("rdx") c => rdx, in("r10") d, in("r8") e, lateout("rcx") _,
             lateout("r11") _, options(nostack));
    }
    (ret, rdx)
}

fn raw4(n: u64, a: u64, b: u64, c: u64, d: u64) -> (i64, u64) {
    let (ret, rdx): (i64, u64);
    // SAFETY: kernel-shim's system-call ABI: it reads rdi, rsi, rdx, r10, writes rax (and rdx
    // for `space_apply`), clobbers rcx and r11, and touches our memory only through pointers we
    // pass, each checked against our page tables.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a, in("rsi") b,
             inlateout("rdx") c => rdx, in("r10") d, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    (ret, rdx)
}

/// A system call returning only rax.
pub fn call(n: u64, a: u64, b: u64, c: u64, d: u64) -> i64 {
    syscall4(n, a, b, c, d).0
}

/// Ends memd's thread (the kernel reports the pager's end).
pub fn exit(code: u64) -> ! {
    call(nr::EXIT, code, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// One received message: the token (or -errno), the 8 words, the length of the lent buffer.
pub struct Received {
    /// The token, or -errno.
    pub token: i64,
    /// The words; word 7 is the sender's badge.
    pub words: [u64; 8],
    /// Bytes the caller lent with the call.
    pub lend: u64,
}

/// A reply held back to go out with the next receive, in one `ipc_reply_receive`: token, w0,
/// w1. Any other system call sends it first, so the kernel sees every reply where memd made
/// it, relative to all else memd asks of it.
static PENDING: Mutex<Option<(u64, u64, u64)>> = Mutex::new(None);

fn send_pending_reply() {
    let pending = PENDING.lock().take();
    if let Some((token, w0, w1)) = pending {
        raw4(nr::IPC_REPLY, token, w0, w1, 0);
    }
}

/// Waits for the next message on the pager's endpoint (sending the pending reply, if any, in
/// the same system call).
pub fn receive() -> Received {
    let pending = PENDING.lock().take();
    let (n, token, w0, w1) = match pending {
        Some((token, w0, w1)) => (nr::IPC_REPLY_RECEIVE, token, w0, w1),
        None => (nr::IPC_RECEIVE, 0, 0, 0),
    };
    let mut m = [0u64; 8];
    let (ret, lend): (i64, u64);
    // SAFETY: as `syscall4`; every message register and r14 (the lent length) are outputs;
    // rsi, rdx and r10 carry the reply of `ipc_reply_receive` (ignored by `ipc_receive`).
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret,
             inlateout("rdi") nr::PAGER_ENDPOINT => m[0], inlateout("rsi") token => m[1],
             inlateout("rdx") w0 => m[2], inlateout("r10") w1 => m[3], lateout("r8") m[4],
             lateout("r9") m[5], lateout("r12") m[6], lateout("r13") m[7], lateout("r14") lend,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    Received {
        token: ret,
        words: m,
        lend,
    }
}

/// Replies to the message behind `token`: the reply goes out with the next system call (with
/// the next receive, in the same call). The kernel's answer is not reported (a reply to a
/// caller that is gone is simply dropped).
pub fn reply(token: u64, w0: u64, w1: u64) {
    let previous = PENDING.lock().replace((token, w0, w1));
    if let Some((token, w0, w1)) = previous {
        raw4(nr::IPC_REPLY, token, w0, w1, 0);
    }
}

/// Copies from the buffer lent with the call behind `token`.
pub fn ipc_read(token: u64, offset: u64, dst: &mut [u8]) -> i64 {
    call(
        nr::IPC_READ,
        token,
        offset,
        dst.as_mut_ptr() as u64,
        dst.len() as u64,
    )
}

/// Copies into the buffer lent with the call behind `token`.
pub fn ipc_write(token: u64, offset: u64, src: &[u8]) -> i64 {
    call(
        nr::IPC_WRITE,
        token,
        offset,
        src.as_ptr() as u64,
        src.len() as u64,
    )
}

/// Writes bytes to the debug console.
pub fn debug_write(bytes: &[u8]) {
    call(
        nr::DEBUG_WRITE,
        bytes.as_ptr() as u64,
        bytes.len() as u64,
        0,
        0,
    );
}

/// Formats into a stack buffer and writes it with one system call (lines stay whole).
pub fn print_fmt(args: fmt::Arguments) {
    struct Buf {
        b: [u8; 256],
        n: usize,
    }
    impl fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for &c in s.as_bytes() {
                if self.n == self.b.len() {
                    debug_write(&self.b);
                    self.n = 0;
                }
                self.b[self.n] = c;
                self.n += 1;
            }
            Ok(())
        }
    }
    let mut b = Buf { b: [0; 256], n: 0 };
    let _ = fmt::write(&mut b, args);
    debug_write(&b.b[..b.n]);
}

/// Prints a line to the debug console.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::metal::sys::print_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use println;
