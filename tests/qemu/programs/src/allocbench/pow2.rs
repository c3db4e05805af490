//! libvm's allocator before it was talc, kept as allocbench's baseline: power-of-two blocks.
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
//! up to `MAX_SMALL` come from the heap; anything larger is a mapping of its own. The heap
//! grows with `vm_sbrk`; memory taken from the break is kept for reuse, never released. When
//! the memory sbrk returns does not start where the heap ended, the rest of the old stretch
//! goes onto the free lists and the new stretch is used from its start.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, null_mut};
use libvm::large::{self, PAGE};
use libvm::vm_sbrk;

/// log2 of the smallest block: room for a free-list link, and malloc's usual alignment.
const MIN_SHIFT: u32 = 4;
/// The smallest block.
const MIN_BLOCK: usize = 1 << MIN_SHIFT;
/// log2 of [`MAX_SMALL`].
const MAX_SHIFT: u32 = 16;
/// The largest block the heap serves; larger layouts (size or alignment) are mapped.
const MAX_SMALL: usize = 1 << MAX_SHIFT;
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

/// The power-of-two allocator: small blocks from a heap grown with `vm_sbrk`, large ones mapped
/// with `vm_mmap` (see the module documentation).
pub struct Pow2Heap {
    heap: spin::Mutex<Heap>,
}

impl Pow2Heap {
    /// An allocator with an empty heap.
    pub const fn new() -> Pow2Heap {
        Pow2Heap {
            heap: spin::Mutex::new(Heap::new()),
        }
    }
}

// SAFETY: blocks handed out are disjoint (a heap block leaves the free lists or the uncarved
// stretch under the lock; a mapping is memd's fresh pages), at least `layout.size()` bytes,
// aligned to `layout.align()`, and stay valid until `dealloc`; failures return null.
unsafe impl GlobalAlloc for Pow2Heap {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match kind(layout) {
            Kind::Small(class) => ptr::with_exposed_provenance_mut(self.heap.lock().alloc(class)),
            Kind::Large => large::map(layout),
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match kind(layout) {
            // SAFETY: `block` was handed out by `alloc` for this layout, hence for this class,
            // and the caller gives it back: nothing uses it any more.
            Kind::Small(class) => unsafe { self.heap.lock().push(block.addr(), class) },
            Kind::Large => large::unmap(block, layout.size()),
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        match (kind(layout), kind(new_layout)) {
            (Kind::Small(old), Kind::Small(new)) if old == new => return block,
            (Kind::Large, Kind::Large) => {
                let at = large::realloc(block, layout, new_size);
                if !at.is_null() {
                    return at;
                }
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
