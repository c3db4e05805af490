//! The multi-CPU benchmark, shared by `vmsmp` (the full run) and `vmsmp_quick` (a smoke run for
//! the QEMU tests): the `m_` rows of the Linux peer's `vmbench.c` built with `-DSMP` (its
//! `run.sh --smp`: QEMU `-smp 4`, still `-icount shift=0 -cpu qemu64 -m 512`), the same names,
//! measured the same way where our system allows.
//!
//! Timing ([`user_rt::bench`]) as in `vmbench`: `lfence; rdtsc; lfence` around each operation,
//! the peer's `run_bench` warm-up and measurement, median. Under icount QEMU 7.2 runs the vCPUs
//! in turn on one host thread and the TSC advances with every vCPU's instructions: a figure is
//! the instructions all processors executed in the interval (their wake-ups, interrupts and
//! busy loops included), not a latency. Every wait and busy loop here executes `pause`
//! (`spin_loop`), which ends the vCPU's turn in QEMU: a loop without it would take the whole
//! turn from the other vCPUs.
//!
//! As the peer, each group of rows runs in a fresh process forked from this one, with helpers
//! (a crew: threads, or forked processes for `m_fault_procs_*`) driven through a shared command
//! word. Where ours differs from the peer's method (each also said in an `INFO` line):
//! - No CPU affinity: the kernel has one run queue; a ready thread goes to an idle processor
//!   (a reschedule interrupt), and a running thread changes processor only when its slice ends
//!   with the queue non-empty. "Pinned" here means: the leader and its T-1 spinning helpers
//!   report (`cpu_info`) T distinct processors before the first operation; where they are after
//!   the last is printed too.
//! - A thread woken (or created) goes on the run queue and an idle processor is sent a
//!   reschedule interrupt; but under QEMU's round robin the waker's vCPU goes on running, and
//!   the first processor to look at the queue takes the thread: the waker's own when the waker
//!   then sleeps, else the interrupted one. With the other processors idle the placement thus
//!   varies (a futex ping-pong was seen settling with the two threads on two processors, each
//!   polling the word through `futex_wake`, never sleeping). So the same-CPU rows
//!   (`m_thread_create_join`, `m_futex_rtt_samecpu`) keep every other processor busy with a
//!   crew of spinning processes (forked before the row's process, not from it, and processes,
//!   not threads, so that neither copy-on-write sharing nor TLB shootdowns reach the row's);
//!   the cross-CPU rows leave them idle and add a handshake of flags: the waker (or creator)
//!   spins until the woken thread runs, which an idle processor then took, and each thread
//!   goes on only once the other is about to sleep, so that both sleep and every wake-up
//!   crosses processors, as on the peer's pinned CPUs (its stores and `pause` loops are in our
//!   figures). Probe rounds before each row count where the threads ran.
//! - Our new thread's stack is a fresh `MAP_STACK` mapping from memd each time (mapped, first
//!   touched, unmapped at the join), where glibc reuses a cached one.
//! - `m_futex_rtt_*` is a futex ping-pong between two threads of one process (the peer: two
//!   processes sharing a word). There are no pipes: the peer's `m_pipe_rtt_*` has no row here.
//! - `m_ipc_rtt_memd` (ours only): `g_ipc_rtt_memd`'s round trip to memd with every processor
//!   online, the others idle.

use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::hint::spin_loop;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use libvm::sys::thread::{self, JoinHandle, futex_wait, futex_wake, spawn};
use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::bench::{
    Bench, Driver, buffer, calibrate, fatal, fork_exit_wait, ipc_rtt, map, rdtsc, release, touch,
    unmap,
};
use user_rt::*;

const PAGE: usize = 4096;
/// Pages each crew member first-touches per operation of `m_fault_*` (1 MiB, the peer's
/// `FAULT_PAGES`).
const FAULT_PAGES: usize = 256;
/// Pages of its own each busy member reads in its loop (the peer's `BUSY_PAGES`).
const BUSY_PAGES: usize = 8;
/// Crew members at most (the leader included).
const MAX_CREW: usize = 32;
/// Tries of [`Team::spread`] before it gives up.
const SPREAD_TRIES: usize = 1000;
/// The crew sizes (threads or processes) of the rows.
const SIZES: [usize; 3] = [1, 2, 4];
/// The futex word's value that ends the ping-pong partner.
const STOP: u32 = u32::MAX;

/// How long each figure runs.
struct Mode {
    /// Warm-up and measurement (the peer's `run_bench`).
    driver: Driver,
    /// Samples per figure (the buffers' size).
    max_samples: usize,
    /// Calibrate the TSC against the kernel's clock (else assume 1 tick per ns).
    calibrate: bool,
    /// Operations of each placement probe (where a new thread or the ping-pong partner ran).
    probes: usize,
    /// Reads per thread of the cross-CPU `rdtsc` check (the peer's `TSC_ITERS`).
    tsc_reads: usize,
}

/// The run's mode: the full run (the peer's 20 ms warm-up and 0.2 s of measurement, at one
/// tick per ns), or a smoke run when `quick` (every row, a few operations each).
fn mode(quick: bool) -> Mode {
    if quick {
        Mode {
            driver: Driver::QUICK,
            max_samples: 1 << 12,
            calibrate: false,
            probes: 10,
            tsc_reads: 1000,
        }
    } else {
        Mode {
            driver: Driver::FIXED,
            max_samples: 1 << 18,
            calibrate: true,
            probes: 200,
            tsc_reads: 20_000,
        }
    }
}

/// What every group of rows is given.
#[derive(Clone, Copy)]
struct Ctx {
    /// The smoke run.
    quick: bool,
    /// TSC ticks per nanosecond.
    ghz: f64,
    /// Processors running the kernel.
    cpus: usize,
}

impl Ctx {
    /// A bench with sample buffers of the mode's size.
    fn bench(&self) -> Bench {
        let m = mode(self.quick);
        Bench {
            driver: m.driver,
            ghz: self.ghz,
            s: buffer(m.max_samples),
            s2: buffer(m.max_samples),
        }
    }
}

/// The processor running the caller.
fn this_cpu() -> u32 {
    thread::cpu().0
}

/// `cpus` as `0,1,2`.
fn list(cpus: &[u32]) -> alloc::string::String {
    let v: Vec<_> = cpus.iter().map(|c| format!("{c}")).collect();
    v.join(",")
}

/// Starts a thread running `f`; `FATAL` if the kernel or memd refuses.
fn spawned<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    spawn(f).unwrap_or_else(|_| fatal("spawn"))
}

/// Waits for thread `h` and returns what it returned; `FATAL` if it did not return or its stack
/// could not be given back.
fn joined<T>(h: JoinHandle<T>) -> T {
    match h.join() {
        Ok(Some(v)) => v,
        _ => fatal("join"),
    }
}

/// Runs `group(ctx, arg)` in a fresh process forked from this one, and waits for it.
fn in_fresh_process(ctx: &Ctx, group: fn(&Ctx, usize), arg: usize) {
    forked(ctx, group, arg, None);
}

/// [`in_fresh_process`]'s body; the process first unmaps its copy of `crew`'s memory (a crew
/// of this process's, running beside it).
fn forked(ctx: &Ctx, group: fn(&Ctx, usize), arg: usize, crew: Option<&Crew>) {
    let vm = vm();
    let pid = vm.fork().unwrap_or_else(|_| fatal("fork row process"));
    if pid == 0 {
        if let Some(c) = crew {
            c.unmap();
        }
        group(ctx, arg);
        exit(0);
    }
    match vm.wait(pid) {
        Ok((0, _)) => {}
        _ => fatal("row process"),
    }
}

/// Runs `group(ctx, arg)`, the rows of `name`, as [`in_fresh_process`] does, every other
/// processor kept busy meanwhile by a crew of processes reading their pages in a loop, so that
/// a thread of the group woken or created can run only on the processor of the group's process.
/// The crew is forked from this process, before the group's: processes forked from the
/// group's would share its memory copy-on-write while they live, and processes, not threads,
/// so that no TLB shootdown of the group's reaches them. Says where the crew ran.
fn beside_busy_crew(ctx: &Ctx, group: fn(&Ctx, usize), arg: usize, name: &str) {
    let team = Team::start(ctx.cpus, true, 0);
    let before = team.spread();
    team.issue(CMD_BUSY);
    team.wait();
    forked(ctx, group, arg, Some(team.c));
    let after = team.cpus();
    team.stop();
    println!(
        "INFO {}: {} busy processes kept the other processors busy: on cpus {} before the \
         first operation (the row's process on cpu {}, the one left), {} after the last",
        name,
        ctx.cpus - 1,
        list(&before[1..]),
        before[0],
        list(&after[1..])
    );
}

/// Commands of the leader to its crew (the peer's `CMD_*`).
const CMD_EXIT: u32 = 1;
/// Processes: map a fresh private region of their own.
const CMD_PREP: u32 = 2;
/// First-touch the member's pages.
const CMD_FAULT: u32 = 3;
/// Read the member's busy pages in a loop until the next command.
const CMD_BUSY: u32 = 4;
/// Say which processor runs the member.
const CMD_WHERE: u32 = 5;

/// What the leader and its members share (the peer's `struct crew`), in a shared mapping so
/// that forked members see it too.
#[repr(C)]
struct Crew {
    /// Bumped by each command.
    generation: AtomicU32,
    /// The command.
    cmd: AtomicU32,
    /// Members done with it.
    done: AtomicU32,
    /// Members, the leader included.
    n: usize,
    /// Members are processes (else threads of the leader's process).
    procs: bool,
    /// Pages each member first-touches.
    pages: usize,
    /// Threads: the shared mapping of a fault operation (member `i`'s pages at `i * pages`).
    base: AtomicUsize,
    /// [`BUSY_PAGES`] pages per member, read by the busy loops.
    busy: usize,
    /// The processor each member last said it ran on, plus 1 (0: not said yet).
    cpu: [AtomicU32; MAX_CREW],
}

const _: () = assert!(core::mem::size_of::<Crew>() <= PAGE);

impl Crew {
    /// Unmaps the crew's memory, this page included (in [`Team::stop`], once every member has
    /// ended; or in a process forked while the crew runs, from that process's copy).
    fn unmap(&self) {
        unmap(self.busy, self.n * BUSY_PAGES * PAGE);
        unmap(self as *const Crew as usize, PAGE);
    }
}

/// Writes one byte in each of `pages` pages from `at`.
fn touch_pages(at: usize, pages: usize) {
    for i in 0..pages {
        touch(at + i * PAGE, 1);
    }
}

/// Member `i` of crew `c` (the peer's `crew_member`): does each command, waiting with `pause`.
fn member(c: &Crew, i: usize) {
    let mut own = 0;
    let own_len = c.pages * PAGE;
    let mut seen = c.generation.load(SeqCst);
    c.cpu[i].store(this_cpu() + 1, SeqCst);
    c.done.fetch_add(1, SeqCst);
    loop {
        let mut g = c.generation.load(SeqCst);
        while g == seen {
            spin_loop();
            g = c.generation.load(SeqCst);
        }
        seen = g;
        match c.cmd.load(SeqCst) {
            CMD_EXIT => {
                if own != 0 {
                    unmap(own, own_len);
                }
                return;
            }
            CMD_PREP => {
                if own != 0 {
                    unmap(own, own_len);
                }
                own = map(own_len, F::anonymous_private());
            }
            CMD_FAULT => {
                let at = if c.procs {
                    own
                } else {
                    c.base.load(SeqCst) + i * c.pages * PAGE
                };
                touch_pages(at, c.pages);
            }
            CMD_BUSY => {
                // Run on this processor, reading pages of its own (no writes: a fork adds no
                // copy-on-write faults of ours), until the next command.
                let b = c.busy + i * BUSY_PAGES * PAGE;
                c.done.fetch_add(1, SeqCst);
                while c.generation.load(SeqCst) == seen {
                    for j in 0..BUSY_PAGES {
                        core::hint::black_box(read(b + j * PAGE));
                    }
                    spin_loop();
                }
                continue;
            }
            CMD_WHERE => c.cpu[i].store(this_cpu() + 1, SeqCst),
            _ => fatal("crew command"),
        }
        c.done.fetch_add(1, SeqCst);
    }
}

/// A crew as its leader holds it: the shared part, and how to wait for the members' ends.
struct Team {
    /// What the leader and the members share.
    c: &'static Crew,
    /// Thread members' handles.
    threads: Vec<JoinHandle<()>>,
    /// Process members' pids.
    pids: Vec<u64>,
}

impl Team {
    /// Starts a crew of `n` (the leader and `n - 1` members): threads, or processes when
    /// `procs`, each to first-touch `pages` pages per fault operation (the peer's
    /// `crew_start`); returns once every member runs.
    fn start(n: usize, procs: bool, pages: usize) -> Team {
        if n > MAX_CREW {
            fatal("a crew larger than MAX_CREW");
        }
        let at = map(PAGE, F::anonymous_shared());
        let busy = map(n * BUSY_PAGES * PAGE, F::anonymous_private());
        touch_pages(busy, n * BUSY_PAGES);
        // SAFETY: `at` is a fresh read/write page of ours (shared with the members this crew
        // forks), page aligned and large enough (asserted above); nothing else refers to it.
        // Only the team and its members use the reference, and `stop` unmaps the page once
        // every member has ended, consuming the team.
        let c: &'static Crew = unsafe {
            let p = at as *mut Crew;
            p.write(Crew {
                generation: AtomicU32::new(0),
                cmd: AtomicU32::new(0),
                done: AtomicU32::new(0),
                n,
                procs,
                pages,
                base: AtomicUsize::new(0),
                busy,
                cpu: [const { AtomicU32::new(0) }; MAX_CREW],
            });
            &*p
        };
        let mut team = Team {
            c,
            threads: Vec::new(),
            pids: Vec::new(),
        };
        for i in 1..n {
            if procs {
                let pid = vm().fork().unwrap_or_else(|_| fatal("fork member"));
                if pid == 0 {
                    member(c, i);
                    exit(0);
                }
                team.pids.push(pid);
            } else {
                team.threads.push(spawned(move || member(c, i)));
            }
        }
        team.wait();
        team
    }

    /// Gives the members `cmd` (the peer's `crew_issue`).
    fn issue(&self, cmd: u32) {
        self.c.cmd.store(cmd, SeqCst);
        self.c.done.store(0, SeqCst);
        self.c.generation.fetch_add(1, SeqCst);
    }

    /// Waits until every member is done with the last command (the peer's `crew_wait`).
    fn wait(&self) {
        while self.c.done.load(SeqCst) != self.c.n as u32 - 1 {
            spin_loop();
        }
    }

    /// The processors running the leader (first) and each member now (ends a busy loop).
    fn cpus(&self) -> Vec<u32> {
        self.issue(CMD_WHERE);
        self.wait();
        let mut v = Vec::with_capacity(self.c.n);
        v.push(this_cpu());
        v.extend((1..self.c.n).map(|i| self.c.cpu[i].load(SeqCst) - 1));
        v
    }

    /// Waits until the leader and its members run on distinct processors (each member spins
    /// between commands, so it keeps its processor); those processors.
    fn spread(&self) -> Vec<u32> {
        for _ in 0..SPREAD_TRIES {
            let v = self.cpus();
            if (0..v.len()).all(|i| !v[..i].contains(&v[i])) {
                return v;
            }
            spin_loop();
        }
        fatal("the crew never ran on distinct processors")
    }

    /// Ends the members and waits for them (the peer's `crew_stop`).
    fn stop(self) {
        self.issue(CMD_EXIT);
        for h in self.threads {
            joined(h);
        }
        for pid in self.pids {
            match vm().wait(pid) {
                Ok((0, _)) => {}
                _ => fatal("member process"),
            }
        }
        self.c.unmap();
    }
}

/// `timer_overhead`: two fenced `rdtsc`s back to back.
fn group_timer(ctx: &Ctx, _: usize) {
    let mut b = ctx.bench();
    let n = b.run(|_| {
        let t0 = rdtsc();
        rdtsc() - t0
    });
    b.first("timer_overhead", n);
}

/// The cross-CPU `rdtsc` check's shared state (the peer's `struct tsc_chk`).
struct TscCheck {
    /// The latest value any thread read.
    last: AtomicU64,
    /// Threads ready to start.
    ready: AtomicU32,
    /// Set when they may.
    go: AtomicU32,
}

/// One thread of the check: `reads` reads of the shared latest value then of its own TSC, which
/// must not be smaller; its processor, the reads that went backwards and by how much at most.
fn tsc_reads(k: &TscCheck, reads: usize) -> (u32, u64, u64) {
    let cpu = this_cpu();
    k.ready.fetch_add(1, SeqCst);
    while k.go.load(SeqCst) == 0 {
        spin_loop();
    }
    let (mut back, mut max_back) = (0, 0);
    for _ in 0..reads {
        let mut old = k.last.load(SeqCst);
        let t = rdtsc();
        if t < old {
            back += 1;
            max_back = max_back.max(old - t);
        }
        while old < t {
            match k.last.compare_exchange(old, t, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => old = now,
            }
            spin_loop();
        }
        spin_loop();
    }
    (cpu, back, max_back)
}

/// `rdtsc` across processors (the peer's `tsc_check`): a thread on each processor reads a
/// shared latest value, then its own TSC, and publishes the larger, `pause` between reads.
fn group_tsc(ctx: &Ctx, _: usize) {
    let t = ctx.cpus.min(MAX_CREW);
    let reads = mode(ctx.quick).tsc_reads;
    let k = Arc::new(TscCheck {
        last: AtomicU64::new(0),
        ready: AtomicU32::new(0),
        go: AtomicU32::new(0),
    });
    let handles: Vec<_> = (1..t)
        .map(|_| {
            let k = k.clone();
            spawned(move || tsc_reads(&k, reads))
        })
        .collect();
    while k.ready.load(SeqCst) != t as u32 - 1 {
        spin_loop();
    }
    k.go.store(1, SeqCst);
    let mut all = alloc::vec![tsc_reads(&k, reads)];
    all.extend(handles.into_iter().map(joined));
    let cpus: Vec<u32> = all.iter().map(|r| r.0).collect();
    println!(
        "INFO tsc_crosscpu: {} threads on cpus {}: {} reads, {} went backwards (max {} ticks)",
        t,
        list(&cpus),
        t * reads,
        all.iter().map(|r| r.1).sum::<u64>(),
        all.iter().map(|r| r.2).max().unwrap_or(0)
    );
}

/// `m_fault_threads_T` (`arg` = T) or `m_fault_procs_T` (`arg` = 16 + T): the leader and T-1
/// members first-touch their own [`FAULT_PAGES`] pages at once; per fault, from the release to
/// the last one done (the peer's `op_crew_fault`).
fn group_fault(ctx: &Ctx, arg: usize) {
    let (t, procs) = (arg & 15, arg >> 4 != 0);
    let name = if procs {
        format!("m_fault_procs_{t}")
    } else {
        format!("m_fault_threads_{t}")
    };
    let mut b = ctx.bench();
    let team = Team::start(t, procs, FAULT_PAGES);
    let before = team.spread();
    let own_len = FAULT_PAGES * PAGE;
    let len = t * own_len;
    let mut own = 0;
    let n = b.run(|total| {
        let at = if procs {
            // Untimed: every process maps a fresh private region.
            team.issue(CMD_PREP);
            if own != 0 {
                unmap(own, own_len);
            }
            own = map(own_len, F::anonymous_private());
            team.wait();
            own
        } else {
            // Untimed: one fresh mapping, member i's pages at i * FAULT_PAGES.
            let base = map(len, F::anonymous_private());
            team.c.base.store(base, SeqCst);
            base
        };
        let t0 = rdtsc();
        team.issue(CMD_FAULT);
        touch_pages(at, FAULT_PAGES);
        team.wait();
        let t1 = rdtsc();
        if !procs {
            unmap(at, len);
        }
        *total = t1 - t0;
        (t1 - t0) / (t * FAULT_PAGES) as u64
    });
    b.first(&name, n);
    let after = team.cpus();
    team.stop();
    if own != 0 {
        unmap(own, own_len);
    }
    println!(
        "INFO {}: {} {} on cpus {} before the first operation, {} after the last (a member \
         waiting for memd's answer to its fault leaves its processor, and the first one idle \
         takes it back)",
        name,
        t,
        if procs { "processes" } else { "threads" },
        list(&before),
        list(&after)
    );
}

/// A one-page slot between two no-access guard pages, so that its region never merges with a
/// neighbour (the peer's `guarded_slot`).
fn guarded_slot() -> usize {
    let g = vm()
        .mmap(0, 3 * PAGE, P::NONE, F::anonymous_private())
        .unwrap_or_else(|_| fatal("mmap guards"));
    unmap(g + PAGE, PAGE);
    g + PAGE
}

/// Maps the slot read/write and writes it (the peer's `map_slot`).
fn map_slot(slot: usize) {
    let r = vm().mmap(slot, PAGE, P::READ_WRITE, F::anonymous_private().fixed());
    if r != Ok(slot) {
        fatal("mmap slot");
    }
    touch(slot, 1);
}

/// `m_munmap_shootdown_T`, `m_mprotect_shootdown_T`, `m_fork_threads_T` (`t` = T): the
/// operation on the leader while its T-1 members read their pages in a loop on the other
/// processors (the peer's `group_shootdown`).
fn group_shootdown(ctx: &Ctx, t: usize) {
    let vm = vm();
    let mut b = ctx.bench();
    let team = Team::start(t, false, 0);
    let before = team.spread();
    team.issue(CMD_BUSY);
    team.wait();
    let slot = guarded_slot();
    let n = b.run(|_| {
        map_slot(slot);
        let t0 = rdtsc();
        let r = vm.munmap(slot, PAGE);
        let t1 = rdtsc();
        if r.is_err() {
            fatal("munmap");
        }
        t1 - t0
    });
    b.first(&format!("m_munmap_shootdown_{t}"), n);
    map_slot(slot);
    let n = b.run(|_| {
        if vm.mprotect(slot, PAGE, P::READ_WRITE).is_err() {
            fatal("mprotect RW");
        }
        touch(slot, 2);
        let t0 = rdtsc();
        let r = vm.mprotect(slot, PAGE, P::READ);
        let t1 = rdtsc();
        if r.is_err() {
            fatal("mprotect R");
        }
        t1 - t0
    });
    b.first(&format!("m_mprotect_shootdown_{t}"), n);
    unmap(slot - PAGE, 3 * PAGE);
    // The peer keeps its sample buffers out of forked children (MADV_DONTFORK): ours shrink to
    // a few pages for the fork figure, as in vmbench.
    release(b.s);
    release(b.s2);
    b.s = buffer(4096);
    b.s2 = buffer(4096);
    let n = b.run(|_| fork_exit_wait());
    b.first(&format!("m_fork_threads_{t}"), n);
    let after = team.cpus();
    team.stop();
    println!(
        "INFO m_*_shootdown_{t}, m_fork_threads_{t}: the leader and {} busy threads on cpus {} \
         before the first operation, {} after the last (memd makes the change while the leader \
         waits for it: the kernel's flush interrupts only the processors running threads of \
         this process, the busy ones)",
        t - 1,
        list(&before),
        list(&after)
    );
}

/// The last round whose new thread runs (a cross-CPU thread says so, and then waits for
/// [`JOINING`]).
static RUNNING: AtomicU32 = AtomicU32::new(0);
/// The last round whose creator is about to join (and sleep).
static JOINING: AtomicU32 = AtomicU32::new(0);

/// Creates and joins a thread (the peer's `op_thread_create_join`), round `round`; the
/// processor the thread ran on when `probe`, else 0. When `cross`, the creator keeps its
/// processor (spinning) until the thread runs, so that another one took it, and the thread
/// waits until its creator is about to sleep in the join, as on the peer's pinned CPUs.
fn create_join(cross: bool, round: u32, probe: bool) -> u32 {
    let h = spawned(move || {
        if cross {
            RUNNING.store(round, SeqCst);
            while JOINING.load(SeqCst) != round {
                spin_loop();
            }
        }
        if probe { this_cpu() } else { 0 }
    });
    if cross {
        while RUNNING.load(SeqCst) != round {
            spin_loop();
        }
        JOINING.store(round, SeqCst);
    }
    joined(h)
}

/// `m_thread_create_join` (`cross` = 0: the new thread on its creator's processor, every other
/// one kept busy) or `m_thread_create_join_crosscpu` (`cross` = 1: on another, the others
/// idle); probe rounds first count where the threads ran.
fn group_threads(ctx: &Ctx, cross: usize) {
    let cross = cross != 0;
    let name = if cross {
        "m_thread_create_join_crosscpu"
    } else {
        "m_thread_create_join"
    };
    let probes = mode(ctx.quick).probes;
    let mut b = ctx.bench();
    let mut round = 0;
    let same = (0..probes)
        .filter(|_| {
            round += 1;
            let me = this_cpu();
            create_join(cross, round, true) == me
        })
        .count();
    let n = b.run(|_| {
        round += 1;
        let t0 = rdtsc();
        create_join(cross, round, false);
        rdtsc() - t0
    });
    b.first(name, n);
    if cross {
        println!(
            "INFO {}: the other processors idle; the creator spins (pause) until the new thread \
             runs, which an idle processor took, and the thread waits until its creator is \
             about to sleep in the join (Linux: the thread placed on CPU 1 by affinity); it ran \
             on another processor than its creator's in {} of {} probes",
            name,
            probes - same,
            probes
        );
    } else {
        println!(
            "INFO {}: the other processors kept busy (Linux: idle, the thread inherits CPU 0's \
             affinity), so the new thread runs on its creator's: it did in {} of {} probes; our \
             thread's stack is a fresh MAP_STACK mapping from memd each time (mapped, first \
             touched, unmapped at the join; glibc reuses a cached stack)",
            name, same, probes
        );
    }
}

/// The futex ping-pong's shared state. With the handshake (`m_futex_rtt_crosscpu`) every
/// wake-up crosses processors and both threads sleep each round trip, as on the peer's CPUs 0
/// and 1: the waker keeps its processor (spinning) until the woken thread runs, which an idle
/// processor took, and each thread answers or asks only once the other sleeps.
struct PingPong {
    /// The futex word: odd values are the leader's requests, even ones the partner's replies,
    /// [`STOP`] ends the partner.
    word: AtomicU32,
    /// The handshake is on.
    handshake: bool,
    /// Whether the partner says where it runs at each reply (the placement probe).
    probe: AtomicU32,
    /// Where the partner ran for its last reply (while probing).
    cpu: AtomicU32,
    /// Handshake: the last round whose request the partner is about to sleep for...
    partner_asleep: AtomicU32,
    /// ... whose request it runs with...
    partner_running: AtomicU32,
    /// ... whose reply the leader is about to sleep for...
    leader_asleep: AtomicU32,
    /// ... and whose reply it runs with.
    leader_running: AtomicU32,
}

/// Spins (`pause`) until `flag` holds `round`.
fn await_round(flag: &AtomicU32, round: u32) {
    while flag.load(SeqCst) != round {
        spin_loop();
    }
}

/// The partner of the ping-pong (the peer's `ipc_child` for a futex): answers each request.
fn partner(p: &PingPong) {
    let mut round = 1;
    loop {
        let req = 2 * round - 1;
        loop {
            let v = p.word.load(SeqCst);
            if v == req {
                break;
            }
            if v == STOP {
                return;
            }
            if p.handshake {
                p.partner_asleep.store(round, SeqCst);
            }
            futex_wait(&p.word, v);
        }
        if p.handshake {
            p.partner_running.store(round, SeqCst);
            await_round(&p.leader_asleep, round);
        }
        if p.probe.load(SeqCst) != 0 {
            p.cpu.store(this_cpu(), SeqCst);
        }
        p.word.store(req + 1, SeqCst);
        futex_wake(&p.word, 1);
        if p.handshake {
            await_round(&p.leader_running, round);
        }
        round += 1;
    }
}

/// Round trip `round` of the leader (the peer's `op_ipc` for a futex): its request, the
/// partner's reply.
fn round_trip(p: &PingPong, round: u32) {
    let (req, rep) = (2 * round - 1, 2 * round);
    if p.handshake {
        await_round(&p.partner_asleep, round);
    }
    p.word.store(req, SeqCst);
    futex_wake(&p.word, 1);
    if p.handshake {
        await_round(&p.partner_running, round);
        p.leader_asleep.store(round, SeqCst);
    }
    while p.word.load(SeqCst) != rep {
        futex_wait(&p.word, req);
    }
    if p.handshake {
        p.leader_running.store(round, SeqCst);
    }
}

/// `m_futex_rtt_samecpu` (`cross` = 0) or `m_futex_rtt_crosscpu` (`cross` = 1): a futex
/// ping-pong between two threads of one process, the other processors idle; probe rounds
/// first count where the partner answered.
fn group_futex(ctx: &Ctx, cross: usize) {
    let cross = cross != 0;
    let name = if cross {
        "m_futex_rtt_crosscpu"
    } else {
        "m_futex_rtt_samecpu"
    };
    let probes = mode(ctx.quick).probes;
    let mut b = ctx.bench();
    let p = Arc::new(PingPong {
        word: AtomicU32::new(0),
        handshake: cross,
        probe: AtomicU32::new(1),
        cpu: AtomicU32::new(0),
        partner_asleep: AtomicU32::new(0),
        partner_running: AtomicU32::new(0),
        leader_asleep: AtomicU32::new(0),
        leader_running: AtomicU32::new(0),
    });
    let h = {
        let p = p.clone();
        spawned(move || partner(&p))
    };
    let mut round = 0;
    let same = (0..probes)
        .filter(|_| {
            round += 1;
            let me = this_cpu();
            round_trip(&p, round);
            p.cpu.load(SeqCst) == me
        })
        .count();
    p.probe.store(0, SeqCst);
    let n = b.run(|_| {
        round += 1;
        let t0 = rdtsc();
        round_trip(&p, round);
        rdtsc() - t0
    });
    b.first(name, n);
    p.word.store(STOP, SeqCst);
    futex_wake(&p.word, 1);
    joined(h);
    if cross {
        println!(
            "INFO {}: two threads of one process (Linux: two processes sharing the word, on \
             CPUs 0 and 1 by affinity); the other processors idle; a handshake of flags (the \
             waker spins until the woken thread runs, which an idle processor took; each thread \
             asks or answers once the other is about to sleep) makes both sleep and every \
             wake-up cross processors, at the cost of its own stores and pause loops; the \
             partner answered on another processor than the leader's in {} of {} probe rounds",
            name,
            probes - same,
            probes
        );
    } else {
        println!(
            "INFO {}: two threads of one process (Linux: two processes sharing the word, both \
             on CPU 0); the other processors kept busy (Linux: idle), so the woken thread runs \
             on the processor its waker leaves: the partner answered on the leader's processor \
             in {} of {} probe rounds",
            name, same, probes
        );
    }
}

/// `m_ipc_rtt_memd` (ours only): a request memd decodes and refuses, as `g_ipc_rtt_memd`, with
/// every processor online (the others idle).
fn group_ipc(ctx: &Ctx, _: usize) {
    let mut b = ctx.bench();
    let n = b.run(|_| ipc_rtt());
    b.first("m_ipc_rtt_memd", n);
}

/// Prints the `n/a` line of row `name` (more threads than processors).
fn not_applicable(name: &str) {
    println!("RESULT {:<28} n/a", name);
}

/// Runs every row and prints its line: the full run, or a smoke run when `quick`.
pub fn run(quick: bool) -> u64 {
    println!("VMBENCH_BEGIN");
    let ghz = if mode(quick).calibrate {
        calibrate()
    } else {
        1.0
    };
    println!("INFO tsc_ghz: {:.4}", ghz);
    let (me, cpus) = thread::cpu();
    let ctx = Ctx {
        quick,
        ghz,
        cpus: cpus as usize,
    };
    in_fresh_process(&ctx, group_timer, 0);
    println!(
        "INFO smp: {} CPUs online, this thread on cpu {}; no CPU affinity here (one run queue: \
         a ready thread goes to an idle processor, a running one moves only when its slice \
         ends with the queue non-empty): a crew counts as pinned once its threads report \
         distinct processors",
        cpus, me
    );
    in_fresh_process(&ctx, group_tsc, 0);
    for procs in [0, 16] {
        for t in SIZES {
            if t <= ctx.cpus {
                in_fresh_process(&ctx, group_fault, procs + t);
            } else if procs == 0 {
                not_applicable(&format!("m_fault_threads_{t}"));
            } else {
                not_applicable(&format!("m_fault_procs_{t}"));
            }
        }
    }
    for t in SIZES {
        if t <= ctx.cpus {
            in_fresh_process(&ctx, group_shootdown, t);
        } else {
            not_applicable(&format!("m_munmap_shootdown_{t}"));
            not_applicable(&format!("m_mprotect_shootdown_{t}"));
            not_applicable(&format!("m_fork_threads_{t}"));
        }
    }
    beside_busy_crew(&ctx, group_threads, 0, "m_thread_create_join");
    if ctx.cpus > 1 {
        in_fresh_process(&ctx, group_threads, 1);
    }
    beside_busy_crew(&ctx, group_futex, 0, "m_futex_rtt_samecpu");
    if ctx.cpus > 1 {
        in_fresh_process(&ctx, group_futex, 1);
    }
    if ctx.cpus == 1 {
        not_applicable("m_thread_create_join_crosscpu");
        not_applicable("m_futex_rtt_crosscpu");
    }
    in_fresh_process(&ctx, group_ipc, 0);
    println!("VMBENCH_END");
    0
}
