//! Exits with `KILLED | 3` as its code, as if the kernel had killed it for a breakpoint: the
//! kernel keeps only the low 32 bits of an exit code, so its pager sees an exit with code 3.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    println!("fakekill: exiting with {:#x}", nr::KILLED | 3);
    nr::KILLED | 3
}
