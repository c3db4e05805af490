//! allocbench: libvm's allocator beside talc and dlmalloc over the same trace, each in a
//! process of its own: bytes requested against resident memory at the peak and at the end,
//! guest instructions per malloc, free and realloc (run under QEMU TCG with
//! `-icount shift=0 -cpu qemu64 -m 512`, where `rdtsc` counts guest instructions).
//! `scripts/allocbench.sh` boots it and prints the table. The trace: `../allocbench/trace.rs`.
#![no_std]
#![no_main]

#[path = "../allocbench/mod.rs"]
mod allocbench;

use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    allocbench::run("allocbench", false)
}
