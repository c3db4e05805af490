//! Touches a page the pager refuses to serve: the kernel kills it.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    println!("crasher: touching 0x20000000");
    // SAFETY: deliberately faulting; the pager refuses and the kernel kills this process.
    unsafe { core::ptr::write_volatile(0x2000_0000 as *mut u64, 1) };
    println!("FAIL crasher survived its fault");
    1
}
