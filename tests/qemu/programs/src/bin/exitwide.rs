//! Exits with a code wider than 32 bits, bit 32 set (the bit the kernel sets on a kill) and 6
//! below: an exit code is 32 bits, so this is an exit with status 6, never a kill by vector 6.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    println!("exitwide: exit(1 << 32 | 6)");
    1 << 32 | 6
}
