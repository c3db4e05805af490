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

/// Page address → frame, for the resident pages of one address space.
#[derive(Clone, Default)]
pub struct PageMap {
    chunks: BTreeMap<u64, Box<Chunk>>,
    len: usize,
    /// The array of the last chunk emptied, kept for the next new one: a mapping touched and
    /// unmapped again and again allocates no array after the first.
    spare: Option<Box<Chunk>>,
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

    /// Resident pages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no page is resident.
    pub fn is_empty(&self) -> bool {
        self.len == 0
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
        let old = core::mem::replace(&mut chunk.slots[slot], frame | PRESENT);
        if old & PRESENT != 0 {
            return Some(old & !PRESENT);
        }
        chunk.live += 1;
        self.len += 1;
        None
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
                let slot = &mut chunk.slots[split(page).1];
                if core::mem::replace(slot, frame | PRESENT) & PRESENT == 0 {
                    chunk.live += 1;
                    self.len += 1;
                }
            }
        }
    }

    /// Forgets `page`; the frame it had, if any.
    #[inline]
    pub fn remove(&mut self, page: u64) -> Option<FrameAddr> {
        let (key, slot) = split(page);
        let chunk = self.chunks.get_mut(&key)?;
        let old = core::mem::replace(&mut chunk.slots[slot], 0);
        if old & PRESENT == 0 {
            return None;
        }
        chunk.live -= 1;
        self.len -= 1;
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
