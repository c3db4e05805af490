//! The programs' global allocator: libvm's [`VmAllocator`], counting what is asked of it (as
//! the Linux peer's benchmarks count what they ask of glibc's malloc): the bytes of the blocks
//! live now and their peak, and the calls. A few atomic additions a call; the real-program
//! benchmark (`realwork`) reports the peak beside the resident memory memd counts.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use libvm::VmAllocator;

/// Blocks above this many bytes are counted as big (the peer's threshold).
const BIG: usize = 64 * 1024;

/// [`VmAllocator`], counting.
pub struct Counting {
    heap: VmAllocator,
    live: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
    big: AtomicUsize,
    zeroed: AtomicUsize,
}

/// The counts of [`Counting`] at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Asked {
    /// Bytes of the blocks live now, as asked for (not rounded).
    pub live: usize,
    /// The most `live` has been since the last [`Counting::restart_peak`].
    pub peak: usize,
    /// Calls that handed out a block: allocations (zeroed or not) and reallocations.
    pub calls: usize,
    /// Of those, the calls for more than 64 KiB.
    pub big: usize,
    /// Of those, the zeroed allocations.
    pub zeroed: usize,
}

impl Counting {
    /// A counting allocator over an empty `VmAllocator` (for a `#[global_allocator]`).
    pub const fn new() -> Counting {
        Counting {
            heap: VmAllocator::new(),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            big: AtomicUsize::new(0),
            zeroed: AtomicUsize::new(0),
        }
    }

    /// Names this allocator's heap as the one `fork` holds (libvm's
    /// [`VmAllocator::hold_across_fork`]).
    pub fn hold_across_fork(&'static self) {
        self.heap.hold_across_fork();
    }

    /// The counts now.
    pub fn asked(&self) -> Asked {
        Asked {
            live: self.live.load(Relaxed),
            peak: self.peak.load(Relaxed),
            calls: self.calls.load(Relaxed),
            big: self.big.load(Relaxed),
            zeroed: self.zeroed.load(Relaxed),
        }
    }

    /// Starts a new peak from what is live now.
    pub fn restart_peak(&self) {
        self.peak.store(self.live.load(Relaxed), Relaxed);
    }

    fn handed_out(&self, block: *mut u8, size: usize) {
        if block.is_null() {
            return;
        }
        let live = self.live.fetch_add(size, Relaxed) + size;
        self.peak.fetch_max(live, Relaxed);
        self.calls.fetch_add(1, Relaxed);
        if size > BIG {
            self.big.fetch_add(1, Relaxed);
        }
    }
}

impl Default for Counting {
    fn default() -> Counting {
        Counting::new()
    }
}

// SAFETY: every call is `VmAllocator`'s, with the caller's arguments; the counting only reads
// sizes and the returned pointer.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let block = unsafe { self.heap.alloc(layout) };
        self.handed_out(block, layout.size());
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let block = unsafe { self.heap.alloc_zeroed(layout) };
        if !block.is_null() {
            self.zeroed.fetch_add(1, Relaxed);
        }
        self.handed_out(block, layout.size());
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        self.live.fetch_sub(layout.size(), Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { self.heap.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let moved = unsafe { self.heap.realloc(block, layout, new_size) };
        if !moved.is_null() {
            self.live.fetch_sub(layout.size(), Relaxed);
            self.handed_out(moved, new_size);
        }
        moved
    }
}
