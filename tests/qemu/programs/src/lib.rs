//! user-rt: the tiny runtime the ring-3 test programs share: the raw system calls of
//! kernel-shim (re-exported from [`libvm::sys::raw`], their one definition), console printing,
//! the panic handler (message, then a backtrace the boot runner symbolizes) and the process
//! entry; libvm's system-call transport and its `GlobalAlloc`, so programs use `Vec`, `Box`
//! and `String` with memory from memd, counting what is asked of it ([`asked`]); and the
//! benchmarks' measurement ([`bench`]).
#![no_std]

extern crate alloc;
// Linked for the symbols a C library would provide (`memcpy` and the others the compiler's code
// calls, the unwinder's two the prebuilt `alloc` names); nothing names the crate.
extern crate nolibc;

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// System-call numbers and message layouts: kernel-shim's ABI, one definition.
pub use kernel_shim::abi as nr;
pub use kernel_shim::abi::{OP_MAP, OP_PROTECT, OP_UNMAP, PAGER_ENDPOINT, TOKEN_EXIT, TOKEN_FAULT};
pub use libvm;

pub mod asked;
pub mod bench;

/// libvm's transport: `ipc_call` to the pager (memd when it is module 0).
pub static TRANSPORT: libvm::sys::SyscallTransport = libvm::sys::SyscallTransport;

/// `Vec`, `Box` and `String` get memory from memd: the heap over brk and mmap, counted.
#[global_allocator]
pub static ALLOCATOR: asked::Counting = asked::Counting::new();

/// Reads the word at `addr`: memory the program mapped, or an address where it expects to be
/// killed (the kill is then what it tests).
pub fn read(addr: usize) -> u64 {
    // SAFETY: a volatile load from a user address the program chose: it yields the word there,
    // or the kernel ends the process with a fault. Programs pass memory they mapped through
    // memd, never memory the compiler tracks as a Rust object.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// Writes `v` to the word at `addr`: memory the program mapped writable, or an address where
/// it expects to be killed.
pub fn write(addr: usize, v: u64) {
    // SAFETY: as for `read`: a volatile store to a user address the program chose, which
    // either lands in memory it mapped through memd or ends the process with a fault.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

/// The memory calls of this process (libvm's `Vm` over [`TRANSPORT`]).
pub fn vm() -> libvm::Vm<&'static libvm::sys::SyscallTransport> {
    libvm::Vm::new(&TRANSPORT)
}

/// memd's system-wide statistics. A refusal fails the program (`FAIL`, exit 1): figures read
/// as zeros would make a check pass, or fail, for the wrong reason.
#[track_caller]
pub fn global_stats() -> libvm::proto::GlobalStats {
    vm().global_stats()
        .unwrap_or_else(|e| stats_refused("global_stats", e))
}

/// The statistics of process `pid` (0: this one). A refusal fails the program, as in
/// [`global_stats`].
#[track_caller]
pub fn process_stats(pid: u64) -> libvm::proto::ProcessStats {
    vm().process_stats(pid)
        .unwrap_or_else(|e| stats_refused("process_stats", e))
}

#[track_caller]
fn stats_refused(call: &str, e: libvm::VmError) -> ! {
    let at = core::panic::Location::caller();
    println!("FAIL {}:{}: {}: {:?}", at.file(), at.line(), call, e);
    exit(1)
}

/// The frame pointer of `_start`, the outermost frame: a backtrace reads no frame above it.
static OUTERMOST_FRAME: AtomicU64 = AtomicU64::new(0);

/// Installs libvm's process-wide transport and notes where the stack of frames ends (done by
/// [`entry!`] first thing in `_start`, before `main`).
#[inline(never)]
pub fn init() {
    let caller: u64;
    // SAFETY: reads the word rbp points at: this function's saved rbp (the programs are built
    // with frame pointers), i.e. the frame pointer of `_start`, which called it; its own stack
    // frame is mapped as it runs.
    unsafe {
        core::arch::asm!("mov {}, [rbp]", out(reg) caller, options(readonly, nostack, preserves_flags))
    };
    OUTERMOST_FRAME.store(caller, Ordering::Relaxed);
    check!(
        libvm::set_transport(&TRANSPORT).is_ok(),
        "libvm's transport was installed before init"
    );
    ALLOCATOR.hold_across_fork();
}

/// errno values the kernel returns (negated in rax).
pub mod errno {
    #![allow(missing_docs)]
    pub const EPERM: i64 = 1;
    pub const ESRCH: i64 = 3;
    pub const EFAULT: i64 = 14;
    pub const EINVAL: i64 = 22;
    pub const ENOMEM: i64 = 12;
    pub const E2BIG: i64 = 7;
    pub const ENOSYS: i64 = 38;
}

pub use libvm::sys::raw::*;

/// Spare page-table frames a process may keep after its mappings are gone (memd's
/// `tables::MAX_SPARE`): memd takes them back only beyond.
pub const SPARE_TABLES: u64 = 8;

/// Checks that memd's data frames in use are back where `base` had them (what a test mapped
/// and touched, all given back); a difference fails the program.
#[track_caller]
pub fn check_data_frames_back(base: &libvm::proto::GlobalStats) {
    let now = global_stats();
    if now.data_frames() != base.data_frames() {
        let at = core::panic::Location::caller();
        println!(
            "FAIL {}:{}: data frames {} then {}",
            at.file(),
            at.line(),
            base.data_frames(),
            now.data_frames()
        );
        exit(1)
    }
}

/// The system-wide figures of a moment and this process's own frames then, to compare with a
/// later moment whatever this process's own memory did meanwhile (a coordinator's heap grows
/// with the listings of the processes it ran, which may have been many at once).
pub struct Baseline {
    /// The system-wide figures.
    pub global: libvm::proto::GlobalStats,
    /// This process's private data frames and its page-table frames.
    own: (u64, u64),
}

impl Baseline {
    /// The figures now.
    pub fn now() -> Baseline {
        Baseline {
            global: global_stats(),
            own: own_frames(),
        }
    }

    /// This process's private data frames and page-table frames then.
    pub fn own(&self) -> (u64, u64) {
        self.own
    }

    /// The system-wide figures expected now if nothing but this process's own memory changed
    /// since: the baseline's, plus what this process holds more.
    pub fn expected(&self) -> libvm::proto::GlobalStats {
        let (data, tables) = own_frames();
        let (data, tables) = (
            data.saturating_sub(self.own.0),
            tables.saturating_sub(self.own.1),
        );
        let mut g = self.global;
        g.frames_used += data + tables;
        g.page_table_frames += tables;
        g
    }
}

/// This process's private data frames and page-table frames.
fn own_frames() -> (u64, u64) {
    let s = process_stats(0);
    (s.private_pages, s.page_table_frames)
}

/// Whether memd is back where `base` was: the same data frames in use and the same processes,
/// and page-table frames no more than the spare ones a process keeps above.
pub fn settled(base: &libvm::proto::GlobalStats, now: &libvm::proto::GlobalStats) -> bool {
    now.data_frames() == base.data_frames()
        && now.page_table_frames <= base.page_table_frames + SPARE_TABLES
        && now.processes == base.processes
}

/// The argument string this program was spawned with (`Vm::spawn_with_args`), as bytes;
/// empty when it was started without one. A refused `ARGS` fails the program.
pub fn arg_bytes() -> alloc::vec::Vec<u8> {
    match vm().args() {
        Ok(bytes) => bytes,
        Err(e) => {
            println!("FAIL args: memd refused ARGS: {e:?}");
            exit(1)
        }
    }
}

/// The argument string this program was spawned with, split at spaces ([`arg_bytes`]).
pub fn args() -> alloc::vec::Vec<alloc::string::String> {
    let bytes = arg_bytes();
    core::str::from_utf8(&bytes)
        .unwrap_or("")
        .split_ascii_whitespace()
        .map(alloc::string::String::from)
        .collect()
}

/// Console sink for `print!`.
pub struct Console;

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        debug_write(s.as_bytes());
        Ok(())
    }
}

/// Prints to the debug console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::print_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the debug console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::print_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Checks a condition in a test program: prints `FAIL` with the location and exits 1.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            $crate::println!("FAIL {}:{}: {}", file!(), line!(), format_args!($($arg)*));
            $crate::exit(1);
        }
    };
}

/// The arguments the kernel starts a boot program with (or memd: then `badge` is memd's pid
/// of the process and the others are 0).
#[derive(Clone, Copy, Debug)]
pub struct Start {
    /// The badge of this program's address space (memd's pid when memd started it).
    pub badge: u64,
    /// This thread's id.
    pub thread: u64,
    /// Whether this program is the pager.
    pub pager: bool,
}

/// Declares the program's `main(Start)`; the process exits with its return value.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn _start(badge: u64, thread: u64, pager: u64) -> ! {
            $crate::init();
            let code = $main($crate::Start {
                badge,
                thread,
                pager: pager != 0,
            });
            $crate::exit(code)
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("FAIL panic: {}", info);
    let mut name = [0u8; libvm::proto::MAX_NAME + 1];
    backtrace(own_name(&mut name));
    exit(101)
}

/// This process's name, as memd lists it in `PROCESSES` for its own pid (the boot module it
/// runs: a forked child has its parent's); `?` when the pager does not say (the kernel tests'
/// pager). Asks memd without allocating: a panic may come from the allocator.
pub fn own_name(buf: &mut [u8; libvm::proto::MAX_NAME + 1]) -> &str {
    use libvm::Transport;
    use libvm::proto::{self, ProcessInfo, Request, Words};
    let Ok(me) = vm().process_stats(0).map(|s| s.pid) else {
        return "?";
    };
    let mut bulk = [0u8; ProcessInfo::WORDS * 8];
    let reply = TRANSPORT.call(&Request::Processes { from: me }.encode(), &mut bulk);
    let Some(info) = proto::decode_reply(&reply)
        .ok()
        .filter(|&n| n == 1)
        .and_then(|_| ProcessInfo::read_from(&bulk))
        .filter(|info| info.pid == me && !info.name().is_empty())
    else {
        return "?";
    };
    let n = info.name().len();
    buf[..n].copy_from_slice(info.name().as_bytes());
    core::str::from_utf8(&buf[..n]).unwrap_or("?")
}

/// Deepest backtrace printed.
const MAX_FRAMES: usize = 32;

/// Prints the return addresses of the calls that led here, in the format the boot runner
/// symbolizes with the ELF of the program `name` (`backtrace (NAME):`, then `  #N 0xADDRESS`
/// a line; #0 is in this function). The programs are built with frame pointers: each frame
/// holds its caller's rbp and return address. Only frames between here and `_start`'s are
/// read (not `_start`'s own, whose return address is no call's): all on this thread's stack.
#[inline(never)]
pub fn backtrace(name: &str) {
    let (rip, mut rbp): (u64, u64);
    // SAFETY: reads rip and rbp into registers; no memory is touched.
    unsafe {
        core::arch::asm!("lea {}, [rip]", "mov {}, rbp", out(reg) rip, out(reg) rbp,
                         options(nomem, nostack, preserves_flags))
    };
    let outermost = OUTERMOST_FRAME.load(Ordering::Relaxed);
    let mut out = Lines::default();
    let _ = fmt::write(
        &mut out,
        format_args!("backtrace ({}):\n  #0 {:#x}\n", name, rip),
    );
    for n in 1..MAX_FRAMES {
        if rbp % 8 != 0 || rbp >= outermost {
            break;
        }
        // SAFETY: `rbp` lies between this function's frame and `_start`'s, on this thread's
        // stack, which is mapped (backed on demand) from here to above `_start`'s frame; a
        // frame pointer that is not one only gives wrong numbers, never a read off the stack.
        let (next, ret) = unsafe {
            (
                core::ptr::read_volatile(rbp as *const u64),
                core::ptr::read_volatile((rbp + 8) as *const u64),
            )
        };
        if ret == 0 {
            break;
        }
        let _ = fmt::write(&mut out, format_args!("  #{} {:#x}\n", n, ret));
        // Frames of callers lie higher up: a chain that does not climb is at its end.
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    out.flush();
}

/// A backtrace's lines gathered into as few console writes as fit (another program's line
/// cannot cut one of them).
struct Lines {
    b: [u8; 1024],
    n: usize,
}

impl Default for Lines {
    fn default() -> Lines {
        Lines { b: [0; 1024], n: 0 }
    }
}

impl Lines {
    fn flush(&mut self) {
        debug_write(&self.b[..self.n]);
        self.n = 0;
    }
}

impl fmt::Write for Lines {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.n + s.len() > self.b.len() {
            self.flush();
        }
        for &c in s.as_bytes() {
            if self.n == self.b.len() {
                self.flush();
            }
            self.b[self.n] = c;
            self.n += 1;
        }
        Ok(())
    }
}
