//! allocbench_quick: `allocbench` over a small trace (for the QEMU tests: every allocator's
//! `RESULT` line present and sound; not a timed test).
#![no_std]
#![no_main]

#[path = "../allocbench/mod.rs"]
mod allocbench;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    allocbench::run("allocbench_quick", true)
}
