//! `VmAllocator`: a `GlobalAlloc` over the program break and anonymous mappings.
//!
//! ```text
//!  heap: memory from vm_sbrk, kept by talc                  mmap area
//!  [ blocks and free gaps ......................| top gap )  [ large block ]  [ large block ]
//!   any size up to MAX_SMALL, 8 bytes of tag each; free      one anonymous private mapping
//!   neighbours coalesce, a gap of the right size class is    each, page rounded; dealloc
//!   reused first; the pages inside a freed block of          unmaps it
//!   PURGE_MIN or more go back to memd (MADV_DONTNEED), and
//!   a free top of TRIM_MIN or more goes back with sbrk
//! ```
//!
//! Blocks up to [`MAX_SMALL`] (with an alignment of at most a page) come from a heap kept by
//! talc (segregated free lists, 8 bytes of overhead a block, free neighbours coalesced:
//! `allocbench` measured it against power-of-two blocks and dlmalloc, see the README's
//! benchmarks). Larger ones are mappings of their own, so a big buffer costs whole pages and
//! goes back to memd when freed. The heap grows with `vm_sbrk` through the process's transport
//! ([`crate::global`]), by at least `GROW_STEP` bytes.
//!
//! Memory goes back to memd in two ways, so that a program past its peak does not keep its
//! peak's pages: the whole pages inside a heap block of at least `PURGE_MIN` bytes are
//! dropped when it is freed (or when a shrinking `realloc` frees that much of its tail), and
//! a free (or shrink) that leaves `TRIM_MIN` or more free at the top of the heap moves the
//! break back down to `GROW_STEP` above the highest block. A dropped page reads as zero when
//! used again, which talc never relies on: it writes a free gap's bookkeeping only at its two
//! ends, outside the pages dropped. Only a free of the highest block can enlarge the free top,
//! so the heap keeps where its highest block ends (`Break::high`) and looks at its top only
//! then: the other frees pay one comparison.
//!
//! The stretch taken from the break stays one heap as long as only this allocator moves the
//! break. Others may grow it too: when the memory sbrk returns does not start where the heap
//! ended, it becomes a heap of its own (talc keeps several) and the old one stays as it is.
//! Nobody may shrink the break below memory the heap took; the heap gives memory back only
//! when the break is where the heap left it (asked just before), so a thread moving the break
//! while another frees is the one case to avoid.
//!
//! Memory memd hands out reads zero (a fresh mapping, the break's fresh memory, pages given
//! back with `MADV_DONTNEED`), so `alloc_zeroed` writes none of it: a large block is a fresh
//! mapping, never written; a heap block of `ASK_MIN` or more is zeroed only in the pages memd
//! says are resident (`MINCORE`: a page that is not reads zero) and in its partial pages at
//! either end; a smaller one is zeroed whole, which costs less than asking. `realloc` keeps a
//! large block where it is when it can (shrinking it, or growing it over the free pages right
//! after it with `MREMAP`), else moves it with `MREMAP_MAYMOVE`: its pages go to the new
//! address, nothing is copied and the pages it gains read zero.
//!
//! Every failure (no transport, memd refusing, arithmetic overflow) returns null; nothing
//! panics. The heap is behind a spin lock, held across the `SBRK` calls that grow and trim it:
//! the transport must not allocate from this allocator.

use crate::global::{vm_mincore, vm_sbrk};
use crate::large::{self, PAGE};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull, null_mut};
use talc::{OomHandler, Span, Talc};

/// The largest block the heap serves; larger layouts (or alignments above a page) are mapped.
pub const MAX_SMALL: usize = 128 * 1024;
/// Heap blocks of at least this many bytes give the pages inside them back when freed.
const PURGE_MIN: usize = 64 * 1024;
/// A free top of the heap of at least this many bytes goes back to memd.
const TRIM_MIN: usize = 1024 * 1024;
/// Bytes the heap grows by at least, when memd allows it, and keeps free at its top when it
/// gives the rest back.
const GROW_STEP: usize = 128 * 1024;
/// How far the end of a block may lie below the end of its chunk (talc's tag, and a remainder
/// too small to be a gap of its own): a free ending this close to `Break::high` may be of
/// the highest block.
const CHUNK_TAIL: usize = 8 * core::mem::size_of::<usize>();
/// Bytes at the start of a freed block that talc may write (a free gap's list node and size):
/// never dropped.
const GAP_HEAD: usize = 4 * core::mem::size_of::<usize>();
/// Bytes past the new end of a block shrunk in place that talc may write (its tag, the free
/// gap's node and size): never dropped.
const SHRINK_HEAD: usize = 8 * core::mem::size_of::<usize>();

/// Heap blocks of at least this many bytes handed out zeroed are zeroed only where memd says
/// a page is resident; smaller ones are zeroed whole, which costs less than asking.
const ASK_MIN: usize = 16 * 1024;

/// Whether a layout is served by a mapping of its own.
fn is_large(layout: Layout) -> bool {
    layout.size() > MAX_SMALL || layout.align() > PAGE
}

fn address(addr: usize) -> *mut u8 {
    ptr::with_exposed_provenance_mut(addr)
}

/// Gives memd back the whole pages of `[lo, hi)` (contents dropped, zero when touched again).
/// Pages memd does not take back stay, counted in [`large::kept_bytes`]: a cost, never an
/// error.
#[inline(never)]
fn purge(lo: usize, hi: usize) {
    let (Some(lo), hi) = (lo.checked_next_multiple_of(PAGE), hi & !(PAGE - 1)) else {
        return;
    };
    if hi > lo {
        large::drop_pages(address(lo), hi - lo);
    }
}

/// Zeroes the heap block of `size` bytes at `block`, just handed out for `alloc_zeroed`,
/// writing only what may not read zero already: a block under `ASK_MIN` bytes whole (cheaper
/// than asking), else its partial pages at either end and those of its whole pages memd says
/// are resident. A page that is not reads zero: memory of the break never used, or given back
/// with `MADV_DONTNEED` ([`purge`]), since any byte written there later (a block's
/// contents, talc's bookkeeping) made its page resident. Should memd not answer, the whole
/// block is zeroed.
#[inline(never)]
fn zero_small(block: *mut u8, size: usize) {
    let zero = |from: usize, to: usize| {
        // SAFETY: `[from, to)` lies within the block (offsets from its start), which the
        // caller was just handed and nobody else uses.
        unsafe { block.add(from).write_bytes(0, to - from) }
    };
    let head = block.addr().next_multiple_of(PAGE) - block.addr();
    let whole = (size.saturating_sub(head) / PAGE).min(MAX_SMALL / PAGE);
    if size < ASK_MIN || whole == 0 {
        zero(0, size);
        return;
    }
    let tail = head + whole * PAGE;
    zero(0, head);
    zero(tail, size);
    let mut resident = [0u8; MAX_SMALL / PAGE];
    let resident = &mut resident[..whole];
    if vm_mincore(block.wrapping_add(head), whole * PAGE, resident).is_err() {
        zero(head, tail);
        return;
    }
    for (page, _) in resident.iter().enumerate().filter(|&(_, r)| r & 1 != 0) {
        zero(head + page * PAGE, head + (page + 1) * PAGE);
    }
}

/// Where talc gets its memory: the break.
///
/// talc writes the size of a free gap at both its ends, so a heap handed to it whole would have
/// its last page resident for nothing: the break is moved by at least `GROW_STEP` at a time,
/// but talc is given only the pages it needs, from that stretch, as it needs them.
struct Break {
    /// talc's top heap, as `(base, acme)` addresses (`(0, 0)` before the first growth, or once
    /// someone else moved the break).
    top: (usize, usize),
    /// Where this heap left the break: `[top.1, end)` is taken from the break, not yet given to
    /// talc.
    end: usize,
    /// No block of the heaps ends above this address (exact after each look at the top,
    /// raised by every block handed out above it).
    high: usize,
}

impl Break {
    const fn new() -> Break {
        Break {
            top: (0, 0),
            end: 0,
            high: 0,
        }
    }

    fn top(&self) -> Option<Span> {
        let (base, acme) = self.top;
        (acme > base).then(|| Span::new(address(base), address(acme)))
    }

    fn set_top(&mut self, span: Span) {
        self.top = span
            .get_base_acme()
            .map_or((0, 0), |(base, acme)| (base.addr(), acme.addr()));
    }

    /// Gives talc `len` more bytes: an extension of its top heap from the stretch taken from
    /// the break, moving the break first if the stretch is too short (by `GROW_STEP` at least,
    /// else by just enough); a heap of its own when the break moved elsewhere meanwhile.
    fn give(talc: &mut Talc<Break>, len: usize) -> Result<(), ()> {
        let Break {
            top: (base, acme),
            end,
            ..
        } = talc.oom_handler;
        if let Some(top) = talc.oom_handler.top()
            && end - acme >= len
        {
            // SAFETY: `top` is the heap talc returned last; `[acme, acme + len)` follows it,
            // was taken from the break and given to nobody.
            let heap = unsafe { talc.extend(top, Span::new(address(base), address(acme + len))) };
            talc.oom_handler.set_top(heap);
            return Ok(());
        }
        let generous = len.max(GROW_STEP);
        let (old, taken) = match Break::take(generous) {
            Some(old) => (old, generous),
            None if len < generous => (Break::take(len).ok_or(())?, len),
            None => return Err(()),
        };
        let new_end = old.checked_add(taken).ok_or(())?;
        let heap = match talc.oom_handler.top() {
            Some(top) if old == end => {
                // SAFETY: `top` is the heap talc returned last; `[acme, acme + len)` follows
                // it, within `[acme, new_end)`, which was taken from the break (now and
                // before) and given to nobody.
                unsafe { talc.extend(top, Span::new(address(base), address(acme + len))) }
            }
            // SAFETY: `[old, old + len)` was just taken from the break: readable and writable,
            // used by nobody else, overlapping no heap of talc's, not containing address 0
            // (the break never is 0). (What is left of an earlier stretch stays unused.)
            _ => unsafe { talc.claim(Span::new(address(old), address(old + len)))? },
        };
        talc.oom_handler.set_top(heap);
        talc.oom_handler.end = new_end;
        Ok(())
    }

    /// Moves the break up by `len` bytes; returns the old break.
    fn take(len: usize) -> Option<usize> {
        vm_sbrk(isize::try_from(len).ok()?).ok()
    }

    /// Notes that a block ending at `end` was handed out (or grown to end there).
    fn handed_out(&mut self, end: usize) {
        self.high = self.high.max(end);
    }

    /// After a block ending at `end` was freed (or shrunk from ending there): if it may have
    /// been the highest, looks at the top of the heap.
    fn given_back(talc: &mut Talc<Break>, end: usize) {
        if end.saturating_add(CHUNK_TAIL) >= talc.oom_handler.high {
            Break::trim(talc);
        }
    }

    /// Learns where the highest block of the top heap ends and, if `TRIM_MIN` or more is free
    /// above it and the break is still where the heap left it, gives memd back all but
    /// `GROW_STEP` of that (talc keeps up to the page after the block).
    #[inline(never)]
    fn trim(talc: &mut Talc<Break>) {
        let Some(top) = talc.oom_handler.top() else {
            return;
        };
        let Break {
            top: (base, acme),
            end,
            ..
        } = talc.oom_handler;
        // SAFETY: `top` is the heap talc returned last.
        let used = unsafe { talc.get_allocated_span(top) };
        let used_acme = used.get_base_acme().map_or(base, |(_, a)| a.addr());
        // Every other heap lies below the top one (the break only grew past them).
        talc.oom_handler.high = used_acme;
        if end - used_acme < TRIM_MIN {
            return;
        }
        let (Some(keep), Some(talc_keep)) = (
            used_acme
                .checked_add(GROW_STEP)
                .and_then(|k| k.checked_next_multiple_of(PAGE)),
            used_acme.checked_next_multiple_of(PAGE),
        ) else {
            return;
        };
        if vm_sbrk(0) != Ok(end) {
            // Someone else moved the break: this heap stays as it is, the next growth claims
            // a new one.
            talc.oom_handler.top = (0, 0);
            return;
        }
        if talc_keep < acme {
            // SAFETY: `[base, talc_keep)` lies within `top` and holds every allocated byte of
            // it.
            let kept = unsafe { talc.truncate(top, Span::new(address(base), address(talc_keep))) };
            talc.oom_handler.set_top(kept);
        }
        // What memd does not take back stays taken from the break, for talc to be given.
        if let Ok(release) = isize::try_from(end - keep)
            && vm_sbrk(-release).is_ok()
        {
            talc.oom_handler.end = keep;
        }
    }
}

impl OomHandler for Break {
    fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
        // Room for the block at its alignment, talc's tags and, the first time, its bins.
        let least = layout
            .size()
            .checked_add(layout.align())
            .and_then(|n| n.checked_add(2048))
            .and_then(|n| n.checked_next_multiple_of(PAGE))
            .ok_or(())?;
        Break::give(talc, least)
    }
}

/// A `GlobalAlloc` over memd: blocks up to [`MAX_SMALL`] from a heap kept by talc and grown
/// with `vm_sbrk`, larger ones mapped with `vm_mmap` (see the module documentation). Every
/// call goes through the calling process's transport ([`crate::global`]); without one,
/// allocation returns null.
pub struct VmAllocator {
    heap: spin::Mutex<Talc<Break>>,
}

impl VmAllocator {
    /// An allocator with an empty heap (usable in a `#[global_allocator]` static).
    pub const fn new() -> VmAllocator {
        VmAllocator {
            heap: spin::Mutex::new(Talc::new(Break::new())),
        }
    }
}

impl Default for VmAllocator {
    fn default() -> VmAllocator {
        VmAllocator::new()
    }
}

/// The process's allocator, once its runtime has named it ([`VmAllocator::hold_across_fork`]).
static FORKED_HEAP: spin::Once<&'static VmAllocator> = spin::Once::new();

impl VmAllocator {
    /// Names this allocator (the process's global one) as the heap a `fork` must hold: the
    /// child of a process with threads gets a copy of the heap as it stood at the fork, which
    /// must not be halfway through another thread's allocation (its lock held by a thread the
    /// child does not have), as glibc's malloc takes its locks across `fork`. Once per process;
    /// later calls change nothing.
    pub fn hold_across_fork(&'static self) {
        FORKED_HEAP.call_once(|| self);
    }
}

/// The process's heap held for a `fork` ([`hold_for_fork`]); dropping it lets the heap go.
pub struct ForkHold {
    _held: Option<spin::MutexGuard<'static, Talc<Break>>>,
}

/// Holds the process's heap (if its runtime named it) until the guard drops: [`crate::Vm::fork`]
/// keeps it across the `FORK` request, so parent and child each drop their own copy of a
/// heap no thread is in the middle of. Nothing may allocate while it is held.
pub fn hold_for_fork() -> ForkHold {
    ForkHold {
        _held: FORKED_HEAP.get().map(|heap| heap.heap.lock()),
    }
}

impl VmAllocator {
    /// Frees a heap block: its inner pages go back first if it is large enough (it is still
    /// ours then, so nobody can have been handed them), then the top is looked at.
    ///
    /// # Safety
    ///
    /// `block` was handed out by the heap for `layout` and nothing uses it any more.
    unsafe fn free_small(&self, block: NonNull<u8>, layout: Layout) {
        let (at, end) = (block.addr().get(), block.addr().get() + layout.size());
        if layout.size() >= PURGE_MIN {
            purge(at + GAP_HEAD, end);
        }
        let mut talc = self.heap.lock();
        // SAFETY: the caller's contract.
        unsafe { talc.free(block, layout) };
        Break::given_back(&mut talc, end);
    }

    /// Resizes a heap block in place if it can: shrinking always (the freed tail's inner pages
    /// go back if it is large enough), growing into a free neighbour.
    ///
    /// # Safety
    ///
    /// `block` was handed out by the heap for `layout`; `new_size` is not 0.
    unsafe fn resize_small(&self, block: NonNull<u8>, layout: Layout, new_size: usize) -> bool {
        let at = block.addr().get();
        if new_size <= layout.size() {
            if layout.size() - new_size >= PURGE_MIN {
                // The tail is still ours until talc is told.
                purge(at + new_size + SHRINK_HEAD, at + layout.size());
            }
            let mut talc = self.heap.lock();
            // SAFETY: the caller's contract; `new_size` is not larger.
            unsafe { talc.shrink(block, layout, new_size) };
            Break::given_back(&mut talc, at + layout.size());
            true
        } else {
            let mut talc = self.heap.lock();
            // SAFETY: the caller's contract; `new_size` is larger.
            let grown = unsafe { talc.grow_in_place(block, layout, new_size) }.is_ok();
            if grown {
                talc.oom_handler.handed_out(at + new_size);
            }
            grown
        }
    }
}

// SAFETY: blocks handed out are disjoint (talc hands out each part of its heaps once until it
// is freed; a mapping is memd's fresh pages), at least `layout.size()` bytes, aligned to
// `layout.align()`, and stay valid until `dealloc` (pages dropped by `purge` are only ever
// those of freed blocks); failures return null.
unsafe impl GlobalAlloc for VmAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            return large::map(layout);
        }
        let mut talc = self.heap.lock();
        // SAFETY: the layout has a non-zero size (the caller's contract).
        match unsafe { talc.malloc(layout) } {
            Ok(block) => {
                talc.oom_handler
                    .handed_out(block.addr().get() + layout.size());
                block.as_ptr()
            }
            Err(()) => null_mut(),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // memd's fresh pages read zero: nothing to write.
            return large::map(layout);
        }
        // SAFETY: the caller's contract, passed on.
        let block = unsafe { self.alloc(layout) };
        if !block.is_null() {
            zero_small(block, layout.size());
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout) {
            large::unmap(block, layout.size());
        } else if let Some(block) = NonNull::new(block) {
            // SAFETY: `block` was handed out by the heap for this layout (`is_large` says so)
            // and the caller gives it back.
            unsafe { self.free_small(block, layout) };
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        match (is_large(layout), is_large(new_layout), NonNull::new(block)) {
            // SAFETY: `block` is the heap's block of `layout`; `new_size` is not 0 (the
            // caller's contract).
            (false, false, Some(at)) if unsafe { self.resize_small(at, layout, new_size) } => {
                return block;
            }
            (true, true, _) => {
                let at = large::realloc(block, layout, new_size);
                if !at.is_null() {
                    return at;
                }
            }
            _ => {}
        }
        // SAFETY: `new_layout` is valid and of non-zero size.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: `block` is live for `layout.size()` bytes, `moved` is a fresh, distinct
            // block of `new_size` bytes; `block` was allocated here with `layout` and is given
            // back once copied.
            unsafe {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global::{bind_thread, unbind_thread, vm_sbrk};
    use crate::proto::{self, MADV_DONTNEED, MINCORE, MMAP, MREMAP, MUNMAP, Request, SBRK};
    use crate::transport::Transport;
    use crate::transport::doubles::FakeMemd;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    use std::vec::Vec;

    /// xorshift64*: reproducible pseudo-random numbers.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }

        fn size(&mut self) -> usize {
            match self.below(100) {
                0..80 => 1 + self.below(512),
                80..95 => 1 + self.below(MAX_SMALL as u64),
                _ => MAX_SMALL + 1 + self.below(256 * 1024),
            }
        }

        fn align(&mut self) -> usize {
            [
                1,
                1,
                2,
                4,
                8,
                8,
                16,
                32,
                64,
                128,
                4096,
                8192,
                65536,
                1 << 20,
            ][self.below(14)]
        }
    }

    /// A fake memd bound to this thread.
    fn bind(heap_bytes: usize, map_bytes: usize) -> Arc<FakeMemd> {
        let memd = Arc::new(FakeMemd::new(heap_bytes, map_bytes));
        bind_thread(memd.clone());
        memd
    }

    /// A live allocation of a test: where, its layout, and the seed of its contents.
    struct Live {
        at: *mut u8,
        layout: Layout,
        seed: u8,
    }

    impl Live {
        fn bytes(&self) -> &[u8] {
            // SAFETY: `at` is a live allocation of `layout.size()` bytes owned by the test,
            // written only through `fill`, which needs `&mut self`.
            unsafe { core::slice::from_raw_parts(self.at, self.layout.size()) }
        }

        fn fill(&mut self) {
            // SAFETY: `at` is a live allocation of `layout.size()` bytes owned by the test;
            // `&mut self` rules out any slice of it from `bytes` meanwhile.
            let bytes = unsafe { core::slice::from_raw_parts_mut(self.at, self.layout.size()) };
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = self.seed.wrapping_add((i % 251) as u8);
            }
        }

        fn check(&self, len: usize) {
            for (i, b) in self.bytes()[..len].iter().enumerate() {
                assert_eq!(
                    *b,
                    self.seed.wrapping_add((i % 251) as u8),
                    "byte {i} of {:?}",
                    self.layout
                );
            }
        }

        fn sound(&self, memd: &FakeMemd) {
            assert!(!self.at.is_null(), "{:?}", self.layout);
            assert!(
                self.at.addr().is_multiple_of(self.layout.align()),
                "{:?}",
                self.layout
            );
            assert!(
                memd.backed(self.at.addr(), self.layout.size()),
                "{:?}",
                self.layout
            );
        }
    }

    #[test]
    fn mixed_workload_keeps_contents_and_alignment() {
        let memd = bind(64 << 20, 512 << 20);
        let heap = VmAllocator::new();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut live: Vec<Live> = Vec::new();
        for step in 0..6000u32 {
            let seed = step as u8;
            match rng.below(10) {
                0..5 => {
                    let layout = Layout::from_size_align(rng.size(), rng.align()).unwrap();
                    // SAFETY: the layout has a non-zero size.
                    let at = unsafe { heap.alloc(layout) };
                    let mut a = Live { at, layout, seed };
                    a.sound(&memd);
                    a.fill();
                    live.push(a);
                }
                5..8 if !live.is_empty() => {
                    let a = live.swap_remove(rng.below(live.len() as u64));
                    a.check(a.layout.size());
                    // SAFETY: `a` was allocated by `heap` with this layout and is not used again.
                    unsafe { heap.dealloc(a.at, a.layout) };
                }
                _ if !live.is_empty() => {
                    let i = rng.below(live.len() as u64);
                    let new_size = rng.size();
                    let old = &live[i];
                    // SAFETY: `old` was allocated by `heap` with its layout; the new size is
                    // non-zero and rounds to a valid layout.
                    let at = unsafe { heap.realloc(old.at, old.layout, new_size) };
                    let layout = Layout::from_size_align(new_size, old.layout.align()).unwrap();
                    let moved = Live {
                        at,
                        layout,
                        seed: old.seed,
                    };
                    moved.sound(&memd);
                    moved.check(new_size.min(old.layout.size()));
                    live[i] = Live { seed, ..moved };
                    live[i].fill();
                }
                _ => {}
            }
            if step % 500 == 0 {
                for a in &live {
                    a.sound(&memd);
                    a.check(a.layout.size());
                }
            }
        }
        for a in live.drain(..) {
            a.check(a.layout.size());
            // SAFETY: allocated by `heap` with this layout, not used again.
            unsafe { heap.dealloc(a.at, a.layout) };
        }
        assert!(memd.calls(SBRK) > 0);
        assert!(memd.calls(MMAP) > 0 && memd.calls(MUNMAP) > 0);
        assert_eq!(memd.mapped_pages(), 0, "every large block is unmapped");
        unbind_thread();
    }

    #[test]
    fn freed_blocks_are_reused_and_free_neighbours_coalesce() {
        let memd = bind(1 << 20, 1 << 20);
        let heap = VmAllocator::new();
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: non-zero sizes; each block is given back with its own layout once.
        unsafe {
            let a = heap.alloc(layout);
            heap.dealloc(a, layout);
            let b = heap.alloc(layout);
            assert_eq!(a, b);
            // The rest of the heap is free after it: realloc grows it in place.
            assert_eq!(heap.realloc(b, layout, 120), b);
            let grown = Layout::from_size_align(120, 8).unwrap();
            // Four neighbours; the middle two freed make one gap that a block twice their
            // size fits into.
            let four: Vec<*mut u8> = (0..4).map(|_| heap.alloc(layout)).collect();
            assert!(four.windows(2).all(|w| w[0] < w[1]));
            heap.dealloc(four[1], layout);
            heap.dealloc(four[2], layout);
            let double = Layout::from_size_align(200, 8).unwrap();
            let c = heap.alloc(double);
            assert_eq!(c, four[1], "the two freed neighbours became one gap");
            for (at, l) in [
                (b, grown),
                (four[0], layout),
                (c, double),
                (four[3], layout),
            ] {
                heap.dealloc(at, l);
            }
        }
        assert_eq!(memd.calls(SBRK), 1);
        unbind_thread();
    }

    /// Whether the `len` bytes at `at` all read zero.
    fn zeroes(at: *const u8, len: usize) -> bool {
        // SAFETY: the tests pass blocks they were handed, of at least `len` bytes.
        unsafe { core::slice::from_raw_parts(at, len) }
            .iter()
            .all(|&b| b == 0)
    }

    /// The whole pages inside `[at, at + len)`, as `(first byte, bytes)`.
    fn whole_pages(at: *mut u8, len: usize) -> (usize, usize) {
        let lo = at.addr().next_multiple_of(PAGE);
        let hi = (at.addr() + len) & !(PAGE - 1);
        (lo, hi.saturating_sub(lo))
    }

    #[test]
    fn zeroed_blocks_read_zero_and_pages_memd_gave_zeroed_are_not_written() {
        let memd = bind(4 << 20, 64 << 20);
        let heap = VmAllocator::new();
        let large = Layout::from_size_align(8 << 20, 8).unwrap();
        let purged = Layout::from_size_align(100 * 1024, 8).unwrap();
        // SAFETY: non-zero sizes; each block is used within its size and given back once
        // with its layout.
        unsafe {
            // A large block is a fresh mapping: not a page of it written.
            let p = heap.alloc_zeroed(large);
            assert!(!p.is_null());
            assert_eq!(memd.resident_pages(p.addr(), large.size()), 0);
            assert_eq!(memd.calls(MINCORE), 0, "nothing to ask");
            // Written, freed, and taken again (the same pages, unmapped in between): the
            // same again.
            p.write_bytes(0xAA, large.size());
            heap.dealloc(p, large);
            let p = heap.alloc_zeroed(large);
            assert_eq!(memd.resident_pages(p.addr(), large.size()), 0);
            assert!(zeroes(p, large.size()));
            heap.dealloc(p, large);

            // A heap block of the break's fresh memory: its whole pages are left alone.
            let a = heap.alloc_zeroed(purged);
            let (lo, len) = whole_pages(a, purged.size());
            assert!(len >= purged.size() - 2 * PAGE);
            assert_eq!(memd.resident_pages(lo, len), 0);
            assert_eq!(memd.calls(MINCORE), 1);
            assert!(zeroes(a, purged.size()));
            // Written and freed, its whole pages go back to memd (MADV_DONTNEED) and read
            // zero: taken again zeroed, they are not written either.
            a.write_bytes(0xAA, purged.size());
            heap.dealloc(a, purged);
            let again = heap.alloc_zeroed(purged);
            assert_eq!(again, a, "reused");
            assert!(
                memd.resident_pages(lo, len) <= PAGE,
                "the pages talc kept, at most"
            );
            assert!(zeroes(again, purged.size()));
            heap.dealloc(again, purged);

            // Blocks that keep their pages when freed (below PURGE_MIN), written and reused:
            // zero when taken again zeroed, asked about (16 KiB and more) or not.
            for size in [24, 1000, 5000, ASK_MIN - 1, ASK_MIN, 40 * 1024] {
                let layout = Layout::from_size_align(size, 8).unwrap();
                let b = heap.alloc(layout);
                b.write_bytes(0xAA, size);
                heap.dealloc(b, layout);
                let asked = memd.calls(MINCORE);
                let again = heap.alloc_zeroed(layout);
                assert_eq!(again, b, "{size} bytes: reused");
                assert!(zeroes(again, size), "{size} bytes");
                assert_eq!(memd.calls(MINCORE) - asked, usize::from(size >= ASK_MIN));
                heap.dealloc(again, layout);
            }
        }
        unbind_thread();
    }

    #[test]
    fn a_large_block_grows_in_place_or_moves_its_pages_rather_than_copying_them() {
        let memd = bind(1 << 20, 16 << 20);
        let heap = VmAllocator::new();
        let mib = |n: usize| Layout::from_size_align(n << 20, 8).unwrap();
        // SAFETY: each block is used within its size and given back once with its layout.
        unsafe {
            let p = heap.alloc(mib(1));
            // A word on every fourth page: 64 pages resident.
            for page in (0..256).step_by(4) {
                p.add(page * PAGE).cast::<u64>().write(page as u64);
            }
            assert_eq!(memd.resident_pages(p.addr(), 1 << 20), 64);
            // The pages after it are free: it grows where it is.
            let grown = heap.realloc(p, mib(1), 2 << 20);
            assert_eq!(grown, p);
            assert_eq!((memd.calls(MMAP), memd.calls(MREMAP)), (1, 1));
            // A block right after it: the next growth moves it, its pages carried over.
            let q = heap.alloc(mib(1));
            assert_eq!(q.addr(), p.addr() + (2 << 20));
            let moved = heap.realloc(p, mib(2), 4 << 20);
            assert!(!moved.is_null() && moved != p);
            assert_eq!(memd.calls(MMAP), 2, "no new mapping to copy into");
            assert_eq!(
                memd.resident_pages(moved.addr(), 4 << 20),
                64,
                "nothing copied"
            );
            for page in (0..256).step_by(4) {
                assert_eq!(moved.add(page * PAGE).cast::<u64>().read(), page as u64);
            }
            assert!(
                zeroes(moved.add(1 << 20), 3 << 20),
                "the new pages read zero"
            );
            assert_eq!(memd.mapped_pages(), 1024 + 256);
            heap.dealloc(moved, mib(4));
            heap.dealloc(q, mib(1));
        }
        assert_eq!(memd.mapped_pages(), 0);
        unbind_thread();
    }

    #[test]
    fn large_blocks_grow_and_shrink_in_place_when_they_can() {
        let memd = bind(1 << 20, 8 << 20);
        let heap = VmAllocator::new();
        let small = Layout::from_size_align(200 * 1024, 8).unwrap();
        // SAFETY: each block is used within its size and given back once with its layout.
        unsafe {
            let p = heap.alloc(small);
            p.write_bytes(0xAB, small.size());
            let grown = heap.realloc(p, small, 300 * 1024);
            assert_eq!(grown, p, "the pages after it were free");
            assert_eq!(memd.mapped_pages(), 75);
            let big = Layout::from_size_align(300 * 1024, 8).unwrap();
            let q = heap.alloc(small);
            let moved = heap.realloc(p, big, 600 * 1024);
            assert_ne!(moved, p, "q is in the way");
            assert!((0..small.size()).all(|i| *moved.add(i) == 0xAB));
            let shrunk = heap.realloc(q, small, 150 * 1024);
            assert_eq!(shrunk, q);
            assert_eq!(memd.mapped_pages(), 150 + 38);
            heap.dealloc(moved, Layout::from_size_align(600 * 1024, 8).unwrap());
            heap.dealloc(q, Layout::from_size_align(150 * 1024, 8).unwrap());
            // Large alignment: the slack around the block is unmapped.
            let aligned = Layout::from_size_align(300 * 1024, 1 << 20).unwrap();
            let r = heap.alloc(aligned);
            assert!(r.addr().is_multiple_of(1 << 20));
            assert_eq!(memd.mapped_pages(), 75);
            // An alignment above a page keeps even a tiny block a mapping.
            let s = heap.realloc(r, aligned, 64);
            assert_eq!(s, r);
            assert_eq!(memd.mapped_pages(), 1);
            heap.dealloc(s, Layout::from_size_align(64, 1 << 20).unwrap());
            // A large block shrunk below `MAX_SMALL` moves into the heap, and back out.
            let t = heap.alloc(small);
            t.write_bytes(0x5A, small.size());
            let u = heap.realloc(t, small, 100);
            assert!(!u.is_null() && memd.backed(u.addr(), 100));
            assert!((0..100).all(|i| *u.add(i) == 0x5A));
            assert_eq!(memd.mapped_pages(), 0);
            let v = heap.realloc(u, Layout::from_size_align(100, 8).unwrap(), small.size());
            assert!((0..100).all(|i| *v.add(i) == 0x5A));
            assert_eq!(memd.mapped_pages(), 50);
            heap.dealloc(v, small);
        }
        assert_eq!(memd.mapped_pages(), 0);
        unbind_thread();
    }

    #[test]
    fn a_break_moved_by_someone_else_is_respected() {
        let memd = bind(4 << 20, 1 << 20);
        let heap = VmAllocator::new();
        let layout = Layout::from_size_align(4000, 16).unwrap();
        let mut blocks = Vec::new();
        let mut foreign = Vec::new();
        for i in 0..200 {
            if i % 40 == 0 {
                let at = crate::global::vm_sbrk(5000).unwrap();
                foreign.push(at);
                // SAFETY: these 5000 bytes were just taken from the break by this test.
                unsafe { ptr::with_exposed_provenance_mut::<u8>(at).write_bytes(0xEE, 5000) };
            }
            // SAFETY: non-zero size.
            let at = unsafe { heap.alloc(layout) };
            let mut a = Live {
                at,
                layout,
                seed: i as u8,
            };
            a.sound(&memd);
            a.fill();
            blocks.push(a);
        }
        for a in &blocks {
            a.check(layout.size());
            for &f in &foreign {
                assert!(a.at.addr() + layout.size() <= f || a.at.addr() >= f + 5000);
            }
        }
        // Freeing every block gives back no memory below the foreign bytes.
        for a in blocks {
            // SAFETY: allocated by `heap` with this layout, not used again.
            unsafe { heap.dealloc(a.at, a.layout) };
        }
        let last = *foreign.last().unwrap();
        assert!(crate::global::vm_sbrk(0).unwrap() >= last + 5000);
        for &f in &foreign {
            // SAFETY: the test's own bytes, taken from the break above.
            let kept =
                unsafe { core::slice::from_raw_parts(ptr::with_exposed_provenance::<u8>(f), 5000) };
            assert!(kept.iter().all(|&b| b == 0xEE));
        }
        unbind_thread();
    }

    #[test]
    fn failures_return_null() {
        let heap = VmAllocator::new();
        let small = Layout::from_size_align(64, 8).unwrap();
        let large = Layout::from_size_align(1 << 20, 8).unwrap();
        // SAFETY: non-zero sizes; nothing is handed out.
        unsafe {
            assert!(heap.alloc(small).is_null(), "no transport");
            assert!(heap.alloc(large).is_null(), "no transport");
        }
        let memd = bind(64 * 1024, 64 * 1024);
        // SAFETY: non-zero sizes; blocks handed out are never used.
        unsafe {
            assert!(heap.alloc(large).is_null(), "the mmap area is too small");
            let huge = Layout::from_size_align(isize::MAX as usize - (1 << 20), 1 << 20).unwrap();
            assert!(heap.alloc(huge).is_null());
            // 4000-byte blocks until the 64 KiB of heap are taken (talc keeps its bins, 1 KiB,
            // in the heap, and a tag of 8 bytes after each block).
            let block = Layout::from_size_align(4000, 8).unwrap();
            let mut got = Vec::new();
            loop {
                let at = heap.alloc(block);
                if at.is_null() {
                    break;
                }
                assert!(memd.backed(at.addr(), block.size()));
                got.push(at);
                assert!(got.len() <= 16, "more than the heap holds");
            }
            assert!(got.len() >= 14, "{} blocks in 64 KiB", got.len());
            let free = 64 * 1024 - got.len() * 4008;
            assert!(
                heap.alloc(Layout::from_size_align(free, 8).unwrap())
                    .is_null()
            );
            // One freed makes room for one more.
            heap.dealloc(got[3], block);
            assert_eq!(heap.alloc(block), got[3]);
        }
        assert!(memd.calls(SBRK) >= 2);
        unbind_thread();
    }

    #[test]
    fn threads_share_one_heap() {
        let memd = Arc::new(FakeMemd::new(16 << 20, 16 << 20));
        let heap = VmAllocator::new();
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let memd = memd.clone();
                let heap = &heap;
                scope.spawn(move || {
                    bind_thread(memd.clone());
                    let mut rng = Rng(t + 1);
                    let mut live = Vec::new();
                    for step in 0..2000u32 {
                        if rng.below(3) < 2 || live.is_empty() {
                            let size = 1 + rng.below(2048);
                            let layout = Layout::from_size_align(size, 1 << rng.below(7)).unwrap();
                            // SAFETY: non-zero size.
                            let at = unsafe { heap.alloc(layout) };
                            let mut a = Live {
                                at,
                                layout,
                                seed: (step as u8) ^ (t as u8 * 64),
                            };
                            a.sound(&memd);
                            a.fill();
                            live.push(a);
                        } else {
                            let a: Live = live.swap_remove(rng.below(live.len() as u64));
                            a.check(a.layout.size());
                            // SAFETY: allocated by `heap` with this layout, not used again.
                            unsafe { heap.dealloc(a.at, a.layout) };
                        }
                    }
                    for a in live {
                        a.check(a.layout.size());
                    }
                    unbind_thread();
                });
            }
        });
    }
    /// A fake memd that also knows which pages are resident: those the test wrote (`touch`),
    /// less those memd took back (`MADV_DONTNEED`, which zeroes them, `munmap`, a break moved
    /// down). talc's own bookkeeping lies next to blocks, on pages
    /// the test writes too.
    struct ResidentMemd {
        memd: FakeMemd,
        resident: Mutex<BTreeSet<usize>>,
        /// Ranges given back with `MADV_DONTNEED`.
        dropped: Mutex<Vec<(usize, usize)>>,
    }

    impl ResidentMemd {
        fn bind(heap_bytes: usize, map_bytes: usize) -> Arc<ResidentMemd> {
            let memd = Arc::new(ResidentMemd {
                memd: FakeMemd::new(heap_bytes, map_bytes),
                resident: Mutex::new(BTreeSet::new()),
                dropped: Mutex::new(Vec::new()),
            });
            bind_thread(memd.clone());
            memd
        }

        fn touch(&self, addr: usize, len: usize) {
            let mut resident = self.resident.lock().unwrap();
            resident.extend(addr / PAGE..=(addr + len - 1) / PAGE);
        }

        fn forget(&self, lo: usize, hi: usize) {
            let mut resident = self.resident.lock().unwrap();
            let gone: Vec<usize> = resident
                .range(lo / PAGE..hi.div_ceil(PAGE))
                .copied()
                .collect();
            for page in gone {
                resident.remove(&page);
            }
        }

        fn resident_bytes(&self) -> usize {
            self.resident.lock().unwrap().len() * PAGE
        }

        fn dropped(&self) -> Vec<(usize, usize)> {
            core::mem::take(&mut *self.dropped.lock().unwrap())
        }
    }

    impl Transport for ResidentMemd {
        fn call(&self, sqe: &proto::Sqe, bulk: &mut [u8]) -> proto::Cqe {
            match Request::decode(sqe) {
                Ok(Request::Madvise { addr, len, advice }) => {
                    assert_eq!(advice, MADV_DONTNEED);
                    assert!(addr.is_multiple_of(PAGE) && len.is_multiple_of(PAGE) && len > 0);
                    assert!(
                        self.memd.backed(addr, len),
                        "outside the heap: {addr:#x}+{len}"
                    );
                    let reply = self.memd.call(sqe, bulk);
                    assert_eq!(proto::decode_reply(&reply), Ok(0));
                    self.forget(addr, addr + len);
                    self.dropped.lock().unwrap().push((addr, addr + len));
                    reply
                }
                Ok(Request::Munmap { addr, len }) => {
                    let reply = self.memd.call(sqe, bulk);
                    if proto::decode_reply(&reply).is_ok() {
                        self.forget(addr, addr + len);
                    }
                    reply
                }
                Ok(Request::Sbrk { increment }) if increment < 0 => {
                    let reply = self.memd.call(sqe, bulk);
                    if let Ok(old) = proto::decode_reply(&reply) {
                        let old = old as usize;
                        self.forget(
                            old.wrapping_add_signed(increment).next_multiple_of(PAGE),
                            old,
                        );
                    }
                    reply
                }
                _ => self.memd.call(sqe, bulk),
            }
        }
    }

    /// Allocates `layout` from `heap`, checks it, fills it with `seed` and marks it resident.
    fn take(heap: &VmAllocator, memd: &ResidentMemd, layout: Layout, seed: u8) -> Live {
        // SAFETY: the layouts of these tests have non-zero sizes.
        let at = unsafe { heap.alloc(layout) };
        let mut a = Live { at, layout, seed };
        a.sound(&memd.memd);
        a.fill();
        memd.touch(at.addr(), layout.size());
        a
    }

    /// Checks `a`'s contents and gives it back to `heap`.
    fn give(heap: &VmAllocator, a: Live) {
        a.check(a.layout.size());
        // SAFETY: allocated by `heap` with this layout, not used again.
        unsafe { heap.dealloc(a.at, a.layout) };
    }

    #[test]
    fn the_pages_inside_a_large_freed_block_go_back() {
        let memd = ResidentMemd::bind(4 << 20, 1 << 20);
        let heap = VmAllocator::new();
        let small = Layout::from_size_align(PURGE_MIN - 1, 8).unwrap();
        let big = Layout::from_size_align(100 * 1024, 8).unwrap();
        let before = take(&heap, &memd, small, 1);
        let a = take(&heap, &memd, big, 2);
        let after = take(&heap, &memd, small, 3);
        let resident = memd.resident_bytes();
        let at = a.at.addr();
        give(&heap, a);
        let dropped = memd.dropped();
        assert_eq!(dropped.len(), 1, "one MADV_DONTNEED");
        let (lo, hi) = dropped[0];
        assert!(
            lo >= at + GAP_HEAD && hi <= at + big.size(),
            "inside the block only"
        );
        assert!(hi - lo >= big.size() - 2 * PAGE, "every whole page of it");
        assert_eq!(memd.resident_bytes(), resident - (hi - lo));
        // Its neighbours are intact, a block below the threshold keeps its pages, and the
        // freed block's memory is used again.
        before.check(small.size());
        after.check(small.size());
        give(&heap, before);
        assert!(memd.dropped().is_empty());
        let again = take(&heap, &memd, big, 4);
        assert!(again.at.addr() <= at, "reused");
        // A realloc that frees 64 KiB or more of a block's tail gives its pages back too.
        let tail = again.at.addr() + 20 * 1024;
        // SAFETY: `again` was allocated by `heap` with its layout; 20 KiB is not 0.
        let shrunk = unsafe { heap.realloc(again.at, big, 20 * 1024) };
        assert_eq!(shrunk, again.at);
        let dropped = memd.dropped();
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0].0 >= tail + SHRINK_HEAD && dropped[0].1 <= again.at.addr() + big.size());
        again.check(20 * 1024);
        give(&heap, after);
        unbind_thread();
    }

    #[test]
    fn a_free_top_of_a_mebibyte_goes_back_with_sbrk() {
        let memd = ResidentMemd::bind(16 << 20, 1 << 20);
        let heap = VmAllocator::new();
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let blocks: Vec<Live> = (0..4000)
            .map(|i| take(&heap, &memd, layout, i as u8))
            .collect();
        let start = blocks.iter().map(|a| a.at.addr()).min().unwrap();
        let top = vm_sbrk(0).unwrap();
        assert!(top - start >= 4000 * 1008);
        // Freed from the top down: the free top never reaches a mebibyte before the break
        // comes down to 128 KiB above the highest block.
        let mut blocks = blocks;
        while let Some(a) = blocks.pop() {
            give(&heap, a);
            let highest = blocks.last().map_or(start, |b| b.at.addr() + 1000);
            let slack = vm_sbrk(0).unwrap() - highest;
            assert!(slack < TRIM_MIN + 2 * PAGE, "{slack} bytes free at the top");
        }
        let now = vm_sbrk(0).unwrap();
        assert!(
            now < top && now - start <= TRIM_MIN + GROW_STEP,
            "break {now:#x} from {start:#x}"
        );
        assert!(
            memd.resident_bytes() <= now - start + PAGE,
            "nothing resident above it"
        );
        assert!(memd.dropped().is_empty(), "small blocks: nothing purged");
        // The heap grows again from there.
        let more: Vec<Live> = (0..2000)
            .map(|i| take(&heap, &memd, layout, i as u8))
            .collect();
        assert!(vm_sbrk(0).unwrap() > now);
        for a in more {
            give(&heap, a);
        }
        unbind_thread();
    }

    /// The size bands of allocbench's trace (per mille, smallest, largest).
    const BANDS: [(usize, usize, usize); 8] = [
        (350, 8, 32),
        (250, 33, 128),
        (180, 129, 512),
        (120, 513, 2048),
        (60, 2049, 8192),
        (30, 8193, 64 << 10),
        (8, (64 << 10) + 1, 128 << 10),
        (2, (128 << 10) + 1, 256 << 10),
    ];

    impl Rng {
        /// A size of [`BANDS`], log-uniform within its band.
        fn trace_size(&mut self) -> usize {
            let mut pick = self.below(1000);
            let &(_, lo, hi) = BANDS
                .iter()
                .find(|&&(weight, _, _)| {
                    let found = pick < weight;
                    pick = pick.saturating_sub(weight);
                    found
                })
                .unwrap();
            let (lo_bit, hi_bit) = (lo.ilog2(), hi.ilog2());
            let bit = lo_bit + self.below(u64::from(hi_bit - lo_bit + 1)) as u32;
            let (lo, hi) = (lo.max(1 << bit), hi.min((2 << bit) - 1));
            lo + self.below((hi - lo + 1) as u64)
        }
    }

    /// allocbench's trace, small, on the host: a steady working set of 2 MiB, a burst to a
    /// peak of 6 MiB, its drain (a twentieth kept), the steady state again.
    #[test]
    fn resident_memory_follows_what_is_asked_for_at_the_peak_and_after_it() {
        const STEADY: usize = 2 << 20;
        const PEAK: usize = 6 << 20;
        let memd = ResidentMemd::bind(64 << 20, 64 << 20);
        let heap = VmAllocator::new();
        let mut rng = Rng(0xA110_C0DE);
        let mut churn: Vec<Live> = Vec::new();
        let mut burst: Vec<Live> = Vec::new();
        let mut kept: Vec<Live> = Vec::new();
        let bytes = |v: &Vec<Live>| v.iter().map(|a| a.layout.size()).sum::<usize>();
        let mut seed = 0u8;
        let mut steady = |rng: &mut Rng, churn: &mut Vec<Live>| {
            let live = bytes(churn);
            if live < STEADY || (live < STEADY * 11 / 10 && rng.below(2) == 0) {
                seed = seed.wrapping_add(1);
                let layout = Layout::from_size_align(rng.trace_size(), 8).unwrap();
                churn.push(take(&heap, &memd, layout, seed));
            } else {
                let n = churn.len() as u64;
                let i = if rng.below(10) < 6 {
                    n as usize - 1 - rng.below(n.min(16))
                } else {
                    rng.below(n)
                };
                give(&heap, churn.swap_remove(i));
            }
        };
        for _ in 0..20_000 {
            steady(&mut rng, &mut churn);
        }
        while bytes(&burst) < PEAK - STEADY {
            let layout = Layout::from_size_align(rng.trace_size(), 8).unwrap();
            burst.push(take(&heap, &memd, layout, 0x5A));
            steady(&mut rng, &mut churn);
        }
        let peak = bytes(&churn) + bytes(&burst);
        let peak_resident = memd.resident_bytes();
        while !burst.is_empty() {
            let a = burst.swap_remove(rng.below(burst.len() as u64));
            if rng.below(20) == 0 {
                kept.push(a);
            } else {
                give(&heap, a);
            }
            steady(&mut rng, &mut churn);
        }
        for _ in 0..20_000 {
            steady(&mut rng, &mut churn);
        }
        let end = bytes(&churn) + bytes(&kept);
        let end_resident = memd.resident_bytes();
        for a in churn.into_iter().chain(kept) {
            give(&heap, a);
        }
        let freed_resident = memd.resident_bytes();
        std::println!(
            "peak {peak} resident {peak_resident}; end {end} resident {end_resident}; \
             all freed: resident {freed_resident}"
        );
        // Power-of-two blocks kept 17% more than asked for at the peak.
        assert!(peak_resident <= peak + peak / 50, "at the peak");
        assert!(end_resident <= end * 2, "after the peak");
        assert!(freed_resident <= TRIM_MIN + GROW_STEP, "all freed");
        unbind_thread();
    }
}
