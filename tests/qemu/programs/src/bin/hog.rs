//! Takes memory until memd says ENOMEM, then touches lazily mapped memory until memd cannot
//! serve a fault and kills it.
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags};
use user_rt::*;

entry!(main);

const CHUNK: usize = 1 << 20;

fn main(_: Start) -> u64 {
    let vm = vm();
    // Past its data limit the break does not move: ENOMEM.
    let e = vm.sbrk(isize::MAX / 2);
    check!(e.map_err(|e| e.errno()) == Err(12), "a huge sbrk: {:?}", e);
    println!("PASS hog got ENOMEM");
    // Then it touches lazily mapped memory until a fault cannot be served.
    let mut touched = 0usize;
    loop {
        let lazy = vm.mmap(
            0,
            16 * CHUNK,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_private(),
        );
        check!(lazy.is_ok(), "a lazy mapping: {:?}", lazy);
        let a = lazy.unwrap_or(0);
        for off in (0..16 * CHUNK).step_by(4096) {
            // SAFETY: mapped above; the fault memd cannot serve kills this process.
            unsafe { core::ptr::write_volatile((a + off) as *mut u8, 1) };
        }
        touched += 16;
        if touched > 4096 {
            println!("FAIL hog: touched {} MiB and was not stopped", touched);
            return 1;
        }
    }
}
