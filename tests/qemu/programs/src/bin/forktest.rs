//! fork on the metal (module 1 of a memd boot; `exit7` in the pack): copy-on-write isolation
//! both ways and across two generations, shared anonymous memory across fork, no frame's old
//! contents reaching another process, and 200 fork/exit and 200 spawn/exit cycles that bring
//! memd's statistics back to the baseline.
#![no_std]
#![no_main]

use libvm::proto::GlobalStats;
use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;

/// Forks; in the child runs `f` and exits with its value; in the parent returns the child's
/// exit code.
fn in_child(f: impl FnOnce() -> u64) -> u64 {
    let pid = vm().fork();
    check!(pid.is_ok(), "fork: {:?}", pid);
    match pid.unwrap_or(0) {
        0 => exit(f()),
        pid => {
            let w = vm().wait(pid);
            check!(w.is_ok(), "wait: {:?}", w);
            w.map(|w| w.0).unwrap_or(u64::MAX)
        }
    }
}

fn stats() -> GlobalStats {
    global_stats()
}

fn cow() {
    let a = vm()
        .mmap(0, 2 * PAGE, P::READ_WRITE, F::anonymous_private())
        .unwrap_or(0);
    write(a, 1);
    write(a + PAGE, 2);
    let mut local = 10u64;
    // The child writes: the parent sees none of it.
    let code = in_child(|| {
        if read(a) != 1 || read(a + PAGE) != 2 {
            return 50;
        }
        write(a, 100);
        local = 11;
        if read(a) != 100 || core::hint::black_box(local) != 11 {
            return 51;
        }
        0
    });
    check!(code == 0, "child saw {}", code);
    check!(
        read(a) == 1 && local == 10,
        "the child's write reached the parent"
    );
    // The parent writes after the fork: the child keeps the old value.
    let pid = vm().fork().unwrap_or(u64::MAX);
    if pid == 0 {
        for _ in 0..20 {
            yield_now();
        }
        exit(if read(a + PAGE) == 2 { 0 } else { 60 });
    }
    write(a + PAGE, 3);
    check!(
        vm().wait(pid).map(|w| w.0) == Ok(0),
        "the parent's write reached the child"
    );
    // Two generations: each sees its own values.
    let code = in_child(|| {
        write(a, 200);
        let grandchild = in_child(|| {
            if read(a) != 200 || read(a + PAGE) != 3 {
                return 70;
            }
            write(a, 300);
            0
        });
        if grandchild != 0 {
            return grandchild;
        }
        if read(a) != 200 { 71 } else { 0 }
    });
    check!(code == 0, "two generations: {}", code);
    check!(
        read(a) == 1 && read(a + PAGE) == 3,
        "the parent kept its values"
    );
    check!(vm().munmap(a, 2 * PAGE).is_ok(), "munmap");
    println!("PASS cow isolation");
}

fn shared() {
    let s = vm()
        .mmap(0, PAGE, P::READ_WRITE, F::anonymous_shared())
        .unwrap_or(0);
    write(s, 5);
    let code = in_child(|| {
        if read(s) != 5 {
            return 80;
        }
        write(s, 6);
        0
    });
    check!(code == 0, "shared child: {}", code);
    check!(
        read(s) == 6,
        "the child's write to shared memory is seen: {}",
        read(s)
    );
    check!(vm().munmap(s, PAGE).is_ok(), "munmap shared");
    println!("PASS shared memory across fork");
}

fn no_leak() {
    // A child fills pages with a secret and exits; every page anyone gets afterwards is zero.
    const PAGES: usize = 64;
    let code = in_child(|| {
        let p = vm()
            .mmap(0, PAGES * PAGE, P::READ_WRITE, F::anonymous_private())
            .unwrap_or(0);
        for i in 0..PAGES * PAGE / 8 {
            write(p + i * 8, 0x5EC2_E7C0_DE00_0000);
        }
        0
    });
    check!(code == 0, "secret child: {}", code);
    let p = vm()
        .mmap(0, 2 * PAGES * PAGE, P::READ_WRITE, F::anonymous_private())
        .unwrap_or(0);
    for i in 0..2 * PAGES * PAGE / 8 {
        check!(read(p + i * 8) == 0, "old contents at {:#x}", p + i * 8);
    }
    let code = in_child(|| {
        let q = vm()
            .mmap(0, 2 * PAGES * PAGE, P::READ_WRITE, F::anonymous_private())
            .unwrap_or(0);
        for i in 0..2 * PAGES * PAGE / 8 {
            if read(q + i * 8) != 0 {
                return 90;
            }
        }
        0
    });
    check!(code == 0, "another process saw old contents");
    check!(vm().munmap(p, 2 * PAGES * PAGE).is_ok(), "munmap");
    println!("PASS freed frames never leak");
}

fn cycles() {
    let base = stats();
    let t0 = clock();
    for i in 0..200u64 {
        let code = in_child(|| i % 100);
        check!(code == i % 100, "cycle {}: {}", i, code);
    }
    let forks = stats();
    let t1 = clock();
    check!(
        settled(&base, &forks),
        "200 forks: frames {} -> {}, tables {} -> {}, processes {} -> {}",
        base.frames_used,
        forks.frames_used,
        base.page_table_frames,
        forks.page_table_frames,
        base.processes,
        forks.processes
    );
    println!("PASS 200 fork/exit cycles ({} ms)", (t1 - t0) / 1_000_000);
    for i in 0..200 {
        let pid = vm().spawn("exit7");
        check!(pid.is_ok(), "spawn {}: {:?}", i, pid);
        check!(
            vm().wait(pid.unwrap_or(0)).map(|w| w.0) == Ok(7),
            "spawn cycle {}",
            i
        );
    }
    let spawns = stats();
    let t2 = clock();
    check!(
        settled(&base, &spawns),
        "200 spawns: frames {} -> {}, tables {} -> {}, processes {} -> {}",
        base.frames_used,
        spawns.frames_used,
        base.page_table_frames,
        spawns.page_table_frames,
        base.processes,
        spawns.processes
    );
    println!("PASS 200 spawn/exit cycles ({} ms)", (t2 - t1) / 1_000_000);
}

fn main(_: Start) -> u64 {
    cow();
    shared();
    no_leak();
    cycles();
    println!("PASS forktest");
    0
}
