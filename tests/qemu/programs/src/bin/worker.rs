//! Maps, faults in, checks and unmaps memory in a loop, with heap allocations, for a while: several
//! run at once under timer preemption.
#![no_std]
#![no_main]

extern crate alloc;

use libvm::{MmapFlags, ProtectionFlags};
use user_rt::*;

entry!(main);

fn main(start: Start) -> u64 {
    let vm = vm();
    let seed = start.badge;
    for round in 0..40u64 {
        let n = 16 + (round as usize % 8) * 4;
        let a = vm.mmap(
            0,
            n * 4096,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_private(),
        );
        check!(a.is_ok(), "worker mmap: {:?}", a);
        let a = a.unwrap_or(0);
        for i in 0..n {
            // SAFETY: mapped above; each first touch is a fault memd serves.
            unsafe {
                core::ptr::write_volatile((a + i * 4096) as *mut u64, seed ^ round ^ i as u64)
            };
        }
        let v: alloc::vec::Vec<u64> = (0..500).map(|x| x * seed).collect();
        for i in 0..n {
            // SAFETY: as above.
            let got = unsafe { core::ptr::read_volatile((a + i * 4096) as *const u64) };
            check!(
                got == seed ^ round ^ i as u64,
                "worker {} lost a write",
                seed
            );
        }
        check!(v[499] == 499 * seed, "worker heap");
        check!(vm.munmap(a, n * 4096).is_ok(), "worker munmap");
    }
    println!("PASS worker {}", seed);
    0
}
