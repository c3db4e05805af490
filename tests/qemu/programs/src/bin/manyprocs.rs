//! 256 processes at once: this program forks 256 children (the most one parent may have), each
//! of which touches a page of its own and blocks for good in an `ipc_call` to an endpoint
//! nobody receives on. With all of them alive, memd lists them all and still serves every call
//! (a mapping, a fault, a fork of one more process is refused with EAGAIN as the limit of
//! children says); then the parent ends them (`KILL`) and waits for each. Twice: after the
//! second round memd's frames in use are exactly where they were after the first (the parent's
//! own heap and stack grew in the first).
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags, VmError};
use user_rt::*;

entry!(main);

const CHILDREN: usize = 256;
const PAGE: usize = 4096;

fn main(_: Start) -> u64 {
    let ep = endpoint_create();
    check!(ep >= 0, "endpoint_create: {}", ep);
    round(ep as u64);
    let base = vm().global_stats().unwrap_or_default();
    round(ep as u64);
    let now = vm().global_stats().unwrap_or_default();
    check!(
        settled(&base, &now),
        "frames after: {} data, {} tables (before {} / {})",
        now.data_frames(),
        now.page_table_frames,
        base.data_frames(),
        base.page_table_frames
    );
    println!("PASS every child ended, memory back");
    0
}

/// Forks the children, checks memd with all of them alive, ends them.
fn round(ep: u64) {
    let vm = vm();
    let base = vm.global_stats().unwrap_or_default();
    let mut pids = [0u64; CHILDREN];
    for (i, slot) in pids.iter_mut().enumerate() {
        match vm.fork() {
            Ok(0) => {
                let a = vm
                    .mmap(
                        0,
                        PAGE,
                        ProtectionFlags::READ_WRITE,
                        MmapFlags::anonymous_private(),
                    )
                    .unwrap_or(0);
                write(a, i as u64);
                // Nobody receives on the endpoint: the call blocks until the child is ended.
                let _ = ipc_call(ep, &[0; 8], &mut []);
                exit(99)
            }
            Ok(pid) => *slot = pid,
            Err(e) => {
                check!(false, "fork {}: {:?}", i, e);
            }
        }
    }
    // Wait until every child is blocked (its page touched).
    let mut alive = 0;
    for _ in 0..100_000 {
        alive = vm.processes().map(|p| p.len()).unwrap_or(0);
        let resident = vm.global_stats().map(|g| g.data_frames()).unwrap_or(0);
        if alive > CHILDREN && resident >= base.data_frames() + CHILDREN as u64 {
            break;
        }
        yield_now();
    }
    check!(alive > CHILDREN, "{} processes listed", alive);
    println!("manyprocs: {} processes alive at once", alive);
    // memd still serves: a mapping, a fault; one more child is over the limit.
    let a = vm
        .mmap(
            0,
            16 * PAGE,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_private(),
        )
        .unwrap_or(0);
    check!(a != 0, "mmap with 256 children alive");
    write(a + 15 * PAGE, 7);
    check!(read(a + 15 * PAGE) == 7, "fault with 256 children alive");
    check!(
        vm.fork() == Err(VmError::ProcessLimit),
        "a 257th child is over the limit"
    );
    println!("PASS 256 processes at once");
    for &pid in &pids {
        check!(vm.kill(pid).is_ok(), "kill {}", pid);
        check!(vm.wait(pid).is_ok(), "wait {}", pid);
    }
    check!(vm.munmap(a, 16 * PAGE).is_ok(), "munmap");
}
