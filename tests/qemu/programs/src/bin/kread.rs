//! Reads the kernel half (the kernel's physical window, where the kernel image lies at 1 MiB,
//! then the image's own mapping): ring 3 must not see it; the first read kills this process.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    for addr in [0xFFFF_8000_0010_0000u64, 0xFFFF_FFFF_8010_8000] {
        println!("kread: reading {:#x}", addr);
        // SAFETY: deliberately faulting: the kernel half is supervisor-only, so the read
        // raises #PF and the process is killed.
        let v = unsafe { core::ptr::read_volatile(addr as *const u64) };
        println!("FAIL kread: read {:#x} at {:#x} from ring 3", v, addr);
    }
    1
}
