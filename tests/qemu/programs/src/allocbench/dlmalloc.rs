//! dlmalloc over the program break: its segments come from `vm_sbrk` (and go back to it when
//! they are at the break and it trims them), blocks above [`LARGE`] bytes are mappings of
//! their own.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, null_mut};
use dlmalloc::Dlmalloc;
use libvm::large::{self, PAGE};

/// The largest block the heap serves; larger ones are mapped.
pub const LARGE: usize = 128 << 10;

/// dlmalloc with memory from the break, large blocks mapped.
pub struct DlHeap {
    heap: spin::Mutex<Dlmalloc<Break>>,
}

impl DlHeap {
    /// An empty heap.
    pub const fn new() -> DlHeap {
        DlHeap {
            heap: spin::Mutex::new(Dlmalloc::new_with_allocator(Break)),
        }
    }
}

/// dlmalloc's system memory: the break.
struct Break;

/// Moves the break back by `len` bytes if it is at `from + len`.
fn give_back(from: usize, len: usize) -> bool {
    let Ok(shrink) = isize::try_from(len) else {
        return false;
    };
    libvm::vm_sbrk(0) == Ok(from + len) && libvm::vm_sbrk(-shrink).is_ok()
}

// SAFETY: `alloc` returns memory just taken from the break (or null), of the size it says;
// the rest only gives memory back at the break's end.
unsafe impl dlmalloc::Allocator for Break {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        match isize::try_from(size).map(libvm::vm_sbrk) {
            Ok(Ok(old)) => (ptr::with_exposed_provenance_mut(old), size, 0),
            _ => (null_mut(), 0, 0),
        }
    }

    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        null_mut()
    }

    fn free_part(&self, at: *mut u8, old: usize, new: usize) -> bool {
        give_back(at.addr() + new, old - new)
    }

    fn free(&self, at: *mut u8, size: usize) -> bool {
        give_back(at.addr(), size)
    }

    fn can_release_part(&self, _: u32) -> bool {
        true
    }

    fn allocates_zeros(&self) -> bool {
        false
    }

    fn page_size(&self) -> usize {
        PAGE
    }
}

fn is_large(layout: Layout) -> bool {
    layout.size() > LARGE && layout.align() <= PAGE
}

// SAFETY: dlmalloc hands out disjoint blocks of at least the layout's size and alignment from
// memory taken from the break, mappings are fresh pages; both stay valid until `dealloc`.
unsafe impl GlobalAlloc for DlHeap {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            return large::map(layout);
        }
        // SAFETY: the layout is valid (the caller's contract).
        unsafe { self.heap.lock().malloc(layout.size(), layout.align()) }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout) {
            large::unmap(block, layout.size());
        } else {
            // SAFETY: `block` was allocated by dlmalloc with this layout and is given back.
            unsafe { self.heap.lock().free(block, layout.size(), layout.align()) };
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        match (is_large(layout), is_large(new_layout)) {
            (false, false) => {
                // SAFETY: `block` is dlmalloc's block of `layout`; `new_size` is not 0.
                return unsafe {
                    self.heap
                        .lock()
                        .realloc(block, layout.size(), layout.align(), new_size)
                };
            }
            (true, true) => {
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
