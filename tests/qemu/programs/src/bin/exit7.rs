//! Exits with code 7 at once (a child for spawn/exit and wait tests).
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    7
}
