//! TLB shootdown: the other processors' part of a change to an address space.
//!
//! The rule (the design's): when a pager call that unmaps or downgrades returns, no processor
//! holds the old translation. A processor can hold translations of a space only while that
//! space is in its CR3: without PCIDs (the kernel turns them off on many processors) every
//! write of CR3 drops all user translations, and an idle processor loads the kernel's own
//! tables. So the processors to ask are exactly those whose CR3 holds the space ([`loaded`]
//! says, each processor writing its own word when it switches), and no others.
//!
//! The kernel lock's holder makes one request at a time ([`flush_elsewhere`],
//! [`leave_elsewhere`]): it writes the request (the space, and the pages to invalidate, or a
//! full flush above [`FLUSH_THRESHOLD`], or "leave the space"), raises each target's pending
//! generation, sends each one interrupt ([`SHOOTDOWN_VECTOR`]) and waits, executing `pause`,
//! until every target has answered. A target answers in [`service`]: at the interrupt (from
//! ring 3), or while it waits for the kernel lock (interrupts are off there, so it polls), or
//! when the interrupt wakes it from idle. Only then does the holder go on, and frames freed by
//! the change can be reused: the batch is one round of interrupts, whatever its size.

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

/// The one request in flight (written by the lock holder before it raises the targets'
/// generations, read by the targets after).
struct Request {
    root: AtomicU64,
    kind: AtomicU64,
    len: AtomicUsize,
    pages: [AtomicU64; FLUSH_THRESHOLD],
}

static REQUEST: Request = Request {
    root: AtomicU64::new(0),
    kind: AtomicU64::new(0),
    len: AtomicUsize::new(0),
    pages: [const { AtomicU64::new(0) }; FLUSH_THRESHOLD],
};

/// The generation of the last request.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Per processor: the generation it is asked to answer.
static PENDING: [AtomicU64; MAX_RUN_CPUS] = [const { AtomicU64::new(0) }; MAX_RUN_CPUS];
/// Per processor: the generation it answered.
static DONE: [AtomicU64; MAX_RUN_CPUS] = [const { AtomicU64::new(0) }; MAX_RUN_CPUS];
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

/// Notes that this processor's CR3 now holds `root` (called by every write of CR3).
pub fn loaded(root: u64) {
    LOADED[percpu::index()].store(root, Ordering::Release);
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
/// space, and waits for all of them. Call with the kernel lock held, after the page-table
/// change. (On one processor: nothing, at the cost of one load.)
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
    if !full {
        for (slot, p) in REQUEST.pages.iter().zip(pages) {
            slot.store(p.as_u64(), Ordering::Relaxed);
        }
        REQUEST.len.store(pages.len(), Ordering::Relaxed);
    }
    send(root, if full { Kind::Full } else { Kind::Pages }, targets);
}

/// Makes the processors of `mask` (never this one) stop using space `root` and waits for
/// them: each loads the kernel's tables. Call with the kernel lock held.
pub fn leave_elsewhere(root: u64, mask: u64) {
    let mask = mask & !(1 << percpu::index());
    if mask != 0 {
        send(root, Kind::Leave, mask);
    }
}

fn send(root: u64, kind: Kind, targets: u64) {
    REQUEST.root.store(root, Ordering::Relaxed);
    REQUEST.kind.store(kind as u64, Ordering::Relaxed);
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed) + 1;
    ROUNDS.fetch_add(1, Ordering::Relaxed);
    let targeted = |c: &usize| targets & (1 << c) != 0;
    for (c, pending) in PENDING.iter().enumerate().filter(|(c, _)| targeted(c)) {
        pending.store(generation, Ordering::Release);
        super::lapic::ipi(apic_id(c), SHOOTDOWN_VECTOR as u32);
    }
    for (_, done) in DONE.iter().enumerate().filter(|(c, _)| targeted(c)) {
        while done.load(Ordering::Acquire) < generation {
            core::hint::spin_loop();
        }
    }
}

/// Answers this processor's pending request, if any: the invalidations, a full flush, or the
/// switch to the kernel's tables, when its CR3 still holds the space named. Never takes the
/// kernel lock (its holder may be waiting for this answer).
#[inline(always)]
pub fn service() {
    let me = percpu::index();
    let pending = PENDING[me].load(Ordering::Acquire);
    if pending > DONE[me].load(Ordering::Relaxed) {
        answer(me, pending);
    }
}

#[inline(never)]
fn answer(me: usize, pending: u64) {
    let root = REQUEST.root.load(Ordering::Relaxed);
    if super::pt::active() == root {
        match REQUEST.kind.load(Ordering::Relaxed) {
            k if k == Kind::Pages as u64 => {
                let len = REQUEST.len.load(Ordering::Relaxed);
                for p in &REQUEST.pages[..len.min(FLUSH_THRESHOLD)] {
                    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(
                        p.load(Ordering::Relaxed),
                    ));
                }
            }
            k if k == Kind::Full as u64 => x86_64::instructions::tlb::flush_all(),
            _ => super::pt::activate(KERNEL_ROOT.load(Ordering::Relaxed)),
        }
    }
    DONE[me].store(pending, Ordering::Release);
}
