//! Prints a greeting and exits.
#![no_std]
#![no_main]

use user_rt::{Start, entry, println};

entry!(main);

fn main(start: Start) -> u64 {
    println!(
        "hello from ring 3 (badge {}, thread {})",
        start.badge, start.thread
    );
    println!("PASS hello");
    0
}
