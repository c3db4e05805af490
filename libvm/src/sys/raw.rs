//! The raw system calls of kernel-shim, one definition for every ring-3 program (memd, libvm's
//! transport, the programs' runtime): numbers and registers from [`kernel_shim::abi`].
//!
//! `syscall` takes the number in rax and arguments in rdi, rsi, rdx, r10, r8, r9 (IPC also
//! r12..r15); the result comes back in rax (negative: -errno), `space_apply`'s count in rdx and
//! IPC words in rdi, rsi, rdx, r10, r8, r9, r12, r13. rcx and r11 are clobbered.

use core::arch::asm;
use core::fmt;
use kernel_shim::abi as nr;

/// A raw system call with up to six arguments.
#[inline(always)]
pub fn syscall6(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> i64 {
    let ret: i64;
    // SAFETY: the kernel's system-call ABI: it reads the argument registers, writes rax and
    // clobbers rcx and r11; it never touches our memory except through checked pointers we
    // pass.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, in("r8") e, in("r9") f, lateout("rcx") _, lateout("r11") _,
             options(nostack));
    }
    ret
}

/// A raw system call with no argument.
pub fn syscall0(n: u64) -> i64 {
    syscall6(n, 0, 0, 0, 0, 0, 0)
}

/// A raw system call with up to six arguments that also answers in rdx: (rax, rdx).
#[inline(always)]
pub fn syscall6_rdx(n: u64, a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) -> (i64, u64) {
    let (ret, rdx): (i64, u64);
    // SAFETY: as `syscall6`; rdx is an output too.
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret, in("rdi") a, in("rsi") b,
             inlateout("rdx") c => rdx, in("r10") d, in("r8") e, in("r9") f, lateout("rcx") _,
             lateout("r11") _, options(nostack));
    }
    (ret, rdx)
}

/// Writes bytes to the debug console; returns the count or -errno.
pub fn debug_write(bytes: &[u8]) -> i64 {
    syscall6(
        nr::DEBUG_WRITE,
        bytes.as_ptr() as u64,
        bytes.len() as u64,
        0,
        0,
        0,
        0,
    )
}

/// Reads waiting console bytes (never blocks); returns the count or -errno.
pub fn debug_read(buf: &mut [u8]) -> i64 {
    syscall6(
        nr::DEBUG_READ,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
        0,
        0,
        0,
    )
}

/// Nanoseconds since boot.
pub fn clock() -> u64 {
    syscall0(nr::CLOCK) as u64
}

/// Gives up the rest of the time slice.
pub fn yield_now() {
    syscall0(nr::YIELD);
}

/// Ends the calling process: every one of its threads (those on other processors are stopped
/// first), with exit code `code`.
pub fn exit(code: u64) -> ! {
    syscall6(nr::EXIT, code, 0, 0, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// Ends the calling thread only (the process ends with its last thread); its joiners wake.
pub fn thread_exit(code: u64) -> ! {
    syscall6(nr::THREAD_EXIT, code, 0, 0, 0, 0, 0);
    loop {
        core::hint::spin_loop();
    }
}

/// Starts a thread of the calling process at `rip` with stack pointer `rsp`, rdi = `arg` and
/// TLS (FS) base `tls`; its id, or -errno (`EAGAIN` at the kernel's threads-per-process
/// limit).
pub fn thread_create(rip: u64, rsp: u64, arg: u64, tls: u64) -> i64 {
    syscall6(nr::THREAD_CREATE, rip, rsp, arg, tls, 0, 0)
}

/// Waits until thread `id` of this process has ended (at once if it has); 0 or -errno.
pub fn thread_join(id: u64) -> i64 {
    syscall6(nr::THREAD_JOIN, id, 0, 0, 0, 0, 0)
}

/// Waits on the futex word at `addr` while it holds `expected`; 0 when woken, or -errno
/// (`EAGAIN`: the word held another value).
pub fn futex_wait(addr: u64, expected: u32) -> i64 {
    syscall6(nr::FUTEX_WAIT, addr, expected as u64, 0, 0, 0, 0)
}

/// Wakes up to `count` threads waiting on the futex word at `addr`; how many, or -errno.
pub fn futex_wake(addr: u64, count: u64) -> i64 {
    syscall6(nr::FUTEX_WAKE, addr, count, 0, 0, 0, 0)
}

/// Sets the calling thread's TLS (FS) base; 0 or -errno.
pub fn set_tls(base: u64) -> i64 {
    syscall6(nr::SET_TLS, base, 0, 0, 0, 0, 0)
}

/// The processor running the caller, and how many run the kernel.
pub fn cpu_info() -> (u32, u32) {
    let v = syscall0(nr::CPU_INFO) as u64;
    (v as u32, (v >> 32) as u32)
}

/// A message of 8 words; word 7 is stamped by the kernel with the sender's badge.
pub type Msg = [u64; 8];

/// Calls endpoint `ep` with words 0..7 of `msg` (word 7 is ignored) and a lent buffer; waits
/// for the reply. Returns the kernel status (0 or -errno) and the two reply words.
pub fn ipc_call(ep: u64, msg: &Msg, lend: &mut [u8]) -> (i64, u64, u64) {
    // The lent buffer is our `&mut` slice: memd may write it while we wait, and only then.
    ipc_call_raw(ep, msg, lend.as_mut_ptr() as u64, lend.len() as u64)
}

/// Calls with raw lent-buffer values (`ipc_call`'s body; tests use it to probe the kernel's
/// checks of the lent range).
pub fn ipc_call_raw(ep: u64, msg: &Msg, lend_ptr: u64, lend_len: u64) -> (i64, u64, u64) {
    let (ret, r0, r1): (i64, u64, u64);
    // SAFETY: as `syscall6`; rbx and rbp are not used by the ABI. r12..r15 carry words 5, 6
    // and the lent buffer and come back unchanged or with received words. The kernel checks the
    // lent range against our page tables; this function never touches it.
    unsafe {
        asm!("syscall", inlateout("rax") nr::IPC_CALL as i64 => ret,
             inlateout("rdi") ep => r0, inlateout("rsi") msg[0] => r1, inlateout("rdx") msg[1] => _,
             inlateout("r10") msg[2] => _, inlateout("r8") msg[3] => _, inlateout("r9") msg[4] => _,
             inlateout("r12") msg[5] => _, inlateout("r13") msg[6] => _,
             inlateout("r14") lend_ptr => _, inlateout("r15") lend_len => _,
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    (ret, r0, r1)
}

/// A received message: the token (or -errno), the 8 words (word 7 is the sender's badge) and
/// the length of the buffer the caller lent.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    /// The token to reply with, or -errno.
    pub token: i64,
    /// The words; word 7 is the sender's badge.
    pub words: Msg,
    /// Bytes the caller lent with the call.
    pub lend: u64,
}

/// Waits for a message on endpoint `ep` (which the caller's space must own).
pub fn ipc_receive(ep: u64) -> Received {
    ipc_reply_receive_raw(nr::IPC_RECEIVE, ep, 0, 0, 0)
}

/// Replies to `token` with two words and waits for the next message on `ep`, in one call.
pub fn ipc_reply_receive(ep: u64, token: u64, w0: u64, w1: u64) -> Received {
    ipc_reply_receive_raw(nr::IPC_REPLY_RECEIVE, ep, token, w0, w1)
}

fn ipc_reply_receive_raw(n: u64, ep: u64, token: u64, w0: u64, w1: u64) -> Received {
    let mut m = [0u64; 8];
    let (ret, lend): (i64, u64);
    // SAFETY: as `syscall6`; every message register and r14 (the lent length) are outputs;
    // rsi, rdx and r10 carry the reply of `ipc_reply_receive` (ignored by `ipc_receive`).
    unsafe {
        asm!("syscall", inlateout("rax") n as i64 => ret,
             inlateout("rdi") ep => m[0], inlateout("rsi") token => m[1],
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

/// Replies to the caller behind `token` with two words.
pub fn ipc_reply(token: u64, w0: u64, w1: u64) -> i64 {
    syscall6(nr::IPC_REPLY, token, w0, w1, 0, 0, 0)
}

/// Copies from the buffer lent with the call behind `token`, at `offset`, into `dst`.
pub fn ipc_read(token: u64, offset: u64, dst: &mut [u8]) -> i64 {
    syscall6(
        nr::IPC_READ,
        token,
        offset,
        dst.as_mut_ptr() as u64,
        dst.len() as u64,
        0,
        0,
    )
}

/// Copies `src` into the buffer lent with the call behind `token`, at `offset`.
pub fn ipc_write(token: u64, offset: u64, src: &[u8]) -> i64 {
    syscall6(
        nr::IPC_WRITE,
        token,
        offset,
        src.as_ptr() as u64,
        src.len() as u64,
        0,
        0,
    )
}

/// Creates an endpoint the caller's space owns; returns its number or -errno.
pub fn endpoint_create() -> i64 {
    syscall0(nr::ENDPOINT_CREATE)
}

/// One page-table operation of a `space_apply` batch: `[kind, page, a, b]`.
pub type PageOp = [u64; 4];

/// Applies a batch to `space` (pager only); returns 0 or (-errno, operations done).
pub fn space_apply(space: u64, ops: &[PageOp]) -> (i64, u64) {
    syscall6_rdx(
        nr::SPACE_APPLY,
        space,
        ops.as_ptr() as u64,
        ops.len() as u64,
        0,
        0,
        0,
    )
}

/// The kernel command line (e.g. `init=interactive modules=pager`), as far as it fits in
/// `buf`; empty on error.
pub fn cmdline(buf: &mut [u8]) -> &str {
    // Touch the buffer first: the kernel copies only into pages already present.
    buf.fill(0);
    let n = syscall6(
        nr::CMDLINE,
        buf.as_mut_ptr() as u64,
        buf.len() as u64,
        0,
        0,
        0,
        0,
    );
    let n = usize::try_from(n).unwrap_or(0).min(buf.len());
    core::str::from_utf8(&buf[..n]).unwrap_or("")
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
