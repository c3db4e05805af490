//! talc as it comes, over the program break: its heaps grow with `vm_sbrk` when it runs out,
//! blocks above [`LARGE`] bytes are mappings of their own; nothing freed goes back to memd
//! (libvm's `VmAllocator` is talc with that added).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull, null_mut};
use libvm::large::{self, PAGE};
use talc::{OomHandler, Span, Talc};

/// The largest block the heap serves; larger ones are mapped.
pub const LARGE: usize = 128 << 10;
/// Bytes the heap grows by at least.
const GROW_STEP: usize = 128 << 10;

/// talc with memory from the break, large blocks mapped.
pub struct TalcHeap {
    heap: spin::Mutex<Talc<Break>>,
}

impl TalcHeap {
    /// An empty heap.
    pub const fn new() -> TalcHeap {
        TalcHeap {
            heap: spin::Mutex::new(Talc::new(Break { top: (0, 0) })),
        }
    }
}

/// Where talc gets memory: the break.
struct Break {
    /// The heap that ends where the break was last left, as `(base, acme)` (`(0, 0)` before
    /// the first growth).
    top: (usize, usize),
}

impl Break {
    /// Gives talc `len` bytes from the break: an extension of the top heap when they follow
    /// it, else a heap of their own.
    fn grow(talc: &mut Talc<Break>, len: usize) -> Result<(), ()> {
        let old = libvm::vm_sbrk(isize::try_from(len).map_err(drop)?).map_err(drop)?;
        let acme = old.checked_add(len).ok_or(())?;
        let at = ptr::with_exposed_provenance_mut::<u8>;
        let (base, top_acme) = talc.oom_handler.top;
        let heap = if top_acme > base && top_acme == old {
            // SAFETY: `[base, old)` is the heap talc returned last; `[old, acme)` was just
            // taken from the break and follows it, so the extension is memory nobody else uses.
            unsafe { talc.extend(Span::new(at(base), at(old)), Span::new(at(base), at(acme))) }
        } else {
            // SAFETY: `[old, acme)` was just taken from the break: readable, writable, used by
            // nobody else, not overlapping any heap of talc's, not containing address 0.
            unsafe { talc.claim(Span::new(at(old), at(acme)))? }
        };
        talc.oom_handler.top = heap
            .get_base_acme()
            .map_or((0, 0), |(b, a)| (b.addr(), a.addr()));
        Ok(())
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
        let generous = least.max(GROW_STEP);
        Break::grow(talc, generous).or_else(|()| {
            if least < generous {
                Break::grow(talc, least)
            } else {
                Err(())
            }
        })
    }
}

fn is_large(layout: Layout) -> bool {
    layout.size() > LARGE && layout.align() <= PAGE
}

// SAFETY: talc hands out disjoint blocks of at least the layout's size and alignment from
// memory taken from the break, mappings are fresh pages; both stay valid until `dealloc`.
unsafe impl GlobalAlloc for TalcHeap {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            return large::map(layout);
        }
        // SAFETY: the layout has a non-zero size (the caller's contract).
        unsafe { self.heap.lock().malloc(layout) }.map_or(null_mut(), NonNull::as_ptr)
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout) {
            large::unmap(block, layout.size());
        } else if let Some(block) = NonNull::new(block) {
            // SAFETY: `block` was allocated by talc with this layout and is given back.
            unsafe { self.heap.lock().free(block, layout) };
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        match (is_large(layout), is_large(new_layout), NonNull::new(block)) {
            (false, false, Some(at)) => {
                let mut talc = self.heap.lock();
                if new_size <= layout.size() {
                    // SAFETY: `at` is talc's block of `layout`; `new_size` is smaller, not 0.
                    unsafe { talc.shrink(at, layout, new_size) };
                    return block;
                }
                // SAFETY: `at` is talc's block of `layout`; `new_size` is larger.
                return unsafe { talc.grow(at, layout, new_size) }
                    .map_or(null_mut(), NonNull::as_ptr);
            }
            (true, true, _) => {
                let at = large::realloc(block, layout, new_size);
                if !at.is_null() {
                    return at;
                }
            }
            _ => {}
        }
        // SAFETY: `new_layout` is valid with a non-zero size.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: `block` is live for `layout.size()` bytes, `moved` is a fresh block of
            // `new_size`; `block` is given back once copied.
            unsafe {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
        }
        moved
    }
}
