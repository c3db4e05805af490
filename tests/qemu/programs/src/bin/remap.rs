//! mremap on the metal: a mapping of written pages moves (its page-table entries, not copies
//! of its frames) and keeps its contents and protection; the old range is gone (a forked
//! reader is killed there with MAPERR); growing in place keeps the address; a second view of
//! shared memory sees the same bytes, and a hole punched through one view (`MADV_REMOVE`)
//! frees the page under both.
#![no_std]
#![no_main]

use libvm::proto::{MREMAP_FIXED, MREMAP_MAYMOVE, wait_status as ws};
use libvm::{MmapFlags, ProtectionFlags, VmError};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const PAGES: usize = 16;

fn frames() -> u64 {
    vm().global_stats().map(|s| s.data_frames()).unwrap_or(0)
}

fn main(_: Start) -> u64 {
    let vm = vm();
    let a = vm
        .mmap(
            0,
            PAGES * PAGE,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap_or(0);
    check!(a != 0, "mmap");
    for i in 0..PAGES {
        write(a + i * PAGE, 0x5eed_0000 + i as u64);
    }
    let before = frames();
    let b = vm.mremap(
        a,
        PAGES * PAGE,
        2 * PAGES * PAGE,
        MREMAP_MAYMOVE | MREMAP_FIXED,
        0x7000_0000,
    );
    check!(b == Ok(0x7000_0000), "mremap to a fixed address: {:?}", b);
    let b = 0x7000_0000;
    check!(
        frames() == before,
        "the move copied frames: {} then {}",
        before,
        frames()
    );
    for i in 0..PAGES {
        let v = read(b + i * PAGE);
        check!(v == 0x5eed_0000 + i as u64, "page {} moved as {:#x}", i, v);
    }
    check!(
        read(b + (2 * PAGES - 1) * PAGE) == 0,
        "a new page is not zero"
    );
    write(b, 1);
    // The old range is gone: a forked reader there is killed, MAPERR at the address.
    match vm.fork() {
        Ok(0) => exit(read(a)),
        Ok(child) => {
            let w = vm.wait(child).unwrap_or((0, 0));
            check!(
                ws::code(w.0).is_none() && ws::reason(w.0) == ws::MAPERR && w.1 == a as u64,
                "a reader of the old range: {:#x} at {:#x}",
                w.0,
                w.1
            );
        }
        Err(e) => check!(false, "fork: {:?}", e),
    }
    // Shrink, then grow in place: same address, contents kept.
    check!(
        vm.mremap(b, 2 * PAGES * PAGE, PAGE, 0, 0) == Ok(b),
        "shrink"
    );
    check!(
        vm.mremap(b, PAGE, 4 * PAGE, 0, 0) == Ok(b) && read(b) == 1,
        "grow in place"
    );
    check!(
        vm.mremap(b, 8 * PAGE, 9 * PAGE, 0, 0) == Err(VmError::BadBuffer),
        "an old range past its mapping"
    );
    println!("PASS mremap move");
    // A second view of shared memory.
    let s = vm
        .mmap(
            0,
            2 * PAGE,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_shared(),
        )
        .unwrap_or(0);
    let twin = vm.mremap(s, 0, 2 * PAGE, MREMAP_MAYMOVE, 0).unwrap_or(0);
    check!(twin != 0 && twin != s, "a second view: {:#x}", twin);
    write(twin + PAGE, 42);
    check!(read(s + PAGE) == 42, "the views differ");
    println!("PASS mremap shared");
    // A hole punched through one view frees the page under both.
    let before = frames();
    let punched = vm.madvise(twin + PAGE, PAGE, libvm::proto::MADV_REMOVE);
    check!(punched.is_ok(), "MADV_REMOVE: {:?}", punched);
    check!(frames() + 1 == before, "the page was not freed");
    check!(
        read(s + PAGE) == 0,
        "the other view still reads the old page"
    );
    println!("PASS madv_remove");
    0
}
