//! Out of memory (module 1 of a memd boot; `hog`, `worker` and `exit7` in the pack): a process
//! that exhausts memory gets ENOMEM and is then killed when a fault cannot be served, while
//! this process (and its memory) and memd go on: a worker runs fine afterwards; every frame
//! comes back.
#![no_std]
#![no_main]

use libvm::proto::wait_status as ws;
use user_rt::*;

entry!(main);

fn main(_: Start) -> u64 {
    let vm = vm();
    let base = global_stats();
    let mine = vm.mmap(
        0,
        4096,
        libvm::ProtectionFlags::READ_WRITE,
        libvm::MmapFlags::anonymous_private(),
    );
    let mine = mine.unwrap_or(0);
    // SAFETY: mapped above.
    unsafe { core::ptr::write_volatile(mine as *mut u64, 0x1234) };
    let hog = vm.spawn("hog");
    check!(hog.is_ok(), "spawn hog: {:?}", hog);
    let w = vm.wait(hog.unwrap_or(0));
    check!(w.is_ok(), "wait hog: {:?}", w);
    let (status, addr) = w.unwrap_or((0, 0));
    check!(
        ws::code(status).is_none() && ws::reason(status) == ws::OOM,
        "the hog was not killed for memory: {:#x}",
        status
    );
    println!("oomtest: hog killed at {:#x}, status {:#x}", addr, status);
    // SAFETY: still mapped: this process was not touched by the hog's end.
    let kept = unsafe { core::ptr::read_volatile(mine as *const u64) };
    check!(kept == 0x1234, "this process lost its memory: {:#x}", kept);
    check!(vm.munmap(mine, 4096).is_ok(), "munmap");
    let worker = vm.spawn("worker").unwrap_or(0);
    check!(
        vm.wait(worker).map(|w| w.0) == Ok(0),
        "a worker after the hog failed"
    );
    let after = global_stats();
    check!(
        after.data_frames() == base.data_frames() && after.processes == base.processes,
        "frames {} -> {}, processes {} -> {}",
        base.frames_used,
        after.frames_used,
        base.processes,
        after.processes
    );
    let pid = vm.spawn("exit7").unwrap_or(0);
    check!(
        vm.wait(pid).map(|w| w.0) == Ok(7),
        "memd serves after the hog"
    );
    println!("PASS out of memory");
    0
}
