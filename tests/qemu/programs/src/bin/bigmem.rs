//! More than 3.5 GiB touched by one process (boot with 4.5 GiB of RAM: QEMU puts 1.5 GiB of it
//! above 4 GiB, which the kernel maps and hands to memd like the rest): a mapping of 3.625 GiB
//! gets a word written in every page, each page then reads its own; then it goes away and
//! memd's frames in use are back where they were.
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const BYTES: usize = (3 << 30) + (5 << 27);

fn main(_: Start) -> u64 {
    let vm = vm();
    let base = global_stats();
    println!(
        "bigmem: memd has {} MiB of frames",
        (base.frames_total * PAGE as u64) >> 20
    );
    let a = vm
        .mmap(0, BYTES, P::READ_WRITE, MmapFlags::anonymous_private())
        .unwrap_or(0);
    check!(a != 0, "mmap of {} MiB", BYTES >> 20);
    for i in 0..BYTES / PAGE {
        write(a + i * PAGE, i as u64);
    }
    for i in (0..BYTES / PAGE).step_by(4093) {
        check!(read(a + i * PAGE) == i as u64, "page {}", i);
    }
    let touched = vm.process_stats(0).map(|s| s.resident_pages).unwrap_or(0);
    check!(
        touched as usize >= BYTES / PAGE,
        "{} pages resident",
        touched
    );
    println!("PASS {} MiB touched", BYTES >> 20);
    check!(vm.munmap(a, BYTES).is_ok(), "munmap");
    check_data_frames_back(&base);
    println!("PASS memory back");
    0
}
