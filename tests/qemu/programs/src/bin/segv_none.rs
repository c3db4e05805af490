//! Reads PROT_NONE memory: memd kills it (ACCERR, read).
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags};
use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    let a = vm().mmap(
        0,
        4096,
        ProtectionFlags::NONE,
        MmapFlags::anonymous_private(),
    );
    check!(a.is_ok(), "mmap: {:?}", a);
    // SAFETY: deliberately reading PROT_NONE memory: the fault kills this process.
    let v = unsafe { core::ptr::read_volatile(a.unwrap_or(0) as *const u64) };
    println!("FAIL segv_none: read {} from PROT_NONE memory", v);
    1
}
