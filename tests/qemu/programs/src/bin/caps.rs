//! Every pager-only system call is refused to a process that is not the pager.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

fn main(start: Start) -> u64 {
    check!(!start.pager, "not the pager");
    let eperm = |v: i64, what: &str| {
        check!(v == -errno::EPERM, "{} gave {}", what, v);
    };
    eperm(syscall0(nr::SPACE_CREATE), "space_create");
    eperm(
        syscall6(nr::SPACE_DESTROY, start.badge, 0, 0, 0, 0, 0),
        "space_destroy",
    );
    let op = [[OP_MAP, 0x1000_0000, 0x20_0000, 3]];
    eperm(space_apply(start.badge, &op).0, "space_apply (map)");
    let op = [[OP_UNMAP, 0x40_0000, 1, 0]];
    eperm(space_apply(start.badge, &op).0, "space_apply (unmap)");
    eperm(
        syscall6(nr::SPACE_APPLY1, start.badge, OP_UNMAP, 0x40_0000, 1, 0, 0),
        "space_apply1",
    );
    eperm(
        syscall6(
            nr::THREAD_START,
            start.badge,
            0x40_0000,
            0x7000_0000,
            0,
            0,
            0,
        ),
        "thread_start",
    );
    eperm(
        syscall6(nr::THREAD_CLONE, 0, start.badge, 0, 0, 0, 0),
        "thread_clone",
    );
    let mut buf = [0u64; 34];
    eperm(
        syscall6(nr::PAGER_INFO, buf.as_mut_ptr() as u64, 34 * 8, 0, 0, 0, 0),
        "pager_info",
    );
    eperm(
        ipc_receive(PAGER_ENDPOINT).token,
        "receive on the pager endpoint",
    );
    println!("PASS caps");
    0
}
