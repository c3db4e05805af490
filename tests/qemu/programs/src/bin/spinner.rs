//! Spins for 1.5 s of clock time without a system call other than `clock`; with timer
//! preemption the other processes finish meanwhile.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    println!("spinner: spinning");
    let t0 = clock();
    while clock() - t0 < 1_500_000_000 {
        core::hint::spin_loop();
    }
    println!("spinner: done");
    0
}
