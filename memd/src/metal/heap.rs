//! memd's own allocator, over memory mapped eagerly at start: a stretch of its frames that it
//! keeps for itself and reaches through its window (the kernel mapped the window at boot, so no
//! access to it ever faults; a fault of memd would be fatal).
//!
//! Power-of-two blocks, 16 bytes and up, each aligned to its size within the arena; freed
//! blocks go onto one free list per size and are reused; new blocks are bumped from the arena.
//! Simple and bounded: memd's allocations are few kinds of the same sizes over and over
//! (region maps, page maps, process records), so the free lists stop the arena from growing
//! across spawn/exit cycles. When the arena is spent an allocation returns null, and the
//! `alloc` error handler stops memd (reported by the kernel as the pager's end).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use spin::Mutex;

const MIN_SHIFT: u32 = 4;
const CLASSES: usize = 40;

struct Arena {
    base: usize,
    next: usize,
    end: usize,
    free: [usize; CLASSES],
}

/// The allocator: empty until [`MemdHeap::init`].
pub struct MemdHeap(Mutex<Arena>);

impl MemdHeap {
    /// An allocator with no arena yet (every allocation fails).
    pub const fn new() -> MemdHeap {
        MemdHeap(Mutex::new(Arena {
            base: 0,
            next: 0,
            end: 0,
            free: [0; CLASSES],
        }))
    }

    /// Gives the allocator `[base, base + len)`, mapped read/write for good.
    ///
    /// # Safety
    /// The range must be mapped, writable, and used by nothing else, forever.
    pub unsafe fn init(&self, base: usize, len: usize) {
        let mut a = self.0.lock();
        a.base = base;
        a.next = base;
        a.end = base + len;
    }
}

fn class(layout: Layout) -> Option<usize> {
    let need = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
    let block = need.checked_next_power_of_two()?;
    let c = (block.trailing_zeros() - MIN_SHIFT) as usize;
    (c < CLASSES).then_some(c)
}

// SAFETY: blocks are handed out once (bumped from the arena or popped from a free list) until
// freed; each is `1 << (class + 4)` bytes, aligned to its size relative to an arena base that is
// page aligned, so it satisfies the layout's size and alignment (up to the page, and beyond
// because the bump pointer is rounded to the block size). The lock serializes every change.
unsafe impl GlobalAlloc for MemdHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            return null_mut();
        };
        let size = 1usize << (c as u32 + MIN_SHIFT);
        let mut a = self.0.lock();
        let head = a.free[c];
        if head != 0 {
            // SAFETY: a free block holds the address of the next free block of its class in
            // its first word (written by `dealloc`), and lies in the arena.
            a.free[c] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        let start = a.next.next_multiple_of(size);
        match start.checked_add(size) {
            Some(end) if end <= a.end => {
                // The skipped alignment gap goes to the free lists of the sizes that fit it.
                let mut gap = a.next;
                while gap < start {
                    let k = (gap.trailing_zeros().min((start - gap).ilog2()) - MIN_SHIFT) as usize;
                    if k < CLASSES {
                        // SAFETY: the gap is unused arena memory, block aligned.
                        unsafe { *(gap as *mut usize) = a.free[k] };
                        a.free[k] = gap;
                    }
                    gap += 1 << (k as u32 + MIN_SHIFT);
                }
                a.next = end;
                start as *mut u8
            }
            _ => null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            return;
        };
        let mut a = self.0.lock();
        // SAFETY: `ptr` is a block of class `c` this allocator handed out (the caller's
        // contract) and no longer used: its first word now links the free list.
        unsafe { *(ptr as *mut usize) = a.free[c] };
        a.free[c] = ptr as usize;
    }
}
