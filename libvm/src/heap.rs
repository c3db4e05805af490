//! `VmAllocator`: a `GlobalAlloc` over the program break and anonymous mappings.
//!
//! ```text
//!  heap: memory from vm_sbrk                          mmap area
//!  [ carved blocks ......... | bump ....... end )     [ large block ]  [ large block ]
//!   power-of-two blocks, 16 B to 64 KiB, each          one anonymous private mapping
//!   aligned to its size; freed ones kept on one        each, page rounded; dealloc
//!   free list per size, reused, never given back       unmaps it
//! ```
//!
//! A layout is served by the smallest power-of-two block at least as large as its size and its
//! alignment (so every block is naturally aligned and alignment is honoured for free). Blocks
//! up to [`MAX_SMALL`] come from the heap; anything larger is a mapping of its own, so a big
//! buffer costs whole pages rather than a block up to twice its size, and goes back to memd when
//! freed. The heap grows with `vm_sbrk` through the process's transport ([`crate::global`]);
//! memory taken from the break is kept for reuse, never released.
//!
//! The stretch taken from the break stays contiguous as long as only this allocator moves the
//! break. Others may grow it too: when the memory sbrk returns does not start where the heap
//! ended, the rest of the old stretch goes onto the free lists and the new stretch is used from
//! its start. Nobody may shrink the break below memory the heap took.
//!
//! Every failure (no transport, memd refusing, arithmetic overflow) returns null; nothing
//! panics. The heap is behind a spin lock, held across the `SBRK` call that grows it: the
//! transport must not allocate from this allocator.

use crate::flags::{MmapFlags, ProtectionFlags};
use crate::global::{vm_mmap, vm_munmap, vm_sbrk};
use core::alloc::{GlobalAlloc, Layout};
use core::cmp::Ordering;
use core::ptr::{self, null_mut};

/// Page size of the mappings.
const PAGE: usize = 4096;
/// log2 of the smallest block: room for a free-list link, and malloc's usual alignment.
const MIN_SHIFT: u32 = 4;
/// The smallest block.
const MIN_BLOCK: usize = 1 << MIN_SHIFT;
/// log2 of [`MAX_SMALL`].
const MAX_SHIFT: u32 = 16;
/// The largest block the heap serves; larger layouts (size or alignment) are mapped.
pub const MAX_SMALL: usize = 1 << MAX_SHIFT;
/// Number of block sizes, 16 B to [`MAX_SMALL`].
const CLASSES: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Bytes the heap grows by at least, when memd allows it.
const GROW_STEP: usize = 128 * 1024;

/// How a layout is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A heap block of size `MIN_BLOCK << class`.
    Small(usize),
    /// A mapping of its own.
    Large,
}

fn kind(layout: Layout) -> Kind {
    let need = layout.size().max(layout.align()).max(MIN_BLOCK);
    match need.checked_next_power_of_two() {
        Some(block) if block <= MAX_SMALL => {
            Kind::Small((block.trailing_zeros() - MIN_SHIFT) as usize)
        }
        _ => Kind::Large,
    }
}

const fn block_size(class: usize) -> usize {
    MIN_BLOCK << class
}

/// Bytes of pages covering `size` bytes.
fn pages(size: usize) -> Option<usize> {
    size.max(1).checked_next_multiple_of(PAGE)
}

/// The heap: free lists per block size and the uncarved stretch `[bump, end)`.
///
/// Invariants: every address on `free[c]` is a block of `block_size(c)` bytes, aligned to its
/// size, inside memory taken from the break, owned by no allocation, whose first word links to
/// the next (0 ends the list); `[bump, end)` is such memory too, 16-byte aligned at both ends,
/// not yet handed out (`bump == end == 0` before the first growth).
struct Heap {
    free: [usize; CLASSES],
    bump: usize,
    end: usize,
}

impl Heap {
    const fn new() -> Heap {
        Heap {
            free: [0; CLASSES],
            bump: 0,
            end: 0,
        }
    }

    /// A block of `class`: reused, carved, or carved after growing; 0 if none can be had.
    fn alloc(&mut self, class: usize) -> usize {
        if let Some(block) = self.pop(class).or_else(|| self.carve(class)) {
            return block;
        }
        if self.grow(block_size(class)) {
            self.carve(class).unwrap_or(0)
        } else {
            0
        }
    }

    fn pop(&mut self, class: usize) -> Option<usize> {
        let head = self.free[class];
        if head == 0 {
            return None;
        }
        // SAFETY: by the invariant, `head` is a free block of at least 16 bytes, aligned to
        // 16, in memory this heap owns, and its first word is the link `push` wrote.
        self.free[class] = unsafe { ptr::with_exposed_provenance::<usize>(head).read() };
        Some(head)
    }

    /// Puts `block` on the free list of `class`.
    ///
    /// # Safety
    ///
    /// `block` is a block of `block_size(class)` bytes aligned to that size, in memory taken
    /// from the break, that nothing uses any more (a block this heap handed out and got back,
    /// or an uncarved stretch).
    unsafe fn push(&mut self, block: usize, class: usize) {
        // SAFETY: the caller hands over a block of at least 16 bytes, aligned to at least 16,
        // that nothing else reads or writes; its first word becomes the link.
        unsafe { ptr::with_exposed_provenance_mut::<usize>(block).write(self.free[class]) };
        self.free[class] = block;
    }

    /// Carves a block of `class` from the uncarved stretch, aligned to its size; the bytes
    /// skipped to align it go onto the free lists.
    fn carve(&mut self, class: usize) -> Option<usize> {
        let size = block_size(class);
        let start = self.bump.checked_next_multiple_of(size)?;
        let end = start.checked_add(size)?;
        if self.bump == 0 || end > self.end {
            return None;
        }
        self.release(self.bump, start);
        self.bump = end;
        Some(start)
    }

    /// Puts the uncarved `[lo, hi)` (both 16-byte aligned, `lo` not 0) onto the free lists as
    /// the largest naturally aligned blocks that fit.
    fn release(&mut self, mut lo: usize, hi: usize) {
        while lo < hi {
            let shift = lo.trailing_zeros().min((hi - lo).ilog2()).min(MAX_SHIFT);
            // SAFETY: `[lo, lo + 2^shift)` lies in the uncarved stretch (memory taken from the
            // break, used by nothing), is aligned to its size since `lo` has at least `shift`
            // trailing zeros, and `shift >= MIN_SHIFT` as both ends are 16-byte aligned.
            unsafe { self.push(lo, (shift - MIN_SHIFT) as usize) };
            lo += 1 << shift;
        }
    }

    /// Moves the break to make room for a block of `size` bytes wherever the new memory starts;
    /// asks for [`GROW_STEP`] first, then for just enough.
    fn grow(&mut self, size: usize) -> bool {
        let Some(least) = size
            .checked_mul(2)
            .and_then(|n| n.checked_next_multiple_of(PAGE))
        else {
            return false;
        };
        let generous = least.max(GROW_STEP);
        self.grow_by(generous) || (least < generous && self.grow_by(least))
    }

    fn grow_by(&mut self, len: usize) -> bool {
        let Ok(increment) = isize::try_from(len) else {
            return false;
        };
        let Ok(old) = vm_sbrk(increment) else {
            return false;
        };
        let top = old.saturating_add(len) & !(MIN_BLOCK - 1);
        if self.end != 0 && old == self.end {
            self.end = top;
        } else {
            // Someone else moved the break since the last growth (or this is the first one):
            // keep what is left of the old stretch, and carve from the new one.
            if self.bump != 0 {
                self.release(self.bump, self.end);
            }
            self.bump = old
                .checked_next_multiple_of(MIN_BLOCK)
                .unwrap_or(top)
                .min(top);
            self.end = top;
        }
        true
    }
}

/// A `GlobalAlloc` over memd: small blocks from a heap grown with `vm_sbrk`, large ones mapped
/// with `vm_mmap` (see the module documentation). Every call goes through the calling
/// process's transport ([`crate::global`]); without one, allocation returns null.
pub struct VmAllocator {
    heap: spin::Mutex<Heap>,
}

impl VmAllocator {
    /// An allocator with an empty heap (usable in a `#[global_allocator]` static).
    pub const fn new() -> VmAllocator {
        VmAllocator {
            heap: spin::Mutex::new(Heap::new()),
        }
    }
}

impl Default for VmAllocator {
    fn default() -> VmAllocator {
        VmAllocator::new()
    }
}

/// Maps a large block: anonymous private pages, aligned by mapping extra and unmapping the
/// slack on either side.
fn map_large(layout: Layout) -> *mut u8 {
    let align = layout.align().max(PAGE);
    let Some((len, span)) =
        pages(layout.size()).and_then(|len| Some((len, len.checked_add(align - PAGE)?)))
    else {
        return null_mut();
    };
    let rw = ProtectionFlags::READ_WRITE;
    let Ok(base) = vm_mmap(null_mut(), span, rw, MmapFlags::anonymous_private()) else {
        return null_mut();
    };
    let Some(head) = base
        .addr()
        .checked_next_multiple_of(align)
        .map(|start| start - base.addr())
        .filter(|_| !base.is_null() && base.addr().is_multiple_of(PAGE))
    else {
        // Not a mapping this allocator could unmap page-wise later.
        let _ = vm_munmap(base, span);
        return null_mut();
    };
    let tail = span - head - len;
    // A slack that cannot be unmapped stays mapped, unused: a leak, never an error.
    if head > 0 {
        let _ = vm_munmap(base, head);
    }
    if tail > 0 {
        let _ = vm_munmap(base.wrapping_add(head + len), tail);
    }
    base.wrapping_add(head)
}

/// Resizes the large block at `block` from `old_size` to `new_size` bytes without moving it:
/// unmapping the pages no longer needed, or mapping the pages right after it if they are free.
fn resize_large(block: *mut u8, old_size: usize, new_size: usize) -> bool {
    let (Some(old_len), Some(new_len)) = (pages(old_size), pages(new_size)) else {
        return false;
    };
    match new_len.cmp(&old_len) {
        Ordering::Equal => true,
        Ordering::Less => {
            // Pages that cannot be unmapped stay mapped, unused: a leak, never an error.
            let _ = vm_munmap(block.wrapping_add(new_len), old_len - new_len);
            true
        }
        Ordering::Greater => {
            let after = block.wrapping_add(old_len);
            let more = new_len - old_len;
            let flags = MmapFlags::anonymous_private().fixed_noreplace();
            match vm_mmap(after, more, ProtectionFlags::READ_WRITE, flags) {
                Ok(got) if got.addr() == after.addr() => true,
                Ok(got) => {
                    let _ = vm_munmap(got, more);
                    false
                }
                Err(_) => false,
            }
        }
    }
}

// SAFETY: blocks handed out are disjoint (a heap block leaves the free lists or the uncarved
// stretch under the lock; a mapping is memd's fresh pages), at least `layout.size()` bytes,
// aligned to `layout.align()`, and stay valid until `dealloc`; failures return null.
unsafe impl GlobalAlloc for VmAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match kind(layout) {
            Kind::Small(class) => ptr::with_exposed_provenance_mut(self.heap.lock().alloc(class)),
            Kind::Large => map_large(layout),
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match kind(layout) {
            // SAFETY: `block` was handed out by `alloc` for this layout, hence for this class,
            // and the caller gives it back: nothing uses it any more.
            Kind::Small(class) => unsafe { self.heap.lock().push(block.addr(), class) },
            Kind::Large => {
                if let Some(len) = pages(layout.size()) {
                    // A mapping that cannot be unmapped stays: a leak, never an error.
                    let _ = vm_munmap(block, len);
                }
            }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        match (kind(layout), kind(new_layout)) {
            (Kind::Small(old), Kind::Small(new)) if old == new => return block,
            (Kind::Large, Kind::Large) if resize_large(block, layout.size(), new_size) => {
                return block;
            }
            _ => {}
        }
        // SAFETY: `new_layout` is valid and of non-zero size (the caller's contract for
        // `new_size`).
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
    use crate::global::{bind_thread, unbind_thread};
    use crate::proto::{MMAP, MUNMAP, SBRK};
    use crate::transport::doubles::FakeMemd;
    use std::sync::Arc;
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
    fn freed_blocks_are_reused() {
        let memd = bind(1 << 20, 1 << 20);
        let heap = VmAllocator::new();
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: non-zero sizes; each block is given back with its own layout once.
        unsafe {
            let a = heap.alloc(layout);
            heap.dealloc(a, layout);
            let b = heap.alloc(layout);
            assert_eq!(a, b);
            // Same class: realloc stays in place.
            assert_eq!(heap.realloc(b, layout, 120), b);
            heap.dealloc(b, Layout::from_size_align(120, 8).unwrap());
        }
        assert_eq!(memd.calls(SBRK), 1);
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
            let shrunk = heap.realloc(q, small, 70 * 1024);
            assert_eq!(shrunk, q);
            assert_eq!(memd.mapped_pages(), 150 + 18);
            heap.dealloc(moved, Layout::from_size_align(600 * 1024, 8).unwrap());
            heap.dealloc(q, Layout::from_size_align(70 * 1024, 8).unwrap());
            // Large alignment: the slack around the block is unmapped.
            let aligned = Layout::from_size_align(300 * 1024, 1 << 20).unwrap();
            let r = heap.alloc(aligned);
            assert!(r.addr().is_multiple_of(1 << 20));
            assert_eq!(memd.mapped_pages(), 75);
            // An alignment above `MAX_SMALL` keeps even a tiny block a mapping.
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
            let mut got = 0;
            while !heap
                .alloc(Layout::from_size_align(4096, 4096).unwrap())
                .is_null()
            {
                got += 1;
                assert!(got <= 16, "more than the heap holds");
            }
            assert_eq!(got, 16, "the whole 64 KiB of heap, a page at a time");
            assert!(heap.alloc(small).is_null(), "the heap is full");
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
}
