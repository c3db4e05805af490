//! memd's frames: the allocator behind one lock, and a cache of free frames for each of
//! memd's threads in front of it, so that faults served at once on several processors do not
//! all meet at that lock (as Linux's per-CPU page lists, Zircon's per-CPU PMM caches).
//!
//! A thread's cache ([`crate::kernel::Kernel::worker`] says which is the caller's) is
//! refilled from the allocator [`BATCH`] frames at a time, under the allocator's lock once,
//! and hands them out one by one under its own lock, which only its thread takes but for a
//! drain; its count of them ([`Cached`]) is alone on its cache line. A frame in a cache has
//! count 1 in the allocator (nothing else can take it) and counts as free everywhere: the
//! statistics, the out-of-memory policy and the frame tests see the same numbers as without
//! caches. When the allocator runs dry, every cache is drained back into it before an
//! allocation is refused, so no process is refused or killed for memory a cache holds; so is
//! a search for a whole 2 MiB block or a run for memd's own memory that failed.
//!
//! The reference counts are atomics ([`FrameCounts`]): sharing a frame, reading its count and
//! dropping a reference take no lock; only a frame whose count falls to 0 goes back to the
//! allocator under its lock.
//!
//! Lock order (with the core's): an address space, the shared objects, a cache, the
//! allocator; nothing takes a cache's lock while holding the allocator's.

use alloc::sync::Arc;
use spin::{Mutex, MutexGuard};

use crate::frames::{Cached, FrameAllocator, FrameCounts, FrameError};
use crate::kernel::FrameAddr;
use alloc::vec::Vec;

/// Caches, one for each memd thread (a thread's index is taken modulo this).
pub const CACHES: usize = 8;
/// Frames a cache takes from the allocator at a time (and holds at most).
pub const BATCH: usize = 32;

/// One thread's free frames.
struct Cache {
    frames: [FrameAddr; BATCH],
    len: usize,
}

/// The frame allocator and the caches in front of it.
pub struct Frames {
    pool: Mutex<FrameAllocator>,
    caches: [Mutex<Cache>; CACHES],
    /// Frames in the caches (the allocator's [`FrameAllocator::cached`]).
    cached: Arc<Cached>,
    /// The reference counts (the allocator's [`FrameAllocator::counts`]).
    counts: Arc<FrameCounts>,
}

impl Frames {
    /// The caches, empty, in front of `pool`.
    pub fn new(pool: FrameAllocator) -> Frames {
        Frames {
            cached: pool.cached(),
            counts: pool.counts(),
            pool: Mutex::new(pool),
            caches: [const {
                Mutex::new(Cache {
                    frames: [0; BATCH],
                    len: 0,
                })
            }; CACHES],
        }
    }

    /// The allocator itself, locked: its figures, and what it does off the fault path.
    pub fn lock(&self) -> MutexGuard<'_, FrameAllocator> {
        self.pool.lock()
    }

    /// The reference count of `frame` (0: free or not memd's), without a lock.
    pub fn refcount(&self, frame: FrameAddr) -> u32 {
        self.counts.refcount(frame)
    }

    /// Adds a reference to an allocated frame, without a lock; the new count.
    pub fn share(&self, frame: FrameAddr) -> Result<u32, FrameError> {
        self.counts.share(frame)
    }

    /// Drops a reference memd holds on `frame` (see [`FrameAllocator::drop_ref`]): without a
    /// lock, but for the allocator's when it was the last. The caller must not hold the
    /// allocator's lock.
    pub fn drop_ref(&self, frame: FrameAddr) {
        match self.counts.release(frame) {
            Ok(0) => self.pool.lock().freed(frame),
            Ok(_) => {}
            Err(e) => crate::frames::released_without_a_reference(frame, e),
        }
    }

    /// A free frame for memd thread `worker`, now with count 1, from its cache (refilled when
    /// empty); `None` only when no frame is free anywhere. Not zeroed. The caller must not
    /// hold the allocator's lock.
    pub fn alloc(&self, worker: usize) -> Option<FrameAddr> {
        {
            let index = worker % CACHES;
            let mut cache = self.caches[index].lock();
            if cache.len == 0 {
                let c = &mut *cache;
                c.len = self.pool.lock().lend(index, &mut c.frames);
            }
            if cache.len > 0 {
                cache.len -= 1;
                self.cached.sub(index, 1);
                return Some(cache.frames[cache.len]);
            }
        }
        // The allocator is dry: what the other caches hold is the last memory there is.
        self.drain();
        self.pool.lock().alloc()
    }

    /// Appends `n` free frames, each now with count 1, to `out`, after draining the caches if
    /// fewer are free with them full; or, when fewer than `n` are free, nothing (see
    /// [`FrameAllocator::alloc_many`]). The caller must not hold the allocator's lock.
    pub fn alloc_many(&self, n: usize, out: &mut Vec<FrameAddr>) -> Result<(), FrameError> {
        match self.pool.lock().alloc_many(n, out) {
            Err(FrameError::OutOfFrames) if self.cached.total() > 0 => {}
            done => return done,
        }
        self.drain();
        self.pool.lock().alloc_many(n, out)
    }

    /// 512 free frames making one 2 MiB-aligned block (see [`FrameAllocator::alloc_huge`]),
    /// after draining the caches if none is wholly free with them full. The caller must not
    /// hold the allocator's lock.
    pub fn alloc_huge(&self) -> Option<FrameAddr> {
        if let Some(base) = self.pool.lock().alloc_huge() {
            return Some(base);
        }
        if self.cached.total() == 0 {
            return None;
        }
        self.drain();
        self.pool.lock().alloc_huge()
    }

    /// `n` free frames at consecutive addresses taken for good (see
    /// [`FrameAllocator::take_run`]), after draining the caches if no such run is free with
    /// them full. The caller must not hold the allocator's lock.
    pub fn take_run(&self, n: u64) -> Option<FrameAddr> {
        if let Some(first) = self.pool.lock().take_run(n) {
            return Some(first);
        }
        self.drain();
        self.pool.lock().take_run(n)
    }

    /// Every cache's frames back to the allocator.
    pub fn drain(&self) {
        for (index, cache) in self.caches.iter().enumerate() {
            let mut cache = cache.lock();
            if cache.len > 0 {
                let n = cache.len;
                self.pool.lock().take_back(index, &cache.frames[..n]);
                cache.len = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::PAGE_SIZE;

    const P: u64 = PAGE_SIZE;

    #[test]
    fn cached_frames_count_free_and_are_handed_out_once() {
        let frames = Frames::new(FrameAllocator::new(&[(P, 101 * P)]));
        assert_eq!(frames.lock().free(), 100);
        let a = frames.alloc(0).unwrap();
        // One batch lent to cache 0, one frame of it handed out.
        assert_eq!(frames.lock().free(), 99);
        assert_eq!(frames.cached.total(), BATCH as u64 - 1);
        assert_eq!(frames.refcount(a), 1);
        let mut got = alloc::vec![a];
        for w in [1, 2, 0, 3, 1] {
            got.extend(frames.alloc(w));
        }
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 6, "no frame handed out twice");
        assert_eq!(frames.lock().used(), 6);
        frames.drain();
        assert_eq!(frames.cached.total(), 0);
        assert_eq!(frames.lock().free(), 94);
        for f in got {
            assert_eq!(frames.lock().release(f), Ok(0));
        }
        assert_eq!(frames.lock().free(), 100);
    }

    #[test]
    fn the_last_frames_come_out_of_other_caches() {
        let frames = Frames::new(FrameAllocator::new(&[(P, 41 * P)]));
        // Cache 0 takes a batch of 32; cache 1 the other 8.
        let first = frames.alloc(0).unwrap();
        let mut got = alloc::vec![first];
        got.extend(core::iter::from_fn(|| frames.alloc(1)).take(8));
        assert_eq!(got.len(), 9);
        // Cache 1 is empty and the allocator dry: cache 0's 31 come back through the drain.
        while let Some(f) = frames.alloc(1) {
            got.push(f);
        }
        assert_eq!(got.len(), 40);
        assert_eq!(frames.lock().free(), 0);
        assert_eq!(frames.alloc(0), None);
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 40);
    }

    #[test]
    fn four_threads_never_get_one_frame_at_once_and_every_frame_comes_back() {
        use std::sync::atomic::{AtomicBool, Ordering};
        // 200 frames for 4 threads holding up to 60 each: the caches run dry and are drained.
        let frames = Frames::new(FrameAllocator::new(&[(P, 201 * P)]));
        let held: Vec<AtomicBool> = (0..202).map(|_| AtomicBool::new(false)).collect();
        std::thread::scope(|s| {
            for w in 0..4 {
                let (frames, held) = (&frames, &held);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for round in 0..2000 {
                        if mine.len() < 60 && round % 3 != 2 {
                            if let Some(f) = frames.alloc(w) {
                                let was = held[(f / P) as usize].swap(true, Ordering::SeqCst);
                                assert!(!was, "frame {f:#x} handed out twice");
                                mine.push(f);
                            }
                        } else if let Some(f) = mine.pop() {
                            held[(f / P) as usize].store(false, Ordering::SeqCst);
                            assert_eq!(frames.lock().release(f), Ok(0));
                        }
                    }
                    for f in mine {
                        held[(f / P) as usize].store(false, Ordering::SeqCst);
                        assert_eq!(frames.lock().release(f), Ok(0));
                    }
                });
            }
        });
        assert_eq!(frames.lock().used(), 0, "cached frames count free");
        frames.drain();
        assert_eq!(frames.cached.total(), 0);
        assert_eq!(frames.lock().alloc_many(200, &mut Vec::new()), Ok(()));
    }

    #[test]
    fn counts_change_without_the_lock_and_the_last_drop_frees_once() {
        // Four threads share and drop one frame (a copy-on-write frame, the zero frame) at
        // once, while a fifth allocates and frees others through the lock.
        let frames = Frames::new(FrameAllocator::new(&[(P, 65 * P)]));
        let f = frames.alloc(0).unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        assert!(frames.share(f).unwrap() >= 2);
                        frames.drop_ref(f);
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..1_000 {
                    let g = frames.alloc(1).unwrap();
                    assert_ne!(g, f);
                    frames.drop_ref(g);
                }
            });
        });
        assert_eq!(frames.refcount(f), 1);
        let used = frames.lock().used();
        frames.drop_ref(f);
        assert_eq!(frames.refcount(f), 0);
        assert_eq!(frames.lock().used(), used - 1, "freed once");
        assert_eq!(
            frames.share(f),
            Err(FrameError::NotAllocated),
            "never up from 0"
        );
        frames.drain();
        assert_eq!(frames.lock().used(), 0);
    }

    #[test]
    fn a_huge_block_held_by_a_cache_is_drained_for() {
        const MIB2: u64 = 2 << 20;
        let frames = Frames::new(FrameAllocator::new(&[(MIB2, 2 * MIB2)]));
        let one = frames.alloc(0).unwrap();
        assert_eq!(frames.lock().release(one), Ok(0));
        // The 31 frames left in cache 0 are of the only block.
        assert_eq!(frames.lock().alloc_huge(), None);
        assert_eq!(frames.alloc_huge(), Some(MIB2));
        assert_eq!(frames.lock().free(), 0);
    }
}
