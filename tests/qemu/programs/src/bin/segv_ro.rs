//! Writes to memory it made read-only: memd kills it (ACCERR, write).
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags};
use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    let a = vm().mmap(
        0,
        4096,
        ProtectionFlags::READ_WRITE,
        MmapFlags::anonymous_private(),
    );
    check!(a.is_ok(), "mmap: {:?}", a);
    let a = a.unwrap_or(0);
    // SAFETY: mapped writable above.
    unsafe { core::ptr::write_volatile(a as *mut u64, 1) };
    check!(
        vm().mprotect(a, 4096, ProtectionFlags::READ).is_ok(),
        "mprotect"
    );
    // SAFETY: deliberately writing read-only memory: the fault kills this process.
    unsafe { core::ptr::write_volatile(a as *mut u64, 2) };
    println!("FAIL segv_ro: the write to read-only memory went through");
    1
}
