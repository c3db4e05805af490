//! realwork_quick: `realwork`'s workloads at small sizes (for the QEMU test, which checks the
//! checksums against the same code run on the host; not a timed test).
#![no_std]
#![no_main]

extern crate alloc;

#[path = "../realwork/mod.rs"]
mod realwork;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    realwork::run(true)
}
