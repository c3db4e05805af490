//! Where layout randomization put this process: prints its first mmap address, its break and
//! the address of a variable on its stack; then (unless spawned with `child`) spawns itself
//! once more and waits, so a boot prints two processes' layouts.
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags};
use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    let vm = vm();
    let mmap = vm
        .mmap(
            0,
            4096,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap_or(0);
    let heap = vm.brk(0).unwrap_or(0);
    let local = 0u64;
    let stack = core::hint::black_box(&local) as *const u64 as usize;
    let child = args().iter().any(|a| a == "child");
    println!(
        "aslrprobe: {} mmap={:#x} heap={:#x} stack={:#x}",
        if child { "child" } else { "parent" },
        mmap,
        heap,
        stack
    );
    if !child {
        let pid = vm.spawn_with_args("aslrprobe", "child");
        check!(pid.is_ok(), "spawn: {:?}", pid);
        check!(vm.wait(pid.unwrap_or(0)).map(|w| w.0) == Ok(0), "child");
        println!("PASS aslrprobe");
    }
    0
}
