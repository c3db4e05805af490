//! vmbench_quick: every figure of `vmbench`, a few operations each (for the QEMU tests: every
//! `RESULT` line present and positive; not a timed test).
#![no_std]
#![no_main]

#[path = "../vmbench.rs"]
mod vmbench;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    vmbench::run(true)
}
