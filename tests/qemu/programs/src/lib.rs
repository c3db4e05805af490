//! user-rt: the tiny runtime the ring-3 test programs share: the raw system calls of
//! kernel-shim (re-exported from [`libvm::sys::raw`], their one definition), console printing,
//! the panic handler and the process entry; libvm's system-call transport and its
//! `GlobalAlloc`, so programs use `Vec`, `Box` and `String` with memory from memd.
#![no_std]

extern crate alloc;

use core::fmt;

/// System-call numbers and message layouts: kernel-shim's ABI, one definition.
pub use kernel_shim::abi as nr;
pub use kernel_shim::abi::{OP_MAP, OP_PROTECT, OP_UNMAP, PAGER_ENDPOINT, TOKEN_EXIT, TOKEN_FAULT};
pub use libvm;

/// libvm's transport: `ipc_call` to the pager (memd when it is module 0).
pub static TRANSPORT: libvm::sys::SyscallTransport = libvm::sys::SyscallTransport;

/// `Vec`, `Box` and `String` get memory from memd: the heap over brk and mmap.
#[global_allocator]
static ALLOCATOR: libvm::VmAllocator = libvm::VmAllocator::new();

/// The memory calls of this process (libvm's `Vm` over [`TRANSPORT`]).
pub fn vm() -> libvm::Vm<&'static libvm::sys::SyscallTransport> {
    libvm::Vm::new(&TRANSPORT)
}

/// Installs libvm's process-wide transport (done by [`entry!`] before `main`).
pub fn init() {
    let _ = libvm::set_transport(&TRANSPORT);
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

/// Whether memd is back where `base` was: the same data frames in use and the same processes,
/// and page-table frames no more than the spare ones a process keeps above.
pub fn settled(base: &libvm::proto::GlobalStats, now: &libvm::proto::GlobalStats) -> bool {
    now.data_frames() == base.data_frames()
        && now.page_table_frames <= base.page_table_frames + SPARE_TABLES
        && now.processes == base.processes
}

/// The argument string this program was spawned with (`Vm::spawn_with_args`), split at
/// spaces; empty when it was started without one.
pub fn args() -> alloc::vec::Vec<alloc::string::String> {
    let bytes = vm().args().unwrap_or_default();
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
    exit(101)
}
