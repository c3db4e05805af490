//! Panics: the runtime's panic handler prints the message and exits with status 101, as a
//! Rust program does (the boot runner passes that status on).
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    println!("panics: about to panic");
    panic!("on purpose");
}
