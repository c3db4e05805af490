//! TLB shootdown: the other processors' part of a change to an address space.
//!
//! The rule (the design's): when a pager call that unmaps or downgrades returns, no processor
//! holds the old translation. A processor can hold translations of a space only while that
//! space is in its CR3: without PCIDs (the kernel turns them off on many processors) every
//! write of CR3 drops all user translations, and an idle processor loads the kernel's own
//! tables. So the processors to ask are exactly those whose CR3 holds the space ([`loaded`]
//! says, each processor writing its own word when it switches), and no others.
//!
//! Several processors may shoot at once (shared entries change different spaces at the same
//! time: [`super::lock`]), so each has its own request slot. A requester writes its slot (the
//! space, and the pages to invalidate, or a full flush above [`FLUSH_THRESHOLD`], or "leave
//! the space"), raises its slot's generation, sets its bit in each target's pending mask,
//! sends each target one interrupt ([`SHOOTDOWN_VECTOR`]) and waits, executing `pause` and
//! answering requests made to itself, until every target has answered that generation. A
//! target answers every requester in its mask in [`service`]: at the interrupt (from ring 3),
//! or while it spins for a lock (interrupts are off there, so it polls), or when the interrupt
//! wakes it from idle. Only then does the requester go on, and frames freed by the change can
//! be reused: the batch is one round of interrupts, whatever its size.
//!
//! Who may be missed: a processor about to load the space says so ([`loaded`]) before it
//! writes CR3, with a full fence, and a requester reads who holds the space after its change
//! to the tables, with a full fence: either the requester sees the processor (and asks it), or
//! the processor's CR3 write comes after the change (and its walks see the new tables).

use super::percpu::{self, MAX_RUN_CPUS};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use kernel_shim::paging::{FLUSH_THRESHOLD, Flush};

/// The interrupt that asks a processor to look at its pending request.
pub const SHOOTDOWN_VECTOR: u64 = 49;

/// What a request asks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Invalidate `pages[..len]`.
    Pages = 0,
    /// Flush every user translation.
    Full = 1,
    /// Stop using the space: load the kernel's tables (its threads there are being ended).
    Leave = 2,
}

/// One processor's request (written by that processor before it raises `generation`, read
/// by the targets after).
struct Request {
    root: AtomicU64,
    kind: AtomicU64,
    len: AtomicUsize,
    pages: [AtomicU64; FLUSH_THRESHOLD],
    /// Raised once per request.
    generation: AtomicU64,
}

/// Per requesting processor: its request.
static REQUESTS: [Request; MAX_RUN_CPUS] = [const {
    Request {
        root: AtomicU64::new(0),
        kind: AtomicU64::new(0),
        len: AtomicUsize::new(0),
        pages: [const { AtomicU64::new(0) }; FLUSH_THRESHOLD],
        generation: AtomicU64::new(0),
    }
}; MAX_RUN_CPUS];
/// Per target: the requesters whose request it has yet to answer (a bit each).
static PENDING: [AtomicU64; MAX_RUN_CPUS] = [const { AtomicU64::new(0) }; MAX_RUN_CPUS];
/// Per target and requester: the generation of the requester's request it answered last.
static ANSWERED: [[AtomicU64; MAX_RUN_CPUS]; MAX_RUN_CPUS] =
    [const { [const { AtomicU64::new(0) }; MAX_RUN_CPUS] }; MAX_RUN_CPUS];
/// Per processor: the root in its CR3 (0 before it has one).
static LOADED: [AtomicU64; MAX_RUN_CPUS] = [const { AtomicU64::new(0) }; MAX_RUN_CPUS];
/// Per processor: its local APIC id.
static APIC_IDS: [AtomicU64; MAX_RUN_CPUS] = [const { AtomicU64::new(0) }; MAX_RUN_CPUS];
/// How many processors run the kernel: indices 0 to this - 1.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// The kernel's own PML4, which a processor asked to leave a space loads.
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);
/// Interrupt rounds sent, and processors interrupted (for the statistics of tests).
static ROUNDS: AtomicU64 = AtomicU64::new(0);

/// Records processor `cpu` (local APIC id `apic_id`) as running the kernel; `kernel_root`
/// is the kernel's PML4.
/// Processors come online in the order of their indices.
pub fn online(cpu: usize, apic_id: u32, kernel_root: u64) {
    APIC_IDS[cpu].store(apic_id as u64, Ordering::Relaxed);
    KERNEL_ROOT.store(kernel_root, Ordering::Relaxed);
    RUNNING.store(cpu + 1, Ordering::Release);
}

/// Notes that this processor's CR3 is about to hold `root` (called before every write of
/// CR3; the fence orders the note before the write: see the module doc).
pub fn loaded(root: u64) {
    // A sequentially consistent store is a locked `xchg`: a full fence.
    LOADED[percpu::index()].store(root, Ordering::SeqCst);
}

/// The kernel's own PML4 (recorded by the first processor's [`online`]).
pub fn kernel_root() -> u64 {
    KERNEL_ROOT.load(Ordering::Relaxed)
}

/// The local APIC id of processor `cpu`.
pub fn apic_id(cpu: usize) -> u32 {
    APIC_IDS[cpu].load(Ordering::Relaxed) as u32
}

/// How many processors run the kernel.
pub fn running() -> usize {
    RUNNING.load(Ordering::Relaxed)
}

/// Shootdown rounds sent since boot (each one interrupt per target processor).
pub fn rounds() -> u64 {
    ROUNDS.load(Ordering::Relaxed)
}

/// The processors other than this one whose CR3 holds `root`, as a mask (none, at once,
/// when this processor is the only one).
#[inline(always)]
fn holders(root: u64) -> u64 {
    let running = running();
    if running <= 1 {
        return 0;
    }
    // The change to the tables before the look (see the module doc).
    core::sync::atomic::fence(Ordering::SeqCst);
    let me = percpu::index();
    let mut mask = 0;
    for (c, l) in LOADED.iter().enumerate().take(running) {
        if c != me && l.load(Ordering::Acquire) == root {
            mask |= 1 << c;
        }
    }
    mask
}

/// Invalidates what `flush` names of space `root` on every other processor that holds the
/// space, and waits for all of them. Call after the page-table change, holding the space's
/// tables (its lock, or the mode lock exclusive). (On one processor: nothing, at the cost of one load.)
#[inline(always)]
pub fn flush_elsewhere(root: u64, flush: &Flush) {
    if running() > 1 && !flush.is_empty() {
        flush_pages_elsewhere(root, flush.pages(), flush.is_full());
    }
}

/// [`flush_elsewhere`] of `pages` (or everything, when `full`).
#[inline(always)]
pub fn flush_page_elsewhere(root: u64, page: x86_64::VirtAddr) {
    if running() > 1 {
        flush_pages_elsewhere(root, &[page], false);
    }
}

#[inline(never)]
fn flush_pages_elsewhere(root: u64, pages: &[x86_64::VirtAddr], full: bool) {
    let targets = holders(root);
    if targets == 0 {
        return;
    }
    let full = full || pages.len() > FLUSH_THRESHOLD;
    let request = &REQUESTS[percpu::index()];
    if !full {
        for (slot, p) in request.pages.iter().zip(pages) {
            slot.store(p.as_u64(), Ordering::Relaxed);
        }
        request.len.store(pages.len(), Ordering::Relaxed);
    }
    send(root, if full { Kind::Full } else { Kind::Pages }, targets);
}

/// Makes the processors of `mask` (never this one) stop using space `root` and waits for
/// them: each loads the kernel's tables. Call with the mode lock exclusive.
pub fn leave_elsewhere(root: u64, mask: u64) {
    let mask = mask & !(1 << percpu::index());
    if mask != 0 {
        send(root, Kind::Leave, mask);
    }
}

fn send(root: u64, kind: Kind, targets: u64) {
    let me = percpu::index();
    let request = &REQUESTS[me];
    request.root.store(root, Ordering::Relaxed);
    request.kind.store(kind as u64, Ordering::Relaxed);
    let generation = request.generation.load(Ordering::Relaxed) + 1;
    request.generation.store(generation, Ordering::Release);
    ROUNDS.fetch_add(1, Ordering::Relaxed);
    let targeted = |c: &usize| targets & (1 << c) != 0;
    for (c, pending) in PENDING.iter().enumerate().filter(|(c, _)| targeted(c)) {
        pending.fetch_or(1 << me, Ordering::AcqRel);
        super::lapic::ipi(apic_id(c), SHOOTDOWN_VECTOR as u32);
    }
    for (_, answered) in ANSWERED.iter().enumerate().filter(|(c, _)| targeted(c)) {
        while answered[me].load(Ordering::Acquire) < generation {
            // Another requester may be waiting for this processor meanwhile.
            service();
            core::hint::spin_loop();
        }
    }
}

/// Answers this processor's pending requests, if any: the invalidations, a full flush, or the
/// switch to the kernel's tables, when its CR3 still holds the space named. Takes no lock
/// (a requester may hold what this processor waits for).
#[inline(always)]
pub fn service() {
    let me = percpu::index();
    if PENDING[me].load(Ordering::Acquire) != 0 {
        answer(me);
    }
}

#[inline(never)]
fn answer(me: usize) {
    let mut from = PENDING[me].swap(0, Ordering::AcqRel);
    while from != 0 {
        let r = from.trailing_zeros() as usize;
        from &= from - 1;
        let Some(request) = REQUESTS.get(r) else {
            continue;
        };
        let generation = request.generation.load(Ordering::Acquire);
        let root = request.root.load(Ordering::Relaxed);
        if super::pt::active() == root {
            match request.kind.load(Ordering::Relaxed) {
                k if k == Kind::Pages as u64 => {
                    let len = request.len.load(Ordering::Relaxed);
                    for p in &request.pages[..len.min(FLUSH_THRESHOLD)] {
                        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(
                            p.load(Ordering::Relaxed),
                        ));
                    }
                }
                k if k == Kind::Full as u64 => x86_64::instructions::tlb::flush_all(),
                _ => super::pt::activate(KERNEL_ROOT.load(Ordering::Relaxed)),
            }
        }
        ANSWERED[me][r].store(generation, Ordering::Release);
    }
}
