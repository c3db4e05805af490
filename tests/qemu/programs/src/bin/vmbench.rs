//! vmbench: guest instructions per memory operation (run under QEMU TCG with
//! `-icount shift=0 -cpu qemu64 -m 512`, where `rdtsc` counts guest instructions), with the
//! figure names of the Linux peer's benchmark so the two tables line up. `scripts/bench.sh`
//! boots it and prints both tables. The figures and how each is measured: `../vmbench.rs`.
#![no_std]
#![no_main]

#[path = "../vmbench.rs"]
mod vmbench;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    vmbench::run(false)
}
