//! vmscaled_quick: every row of `vmscaled`, a couple of operations each (for the QEMU tests:
//! every `RESULT` line present and positive; not a timed test).
#![no_std]
#![no_main]

#[path = "../vmscaled.rs"]
mod vmscaled;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    vmscaled::run(true)
}
