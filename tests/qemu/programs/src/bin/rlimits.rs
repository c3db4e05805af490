//! Resource limits on the metal: a process lowers its data and address-space limits, a fork
//! inherits them (the child reads them back and is held to them), and a hard limit cannot be
//! raised again. Then mlock: locked pages are resident at once (mincore) and stay so.
#![no_std]
#![no_main]

use libvm::proto::{RLIM_INFINITY, RLIMIT_AS, RLIMIT_DATA};
use libvm::{MmapFlags, ProtectionFlags, VmError};
use user_rt::*;

entry!(main);

const DATA: u64 = 64 << 10;

fn main(_: Start) -> u64 {
    let vm = vm();
    check!(
        vm.getrlimit(RLIMIT_DATA) == Ok((RLIM_INFINITY, RLIM_INFINITY)),
        "the data limit at start: {:?}",
        vm.getrlimit(RLIMIT_DATA)
    );
    // What the heap holds now (the runtime's allocator grows it with sbrk).
    let used = vm.process_stats(0).map(|s| s.heap_bytes).unwrap_or(0);
    check!(
        vm.setrlimit(RLIMIT_DATA, DATA + used, 1 << 20).is_ok(),
        "lowering the data limit"
    );
    let pid = vm.fork();
    match pid {
        Ok(0) => {
            let ok = vm.getrlimit(RLIMIT_DATA) == Ok((DATA + used, 1 << 20))
                && vm.setrlimit(RLIMIT_DATA, DATA, 2 << 20) == Err(VmError::NotPermitted)
                && vm.setrlimit(RLIMIT_AS, 1 << 30, RLIM_INFINITY).is_ok()
                && vm
                    .mmap(
                        0,
                        2 << 30,
                        ProtectionFlags::READ,
                        MmapFlags::anonymous_private(),
                    )
                    .err()
                    == Some(VmError::LimitExceeded);
            exit(if ok { 0 } else { 1 })
        }
        Ok(child) => check!(
            vm.wait(child).map(|w| w.0) == Ok(0),
            "the child does not see or keep to the limits"
        ),
        Err(e) => check!(false, "fork: {:?}", e),
    }
    // The parent's own limit: the heap may not grow past it.
    let grow = vm.sbrk((DATA + 4096) as isize);
    check!(
        grow == Err(VmError::LimitExceeded),
        "sbrk past the data limit: {:?}",
        grow
    );
    println!("PASS rlimits");
    // mlock: the pages are resident at once and stay so.
    let a = vm
        .mmap(
            0,
            4 * 4096,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap_or(0);
    let mut vec = [0u8; 4];
    check!(
        vm.mincore(a, 4 * 4096, &mut vec).is_ok() && vec == [0; 4],
        "nothing resident before mlock: {:?}",
        vec
    );
    check!(vm.mlock(a, 4 * 4096).is_ok(), "mlock");
    check!(
        vm.mincore(a, 4 * 4096, &mut vec).is_ok() && vec == [1; 4],
        "every page resident after mlock: {:?}",
        vec
    );
    check!(
        vm.madvise(a, 4 * 4096, libvm::proto::MADV_DONTNEED) == Err(VmError::InvalidFlags),
        "locked pages dropped"
    );
    check!(vm.munlock(a, 4 * 4096).is_ok(), "munlock");
    check!(
        vm.madvise(a, 4 * 4096, libvm::proto::MADV_DONTNEED).is_ok()
            && vm.mincore(a, 4 * 4096, &mut vec).is_ok()
            && vec == [0; 4],
        "unlocked pages dropped: {:?}",
        vec
    );
    println!("PASS mlock");
    0
}
