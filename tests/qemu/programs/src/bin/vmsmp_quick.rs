//! vmsmp_quick: every row of `vmsmp`, a few operations each (for the QEMU tests: every
//! `RESULT` line present and positive on four processors; not a timed test).
#![no_std]
#![no_main]

extern crate alloc;

#[path = "../vmsmp.rs"]
mod vmsmp;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    vmsmp::run(true)
}
