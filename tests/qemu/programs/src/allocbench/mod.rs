//! The allocator benchmark, shared by `allocbench` (the full run) and `allocbench_quick` (a
//! smoke run for the QEMU tests): the same deterministic allocation trace ([`trace`]) over
//! each allocator, every allocator in a process of its own.
//!
//! Started without arguments, the program spawns itself once per allocator of [`ALLOCATORS`]
//! (with the allocator's name as its argument) and waits for each; a child runs the trace over
//! its allocator and prints one `RESULT` line. `scripts/allocbench.sh` boots it under
//! `-icount shift=0` and prints the table.
//!
//! The allocators, all over libvm's `vm_sbrk` (their heap) and `vm_mmap`/`vm_munmap` (blocks
//! above 128 KiB, or 64 KiB for `pow2`, each a mapping of its own):
//! - `pow2`: libvm's allocator before (power-of-two blocks, a free list per size), [`pow2`];
//! - `talc`: the talc crate (4.x) as it comes, [`talc`];
//! - `dlmalloc`: the dlmalloc crate (Doug Lea's allocator, Rust's own on wasm), [`dlmalloc`];
//! - `libvm`: libvm's `VmAllocator` now: talc, and the pages of freed blocks of 64 KiB or more
//!   and a free top of 1 MiB or more given back to memd.
//!
//! The wrappers' `GlobalAlloc` methods are never inlined into the trace, so every allocator is
//! called as a program's global allocator is (libvm's, in another crate, is not either).

mod dlmalloc;
mod pow2;
mod talc;
mod trace;

use user_rt::*;

/// The allocators measured, in the order of the table.
pub const ALLOCATORS: [&str; 4] = ["pow2", "talc", "dlmalloc", "libvm"];

/// Runs the benchmark as `program` (this program's boot module name): the full trace, or a
/// small one when `quick`.
pub fn run(program: &str, quick: bool) -> u64 {
    let scale = if quick { &trace::QUICK } else { &trace::FULL };
    let args = arg_bytes();
    let Ok(name) = core::str::from_utf8(&args) else {
        println!("FAIL allocbench: an argument that is not UTF-8");
        return 1;
    };
    match name {
        "" => {}
        "pow2" => trace::run(name, &pow2::Pow2Heap::new(), scale),
        "talc" => trace::run(name, &talc::TalcHeap::new(), scale),
        "dlmalloc" => trace::run(name, &dlmalloc::DlHeap::new(), scale),
        "libvm" => trace::run(name, &libvm::VmAllocator::new(), scale),
        _ => {
            println!("FAIL allocbench: no allocator {:?}", name);
            return 1;
        }
    }
    if !name.is_empty() {
        return 0;
    }
    drop(args);
    println!("ALLOCBENCH_BEGIN");
    let vm = vm();
    for name in ALLOCATORS {
        let Ok(pid) = vm.spawn_with_args(program, name) else {
            println!("FAIL allocbench: cannot spawn {} {}", program, name);
            return 1;
        };
        match vm.wait(pid) {
            Ok((0, _)) => {}
            other => {
                println!("FAIL allocbench: {} ended with {:?}", name, other);
                return 1;
            }
        }
    }
    println!("ALLOCBENCH_END");
    0
}
