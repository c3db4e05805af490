//! Break 7 of "Isolation holds under attack" (module 1 of a memd boot; `exit7` in the pack):
//! out of memory, the process holding the most memory dies, not whoever faults first.
//!
//! Roles (the argument string says which):
//!
//! - the coordinator (no argument, pid 1): starts three hogs and three workers at once,
//!   checks that every worker exits 0 and every hog is killed for memory
//!   (`wait_status::OOM`), that `oom_kills` counts exactly the three hogs, that memd still
//!   serves (`exit7`), and that every frame is back;
//! - `hog N OOM`: once `N` processes are alive (all six started: a spawn finding memory
//!   exhausted would fail) or the policy has killed since `OOM`, maps 1 GiB lazily and,
//!   whenever memd has frames free, populates as many more pages of it (`MADV_WILLNEED`, which
//!   stops quietly when frames run out), so it holds every frame it can get without ever
//!   faulting;
//! - `worker OOM`: maps 8 pages, writes, checks and unmaps them, round after round, until the
//!   policy has killed three processes since `OOM`: its faults are the ones that find memory
//!   exhausted.
#![no_std]
#![no_main]

extern crate alloc;

use libvm::proto::{GlobalStats, MADV_WILLNEED, wait_status as ws};
use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
/// Pages of a worker.
const WORKER_PAGES: usize = 8;
/// The range a hog populates.
const HOG_BYTES: usize = 1 << 30;
/// Hogs, and workers.
const EACH: usize = 3;
/// Nanoseconds a hog or a worker waits for the others before giving up.
const TIMEOUT_NS: u64 = 30_000_000_000;

fn stats() -> GlobalStats {
    let s = vm().global_stats();
    check!(s.is_ok(), "global stats: {:?}", s);
    s.unwrap_or_default()
}

/// Writes 32 KiB of stack, so that later calls do not fault on it.
#[inline(never)]
fn warm_stack() {
    let mut buf = [0u8; 32 * 1024];
    core::hint::black_box(&mut buf);
}

fn hog(all: u64, base_oom: u64) -> u64 {
    warm_stack();
    let t0 = clock();
    loop {
        let s = stats();
        if s.processes >= all || s.oom_kills > base_oom {
            break;
        }
        check!(
            clock().saturating_sub(t0) < TIMEOUT_NS,
            "the others did not start"
        );
        core::hint::spin_loop();
        yield_now();
    }
    let a = vm().mmap(0, HOG_BYTES, P::READ_WRITE, F::anonymous_private());
    check!(a.is_ok(), "hog mmap: {:?}", a);
    let a = a.unwrap_or(0);
    // Pages below `next` were populated as far as frames allowed.
    let mut next = 0;
    loop {
        let want = (stats().frames_free as usize * PAGE).min(HOG_BYTES - next);
        if want > 0 {
            let r = vm().madvise(a + next, want, MADV_WILLNEED);
            check!(r.is_ok(), "hog MADV_WILLNEED: {:?}", r);
            next += want;
        }
        if clock().saturating_sub(t0) > TIMEOUT_NS {
            let held = vm().process_stats(0).map(|p| p.resident_pages);
            println!("FAIL hog: not killed, holding {:?} pages", held);
            return 3;
        }
        core::hint::spin_loop();
        yield_now();
    }
}

fn worker(seed: u64, base_oom: u64) -> u64 {
    warm_stack();
    let t0 = clock();
    let mut rounds = 0u64;
    loop {
        let a = vm().mmap(
            0,
            WORKER_PAGES * PAGE,
            P::READ_WRITE,
            F::anonymous_private(),
        );
        check!(a.is_ok(), "worker mmap: {:?}", a);
        let a = a.unwrap_or(0);
        let pattern = |i: usize| seed << 48 | rounds << 8 | i as u64;
        for i in 0..WORKER_PAGES {
            write(a + i * PAGE, pattern(i));
        }
        for i in 0..WORKER_PAGES {
            let v = read(a + i * PAGE);
            check!(v == pattern(i), "worker {} lost a write: {:#x}", seed, v);
        }
        check!(vm().munmap(a, WORKER_PAGES * PAGE).is_ok(), "worker munmap");
        rounds += 1;
        if stats().oom_kills >= base_oom + EACH as u64 {
            break;
        }
        if clock().saturating_sub(t0) > TIMEOUT_NS {
            println!("oomrace: worker {} saw fewer than three kills", seed);
            break;
        }
    }
    println!("PASS oomrace worker {}: {} rounds of 8 pages", seed, rounds);
    0
}

fn coordinator() -> u64 {
    warm_stack();
    let pre = stats();
    let worker_args = alloc::format!("worker {}", pre.oom_kills);
    let hog_args = alloc::format!("hog {} {}", pre.processes + 2 * EACH as u64, pre.oom_kills);
    // The baseline once this process's heap holds the argument string.
    let base = stats();
    let mut hogs = [0u64; EACH];
    let mut workers = [0u64; EACH];
    let t0 = clock();
    for i in 0..EACH {
        let h = vm().spawn_with_args("oomrace", &hog_args);
        check!(h.is_ok(), "spawn a hog: {:?}", h);
        hogs[i] = h.unwrap_or(0);
        let w = vm().spawn_with_args("oomrace", &worker_args);
        check!(w.is_ok(), "spawn a worker: {:?}", w);
        workers[i] = w.unwrap_or(0);
    }
    for &pid in &workers {
        let w = vm().wait(pid);
        check!(w == Ok((0, 0)), "worker {} did not exit 0: {:#x?}", pid, w);
    }
    for &pid in &hogs {
        let w = vm().wait(pid);
        check!(w.is_ok(), "wait hog: {:?}", w);
        let status = w.map(|w| w.0).unwrap_or(0);
        check!(
            ws::code(status).is_none() && ws::reason(status) == ws::OOM,
            "hog {} was not killed for memory: status {:#x}",
            pid,
            status
        );
    }
    let elapsed_ms = (clock() - t0) / 1_000_000;
    let end = stats();
    let kills = end.oom_kills - base.oom_kills;
    check!(kills == EACH as u64, "{} out-of-memory kills", kills);
    let pid = vm().spawn("exit7");
    check!(
        pid.is_ok() && vm().wait(pid.unwrap_or(0)) == Ok((7, 0)),
        "memd serves after the race"
    );
    let end = stats();
    check!(
        end.data_frames() == base.data_frames()
            && end.page_table_frames == base.page_table_frames
            && end.processes == base.processes
            && end.frames_quarantined == 0,
        "data frames {} -> {}, table frames {} -> {}, processes {} -> {}, quarantined {}",
        base.data_frames(),
        end.data_frames(),
        base.page_table_frames,
        end.page_table_frames,
        base.processes,
        end.processes,
        end.frames_quarantined
    );
    println!(
        "PASS oomrace: 3 workers exited 0, 3 hogs killed for memory (oom_kills +{}), {} ms",
        kills, elapsed_ms
    );
    0
}

fn arg(args: &[alloc::string::String], i: usize) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(0)
}

fn main(start: Start) -> u64 {
    let args = args();
    match args.first().map(|a| a.as_str()) {
        None => coordinator(),
        Some("hog") => hog(arg(&args, 1), arg(&args, 2)),
        Some("worker") => worker(start.badge, arg(&args, 1)),
        Some(other) => {
            println!("FAIL oomrace: unknown role {}", other);
            1
        }
    }
}
