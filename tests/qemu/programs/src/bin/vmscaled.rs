//! vmscaled: the scaled rows of the Linux peer's benchmark (how each cost grows with pages,
//! regions and processes, and the probes that give the floor of the operations), in guest
//! instructions per operation under QEMU TCG with `-icount shift=0 -cpu qemu64 -m 512`.
//! `scripts/bench.sh --scaled` boots it and prints both tables. The rows and how each is
//! measured: `../vmscaled.rs`.
#![no_std]
#![no_main]

#[path = "../vmscaled.rs"]
mod vmscaled;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    vmscaled::run(false)
}
