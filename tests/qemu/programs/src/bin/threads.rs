//! Threads of one process on many processors (module 1 of a memd boot): spawn and join with
//! `Vec`/`Box` from every thread, thread locals through FS, a futex mutex whose counter comes
//! out exact, fault storms on disjoint and overlapping pages with contents and frames exact,
//! the stale-TLB detector (a thread reading or writing a page in a loop while another unmaps
//! it, makes it read-only, or breaks its copy-on-write: after the call returns, the next
//! access must fault or see the new frame), fork of a process with threads running (the child
//! has only the caller), exit of a process whose threads run elsewhere, a fault refused in
//! one thread ending the whole process, fault handlers run at once by several threads,
//! each on its own alternate stack (or, without one, on its own stack), and detached threads
//! whose stacks come back.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use libvm::fault::FaultFrame;
use libvm::proto::wait_status;
use libvm::sys::fault_entry::{alt_stack, handle_faults};
use libvm::sys::thread::{self, Mutex, futex_wait, futex_wake, spawn, tls_get, tls_set};
use libvm::{MmapFlags as F, ProtectionFlags as P};
use user_rt::*;

entry!(main);

const PAGE: usize = 4096;

fn map(pages: usize) -> usize {
    let a = vm().mmap(0, pages * PAGE, P::READ_WRITE, F::anonymous_private());
    check!(a.is_ok(), "mmap: {:?}", a);
    a.unwrap_or(0) as usize
}

fn unmap(a: usize, pages: usize) {
    let r = vm().munmap(a, pages * PAGE);
    check!(r.is_ok(), "munmap: {:?}", r);
}

fn join<T>(h: thread::JoinHandle<T>) -> T {
    match h.join() {
        Ok(Some(v)) => v,
        other => {
            check!(false, "join: {:?}", other.map(|r| r.is_some()));
            unreachable!()
        }
    }
}

fn spawned<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    match spawn(f) {
        Ok(h) => h,
        Err(e) => {
            check!(false, "spawn: {:?}", e);
            unreachable!()
        }
    }
}

/// A barrier of `n` threads on a futex word.
struct Barrier {
    arrived: AtomicU32,
    n: u32,
}

impl Barrier {
    fn wait(&self) {
        let now = self.arrived.fetch_add(1, Ordering::AcqRel) + 1;
        if now == self.n {
            futex_wake(&self.arrived, u32::MAX);
            return;
        }
        loop {
            let seen = self.arrived.load(Ordering::Acquire);
            if seen >= self.n {
                return;
            }
            futex_wait(&self.arrived, seen);
        }
    }
}

/// Eight threads, more than processors: each allocates, sums, and says where it ran.
fn spawn_and_join(cpus: u32) {
    let barrier = Arc::new(Barrier {
        arrived: AtomicU32::new(0),
        n: 8,
    });
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let b = barrier.clone();
            spawned(move || {
                b.wait();
                let v: Vec<u64> = (0..1000).map(|k| k * (i + 1)).collect();
                let boxed = Box::new(v.iter().sum::<u64>());
                let mut s = String::new();
                for _ in 0..100 {
                    s.push('x');
                }
                (*boxed + s.len() as u64, thread::cpu().0)
            })
        })
        .collect();
    let mut seen = 0u32;
    for (i, h) in handles.into_iter().enumerate() {
        let (sum, cpu) = join(h);
        check!(
            sum == 499_500 * (i as u64 + 1) + 100,
            "thread {} summed {}",
            i,
            sum
        );
        seen |= 1 << cpu;
    }
    check!(
        cpus == 1 || seen.count_ones() >= 2,
        "8 threads on {} processors all ran on {:#b}",
        cpus,
        seen
    );
    println!(
        "threads: 8 threads joined, their Vec/Box/String sums exact, run on {} of {} processors",
        seen.count_ones(),
        cpus
    );
}

/// Thread locals: each thread keeps its own across yields (and moves between processors).
fn thread_locals() {
    tls_set(0, 0xAAAA);
    let handles: Vec<_> = (1..=4usize)
        .map(|i| {
            spawned(move || {
                tls_set(0, i * 1000);
                tls_set(1, i);
                for _ in 0..50 {
                    yield_now();
                    if tls_get(0) != i * 1000 || tls_get(1) != i {
                        return false;
                    }
                }
                true
            })
        })
        .collect();
    for h in handles {
        check!(join(h), "a thread's locals changed under it");
    }
    check!(tls_get(0) == 0xAAAA, "the first thread's local changed");
    println!("threads: thread locals through FS kept by each of 5 threads");
}

/// A futex mutex: 6 threads, 2,000 increments each, read-modify-write with a yield inside.
fn mutex_counter() {
    let m = Arc::new(Mutex::new(0u64));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let m = m.clone();
            spawned(move || {
                for i in 0..2000 {
                    let mut g = m.lock();
                    let v = *g;
                    if i % 100 == 0 {
                        yield_now();
                    }
                    *g = v + 1;
                }
            })
        })
        .collect();
    for h in handles {
        join(h);
    }
    let total = *m.lock();
    check!(total == 12_000, "the mutex counter is {}", total);
    println!("threads: futex mutex: 6 x 2000 increments = {}", total);
}

/// Concurrent first touches: four threads on disjoint pages, then all four on the same pages
/// (each its own word): every word exact, every page resident once, frames back afterwards.
fn fault_storm() {
    const PAGES: usize = 256;
    let base = global_stats();
    let disjoint = map(PAGES);
    let shared = map(PAGES);
    let handles: Vec<_> = (0..4usize)
        .map(|t| {
            spawned(move || {
                for p in t * PAGES / 4..(t + 1) * PAGES / 4 {
                    write(disjoint + p * PAGE, (p as u64) << 8 | t as u64);
                }
                for p in 0..PAGES {
                    let p = (p + t * 37) % PAGES;
                    write(shared + p * PAGE + 8 * t, (p * 10 + t) as u64);
                }
            })
        })
        .collect();
    for h in handles {
        join(h);
    }
    for p in 0..PAGES {
        let t = p / (PAGES / 4);
        check!(
            read(disjoint + p * PAGE) == (p as u64) << 8 | t as u64,
            "disjoint page {}",
            p
        );
        for t in 0..4 {
            let v = read(shared + p * PAGE + 8 * t);
            check!(
                v == (p * 10 + t) as u64,
                "shared page {} word {}: {}",
                p,
                t,
                v
            );
        }
    }
    let mut resident = [0u8; PAGES];
    for a in [disjoint, shared] {
        let r = vm().mincore(a, PAGES * PAGE, &mut resident);
        check!(r.is_ok(), "mincore: {:?}", r);
        check!(resident.iter().all(|&b| b & 1 == 1), "a page not resident");
    }
    let now = global_stats();
    check!(
        now.data_frames() >= base.data_frames() + 2 * PAGES as u64,
        "{} data frames for {} pages touched",
        now.data_frames() - base.data_frames(),
        2 * PAGES
    );
    unmap(disjoint, PAGES);
    unmap(shared, PAGES);
    check_data_frames_back(&base);
    println!(
        "threads: fault storm: 4 threads first-touched {} disjoint and {} shared pages, every \
         word exact, frames back",
        PAGES, PAGES
    );
}

/// The detector's page, the round's value, and what the fault handler did.
static PAGE_AT: AtomicUsize = AtomicUsize::new(0);
static FLAG: AtomicU64 = AtomicU64::new(0);
static ACK: AtomicU64 = AtomicU64::new(0);
static FAULTS: AtomicU64 = AtomicU64::new(0);
static STALE: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicU64 = AtomicU64::new(0);
/// Processors running the kernel: on one, a waiting thread yields instead of spinning.
static CPUS: AtomicU32 = AtomicU32::new(1);

/// A round of a wait loop: `pause`, or a yield when the thread waited for runs on this same
/// processor.
fn relax() {
    if CPUS.load(Ordering::Relaxed) == 1 {
        yield_now();
    } else {
        core::hint::spin_loop();
    }
}

/// The handler: the page is mapped afresh (after an unmap) or made writable again (after a
/// protection); the access is retried.
fn remap(f: &mut FaultFrame) {
    let page = PAGE_AT.load(Ordering::Acquire);
    if f.addr as usize & !(PAGE - 1) != page {
        println!("FAIL threads: a fault at {:#x}, rip {:#x}", f.addr, f.rip);
        exit(1);
    }
    FAULTS.fetch_add(1, Ordering::AcqRel);
    let r = vm().mmap(page, PAGE, P::READ_WRITE, F::anonymous_private() | F::FIXED);
    if r.is_err() {
        println!("FAIL threads: remap {:?}", r);
        exit(1);
    }
}

fn stack() -> &'static mut [u8] {
    static mut STACK: [u8; 16384] = [0; 16384];
    // SAFETY: handed once to memd as the handler's stack, never touched by this program.
    unsafe { &mut *core::ptr::addr_of_mut!(STACK) }
}

/// The reader or writer of the detector. The reader loads the page in a loop: once it has
/// seen round `r`'s flag, a load returning `r` (the old frame's value) went through a stale
/// translation. The writer stores once per round, when it sees a new flag (between rounds it
/// leaves the page alone, so the writable translation its last store cached is still there
/// when the protection changes): that store must fault.
fn detector_thread(write_mode: bool) {
    let page = PAGE_AT.load(Ordering::Acquire);
    let mut last = 0;
    while STOP.load(Ordering::Acquire) == 0 {
        let flag = FLAG.load(Ordering::Acquire);
        if write_mode {
            if flag != last {
                let before = FAULTS.load(Ordering::Acquire);
                write(page + 8, flag);
                if FAULTS.load(Ordering::Acquire) == before {
                    STALE.fetch_add(1, Ordering::AcqRel);
                }
                last = flag;
                ACK.store(flag, Ordering::Release);
            }
        } else {
            let v = read(page);
            if flag != 0 && ACK.load(Ordering::Acquire) != flag {
                if v == flag {
                    STALE.fetch_add(1, Ordering::AcqRel);
                }
                ACK.store(flag, Ordering::Release);
            }
        }
        relax();
    }
}

fn wait_ack(round: u64) {
    while ACK.load(Ordering::Acquire) != round {
        relax();
    }
}

/// Stale-TLB detector, `rounds` each: munmap (the reader must fault), mprotect read-only (the
/// writer must fault), and a copy-on-write break by this thread (the reader must see the new
/// frame's value).
fn stale_tlb(cpus: u32, rounds: u64) {
    check!(handle_faults(&vm(), remap, stack()).is_ok(), "register");
    let page = map(1);
    PAGE_AT.store(page, Ordering::Release);
    // munmap: round r's value is r; after the unmap the reader's load faults and reads 0.
    for (mode, name) in [(false, "munmap"), (true, "mprotect")] {
        FLAG.store(0, Ordering::Release);
        ACK.store(0, Ordering::Release);
        STOP.store(0, Ordering::Release);
        let before = FAULTS.load(Ordering::Acquire);
        let h = spawned(move || detector_thread(mode));
        for r in 1..=rounds {
            if mode {
                let p = vm().mprotect(page, PAGE, P::READ);
                check!(p.is_ok(), "mprotect: {:?}", p);
            } else {
                write(page, r);
                let u = vm().munmap(page, PAGE);
                check!(u.is_ok(), "munmap: {:?}", u);
            }
            FLAG.store(r, Ordering::Release);
            wait_ack(r);
        }
        STOP.store(1, Ordering::Release);
        join(h);
        let faults = FAULTS.load(Ordering::Acquire) - before;
        check!(
            STALE.load(Ordering::Acquire) == 0,
            "{}: {} accesses went through a stale translation",
            name,
            STALE.load(Ordering::Acquire)
        );
        check!(
            faults >= rounds,
            "{}: {} faults in {} rounds",
            name,
            faults,
            rounds
        );
        println!(
            "threads: stale-TLB detector, {}: {} rounds on {} processors, every access after \
             the call faulted ({} faults), none stale",
            name, rounds, cpus, faults
        );
    }
    // Copy-on-write: a child shares the page; this thread's write moves this process to a new
    // frame; the reader must then see the new value, never the old frame's.
    FLAG.store(0, Ordering::Release);
    ACK.store(0, Ordering::Release);
    STOP.store(0, Ordering::Release);
    let h = spawned(move || detector_thread(false));
    let cow_rounds = rounds / 4;
    for r in 1..=cow_rounds {
        // The old frame holds r, the new one gets r + 1 << 32: a load of r after the flag
        // came through a stale translation.
        write(page, r);
        let pid = vm().fork();
        check!(pid.is_ok(), "fork: {:?}", pid);
        if pid == Ok(0) {
            // The child holds the old frame until its parent has checked, then leaves.
            while FLAG.load(Ordering::Acquire) != u64::MAX {
                yield_now();
            }
            exit(0);
        }
        write(page, r + (1 << 32));
        FLAG.store(r, Ordering::Release);
        wait_ack(r);
        let k = vm().kill(pid.unwrap_or(0));
        check!(k.is_ok(), "kill: {:?}", k);
        let w = vm().wait(pid.unwrap_or(0));
        check!(w.is_ok(), "wait: {:?}", w);
    }
    STOP.store(1, Ordering::Release);
    join(h);
    check!(
        STALE.load(Ordering::Acquire) == 0,
        "copy-on-write: {} loads went through a stale translation",
        STALE.load(Ordering::Acquire)
    );
    println!(
        "threads: stale-TLB detector, copy-on-write break: {} rounds, every load after the \
         write saw the new frame",
        cow_rounds
    );
    unmap(page, 1);
}

/// Threads of the per-thread handler test with an alternate stack of their own; one more has
/// none.
const ALT_THREADS: usize = 3;
/// Faults each of them takes.
const ALT_FAULTS: u64 = 200;
/// The alternate stacks (16 KiB each): one per thread, and the first thread's.
static mut ALT_STACKS: [[u8; 16384]; ALT_THREADS + 1] = [[0; 16384]; ALT_THREADS + 1];
/// Each thread's page, faults handled, and frames found off the stack they belong on.
static ALT_PAGE: [AtomicUsize; ALT_THREADS + 1] = [const { AtomicUsize::new(0) }; ALT_THREADS + 1];
static ALT_HANDLED: [AtomicU64; ALT_THREADS + 1] = [const { AtomicU64::new(0) }; ALT_THREADS + 1];
static ALT_MISPLACED: AtomicU64 = AtomicU64::new(0);
/// The thread-local slot holding a thread's index in the test, plus one.
const ALT_SLOT: usize = 3;

/// The alternate stack `i` (lowest address, bytes).
fn alt_range(i: usize) -> (usize, usize) {
    // SAFETY: only the address is taken.
    let base = unsafe { core::ptr::addr_of!(ALT_STACKS[i]) } as usize;
    (base, 16384)
}

/// The per-thread handler: the frame must be on the faulting thread's alternate stack (for a
/// thread that has one) or on no alternate stack at all (its own stack); the page is mapped
/// again and the load retried.
fn per_thread(f: &mut FaultFrame) {
    let me = tls_get(ALT_SLOT).wrapping_sub(1);
    let Some(page) = ALT_PAGE.get(me) else {
        println!(
            "FAIL threads: a fault at {:#x} in a thread of no test",
            f.addr
        );
        exit(1);
    };
    let at = f as *mut FaultFrame as usize;
    let on = |i: usize| {
        let (base, len) = alt_range(i);
        (base..base + len).contains(&at)
    };
    let right = if me < ALT_THREADS {
        on(me)
    } else {
        (0..=ALT_THREADS).all(|i| !on(i))
    };
    if !right {
        ALT_MISPLACED.fetch_add(1, Ordering::AcqRel);
    }
    let page = page.load(Ordering::Acquire);
    if f.addr as usize & !(PAGE - 1) != page {
        println!(
            "FAIL threads: thread {} faulted at {:#x}, rip {:#x}",
            me, f.addr, f.rip
        );
        exit(1);
    }
    ALT_HANDLED[me].fetch_add(1, Ordering::AcqRel);
    let r = vm().mmap(page, PAGE, P::READ_WRITE, F::anonymous_private() | F::FIXED);
    if r.is_err() {
        println!("FAIL threads: remap {:?}", r);
        exit(1);
    }
}

/// Fault handlers run by several threads at once: each of [`ALT_THREADS`] threads registers
/// an alternate stack of its own, one more has none; all unmap their own page and load from it
/// [`ALT_FAULTS`] times, at once. Every frame must be where its thread's rule puts it (two
/// threads sharing one stack would write one frame over the other), every fault handled once.
fn per_thread_handlers(cpus: u32) {
    // SAFETY: the first thread's stack, handed to memd once; nothing else touches it.
    let first = unsafe { &mut *core::ptr::addr_of_mut!(ALT_STACKS[ALT_THREADS]) };
    check!(handle_faults(&vm(), per_thread, first).is_ok(), "register");
    let start = Arc::new(Barrier {
        arrived: AtomicU32::new(0),
        n: ALT_THREADS as u32 + 1,
    });
    let mut handles = Vec::new();
    for i in 0..=ALT_THREADS {
        ALT_PAGE[i].store(map(1), Ordering::Release);
        let start = start.clone();
        handles.push(spawned(move || {
            tls_set(ALT_SLOT, i + 1);
            if i < ALT_THREADS {
                // SAFETY: stack `i` is this thread's alone, handed to memd once.
                let own = unsafe { &mut *core::ptr::addr_of_mut!(ALT_STACKS[i]) };
                let r = alt_stack(&vm(), Some(own));
                check!(r.is_ok(), "alt_stack: {:?}", r);
            }
            start.wait();
            let page = ALT_PAGE[i].load(Ordering::Acquire);
            for round in 1..=ALT_FAULTS {
                unmap(page, 1);
                // The handler maps a fresh page: the load reads 0.
                let v = read(page);
                check!(v == 0, "thread {} round {}: read {:#x}", i, round, v);
            }
        }));
    }
    for h in handles {
        join(h);
    }
    for i in 0..=ALT_THREADS {
        let n = ALT_HANDLED[i].load(Ordering::Acquire);
        check!(
            n == ALT_FAULTS,
            "thread {}: {} faults handled of {}",
            i,
            n,
            ALT_FAULTS
        );
        unmap(ALT_PAGE[i].load(Ordering::Acquire), 1);
    }
    let misplaced = ALT_MISPLACED.load(Ordering::Acquire);
    check!(
        misplaced == 0,
        "{} frames off their thread's stack",
        misplaced
    );
    println!(
        "threads: fault handlers in {} threads at once on {} processors, {} with an alternate \
         stack of its own and one on its own stack: {} faults each, every frame on its thread's \
         stack",
        ALT_THREADS + 1,
        cpus,
        ALT_THREADS,
        ALT_FAULTS
    );
}

/// fork with threads running: the child has only the caller (the others' counters stand
/// still in it) and can start threads of its own.
fn fork_with_threads() {
    let counters = map(1);
    let stop = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..3usize)
        .map(|t| {
            let stop = stop.clone();
            spawned(move || {
                while stop.load(Ordering::Acquire) == 0 {
                    write(counters + 8 * t, read(counters + 8 * t) + 1);
                    core::hint::spin_loop();
                }
            })
        })
        .collect();
    while (0..3).any(|t| read(counters + 8 * t) == 0) {
        yield_now();
    }
    let pid = vm().fork();
    check!(pid.is_ok(), "fork: {:?}", pid);
    if pid == Ok(0) {
        let before: Vec<u64> = (0..3).map(|t| read(counters + 8 * t)).collect();
        for _ in 0..20 {
            yield_now();
        }
        let after: Vec<u64> = (0..3).map(|t| read(counters + 8 * t)).collect();
        if before != after {
            println!(
                "FAIL threads: the child's copies moved: {:?} -> {:?}",
                before, after
            );
            exit(1);
        }
        let h = match spawn(|| 7u64) {
            Ok(h) => h,
            Err(_) => exit(3),
        };
        exit(if h.join().ok().flatten() == Some(7) {
            0
        } else {
            2
        });
    }
    let w = vm().wait(pid.unwrap_or(0));
    check!(w.map(|w| w.0) == Ok(0), "the forked child: {:?}", w);
    stop.store(1, Ordering::Release);
    for h in handles {
        join(h);
    }
    unmap(counters, 1);
    println!(
        "threads: fork with 3 threads running: the child has only the caller, and threads of its own"
    );
}

/// fork while the other threads allocate: the heap is held across the fork (libvm's
/// `hold_for_fork`, as glibc's malloc does), so no child gets a heap halfway through another
/// thread's allocation, whose lock no thread of the child would ever give back.
fn fork_while_allocating() {
    let stop = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..3u64)
        .map(|t| {
            let stop = stop.clone();
            spawned(move || {
                let mut kept = Vec::new();
                let mut n = 0u64;
                while stop.load(Ordering::Acquire) == 0 {
                    kept.push(Box::new([t; 16]));
                    if kept.len() > 64 {
                        kept.clear();
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    for round in 0..50u64 {
        let pid = vm().fork();
        check!(pid.is_ok(), "fork: {:?}", pid);
        if pid == Ok(0) {
            // Allocate in the child: a heap left locked by a thread it does not have would
            // spin here for good.
            let v: Vec<u64> = (0..100).map(|i| i * round).collect();
            exit(if v[99] == 99 * round { 0 } else { 1 });
        }
        let w = vm().wait(pid.unwrap_or(0));
        check!(
            w.map(|w| w.0) == Ok(0),
            "child {} of a fork while allocating: {:?}",
            round,
            w
        );
    }
    stop.store(1, Ordering::Release);
    let mut allocations = 0;
    for h in handles {
        allocations += join(h);
    }
    println!(
        "threads: 50 forks while 3 threads allocated ({} allocations): every child allocated and exited",
        allocations
    );
}

/// Thread stacks mapped now: regions of [`thread::DEFAULT_STACK`] bytes.
fn thread_stacks() -> usize {
    let regions = vm().regions(0);
    check!(regions.is_ok(), "regions: {:?}", regions);
    regions
        .unwrap_or_default()
        .iter()
        .filter(|r| r.end - r.start == thread::DEFAULT_STACK as u64)
        .count()
}

/// Detached threads (handles dropped unjoined), 200 of them: half dropped while the thread
/// runs (it buries itself as it ends), half once it has finished (the drop buries it); each
/// returns a `Vec` that is dropped unseen. The next spawns give every stack back.
fn detached_threads() {
    const N: u64 = 200;
    let before = thread_stacks();
    let done = Arc::new(AtomicU64::new(0));
    for i in 0..N {
        let (d, flag) = (done.clone(), Arc::new(AtomicU64::new(0)));
        let f = flag.clone();
        let t = spawned(move || {
            // The even ones wait until their handle is gone.
            while i % 2 == 0 && f.load(Ordering::Acquire) == 0 {
                relax();
            }
            d.fetch_add(1, Ordering::AcqRel);
            f.store(2, Ordering::Release);
            alloc::vec![i; 64]
        });
        if i % 2 == 1 {
            // The odd ones: dropped once the thread is done (and most likely ended).
            while flag.load(Ordering::Acquire) != 2 {
                relax();
            }
            for _ in 0..100 {
                relax();
            }
        }
        drop(t);
        flag.fetch_max(1, Ordering::AcqRel);
    }
    while done.load(Ordering::Acquire) < N {
        relax();
    }
    // A thread buries itself just after it counts itself: spawn and join until every stack
    // is back (each spawn empties the graveyard).
    let mut rounds = 0;
    while thread_stacks() > before {
        rounds += 1;
        check!(
            rounds < 1000,
            "{} detached stacks never given back",
            thread_stacks() - before
        );
        join(spawned(|| ()));
        yield_now();
    }
    println!(
        "threads: {} detached threads (half dropped running, half finished): every stack given \
         back by the next spawns",
        N
    );
}

/// exit while threads run elsewhere, and a fault refused in one thread: the whole process ends,
/// its frames come back.
fn exit_and_kill(cpus: u32) {
    let base = global_stats();
    for kill in [false, true] {
        let pid = vm().fork();
        check!(pid.is_ok(), "fork: {:?}", pid);
        if pid == Ok(0) {
            let m = map(64);
            for p in 0..64 {
                write(m + p * PAGE, p as u64);
            }
            let running = Arc::new(AtomicU32::new(0));
            let mut handles = Vec::new();
            for _ in 0..3 {
                let running = running.clone();
                handles.push(spawn(move || {
                    running.fetch_add(1, Ordering::AcqRel);
                    loop {
                        core::hint::spin_loop();
                    }
                }));
            }
            while running.load(Ordering::Acquire) < 3 {
                yield_now();
            }
            if kill {
                check!(spawn(|| read(0x10)).is_ok(), "spawn");
                loop {
                    yield_now();
                }
            }
            exit(42);
        }
        let w = vm().wait(pid.unwrap_or(0));
        check!(w.is_ok(), "wait: {:?}", w);
        let status = w.map(|w| w.0).unwrap_or(0);
        if kill {
            check!(
                status & wait_status::KILLED != 0,
                "a fault refused in one thread: status {:#x}",
                status
            );
        } else {
            check!(
                status == 42,
                "exit with threads running: status {:#x}",
                status
            );
        }
    }
    let mut now = global_stats();
    for _ in 0..100 {
        if settled(&base, &now) {
            break;
        }
        yield_now();
        now = global_stats();
    }
    check!(
        settled(&base, &now),
        "frames {} -> {}",
        base.data_frames(),
        now.data_frames()
    );
    println!(
        "threads: exit with 3 threads running on {} processors, and a fault refused in one \
         thread, each ended the whole process; frames back",
        cpus
    );
}

fn main(_: Start) -> u64 {
    let (_, cpus) = thread::cpu();
    CPUS.store(cpus, Ordering::Relaxed);
    spawn_and_join(cpus);
    thread_locals();
    mutex_counter();
    fault_storm();
    fork_with_threads();
    fork_while_allocating();
    exit_and_kill(cpus);
    stale_tlb(cpus, 1000);
    per_thread_handlers(cpus);
    detached_threads();
    println!("PASS threads");
    0
}
