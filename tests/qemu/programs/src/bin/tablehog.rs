//! Break 6 of "Isolation holds under attack" (module 1 of a memd boot; `exit7` in the pack):
//! page tables are charged to the process that makes them.
//!
//! This program runs as three roles (its argument string says which):
//!
//! - the coordinator (no argument, pid 1): spawns the bystander and the attacker, watches the
//!   page-table frames in use while they run, and checks at the end that the bystander exited
//!   0, that the out-of-memory policy acted, and that every frame and page-table frame is back;
//!   then that spawn and fork still work for it;
//! - `attack N BYSTANDER`: maps `2N + 1` GiB lazily and forks 8 children; each of the nine
//!   touches `N` pages one GiB apart (each costs it a page directory and a page table besides
//!   the page); N is chosen so that the nine together want more frames than memd has. Then,
//!   as long as the bystander (pid `BYSTANDER`) runs, each takes every frame that comes free
//!   (`MADV_WILLNEED` of a page a GiB further: populate stops quietly, so it never faults for
//!   them) and finally checks its `N` pages;
//! - `bystander OOM`: maps, touches, checks and unmaps 16 pages a round, each round in a GiB
//!   of its own (so it needs new page tables as the attackers do), and every eighth round
//!   forks a child that does the same with 8 pages and spawns `exit7` (retried while memd
//!   answers ENOMEM, after a round of faults), until the policy has killed three processes
//!   since `OOM` and 32 rounds are done: its faults are the ones that find memory exhausted;
//!   it must never be the one killed, and exits 0.
#![no_std]
#![no_main]

extern crate alloc;

use libvm::proto::{GlobalStats, MADV_WILLNEED, wait_status as ws};
use libvm::{MmapFlags as F, ProtectionFlags as P, VmError};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;
const GIB: usize = 1 << 30;
/// Attackers: the parent and its forked children.
const ATTACKERS: u64 = 9;
/// Kills of the out-of-memory policy the bystander waits for (it goes on faulting until then).
const BYSTANDER_KILLS: u64 = 3;
/// Nanoseconds a role waits for the others before going on.
const HOLD_NS: u64 = 20_000_000_000;
/// Nanoseconds the coordinator waits for everyone to finish.
const TIMEOUT_NS: u64 = 90_000_000_000;

fn stats() -> GlobalStats {
    let s = vm().global_stats();
    check!(s.is_ok(), "global stats: {:?}", s);
    s.unwrap_or_default()
}

/// Writes 32 KiB of stack (its pages faulted in, or copied after a fork, now).
#[inline(never)]
fn warm_stack() {
    let mut buf = [0u8; 32 * 1024];
    core::hint::black_box(&mut buf);
}

fn arg(args: &[alloc::string::String], i: usize) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(0)
}

/// One attacker: touches `n` pages one GiB apart from `region`; then, while the bystander
/// runs (at most [`HOLD_NS`]), takes every frame that comes free with `MADV_WILLNEED` of
/// one more page a GiB further (populate stops quietly when frames run out, so it never
/// faults for them); then checks its `n` pages.
fn attack(region: usize, n: usize, tag: u64, bystander: u64) -> u64 {
    let pattern = |i: usize| 0xA77A_C000_0000_0000 | tag << 32 | i as u64;
    for i in 0..n {
        write(region + i * GIB + 8 * tag as usize, pattern(i));
    }
    let t0 = clock();
    let mut next = n;
    while vm().process_stats(bystander).is_ok() && clock().saturating_sub(t0) < HOLD_NS {
        // Three frames a page: the page, its PD and its PT.
        let take = (stats().frames_free as usize).div_ceil(3).min(2 * n - next);
        for _ in 0..take {
            let r = vm().madvise(region + next * GIB, PAGE, MADV_WILLNEED);
            check!(r.is_ok(), "attacker MADV_WILLNEED: {:?}", r);
            next += 1;
        }
        core::hint::spin_loop();
        yield_now();
    }
    for i in 0..n {
        let v = read(region + i * GIB + 8 * tag as usize);
        check!(
            v == pattern(i),
            "attacker {} lost page {}: {:#x}",
            tag,
            i,
            v
        );
    }
    0
}

fn attacker(n: usize, bystander: u64) -> u64 {
    warm_stack();
    let region = vm().mmap(0, (2 * n + 1) * GIB, P::READ_WRITE, F::anonymous_private());
    check!(region.is_ok(), "mmap of {} GiB: {:?}", 2 * n + 1, region);
    let region = region.unwrap_or(0);
    let mut children = [0u64; ATTACKERS as usize - 1];
    for (k, child) in children.iter_mut().enumerate() {
        let pid = vm().fork();
        check!(pid.is_ok(), "attacker fork {}: {:?}", k, pid);
        match pid.unwrap_or(0) {
            0 => {
                warm_stack();
                exit(attack(region, n, k as u64 + 1, bystander));
            }
            pid => *child = pid,
        }
    }
    warm_stack();
    let own = attack(region, n, 0, bystander);
    let (mut finished, mut killed) = (0, 0);
    for &pid in &children {
        let w = vm().wait(pid);
        check!(w.is_ok(), "wait: {:?}", w);
        let status = w.map(|w| w.0).unwrap_or(u64::MAX);
        if status == 0 {
            finished += 1;
        } else if ws::code(status).is_none() && ws::reason(status) == ws::OOM {
            killed += 1;
        } else {
            println!("FAIL attacker child {}: status {:#x}", pid, status);
            return 1;
        }
    }
    println!(
        "tablehog: attacker children: {} finished, {} killed for memory",
        finished, killed
    );
    own
}

/// Where the bystander's rounds map their pages: a GiB of its own each round (of 256), so
/// each round needs new page tables too.
const BYSTANDER_AREA: usize = 0x100_0000_0000;

/// Maps `pages` pages (at `hint` if it is free), touches, checks and unmaps them.
fn round(pages: usize, seed: u64, hint: usize) {
    let a = vm().mmap(hint, pages * PAGE, P::READ_WRITE, F::anonymous_private());
    check!(a.is_ok(), "bystander mmap: {:?}", a);
    check!(
        hint == 0 || a == Ok(hint),
        "bystander mmap at {:#x}: {:?}",
        hint,
        a
    );
    let a = a.unwrap_or(0);
    for i in 0..pages {
        write(a + i * PAGE, seed ^ i as u64);
    }
    for i in 0..pages {
        let v = read(a + i * PAGE);
        check!(v == seed ^ i as u64, "bystander lost a write: {:#x}", v);
    }
    check!(vm().munmap(a, pages * PAGE).is_ok(), "bystander munmap");
}

/// Runs `op` until it does not fail with ENOMEM (at most 100 times); between tries a round of
/// faults lets the out-of-memory policy free memory. Returns the result and the retries.
fn retrying(mut op: impl FnMut() -> Result<u64, VmError>) -> (Result<u64, VmError>, u64) {
    let mut retries = 0;
    loop {
        let r = op();
        if r != Err(VmError::OutOfMemory) || retries == 100 {
            return (r, retries);
        }
        retries += 1;
        round(4, 0xE17, 0);
    }
}

fn bystander(base_oom: u64) -> u64 {
    warm_stack();
    let t0 = clock();
    let (mut rounds, mut forks, mut spawns, mut retries) = (0u64, 0, 0, 0);
    loop {
        let hint = BYSTANDER_AREA + (rounds as usize % 256) * GIB;
        round(16, 0xB157_A4DE_0000_0000 | rounds << 16, hint);
        rounds += 1;
        if rounds % 8 == 0 {
            let (pid, r) = retrying(|| vm().fork());
            retries += r;
            check!(pid.is_ok(), "bystander fork: {:?}", pid);
            if pid == Ok(0) {
                round(8, 0xC41D, 0);
                exit(5);
            }
            let w = vm().wait(pid.unwrap_or(0));
            check!(w == Ok((5, 0)), "the bystander's child: {:#x?}", w);
            forks += 1;
            let (pid, r) = retrying(|| vm().spawn("exit7"));
            retries += r;
            check!(pid.is_ok(), "bystander spawn: {:?}", pid);
            let w = vm().wait(pid.unwrap_or(0));
            check!(w == Ok((7, 0)), "exit7 spawned by the bystander: {:#x?}", w);
            spawns += 1;
        }
        let kills = stats().oom_kills - base_oom;
        if kills >= BYSTANDER_KILLS && rounds >= 32 {
            break;
        }
        if clock().saturating_sub(t0) > HOLD_NS {
            println!("tablehog: the bystander saw only {} kills", kills);
            break;
        }
    }
    println!(
        "PASS tablehog bystander: {} rounds, {} forks, {} spawns, {} retries for memory, {} kills",
        rounds,
        forks,
        spawns,
        retries,
        stats().oom_kills - base_oom
    );
    0
}

fn coordinator() -> u64 {
    warm_stack();
    let pre = stats();
    // Each attacker page costs three frames (page, PD, PT): the nine want a quarter more
    // than memd has free.
    let n = (pre.frames_free * 5 / 4).div_ceil(3 * ATTACKERS) as usize;
    let by_args = alloc::format!("bystander {}", pre.oom_kills);
    // The attacker's argument string comes once the bystander's pid is known: its heap
    // block is used (and freed) once now, so that the baseline already holds it.
    drop(alloc::format!("attack {} {}", n, u64::MAX));
    // The baseline once this process's heap holds the argument strings.
    let base = stats();
    println!(
        "tablehog: {} frames free, {} table frames; 9 attackers of {} pages one GiB apart",
        base.frames_free, base.page_table_frames, n
    );
    let by = vm().spawn_with_args("tablehog", &by_args);
    check!(by.is_ok(), "spawn the bystander: {:?}", by);
    let attack_args = alloc::format!("attack {} {}", n, by.unwrap_or(0));
    let attacker = vm().spawn_with_args("tablehog", &attack_args);
    check!(attacker.is_ok(), "spawn the attacker: {:?}", attacker);
    let t0 = clock();
    let mut peak = base;
    let mut min_free = base.frames_free;
    loop {
        let s = stats();
        check!(
            s.frames_quarantined == 0,
            "{} frames quarantined",
            s.frames_quarantined
        );
        peak = if s.page_table_frames > peak.page_table_frames {
            s
        } else {
            peak
        };
        min_free = min_free.min(s.frames_free);
        if s.processes <= base.processes {
            break;
        }
        check!(
            clock().saturating_sub(t0) < TIMEOUT_NS,
            "still {} processes",
            s.processes
        );
        core::hint::spin_loop();
        yield_now();
    }
    let elapsed_ms = (clock() - t0) / 1_000_000;
    let w = vm().wait(by.unwrap_or(0));
    check!(
        w == Ok((0, 0)),
        "the bystander did not run to completion: {:#x?}",
        w
    );
    let a = vm().wait(attacker.unwrap_or(0)).unwrap_or((u64::MAX, 0));
    check!(
        a.0 == 0 || (ws::code(a.0).is_none() && ws::reason(a.0) == ws::OOM),
        "the attacker: status {:#x}",
        a.0
    );
    let end = stats();
    let kills = end.oom_kills - base.oom_kills;
    check!(
        kills > 0,
        "the attackers never exhausted memory (least free {})",
        min_free
    );
    check!(
        end.data_frames() == base.data_frames()
            && end.page_table_frames == base.page_table_frames
            && end.processes == base.processes,
        "data frames {} -> {}, table frames {} -> {}, processes {} -> {}",
        base.data_frames(),
        end.data_frames(),
        base.page_table_frames,
        end.page_table_frames,
        base.processes,
        end.processes
    );
    println!(
        "tablehog: peak {} page-table frames in use ({} above the baseline, {} processes alive), least free {}; {} killed for memory; the attacker {}; {} ms",
        peak.page_table_frames,
        peak.page_table_frames - base.page_table_frames,
        peak.processes,
        min_free,
        kills,
        if a.0 == 0 {
            "exited 0"
        } else {
            "was killed for memory"
        },
        elapsed_ms
    );
    let pid = vm().spawn("exit7");
    check!(
        pid.is_ok() && vm().wait(pid.unwrap_or(0)) == Ok((7, 0)),
        "spawn after the attack"
    );
    let pid = vm().fork();
    check!(pid.is_ok(), "fork after the attack: {:?}", pid);
    if pid == Ok(0) {
        exit(3);
    }
    check!(
        vm().wait(pid.unwrap_or(0)) == Ok((3, 0)),
        "fork after the attack"
    );
    println!("PASS tablehog");
    0
}

fn main(_: Start) -> u64 {
    let args = args();
    match args.first().map(|a| a.as_str()) {
        None => coordinator(),
        Some("attack") => attacker(arg(&args, 1) as usize, arg(&args, 2)),
        Some("bystander") => bystander(arg(&args, 1)),
        Some(other) => {
            println!("FAIL tablehog: unknown role {}", other);
            1
        }
    }
}
