//! The kernel's own frame pool: frames for page tables and for the images of the boot
//! programs. A bitmap over one contiguous physical range, taken from RAM at boot; every frame
//! handed out is zeroed. Every other free frame belongs to the pager.

use super::boot::phys_to_virt;

/// Size of a page and of a frame.
pub const PAGE: u64 = 4096;
/// The most frames the pool manages (32 MiB).
pub const POOL_MAX_FRAMES: usize = 8192;

/// A bitmap allocator over `[base, base + count * PAGE)`.
pub struct FramePool {
    base: u64,
    count: usize,
    used: [u64; POOL_MAX_FRAMES / 64],
    in_use: usize,
}

impl FramePool {
    /// An empty pool.
    pub const fn new() -> FramePool {
        FramePool {
            base: 0,
            count: 0,
            used: [0; POOL_MAX_FRAMES / 64],
            in_use: 0,
        }
    }

    /// Takes over `count` frames from physical address `base` (page aligned, in the window).
    pub fn init(&mut self, base: u64, count: usize) {
        self.base = base;
        self.count = count.min(POOL_MAX_FRAMES);
    }

    /// Frames handed out and not yet returned.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Frames free.
    pub fn free_frames(&self) -> usize {
        self.count - self.in_use
    }

    fn is_used(&self, i: usize) -> bool {
        self.used[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, used: bool) {
        if used {
            self.used[i / 64] |= 1 << (i % 64);
        } else {
            self.used[i / 64] &= !(1 << (i % 64));
        }
    }

    /// One zeroed frame: the first free one, found a word of the bitmap at a time.
    pub fn alloc(&mut self) -> Option<u64> {
        let w = self.used.iter().position(|&bits| bits != u64::MAX)?;
        let i = w * 64 + self.used[w].trailing_ones() as usize;
        if i >= self.count {
            return None;
        }
        self.set(i, true);
        self.in_use += 1;
        let pa = self.base + i as u64 * PAGE;
        // SAFETY: as in `alloc_contiguous`: the frame is in the pool, inside the window, and
        // was free, so nothing else refers to it.
        unsafe { core::ptr::write_bytes(phys_to_virt(pa) as *mut u8, 0, PAGE as usize) };
        Some(pa)
    }

    /// `n` physically contiguous zeroed frames; the physical address of the first.
    pub fn alloc_contiguous(&mut self, n: usize) -> Option<u64> {
        if n == 0 || n > self.count {
            return None;
        }
        let mut run = 0;
        for i in 0..self.count {
            run = if self.is_used(i) { 0 } else { run + 1 };
            if run == n {
                let first = i + 1 - n;
                for j in first..=i {
                    self.set(j, true);
                }
                self.in_use += n;
                let pa = self.base + first as u64 * PAGE;
                // SAFETY: the frames are in the pool, which lies in RAM mapped by the window,
                // and were free: nothing else refers to them.
                unsafe {
                    core::ptr::write_bytes(phys_to_virt(pa) as *mut u8, 0, n * PAGE as usize)
                };
                return Some(pa);
            }
        }
        None
    }

    /// Whether `pa` is a frame of the pool.
    pub fn contains(&self, pa: u64) -> bool {
        pa >= self.base && pa < self.base + self.count as u64 * PAGE
    }

    /// Returns `n` frames from `pa` (ignores frames that are not the pool's or not in use).
    pub fn free_contiguous(&mut self, pa: u64, n: usize) {
        for k in 0..n as u64 {
            let f = pa + k * PAGE;
            if self.contains(f) {
                let i = ((f - self.base) / PAGE) as usize;
                if self.is_used(i) {
                    self.set(i, false);
                    self.in_use -= 1;
                }
            }
        }
    }

    /// Returns one frame.
    pub fn free(&mut self, pa: u64) {
        self.free_contiguous(pa, 1);
    }
}
