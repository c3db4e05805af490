//! 256 processes at once: this program forks 256 children (the most one parent may have), each
//! of which touches a page of its own and blocks for good in an `ipc_call` to an endpoint
//! nobody receives on. With all of them alive, memd lists them all and still serves every call
//! (a mapping, a fault, a fork of one more process is refused with EAGAIN as the limit of
//! children says); then the parent ends them (`KILL`) and waits for each. Twice: after the
//! second round memd's frames in use are exactly where they were after the first (the parent's
//! own heap and stack grew in the first).
//!
//! Then a tree of more than a thousand processes at once, past any fixed table of the kernel
//! (its tables are sized from RAM): [`BRANCHES`] children each fork 256 leaves that block the
//! same way; with all of them alive memd still serves, and once the branches have ended their
//! leaves (told through a shared page) memd's frames are back where they were.
#![no_std]
#![no_main]

use libvm::{MmapFlags, ProtectionFlags, VmError};
use user_rt::*;

entry!(main);

const CHILDREN: usize = 256;
const PAGE: usize = 4096;
/// Children of the tree's root, each with [`CHILDREN`] leaves.
const BRANCHES: usize = 4;

fn main(_: Start) -> u64 {
    let ep = endpoint_create();
    check!(ep >= 0, "endpoint_create: {}", ep);
    round(ep as u64);
    let base = global_stats();
    round(ep as u64);
    let now = global_stats();
    check!(
        settled(&base, &now),
        "frames after: {} data, {} tables (before {} / {})",
        now.data_frames(),
        now.page_table_frames,
        base.data_frames(),
        base.page_table_frames
    );
    println!("PASS every child ended, memory back");
    // The parent's own heap may shrink meanwhile (its allocator gives freed pages back): the
    // frames of everyone else must be back exactly.
    let others_before = others();
    tree(ep as u64);
    let after = global_stats();
    let others_after = others();
    check!(
        others_after == others_before
            && after.processes == now.processes
            && after.page_table_frames <= now.page_table_frames + SPARE_TABLES,
        "frames after the tree: {} data of others, {} tables (before {} / {})",
        others_after,
        after.page_table_frames,
        others_before,
        now.page_table_frames
    );
    println!(
        "PASS a tree of {} processes ended, memory back",
        BRANCHES * (CHILDREN + 1)
    );
    0
}

/// A read/write mapping of `len` bytes with `flags` anywhere; 0 if refused.
fn map(len: usize, flags: MmapFlags) -> usize {
    vm().mmap(0, len, ProtectionFlags::READ_WRITE, flags)
        .unwrap_or(0)
}

/// Data frames in use by processes other than this one.
fn others() -> u64 {
    global_stats().data_frames() - process_stats(0).resident_pages
}

/// Forks [`BRANCHES`] children that fork [`CHILDREN`] blocked leaves each; checks memd with
/// all of them alive; tells the branches (a shared page) to end their leaves; waits for them.
fn tree(ep: u64) {
    let vm = vm();
    let flag = map(PAGE, MmapFlags::anonymous_shared());
    check!(flag != 0, "mmap of the shared flag");
    let before = vm.processes().map(|p| p.len()).unwrap_or(0);
    let mut branches = [0u64; BRANCHES];
    for slot in branches.iter_mut() {
        match vm.fork() {
            Ok(0) => exit(branch(ep, flag)),
            Ok(pid) => *slot = pid,
            Err(e) => check!(false, "fork of a branch: {:?}", e),
        }
    }
    let want = before + BRANCHES * (CHILDREN + 1);
    let mut alive = 0;
    for _ in 0..1_000_000 {
        alive = vm.processes().map(|p| p.len()).unwrap_or(0);
        if alive >= want {
            break;
        }
        yield_now();
    }
    check!(alive >= want, "{} processes listed, {} wanted", alive, want);
    println!("manyprocs: {} processes alive at once", alive);
    let a = map(PAGE, MmapFlags::anonymous_private());
    check!(a != 0, "mmap with the tree alive");
    write(a, 11);
    check!(read(a) == 11, "fault with the tree alive");
    check!(vm.munmap(a, PAGE).is_ok(), "munmap");
    let own = endpoint_create();
    check!(own >= 0, "endpoint_create with the tree alive: {}", own);
    println!(
        "PASS a tree of {} processes alive at once ({} listed)",
        BRANCHES * (CHILDREN + 1),
        alive
    );
    write(flag, 1);
    for &pid in &branches {
        let status = vm.wait(pid);
        check!(matches!(status, Ok((0, _))), "branch {}: {:?}", pid, status);
    }
    check!(vm.munmap(flag, PAGE).is_ok(), "munmap of the flag");
}

/// A branch: forks its leaves, waits for the flag, ends them; 0 when every step worked.
fn branch(ep: u64, flag: usize) -> u64 {
    let vm = vm();
    let mut leaves = [0u64; CHILDREN];
    for slot in leaves.iter_mut() {
        match vm.fork() {
            Ok(0) => {
                // Every leaf takes the four endpoints a space may own: thousands in all, and
                // the root can still make one (each space has its own slots).
                if (0..4).any(|_| endpoint_create() < 0) {
                    exit(98)
                }
                let _ = ipc_call(ep, &[0; 8], &mut []);
                exit(99)
            }
            Ok(pid) => *slot = pid,
            Err(e) => {
                println!("FAIL fork of a leaf: {:?}", e);
                return 1;
            }
        }
    }
    while read(flag) == 0 {
        yield_now();
    }
    for &pid in &leaves {
        if vm.kill(pid).is_err() || !vm.wait(pid).is_ok_and(|(status, _)| status != 98) {
            println!("FAIL ending leaf {}", pid);
            return 1;
        }
    }
    0
}

/// Forks the children, checks memd with all of them alive, ends them.
fn round(ep: u64) {
    let vm = vm();
    let base = global_stats();
    let mut pids = [0u64; CHILDREN];
    for (i, slot) in pids.iter_mut().enumerate() {
        match vm.fork() {
            Ok(0) => {
                let a = map(PAGE, MmapFlags::anonymous_private());
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
    let a = map(16 * PAGE, MmapFlags::anonymous_private());
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
