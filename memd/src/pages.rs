//! The resident pages of an address space: which page is backed by which frame.
//!
//! Pages are kept in chunks of [`CHUNK_PAGES`] consecutive pages (256 KiB of address space), an
//! array of frames each, found through a `BTreeMap` keyed by the chunk's index: a fault, a
//! lookup or a removal costs one search among the chunks (64 times fewer than pages) and one
//! array slot, and a walk over a range reads whole arrays. A chunk is freed with its last page.
//!
//! Memory: 512 bytes a chunk (8 a page when they are dense) and its entry in the map; a chunk
//! holding one page costs the same 512 bytes, which the bookkeeping charges
//! ([`crate::daemon::CHUNK_COST`]). The array of the last chunk emptied is kept for the next
//! one (512 bytes a process at most, not charged).

use crate::kernel::{FrameAddr, PAGE_SIZE};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;

/// Pages in a chunk.
pub const CHUNK_PAGES: u64 = 64;

/// Bytes of address space a chunk covers.
const CHUNK_SPAN: u64 = CHUNK_PAGES * PAGE_SIZE;

/// A slot holds `frame | PRESENT` (frames are page aligned), 0 when the page is absent.
const PRESENT: u64 = 1;

#[derive(Clone)]
struct Chunk {
    slots: [u64; CHUNK_PAGES as usize],
    /// Pages present.
    live: u32,
}

/// No zero frame ([`PageMap::with_zero`]): no frame has this address.
const NO_FRAME: FrameAddr = u64::MAX;

/// Page address → frame, for the resident pages of one address space; and how much of it is
/// resident as Linux counts RSS (not the pages mapping memd's shared zero frame), with its
/// high-water mark (Linux's `VmHWM`).
#[derive(Clone)]
pub struct PageMap {
    chunks: BTreeMap<u64, Box<Chunk>>,
    /// The array of the last chunk emptied, kept for the next new one: a mapping touched and
    /// unmapped again and again allocates no array after the first.
    spare: Option<Box<Chunk>>,
    tally: Tally,
}

/// The counts of a [`PageMap`].
#[derive(Clone)]
struct Tally {
    /// Pages present.
    len: usize,
    /// memd's shared zero frame ([`NO_FRAME`]: none).
    zero: FrameAddr,
    /// Pages mapping the zero frame.
    zeros: usize,
    /// The most pages resident as [`PageMap::rss`] counts them, as of the last time that
    /// count went down: it only falls when a page goes or its frame becomes the zero frame,
    /// which note it first, so the high-water mark costs nothing where pages come in.
    peak: usize,
}

impl Tally {
    /// Puts `frame` into `slot` of a chunk with `live` pages present; the slot's old value.
    #[inline]
    fn put(&mut self, slot: &mut u64, live: &mut u32, frame: FrameAddr) -> u64 {
        let old = core::mem::replace(slot, frame | PRESENT);
        if old & PRESENT == 0 {
            *live += 1;
            self.len += 1;
        }
        let was_zero = old == self.zero | PRESENT;
        if was_zero != (frame == self.zero) {
            if was_zero {
                self.zeros -= 1;
            } else {
                if old & PRESENT != 0 {
                    self.note_peak();
                }
                self.zeros += 1;
            }
        }
        old
    }

    /// Empties `slot` of a chunk with `live` pages present; the slot's old value.
    #[inline]
    fn take(&mut self, slot: &mut u64, live: &mut u32) -> u64 {
        let old = core::mem::replace(slot, 0);
        if old & PRESENT != 0 {
            if old == self.zero | PRESENT {
                self.zeros -= 1;
            } else {
                self.note_peak();
            }
            *live -= 1;
            self.len -= 1;
        }
        old
    }

    /// Before the resident count falls: keeps it in the high-water mark.
    #[inline]
    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.len - self.zeros);
    }
}

impl Default for PageMap {
    fn default() -> Self {
        PageMap::with_zero(None)
    }
}

/// An empty chunk: the spare one if there is one, else a new array.
fn new_chunk(spare: &mut Option<Box<Chunk>>) -> Box<Chunk> {
    spare.take().unwrap_or_else(|| {
        Box::new(Chunk {
            slots: [0; CHUNK_PAGES as usize],
            live: 0,
        })
    })
}

fn split(page: u64) -> (u64, usize) {
    (
        page / CHUNK_SPAN,
        ((page % CHUNK_SPAN) / PAGE_SIZE) as usize,
    )
}

impl PageMap {
    /// No page.
    pub fn new() -> PageMap {
        PageMap::default()
    }

    /// No page; pages mapping `zero` (memd's shared zero frame) are not counted by
    /// [`PageMap::rss`].
    pub fn with_zero(zero: Option<FrameAddr>) -> PageMap {
        PageMap {
            chunks: BTreeMap::new(),
            spare: None,
            tally: Tally {
                len: 0,
                zero: zero.unwrap_or(NO_FRAME),
                zeros: 0,
                peak: 0,
            },
        }
    }

    /// Resident pages as Linux counts RSS: those backed by a frame, not by the zero frame.
    pub fn rss(&self) -> usize {
        self.tally.len - self.tally.zeros
    }

    /// The most pages [`PageMap::rss`] has counted since the map was made or
    /// [`PageMap::reset_peak`] (Linux's `VmHWM`).
    pub fn peak(&self) -> usize {
        self.tally.peak.max(self.rss())
    }

    /// Starts the high-water mark again from what is resident now (Linux's `clear_refs` 5).
    pub fn reset_peak(&mut self) {
        self.tally.peak = self.rss();
    }

    /// Resident pages.
    pub fn len(&self) -> usize {
        self.tally.len
    }

    /// Whether no page is resident.
    pub fn is_empty(&self) -> bool {
        self.tally.len == 0
    }

    /// Chunks held (for the bookkeeping).
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// The frame of `page`, if it is resident.
    #[inline]
    pub fn get(&self, page: u64) -> Option<FrameAddr> {
        let (key, slot) = split(page);
        let s = self.chunks.get(&key)?.slots[slot];
        (s & PRESENT != 0).then_some(s & !PRESENT)
    }

    /// Whether `page` is resident.
    pub fn contains(&self, page: u64) -> bool {
        self.get(page).is_some()
    }

    /// Records `page` backed by `frame`; the frame it had, if any.
    #[inline]
    pub fn insert(&mut self, page: u64, frame: FrameAddr) -> Option<FrameAddr> {
        let (key, slot) = split(page);
        let spare = &mut self.spare;
        let chunk = self.chunks.entry(key).or_insert_with(|| new_chunk(spare));
        let old = self
            .tally
            .put(&mut chunk.slots[slot], &mut chunk.live, frame);
        (old & PRESENT != 0).then_some(old & !PRESENT)
    }

    /// Records each `(page, frame)` of `run` (ascending pages, none resident yet, as a fault
    /// backs them): one search for each chunk they fall in rather than one a page.
    pub fn insert_run(&mut self, run: impl IntoIterator<Item = (u64, FrameAddr)>) {
        let mut run = run.into_iter().peekable();
        while let Some(&(first, _)) = run.peek() {
            let (key, _) = split(first);
            let spare = &mut self.spare;
            let chunk = self.chunks.entry(key).or_insert_with(|| new_chunk(spare));
            while let Some((page, frame)) = run.next_if(|&(p, _)| split(p).0 == key) {
                let Chunk { slots, live } = &mut **chunk;
                self.tally.put(&mut slots[split(page).1], live, frame);
            }
        }
    }

    /// Forgets `page`; the frame it had, if any.
    #[inline]
    pub fn remove(&mut self, page: u64) -> Option<FrameAddr> {
        let (key, slot) = split(page);
        let chunk = self.chunks.get_mut(&key)?;
        let Chunk { slots, live } = &mut **chunk;
        let old = self.tally.take(&mut slots[slot], live);
        if old & PRESENT == 0 {
            return None;
        }
        if chunk.live == 0 {
            // Every slot is 0 again: the array is as good as new.
            self.spare = self.chunks.remove(&key);
        }
        Some(old & !PRESENT)
    }

    /// The resident pages of `[start, end)` (page aligned), in address order.
    pub fn range(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, FrameAddr)> + '_ {
        let (first, lo) = split(start);
        let (last, hi) = if end > start { split(end - 1) } else { (0, 0) };
        let chunks = (end > start)
            .then(|| self.chunks.range(first..=last))
            .into_iter()
            .flatten();
        chunks.flat_map(move |(&key, chunk)| {
            let base = key * CHUNK_SPAN;
            let from = if key == first { lo } else { 0 };
            let to = if key == last {
                hi + 1
            } else {
                CHUNK_PAGES as usize
            };
            chunk.slots[from..to]
                .iter()
                .enumerate()
                .filter(|&(_, &s)| s & PRESENT != 0)
                .map(move |(i, &s)| (base + (from + i) as u64 * PAGE_SIZE, s & !PRESENT))
        })
    }

    /// Every resident page, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, FrameAddr)> + '_ {
        self.range(0, !(PAGE_SIZE - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const P: u64 = PAGE_SIZE;

    #[test]
    fn the_high_water_mark_keeps_the_most_resident_and_skips_the_zero_frame() {
        const ZERO: FrameAddr = 0x7000;
        let mut map = PageMap::with_zero(Some(ZERO));
        // Four pages of frames of their own, two of the zero frame (one by a run).
        map.insert_run((0..4).map(|i| (i * P, 0x10_0000 + i * P)));
        map.insert(10 * P, ZERO);
        map.insert_run([(11 * P, ZERO)]);
        assert_eq!((map.len(), map.rss(), map.peak()), (6, 4, 4));
        // A zero page written (copy on write): one more resident; then a page dropped.
        map.insert(10 * P, 0x20_0000);
        assert_eq!((map.rss(), map.peak()), (5, 5));
        map.remove(0);
        map.remove(11 * P);
        assert_eq!((map.len(), map.rss(), map.peak()), (4, 4, 5));
        // A page whose frame becomes the zero frame counts no more; the peak stays.
        map.insert(P, ZERO);
        assert_eq!((map.rss(), map.peak()), (3, 5));
        map.reset_peak();
        assert_eq!(map.peak(), 3);
        map.insert_run((20..22).map(|i| (i * P, 0x30_0000 + i * P)));
        assert_eq!(map.peak(), 5);
        // Without a zero frame every page counts.
        let mut plain = PageMap::new();
        plain.insert(0, ZERO);
        assert_eq!(plain.rss(), 1);
    }

    #[test]
    fn insert_get_remove_and_ranges_agree_with_a_btreemap() {
        let mut map = PageMap::new();
        let mut model = BTreeMap::new();
        let mut x = 0x1234_5678u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let page = (x % 3000) * P + if x.is_multiple_of(7) { 1 << 40 } else { 0 };
            let frame = (x % 100_000 + 1) * P;
            if x.is_multiple_of(3) {
                assert_eq!(map.remove(page), model.remove(&page));
            } else {
                assert_eq!(map.insert(page, frame), model.insert(page, frame));
            }
            assert_eq!(map.get(page), model.get(&page).copied());
            assert_eq!(map.len(), model.len());
            let lo = (x % 3100) * P;
            let hi = lo + (x % 200) * P;
            let got: Vec<_> = map.range(lo, hi).collect();
            let want: Vec<_> = model.range(lo..hi).map(|(&p, &f)| (p, f)).collect();
            assert_eq!(got, want);
        }
        let all: Vec<_> = map.iter().collect();
        let want: Vec<_> = model.iter().map(|(&p, &f)| (p, f)).collect();
        assert_eq!(all, want);
        // A run across chunks, over pages resident or not.
        let run: Vec<(u64, FrameAddr)> = (60..140).map(|i| (i * P, (i + 7) * P)).collect();
        map.insert_run(run.iter().copied());
        for &(p, f) in &run {
            model.insert(p, f);
        }
        assert_eq!(map.len(), model.len());
        let all: Vec<_> = map.iter().collect();
        let want: Vec<_> = model.iter().map(|(&p, &f)| (p, f)).collect();
        assert_eq!(all, want);
        for (p, _) in want {
            map.remove(p);
        }
        assert!(map.is_empty());
        assert_eq!(map.chunks(), 0, "a chunk goes with its last page");
    }
}
