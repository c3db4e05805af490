//! The system calls memd makes, over libvm's raw ones ([`libvm::sys::raw`]), with one twist:
//! a reply is held back to go out with the next receive in one `ipc_reply_receive`, and any
//! other system call sends it first, so the kernel sees every reply where memd made it,
//! relative to all else memd asks of it. Each of memd's threads (its workers: one per
//! processor) holds back its own: its worker block ([`Worker`], where its FS base points)
//! says which it is.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
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

/// The most worker threads memd runs (one per processor the kernel runs on).
pub const MAX_WORKERS: usize = 8;

/// A worker thread's block: its FS base points here (word 0 is the block's address, as the
/// x86_64 TLS convention has it; word 1 its index; word 2 the top of its stack).
#[repr(C)]
pub struct Worker {
    this: AtomicU64,
    index: AtomicU64,
    stack_top: AtomicU64,
}

static WORKERS: [Worker; MAX_WORKERS] = [const {
    Worker {
        this: AtomicU64::new(0),
        index: AtomicU64::new(0),
        stack_top: AtomicU64::new(0),
    }
}; MAX_WORKERS];

/// Prepares worker block `index` (< [`MAX_WORKERS`]) for a thread whose stack ends at
/// `stack_top`; its address, the thread's FS base.
pub fn worker_block(index: usize, stack_top: u64) -> u64 {
    let w = &WORKERS[index];
    w.this.store(w as *const Worker as u64, Ordering::Relaxed);
    w.index.store(index as u64, Ordering::Relaxed);
    w.stack_top.store(stack_top, Ordering::Relaxed);
    w as *const Worker as u64
}

/// Makes the calling thread worker `index`, its stack ending at `stack_top` (the first
/// thread, before anything else: every other call here reads its block).
pub fn become_worker(index: usize, stack_top: u64) {
    if raw::set_tls(worker_block(index, stack_top)) != 0 {
        raw::exit(1);
    }
}

/// The calling worker's block.
fn me() -> &'static Worker {
    let at: u64;
    // SAFETY: every memd thread's FS base is its worker block (`become_worker` for the first,
    // `thread_create`'s TLS argument for the others), whose word 0 is its own address.
    unsafe {
        core::arch::asm!("mov {}, fs:[0]", out(reg) at, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: the address of one of the static blocks.
    unsafe { &*(at as *const Worker) }
}

/// The calling worker's index.
pub fn worker() -> usize {
    me().index.load(Ordering::Relaxed) as usize % MAX_WORKERS
}

/// The top of the calling worker's stack.
pub fn stack_top() -> u64 {
    me().stack_top.load(Ordering::Relaxed)
}

/// The reply each worker holds back: token, w0, w1.
static PENDING: [Mutex<Option<(u64, u64, u64)>>; MAX_WORKERS] =
    [const { Mutex::new(None) }; MAX_WORKERS];

fn send_pending_reply() {
    let pending = PENDING[worker()].lock().take();
    if let Some((token, w0, w1)) = pending {
        raw::ipc_reply(token, w0, w1);
    }
}

/// Waits for the next message on the pager's endpoint (sending the pending reply, if any, in
/// the same system call).
pub fn receive() -> Received {
    let pending = PENDING[worker()].lock().take();
    match pending {
        Some((token, w0, w1)) => raw::ipc_reply_receive(nr::PAGER_ENDPOINT, token, w0, w1),
        None => raw::ipc_receive(nr::PAGER_ENDPOINT),
    }
}

/// Replies to the message behind `token`: the reply goes out with the next system call (with
/// the next receive, in the same call). The kernel's answer is not reported (a reply to a
/// caller that is gone is simply dropped).
pub fn reply(token: u64, w0: u64, w1: u64) {
    let previous = PENDING[worker()].lock().replace((token, w0, w1));
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
