//! The physical frame allocator: the frames the kernel gave memd at boot, each with a
//! reference count.
//!
//! A frame is free (count 0) or in use by `count` mappings or owners; copy-on-write and shared
//! memory raise the count with [`FrameCounts::share`], and a frame goes back to the free
//! list when [`FrameAllocator::release`] drops its count to 0. Free frames are kept on a stack
//! (last freed, first reused), which keeps recently used frames warm in the caches.
//!
//! Frames are indexed densely, in address order, across the free physical ranges given at boot;
//! an address is turned into its index with a binary search over those ranges (a handful).
//!
//! Frames are **not zeroed** here: memd zeroes a frame through the kernel trait
//! (`Kernel::zero_frame`) when it hands the frame to a process, so a frame allocated here
//! still holds whatever its last user left in it.
//!
//! Frames lent to the per-worker caches of [`crate::frame_cache`] hold count 1 here (no other
//! allocation can take them) and are counted free ([`FrameAllocator::free`]) until a cache
//! hands them out.
//!
//! Misuse (an address memd does not own, releasing or sharing a free frame) is answered with a
//! [`FrameError`]; nothing here panics.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::kernel::{FrameAddr, PAGE_SIZE};

/// Most frames one allocator manages (frame indices are `u32`); frames beyond are ignored.
pub const MAX_FRAMES: u64 = u32::MAX as u64;

/// Why the allocator refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not a page-aligned address of a frame this allocator manages.
    NotOwned,
    /// The frame is free: it cannot be shared or released.
    NotAllocated,
    /// The frame's reference count is at its maximum (`u32::MAX`).
    TooManyRefs,
    /// Not enough free frames for the request.
    OutOfFrames,
}

/// One run of managed frames, at consecutive addresses and consecutive indices.
#[derive(Clone, Copy, Debug)]
struct FrameRange {
    /// Address of the first frame.
    base: u64,
    /// Number of frames.
    frames: u64,
    /// Index of the first frame.
    first: u64,
}

/// The reference count of every managed frame, changed without the allocator's lock: a
/// count above 0 goes up or down by one atomically ([`FrameCounts::share`],
/// [`FrameCounts::release`]), never up from 0 (a free frame is the allocator's to hand out).
/// A count that falls to 0 makes the frame the allocator's again once the releaser hands it
/// over ([`FrameAllocator::freed`]): until then no allocation finds it (it is in neither the
/// free list nor its 2 MiB block's free count).
pub struct FrameCounts {
    /// Managed runs, sorted by address and by index, not overlapping.
    ranges: Vec<FrameRange>,
    /// Reference count of every frame, by index; 0 = free.
    refs: Vec<AtomicU32>,
}

impl FrameCounts {
    /// The index of `frame`, if it is a managed frame's address.
    fn index_of(&self, frame: FrameAddr) -> Option<usize> {
        if !frame.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let after = self.ranges.partition_point(|r| r.base <= frame);
        let run = self.ranges.get(after.checked_sub(1)?)?;
        let offset = (frame - run.base) / PAGE_SIZE;
        (offset < run.frames).then(|| (run.first + offset) as usize)
    }

    /// The address of the frame with index `index`.
    fn address_of(&self, index: u64) -> Option<FrameAddr> {
        let after = self.ranges.partition_point(|r| r.first <= index);
        let run = self.ranges.get(after.checked_sub(1)?)?;
        let offset = index - run.first;
        (offset < run.frames).then(|| run.base + offset * PAGE_SIZE)
    }

    /// The count of frame `index`.
    fn get(&self, index: usize) -> u32 {
        self.refs[index].load(Ordering::Acquire)
    }

    /// Sets the count of frame `index` (the allocator's, under its lock: a free frame taken).
    fn set(&self, index: usize, count: u32) {
        self.refs[index].store(count, Ordering::Release);
    }

    /// Takes free frame `index` (count 0 to 1); whether it was free.
    fn claim(&self, index: usize) -> bool {
        self.refs.get(index).is_some_and(|c| {
            c.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// The reference count of `frame`: 0 when it is free or not managed here.
    pub fn refcount(&self, frame: FrameAddr) -> u32 {
        self.index_of(frame).map_or(0, |i| self.get(i))
    }

    /// Adds a reference to an allocated frame; returns the new count.
    pub fn share(&self, frame: FrameAddr) -> Result<u32, FrameError> {
        let index = self.index_of(frame).ok_or(FrameError::NotOwned)?;
        let mut count = self.get(index);
        loop {
            match count {
                0 => return Err(FrameError::NotAllocated),
                u32::MAX => return Err(FrameError::TooManyRefs),
                _ => {}
            }
            match self.refs[index].compare_exchange_weak(
                count,
                count + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(count + 1),
                Err(now) => count = now,
            }
        }
    }

    /// Drops a reference to an allocated frame; returns the new count. At 0 the caller hands
    /// the frame to the allocator ([`FrameAllocator::freed`]).
    pub fn release(&self, frame: FrameAddr) -> Result<u32, FrameError> {
        let index = self.index_of(frame).ok_or(FrameError::NotOwned)?;
        let mut count = self.get(index);
        loop {
            if count == 0 {
                return Err(FrameError::NotAllocated);
            }
            match self.refs[index].compare_exchange_weak(
                count,
                count - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(count - 1),
                Err(now) => count = now,
            }
        }
    }

    /// Frames managed.
    fn len(&self) -> usize {
        self.refs.len()
    }
}

/// Frames lent to each cache of [`crate::frame_cache`] and not handed out yet: one counter per
/// cache, each on a cache line of its own, so that a worker handing out a frame changes a line
/// no other processor writes.
#[derive(Default)]
pub struct Cached([CacheLine; crate::frame_cache::CACHES]);

/// A counter alone on its cache line.
#[derive(Default)]
#[repr(align(64))]
struct CacheLine(AtomicU64);

impl Cached {
    /// Cache `cache` holds `n` more.
    pub fn add(&self, cache: usize, n: u64) {
        self.0[cache].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Cache `cache` holds `n` fewer.
    pub fn sub(&self, cache: usize, n: u64) {
        self.0[cache].0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Frames in all the caches.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

/// Hands out physical frames; their counts are [`FrameCounts`], shared.
pub struct FrameAllocator {
    /// The reference counts (and the ranges they index).
    counts: Arc<FrameCounts>,
    /// Indices of the free frames; the next allocation pops the last one. It may also hold
    /// frames that are not free any more (taken whole by [`FrameAllocator::alloc_huge`]) or
    /// twice: the count decides, and `alloc` skips them. Its capacity is twice the frames:
    /// compacted when full, a push never allocates.
    free_list: Vec<u32>,
    /// Free frames.
    free_count: u64,
    /// Free frames in each 2 MiB of physical memory, from `first_block`.
    block_free: Vec<u16>,
    /// The 2 MiB block (physical address / 2 MiB) `block_free` starts at.
    first_block: u64,
    /// Where the last search for a free 2 MiB stopped.
    block_cursor: usize,
    /// Frames taken for good by [`FrameAllocator::take_run`]: no longer managed.
    taken: u64,
    /// The most frames in use as of the last time a frame was freed (see
    /// [`FrameAllocator::peak_used`]).
    peak_used: u64,
    /// Frames lent to the caches and not handed out yet: free to every count. The caches
    /// lower it as they hand frames out, without this allocator's lock.
    cached: Arc<Cached>,
}

/// Frames in a 2 MiB block.
const BLOCK_FRAMES: u64 = 512;

impl FrameAllocator {
    /// An allocator over the free physical ranges `[start, end)` of `ranges`, in any order.
    ///
    /// Each range is rounded inward to whole frames; empty ranges are ignored, as are the frame
    /// at physical address 0, overlaps between ranges (a frame is managed once) and frames past
    /// [`MAX_FRAMES`]. Fresh allocations come in increasing address order.
    pub fn new(ranges: &[(u64, u64)]) -> FrameAllocator {
        let mut clean: Vec<(u64, u64)> = ranges
            .iter()
            .filter_map(|&(start, end)| {
                let start = round_up(start.max(PAGE_SIZE))?;
                let end = end & !(PAGE_SIZE - 1);
                (start < end).then_some((start, end))
            })
            .collect();
        clean.sort_unstable();

        let mut runs = Vec::with_capacity(clean.len());
        let mut total = 0;
        let mut prev_end = 0;
        for (start, end) in clean {
            let start = start.max(prev_end);
            if start >= end {
                continue;
            }
            let frames = ((end - start) / PAGE_SIZE).min(MAX_FRAMES - total);
            if frames == 0 {
                break;
            }
            runs.push(FrameRange {
                base: start,
                frames,
                first: total,
            });
            total += frames;
            prev_end = end;
        }

        // `total <= MAX_FRAMES`, so every index fits a `u32`.
        let total = total as u32;
        let first_block = runs
            .first()
            .map_or(0, |r| r.base / (BLOCK_FRAMES * PAGE_SIZE));
        let last_block = runs.last().map_or(0, |r| {
            (r.base + r.frames * PAGE_SIZE - 1) / (BLOCK_FRAMES * PAGE_SIZE)
        });
        let mut block_free = alloc::vec![0u16; (last_block + 1 - first_block) as usize];
        for r in &runs {
            for i in 0..r.frames {
                let block = (r.base + i * PAGE_SIZE) / (BLOCK_FRAMES * PAGE_SIZE);
                block_free[(block - first_block) as usize] += 1;
            }
        }
        let mut free_list = Vec::with_capacity(2 * total as usize);
        free_list.extend((0..total).rev());
        FrameAllocator {
            counts: Arc::new(FrameCounts {
                ranges: runs,
                refs: (0..total).map(|_| AtomicU32::new(0)).collect(),
            }),
            free_list,
            free_count: u64::from(total),
            block_free,
            first_block,
            block_cursor: 0,
            taken: 0,
            peak_used: 0,
            cached: Arc::new(Cached::default()),
        }
    }

    /// The counts of frames lent to caches and not handed out yet (see
    /// [`FrameAllocator::lend`]), shared with the caches.
    pub fn cached(&self) -> Arc<Cached> {
        self.cached.clone()
    }

    /// Lends up to `out.len()` free frames to cache `cache`: each now has count 1 and is
    /// counted in [`FrameAllocator::cached`] (still free to every count); how many.
    pub fn lend(&mut self, cache: usize, out: &mut [FrameAddr]) -> usize {
        let mut n = 0;
        while n < out.len()
            && let Some(frame) = self.alloc()
        {
            out[n] = frame;
            n += 1;
        }
        self.cached.add(cache, n as u64);
        n
    }

    /// Takes back frames cache `cache` did not hand out (each lent by
    /// [`FrameAllocator::lend`]): free again.
    pub fn take_back(&mut self, cache: usize, frames: &[FrameAddr]) {
        for &frame in frames {
            // Out of the cached count first: free once, not twice, to `used`.
            self.cached.sub(cache, 1);
            self.drop_ref(frame);
        }
    }

    /// The `block_free` slot of the frame at `addr`.
    fn block_slot(&mut self, addr: FrameAddr) -> Option<&mut u16> {
        let block = addr / (BLOCK_FRAMES * PAGE_SIZE);
        self.block_free
            .get_mut(block.checked_sub(self.first_block)? as usize)
    }

    /// 512 free frames at consecutive addresses making one 2 MiB-aligned block, each now with
    /// count 1 (released one by one, as any frame); the address of the first, or `None` when no
    /// block is wholly free. Not zeroed.
    pub fn alloc_huge(&mut self) -> Option<FrameAddr> {
        let n = self.block_free.len();
        let b = (0..n)
            .map(|k| (self.block_cursor + k) % n)
            .find(|&b| u64::from(self.block_free[b]) == BLOCK_FRAMES)?;
        self.block_cursor = b;
        let base = (self.first_block + b as u64) * BLOCK_FRAMES * PAGE_SIZE;
        for i in 0..BLOCK_FRAMES {
            let index = self.index_of(base + i * PAGE_SIZE)?;
            if self.counts.get(index) != 0 {
                return None;
            }
        }
        for i in 0..BLOCK_FRAMES {
            if let Some(index) = self.index_of(base + i * PAGE_SIZE) {
                self.counts.set(index, 1);
            }
        }
        self.block_free[b] = 0;
        self.free_count -= BLOCK_FRAMES;
        Some(base)
    }

    /// Rebuilds the free list from the counts: every free frame once.
    fn compact(&mut self) {
        self.free_list.clear();
        let counts = &self.counts;
        let free = (0..counts.len()).rev().filter(|&i| counts.get(i) == 0);
        self.free_list.extend(free.map(|i| i as u32));
    }

    /// `n` free frames at consecutive addresses (the highest such run), taken for good: off
    /// the free list and out of [`FrameAllocator::total`] (their count stays 1, so they are
    /// never handed out again); the address of the first, or `None` when no run is long
    /// enough. O(frames): for memd's own memory, rarely.
    pub fn take_run(&mut self, n: u64) -> Option<FrameAddr> {
        if n == 0 {
            return None;
        }
        let found = self.counts.ranges.iter().rev().find_map(|r| {
            let mut run = 0;
            for i in (r.first..r.first + r.frames).rev() {
                run = if self.counts.get(i as usize) == 0 {
                    run + 1
                } else {
                    0
                };
                if run == n {
                    return Some(i);
                }
            }
            None
        })?;
        let (lo, hi) = (found as u32, (found + n) as u32);
        (lo..hi).for_each(|i| self.counts.set(i as usize, 1));
        self.free_list.retain(|&i| i < lo || i >= hi);
        self.taken += n;
        self.free_count -= n;
        let first = self.address_of(found)?;
        for i in 0..n {
            if let Some(slot) = self.block_slot(first + i * PAGE_SIZE) {
                *slot -= 1;
            }
        }
        Some(first)
    }

    /// A free frame, now with count 1, or `None` when every frame is in use. Not zeroed.
    pub fn alloc(&mut self) -> Option<FrameAddr> {
        loop {
            let index = self.free_list.pop()?;
            // An entry of a frame allocated since (a 2 MiB block, or twice listed) is skipped.
            if !self.counts.claim(index as usize) {
                continue;
            }
            self.free_count -= 1;
            let frame = self.address_of(u64::from(index))?;
            if let Some(slot) = self.block_slot(frame) {
                *slot -= 1;
            }
            return Some(frame);
        }
    }

    /// Appends `n` free frames, each now with count 1, to `out`; or, when fewer than `n` are
    /// free, allocates nothing and leaves `out` unchanged. Not zeroed.
    pub fn alloc_many(&mut self, n: usize, out: &mut Vec<FrameAddr>) -> Result<(), FrameError> {
        if n as u64 > self.free_count {
            return Err(FrameError::OutOfFrames);
        }
        out.try_reserve(n).map_err(|_| FrameError::OutOfFrames)?;
        for _ in 0..n {
            if let Some(frame) = self.alloc() {
                out.push(frame);
            }
        }
        Ok(())
    }

    /// The reference counts, shared (changed without this allocator's lock).
    pub fn counts(&self) -> Arc<FrameCounts> {
        self.counts.clone()
    }

    /// Drops a reference to an allocated frame; returns the new count. At 0 the frame is free
    /// again, and the next [`FrameAllocator::alloc`] returns it.
    pub fn release(&mut self, frame: FrameAddr) -> Result<u32, FrameError> {
        let now = self.counts.release(frame)?;
        if now == 0 {
            self.freed(frame);
        }
        Ok(now)
    }

    /// Takes back `frame`, whose count its last holder just dropped to 0
    /// ([`FrameCounts::release`]): free again, and the next [`FrameAllocator::alloc`] returns
    /// it.
    pub fn freed(&mut self, frame: FrameAddr) {
        let Some(index) = self.counts.index_of(frame) else {
            return;
        };
        if self.free_list.len() == self.free_list.capacity() {
            self.compact();
        }
        // Index fits a `u32` (at most `MAX_FRAMES` frames); the list has room for twice the
        // frames and holds at most as many as are free after a compaction, so this push never
        // allocates. (A compaction just now listed the frame already: listed twice, the count
        // decides.)
        self.free_list.push(index as u32);
        // Frames in use fall only here: the count so far goes into the high-water mark.
        self.peak_used = self.peak_used.max(self.used());
        self.free_count += 1;
        if let Some(slot) = self.block_slot(frame) {
            *slot += 1;
        }
    }

    /// Drops a reference memd holds on `frame` (a mapping's, a shared object's, a page
    /// table's). Such a reference always exists, so a refusal means memd's own records are
    /// wrong: it is logged, the frame is left as it is (never freed twice), and debug builds
    /// stop there.
    pub fn drop_ref(&mut self, frame: FrameAddr) {
        if let Err(e) = self.release(frame) {
            released_without_a_reference(frame, e);
        }
    }

    /// Whether `frame` is a page-aligned address of a frame managed here (free or not).
    pub fn owns(&self, frame: FrameAddr) -> bool {
        self.index_of(frame).is_some()
    }

    /// Number of frames managed (those taken for good are not).
    pub fn total(&self) -> u64 {
        self.counts.len() as u64 - self.taken
    }

    /// Number of free frames (those lent to caches and not handed out yet included).
    pub fn free(&self) -> u64 {
        self.free_count + self.cached.total()
    }

    /// Number of frames in use (count above 0).
    pub fn used(&self) -> u64 {
        self.total() - self.free()
    }

    /// The most frames in use at once since memd started (the frames memd's heap took for
    /// good never count).
    pub fn peak_used(&self) -> u64 {
        self.peak_used.max(self.used())
    }

    /// The index of `frame`, if it is a managed frame's address.
    fn index_of(&self, frame: FrameAddr) -> Option<usize> {
        self.counts.index_of(frame)
    }

    /// The address of the frame with index `index`.
    fn address_of(&self, index: u64) -> Option<FrameAddr> {
        self.counts.address_of(index)
    }
}

impl fmt::Debug for FrameAllocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameAllocator")
            .field("ranges", &self.counts.ranges)
            .field("total", &self.total())
            .field("free", &self.free())
            .finish()
    }
}

/// Reports a reference memd dropped that did not exist: memd's own records are wrong. Logged,
/// the frame left as it is (never freed twice); debug builds stop here.
pub fn released_without_a_reference(frame: FrameAddr, e: FrameError) {
    log::error!("memd: frame {frame:#x} released without a reference: {e:?}");
    debug_assert!(
        false,
        "frame {frame:#x} released without a reference: {e:?}"
    );
}

/// `addr` rounded up to a page boundary, or `None` past the top of the address space.
fn round_up(addr: u64) -> Option<u64> {
    addr.checked_add(PAGE_SIZE - 1)
        .map(|a| a & !(PAGE_SIZE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE;

    #[test]
    fn counts_and_rounding() {
        // [0x1800, 0x5800) rounds to [0x2000, 0x5000): 3 frames.
        let frames = FrameAllocator::new(&[(0x1800, 0x5800), (0x9000, 0x9000), (0xA000, 0xAFFF)]);
        assert_eq!(frames.total(), 3);
        assert_eq!(frames.free(), 3);
        assert_eq!(frames.used(), 0);
        assert!(frames.owns(0x2000));
        assert!(frames.owns(0x4000));
        assert!(!frames.owns(0x1000));
        assert!(!frames.owns(0x5000));
        assert!(!frames.owns(0xA000));
        assert!(!frames.owns(0x2001));
    }

    #[test]
    fn every_frame_allocated_exactly_once() {
        let mut frames = FrameAllocator::new(&[(0x10_0000, 0x20_0000)]);
        let total = frames.total();
        assert_eq!(total, 256);
        let mut got = Vec::new();
        while let Some(f) = frames.alloc() {
            assert!(frames.owns(f));
            assert_eq!(frames.counts().refcount(f), 1);
            got.push(f);
        }
        assert_eq!(got.len() as u64, total);
        assert_eq!(frames.used(), total);
        assert_eq!(frames.free(), 0);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, got, "fresh frames come in address order, once each");
    }

    #[test]
    fn release_in_any_order_and_lifo_reuse() {
        let mut frames = FrameAllocator::new(&[(0, 8 * P)]);
        let all: Vec<_> = core::iter::from_fn(|| frames.alloc()).collect();
        assert_eq!(all.len(), 7);
        for &f in [all[3], all[0], all[6]].iter() {
            assert_eq!(frames.release(f), Ok(0));
            assert_eq!(frames.counts().refcount(f), 0);
        }
        assert_eq!(frames.free(), 3);
        assert_eq!(frames.alloc(), Some(all[6]));
        assert_eq!(frames.alloc(), Some(all[0]));
        assert_eq!(frames.alloc(), Some(all[3]));
        assert_eq!(frames.alloc(), None);
    }

    #[test]
    fn shared_frame_freed_at_zero() {
        let mut frames = FrameAllocator::new(&[(P, 3 * P)]);
        let f = frames.alloc().unwrap();
        assert_eq!(frames.counts().share(f), Ok(2));
        assert_eq!(frames.counts().share(f), Ok(3));
        assert_eq!(frames.counts().refcount(f), 3);
        assert_eq!(frames.release(f), Ok(2));
        assert_eq!(frames.release(f), Ok(1));
        assert_eq!(frames.used(), 1);
        assert_eq!(frames.release(f), Ok(0));
        assert_eq!(frames.used(), 0);
        assert_eq!(frames.alloc(), Some(f));
    }

    #[test]
    fn misuse_is_an_error() {
        let mut frames = FrameAllocator::new(&[(P, 3 * P)]);
        assert_eq!(frames.release(P), Err(FrameError::NotAllocated));
        assert_eq!(frames.counts().share(P), Err(FrameError::NotAllocated));
        assert_eq!(frames.release(10 * P), Err(FrameError::NotOwned));
        assert_eq!(frames.counts().share(0), Err(FrameError::NotOwned));
        assert_eq!(frames.release(P + 8), Err(FrameError::NotOwned));
        assert_eq!(frames.counts().refcount(10 * P), 0);
        let f = frames.alloc().unwrap();
        assert_eq!(frames.release(f), Ok(0));
        assert_eq!(frames.release(f), Err(FrameError::NotAllocated));
        assert_eq!(frames.free(), 2, "a double release does not free twice");
    }

    #[test]
    fn a_huge_block_is_a_wholly_free_aligned_2_mib_and_comes_back_page_by_page() {
        const MIB2: u64 = 2 << 20;
        // Frames from 2 MiB to 6 MiB (two whole blocks) and one more page.
        let mut frames = FrameAllocator::new(&[(MIB2, 3 * MIB2 + P)]);
        let single = frames.alloc().unwrap();
        assert_eq!(single, MIB2, "fresh frames in increasing address order");
        // The first block has a page taken: the second is the huge one.
        assert_eq!(frames.alloc_huge(), Some(2 * MIB2));
        assert_eq!(frames.free(), 2 * 512 + 1 - 1 - 512);
        assert_eq!(frames.alloc_huge(), None, "no other block is wholly free");
        // The list's entries of the block are skipped: no frame of it is handed out again.
        let mut rest = Vec::new();
        while let Some(f) = frames.alloc() {
            assert!(
                !(2 * MIB2..3 * MIB2).contains(&f),
                "{f:#x} is in the huge block"
            );
            rest.push(f);
        }
        assert_eq!(rest.len(), 512 - 1 + 512 + 1 - 512);
        // Released page by page, the block is whole again.
        for i in 0..512 {
            assert_eq!(frames.release(2 * MIB2 + i * P), Ok(0));
        }
        assert_eq!(frames.free(), 512);
        assert_eq!(frames.alloc_huge(), Some(2 * MIB2));
        for f in rest.into_iter().chain([single]) {
            frames.release(f).unwrap();
        }
        assert_eq!(frames.alloc_huge(), Some(MIB2));
    }

    #[test]
    fn a_run_is_taken_for_good_from_the_top() {
        let mut frames = FrameAllocator::new(&[(P, 9 * P)]);
        let low = frames.alloc().unwrap();
        assert_eq!(frames.take_run(3), Some(6 * P), "the highest run of three");
        assert_eq!((frames.total(), frames.free()), (5, 4));
        assert_eq!(frames.take_run(5), None, "no run of five is left");
        let rest: Vec<_> = core::iter::from_fn(|| frames.alloc()).collect();
        assert_eq!(rest.len(), 4);
        assert!(
            rest.iter()
                .all(|&f| !(6 * P..9 * P).contains(&f) && f != low)
        );
        assert_eq!(frames.take_run(0), None);
    }

    #[test]
    fn alloc_many_is_all_or_nothing() {
        let mut frames = FrameAllocator::new(&[(P, 5 * P)]);
        let mut out = vec![0xdead_0000];
        assert_eq!(frames.alloc_many(5, &mut out), Err(FrameError::OutOfFrames));
        assert_eq!(out, [0xdead_0000]);
        assert_eq!(frames.free(), 4);
        assert_eq!(frames.alloc_many(3, &mut out), Ok(()));
        assert_eq!(out, [0xdead_0000, P, 2 * P, 3 * P]);
        assert!(out[1..].iter().all(|&f| frames.counts().refcount(f) == 1));
        assert_eq!(frames.alloc_many(0, &mut out), Ok(()));
        assert_eq!(frames.alloc_many(2, &mut out), Err(FrameError::OutOfFrames));
        assert_eq!(frames.alloc_many(1, &mut out), Ok(()));
        assert_eq!(frames.free(), 0);
    }

    #[test]
    fn several_ranges_with_gaps() {
        // Out of order, overlapping, and with a gap in between.
        let mut frames =
            FrameAllocator::new(&[(0x10_0000, 0x10_3000), (0x1000, 0x3000), (0x2000, 0x4000)]);
        assert_eq!(frames.total(), 6);
        let all: Vec<_> = core::iter::from_fn(|| frames.alloc()).collect();
        assert_eq!(
            all,
            [0x1000, 0x2000, 0x3000, 0x10_0000, 0x10_1000, 0x10_2000]
        );
        assert!(!frames.owns(0x4000));
        assert!(!frames.owns(0xF_F000));
        assert_eq!(frames.release(0x10_1000), Ok(0));
        assert_eq!(frames.release(0x3000), Ok(0));
        assert_eq!(frames.counts().refcount(0x10_1000), 0);
        assert_eq!(frames.counts().refcount(0x10_2000), 1);
        assert_eq!(frames.alloc(), Some(0x3000));
        assert_eq!(frames.alloc(), Some(0x10_1000));
    }

    #[test]
    fn frame_zero_is_never_handed_out() {
        let mut frames = FrameAllocator::new(&[(0, P), (0, 2 * P)]);
        assert_eq!(frames.total(), 1);
        assert!(!frames.owns(0));
        assert_eq!(frames.alloc(), Some(P));
        assert_eq!(frames.alloc(), None);
        let empty = FrameAllocator::new(&[(0, P), (5, 9), (u64::MAX - 5, u64::MAX)]);
        assert_eq!(empty.total(), 0);
    }
}
