//! Touches unmapped pages of the demand area: each fault goes to the pager, which maps a
//! zeroed frame; the thread resumes and the memory works.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    let p = 0x1000_0000 as *mut u64;
    // SAFETY: the pager maps this page on the fault the first access raises.
    let v = unsafe { core::ptr::read_volatile(p) };
    check!(v == 0, "a fresh page reads zero: {:#x}", v);
    for i in 0..4u64 {
        let q = (0x1000_0000 + i * 4096 + 8) as *mut u64;
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(q, 0xC0FFEE + i) };
    }
    for i in 0..4u64 {
        let q = (0x1000_0000 + i * 4096 + 8) as *mut u64;
        // SAFETY: mapped by now.
        let v = unsafe { core::ptr::read_volatile(q) };
        check!(v == 0xC0FFEE + i, "page {} holds {:#x}", i, v);
    }
    println!("PASS demand");
    0
}
