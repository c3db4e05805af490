//! realwork: the Linux peer's real-program workloads (miniz_oxide deflate and inflate of 8 MiB
//! of text, a hashbrown map of 1M keys, alloc's sort of 4M values, three 64 MiB touch probes)
//! at the peer's sizes, each line with guest instructions, resident memory and faults (run
//! under QEMU TCG with `-icount shift=0 -cpu qemu64 -m 512`). `scripts/bench.sh --realwork`
//! boots it and prints its rows beside Linux's. The lines: `../realwork/mod.rs`.
#![no_std]
#![no_main]

extern crate alloc;

#[path = "../realwork/mod.rs"]
mod realwork;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    realwork::run(false)
}
