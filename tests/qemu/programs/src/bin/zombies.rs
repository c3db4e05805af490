//! Zombies (module 1 of a memd boot; `exit7` in the pack): a process that forks in a loop and
//! never waits. Each child exits at once and stays a zombie until waited for; memd bounds them:
//! a process may have 256 children, alive or not yet waited for, and the fork (or spawn) past
//! that is refused with `EAGAIN` (`VmError::ProcessLimit`), however often it is tried — 100,000
//! tries here, more zombies than memd's 12 MiB heap held before the bound (about 75,000 records
//! of some 160 bytes). Waiting for some makes room again; the zombies of a parent that exits or
//! is killed are dropped at once (twenty such parents hold more zombies than memd keeps records
//! of in all, so a forgotten one would make the later forks fail); memd serves all along (a
//! child maps, writes and unmaps memory throughout the flood), and every frame comes back.
#![no_std]
#![no_main]

use libvm::proto::{GlobalStats, wait_status as ws};
use libvm::{MmapFlags as F, ProtectionFlags as P, VmError};
use user_rt::*;

extern crate alloc;

entry!(main);

/// The children a process may have (memd's `procs::MAX_CHILDREN`).
const MAX_CHILDREN: usize = 256;
/// Forks tried without waiting.
const TRIES: usize = 100_000;
/// Parents that make `MAX_CHILDREN` zombies each and end: more zombies in all than the
/// 4,096 process records memd keeps.
const PARENTS: u64 = 20;

const PAGE: usize = 4096;

fn load(addr: usize) -> u64 {
    // SAFETY: the test reads memory it mapped.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn store(addr: usize, v: u64) {
    // SAFETY: the test writes memory it mapped writable.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

/// A child that maps, writes, reads back and unmaps a page, round after round, counting the
/// rounds in word 1 of the shared page at `shared`, until word 0 says stop; exits 0 if every
/// round worked.
fn helper(shared: usize) -> ! {
    let mut rounds = 0;
    while load(shared) == 0 {
        let a = vm().mmap(0, PAGE, P::READ_WRITE, F::anonymous_private());
        let Ok(a) = a else {
            println!("FAIL helper: mmap: {:?}", a);
            exit(1)
        };
        store(a, rounds);
        if load(a) != rounds || vm().munmap(a, PAGE).is_err() {
            println!("FAIL helper: round {}", rounds);
            exit(1);
        }
        rounds += 1;
        store(shared + 8, rounds);
        yield_now();
    }
    exit(0)
}

fn stats() -> GlobalStats {
    global_stats()
}

/// Forks until refused (at most `tries` times), each child exiting at once with its number;
/// the pids and the first error.
fn flood(tries: usize) -> (alloc::vec::Vec<u64>, Option<VmError>, usize) {
    let mut pids = alloc::vec::Vec::new();
    let mut first = None;
    let mut refused = 0;
    for i in 0..tries {
        match vm().fork() {
            Ok(0) => exit(i as u64 & 0xFF),
            Ok(pid) => pids.push(pid),
            Err(e) => {
                first.get_or_insert(e);
                check!(
                    e == VmError::ProcessLimit,
                    "fork {} refused with {:?}",
                    i,
                    e
                );
                refused += 1;
            }
        }
    }
    (pids, first, refused)
}

fn main(_: Start) -> u64 {
    // The baseline once this process's heap holds what the test allocates (a list of
    // children, a process listing), so that only what memd holds for others shows.
    let warm: alloc::vec::Vec<u64> = (0..MAX_CHILDREN as u64).collect();
    check!(warm.len() == MAX_CHILDREN, "warm-up");
    drop(warm);
    check!(vm().processes().is_ok(), "processes");
    let shared = vm()
        .mmap(0, PAGE, P::READ_WRITE, F::anonymous_shared())
        .unwrap_or(0);
    check!(shared != 0, "mmap shared");
    store(shared, 0);
    let baseline = Baseline::now();
    let base = baseline.global;
    let t0 = clock();
    // A child served all through the flood (one of the children).
    let helper_pid = vm().fork();
    if helper_pid == Ok(0) {
        helper(shared);
    }
    check!(helper_pid.is_ok(), "fork of the helper: {:?}", helper_pid);
    let before = load(shared + 8);
    // Fork without end, never waiting.
    let (pids, first, refused) = flood(TRIES);
    check!(
        pids.len() == MAX_CHILDREN - 1 && refused == TRIES - (MAX_CHILDREN - 1),
        "{} forks went through, {} refused ({:?})",
        pids.len(),
        refused,
        first
    );
    let e = vm().spawn("exit7");
    check!(
        e == Err(VmError::ProcessLimit),
        "spawn over the limit: {:?}",
        e
    );
    check!(
        e.map_err(VmError::errno) == Err(11),
        "the limit is EAGAIN on the wire"
    );
    println!(
        "PASS fork refused with EAGAIN past {} children ({} of {} tries, {} ms)",
        MAX_CHILDREN,
        refused,
        TRIES,
        (clock() - t0) / 1_000_000
    );
    let during = load(shared + 8);
    store(shared, 1);
    let w = vm().wait(helper_pid.unwrap_or(0));
    check!(
        w == Ok((0, 0)) && during > before,
        "the helper: {:?}, {} rounds during the flood",
        w,
        during - before
    );
    println!(
        "PASS another process is served during the flood ({} rounds)",
        during - before
    );
    // Waiting for some makes room: each status is the child's.
    for (i, &pid) in pids.iter().enumerate().take(16) {
        let w = vm().wait(pid);
        check!(w == Ok((i as u64 & 0xFF, 0)), "wait {}: {:?}", pid, w);
    }
    let pid = vm().fork();
    if pid == Ok(0) {
        exit(42);
    }
    check!(pid.is_ok(), "fork after waiting: {:?}", pid);
    let w = vm().wait(pid.unwrap_or(0));
    check!(w == Ok((42, 0)), "the new child: {:?}", w);
    let exit7 = vm().spawn("exit7");
    check!(exit7.is_ok(), "spawn after waiting: {:?}", exit7);
    let w = vm().wait(exit7.unwrap_or(0));
    check!(w.map(|w| w.0) == Ok(7), "exit7: {:?}", w);
    for (i, &pid) in pids.iter().enumerate().skip(16) {
        let w = vm().wait(pid);
        check!(w == Ok((i as u64 & 0xFF, 0)), "wait {}: {:?}", pid, w);
    }
    check!(vm().wait(pids[0]).is_err(), "a child waited for twice");
    println!("PASS waiting makes room again");
    // Parents that end (half exit, half are killed) with MAX_CHILDREN zombies each.
    for round in 0..PARENTS {
        let parent = vm().fork();
        if parent == Ok(0) {
            let (pids, first, _) = flood(MAX_CHILDREN + 1);
            if pids.len() != MAX_CHILDREN || first != Some(VmError::ProcessLimit) {
                println!(
                    "FAIL parent {}: {} children, {:?}",
                    round,
                    pids.len(),
                    first
                );
                exit(1);
            }
            if round % 2 == 1 {
                // SAFETY: 0x100 is in the null guard, never mapped: memd refuses the fault and
                // kills this process, which is the point; nothing of ours is written.
                unsafe { core::ptr::write_volatile(0x100 as *mut u64, 1) };
            }
            exit(0);
        }
        check!(parent.is_ok(), "fork of parent {}: {:?}", round, parent);
        let w = vm().wait(parent.unwrap_or(0));
        let (status, _) = w.unwrap_or((u64::MAX, 0));
        if round % 2 == 1 {
            check!(
                ws::reason(status) == ws::MAPERR,
                "parent {} was not killed: {:?}",
                round,
                w
            );
        } else {
            check!(status == 0, "parent {}: {:?}", round, w);
        }
        // With memd serving from several threads, the exit notice of a child that ended just
        // before its parent may still be in another worker's hands when the wait is answered
        // (as Linux's reaping of the zombies reparented to init is asynchronous): the listing
        // settles within a few yields.
        let settled = |l: &[libvm::proto::ProcessInfo]| {
            l.len() as u64 == base.processes && l.iter().all(|p| p.parent == 0)
        };
        let list = || {
            let l = vm().processes();
            check!(l.is_ok(), "processes: {:?}", l);
            l.unwrap_or_default()
        };
        let mut listed = list();
        for _ in 0..1000 {
            if settled(&listed) {
                break;
            }
            yield_now();
            listed = list();
        }
        check!(
            settled(&listed),
            "processes after parent {}: {:?}",
            round,
            listed
        );
    }
    println!(
        "PASS the zombies of {} ended parents are dropped ({} zombies)",
        PARENTS,
        PARENTS as usize * MAX_CHILDREN
    );
    // This process's own memory may have grown meanwhile (its heap held listings of hundreds
    // of processes): that much more is expected in use, nothing else.
    let expected = baseline.expected();
    let after = stats();
    check!(
        settled(&expected, &after),
        "frames {} -> {}, tables {} -> {}, processes {} -> {}",
        base.frames_used,
        after.frames_used,
        base.page_table_frames,
        after.page_table_frames,
        base.processes,
        after.processes
    );
    check!(vm().munmap(shared, PAGE).is_ok(), "munmap shared");
    println!("PASS zombies ({} ms)", (clock() - t0) / 1_000_000);
    0
}
