//! vmsmp: the multi-CPU rows (guest instructions per operation of all processors together, run
//! under QEMU TCG with `-icount shift=0 -cpu qemu64 -m 512 -smp 4`), with the row names of the
//! Linux peer's `run.sh --smp` so the two tables line up. `scripts/bench.sh --smp` boots it and
//! prints both. The rows and how each is measured: `../vmsmp.rs`.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "../vmsmp.rs"]
mod vmsmp;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    vmsmp::run(false)
}
