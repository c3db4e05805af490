//! Reads near address 0, where nothing is ever mapped: memd kills it (MAPERR, read).
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    // SAFETY: deliberately reading the null guard: the fault kills this process.
    let v = unsafe { core::ptr::read_volatile(core::ptr::with_exposed_provenance::<u64>(0x100)) };
    println!("FAIL segv_null: read {}", v);
    1
}
