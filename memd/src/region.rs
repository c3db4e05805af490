//! The region database of one address space: which ranges of virtual memory a process has,
//! with what access, and what backs them.
//!
//! A [`RegionMap`] is a `BTreeMap` from a region's start to the [`Region`]. Its invariants:
//! regions never overlap, are not empty, and start and end on page boundaries (callers validate
//! addresses first, with `layout::check_user_range`). The map knows nothing of frames or page
//! tables; it is the bookkeeping that every memory request consults and changes.
//!
//! Costs, with `n` regions in the map and `k` regions touched by an operation:
//!
//! | operation | cost |
//! |---|---|
//! | [`RegionMap::find`], [`RegionMap::is_free`], [`RegionMap::insert`], [`RegionMap::split_at`] | O(log n) |
//! | [`RegionMap::overlapping`], [`RegionMap::covered`], [`RegionMap::remove_range`], [`RegionMap::update_range`], [`RegionMap::merge_around`] | O(k log n) |
//! | [`RegionMap::find_free`] | O(log n), whatever the holes |
//!
//! Beside the regions the map keeps their complement, the free gaps, in an index of its own
//! ([`Gaps`]: a tree that knows the longest gap of each subtree), changed where a region is
//! added or removed; [`RegionMap::find_free`] asks it for the first gap by address that is long
//! enough, without walking the regions before it.
//!
//! Plain [`RegionMap::insert`] does not merge; [`RegionMap::insert_merged`] and
//! [`RegionMap::update_range`] merge compatible neighbours (see [`Region::can_merge_with`]), so a
//! map built only through them never holds two adjacent regions that could be one.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Bound::{Excluded, Unbounded};

use libvm::{ProtectionFlags, VmError};

use crate::gaps::Gaps;
use crate::kernel::PAGE_SIZE;

/// What a region is used for, as shown in pmap-style listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RegionKind {
    /// Private zero-filled memory (`mmap` with `MAP_ANONYMOUS | MAP_PRIVATE`).
    Anonymous = 0,
    /// Memory backed by a file or boot module.
    FileBacked = 1,
    /// A view of a shared-memory object.
    Shared = 2,
    /// A thread's stack.
    Stack = 3,
    /// The brk heap.
    Heap = 4,
    /// Program code (an ELF segment with execute permission).
    Code = 5,
    /// Program data (an ELF segment without execute permission).
    Data = 6,
    /// Device memory (physical frames that are not memd's).
    Device = 7,
    /// A guard range: reserved, never accessible, never merged.
    Guard = 8,
}

impl RegionKind {
    /// Every kind, in code order.
    pub const ALL: [RegionKind; 9] = [
        RegionKind::Anonymous,
        RegionKind::FileBacked,
        RegionKind::Shared,
        RegionKind::Stack,
        RegionKind::Heap,
        RegionKind::Code,
        RegionKind::Data,
        RegionKind::Device,
        RegionKind::Guard,
    ];

    /// The kind's number on the wire (its `repr(u8)` discriminant, widened to a message word).
    pub fn code(self) -> u64 {
        u64::from(self as u8)
    }

    /// The kind with wire number `code`, or `None` for an unknown number.
    pub fn from_code(code: u64) -> Option<RegionKind> {
        usize::try_from(code)
            .ok()
            .and_then(|i| RegionKind::ALL.get(i).copied())
    }

    /// A short lowercase name for listings.
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Anonymous => "anon",
            RegionKind::FileBacked => "file",
            RegionKind::Shared => "shared",
            RegionKind::Stack => "stack",
            RegionKind::Heap => "heap",
            RegionKind::Code => "code",
            RegionKind::Data => "data",
            RegionKind::Device => "device",
            RegionKind::Guard => "guard",
        }
    }
}

/// One contiguous range `[start, end)` of an address space with uniform access and backing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte (page aligned).
    pub start: u64,
    /// One past the last byte (page aligned, greater than `start`).
    pub end: u64,
    /// Access the process has.
    pub prot: ProtectionFlags,
    /// What the range is used for.
    pub kind: RegionKind,
    /// Whether writes are seen by other mappings of the same memory (`MAP_SHARED`).
    pub shared: bool,
    /// Shared-memory object backing the region, 0 for none.
    pub object: u32,
    /// What a fork's child gets of the region (`MADV_DONTFORK`, `MADV_WIPEONFORK`), and
    /// whether its pages are locked in (`mlock`).
    pub flags: RegionFlags,
    /// Offset, in pages, of `start` within `object`; for a device region, the physical page
    /// number of `start` (meaningless otherwise).
    pub offset: u64,
}

bitflags::bitflags! {
    /// What a fork's child gets of a region, and whether its pages are locked in.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RegionFlags: u8 {
        /// A fork's child has nothing there (`MADV_DONTFORK`).
        const DONTFORK = 1;
        /// A fork's child gets the region empty: it reads zero (`MADV_WIPEONFORK`).
        const WIPEONFORK = 2;
        /// Every page is resident and stays so (`mlock`).
        const LOCKED = 4;
        /// Backed by huge pages where it can be (`MADV_HUGEPAGE`).
        const HUGE = 8;
        /// Never backed by huge pages, even in `always` mode (`MADV_NOHUGEPAGE`).
        const NOHUGE = 16;
        /// Device memory cached write-combining (uncached without it; see [`crate::device`]).
        const WRITE_COMBINING = 32;
    }
}

// Regions are copied around by value; keep them within a cache line.
const _: () = assert!(size_of::<Region>() <= 64);

impl Region {
    /// A private region without backing object.
    pub fn new(start: u64, end: u64, prot: ProtectionFlags, kind: RegionKind) -> Region {
        Region {
            start,
            end,
            prot,
            kind,
            shared: false,
            object: 0,
            flags: RegionFlags::empty(),
            offset: 0,
        }
    }

    /// Whether the region can live in a [`RegionMap`]: not empty, both ends page aligned.
    pub fn is_valid(&self) -> bool {
        self.start < self.end
            && self.start.is_multiple_of(PAGE_SIZE)
            && self.end.is_multiple_of(PAGE_SIZE)
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the region covers no byte (never true of a region in a [`RegionMap`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length in pages.
    pub fn pages(&self) -> u64 {
        self.len() / PAGE_SIZE
    }

    /// Whether `addr` lies in `[start, end)`.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether `next` starts where `self` ends and the two can be one region: same access,
    /// kind, sharing and object, and for an object or a device, `next` continues `self`'s
    /// pages of it. Guard regions never merge.
    pub fn can_merge_with(&self, next: &Region) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && self.kind == next.kind
            && self.shared == next.shared
            && self.flags == next.flags
            && self.object == next.object
            && self.kind != RegionKind::Guard
            && ((self.object == 0 && self.kind != RegionKind::Device)
                || self.offset.checked_add(self.pages()) == Some(next.offset))
    }

    /// The parts `[start, addr)` and `[addr, end)`; the upper part's object offset is moved on
    /// by the pages of the lower one.
    ///
    /// `addr` must be page aligned and strictly inside the region (checked in debug builds);
    /// otherwise it is clamped to the region, and one of the parts is empty.
    pub fn split_at(&self, addr: u64) -> (Region, Region) {
        debug_assert!(
            self.start < addr && addr < self.end && addr.is_multiple_of(PAGE_SIZE),
            "split of {self:?} at {addr:#x}"
        );
        let addr = addr.max(self.start).min(self.end);
        let lower = Region { end: addr, ..*self };
        let upper = Region {
            start: addr,
            offset: self.offset.saturating_add(lower.pages()),
            ..*self
        };
        (lower, upper)
    }
}

/// [`RegionMap::insert`] refused a region: it overlaps one already in the map, or it is not
/// valid (empty or not page aligned, see [`Region::is_valid`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overlap;

impl From<Overlap> for VmError {
    fn from(_: Overlap) -> VmError {
        VmError::AlreadyMapped
    }
}

/// The regions of one address space, ordered by address. See the module documentation for
/// invariants and costs.
pub struct RegionMap {
    /// Regions keyed by their start.
    regions: BTreeMap<u64, Region>,
    /// The free gaps between them (every address not in a region).
    gaps: Gaps,
}

impl RegionMap {
    /// An empty map.
    pub fn new() -> RegionMap {
        RegionMap {
            regions: BTreeMap::new(),
            gaps: Gaps::new(u64::MAX),
        }
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether the map holds no region.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The regions in address order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Region> + ExactSizeIterator {
        self.regions.values()
    }

    /// The region containing `addr` (start inclusive, end exclusive).
    pub fn find(&self, addr: u64) -> Option<&Region> {
        self.regions
            .range(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| addr < r.end)
    }

    /// The regions that share at least one byte with `[start, end)`, in address order. Empty
    /// when `start >= end`.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Region> {
        let end = end.max(start);
        let spanning = self
            .regions
            .range(..start)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| start < r.end && start < end);
        spanning
            .into_iter()
            .chain(self.regions.range(start..end).map(|(_, r)| r))
    }

    /// Whether no region shares a byte with `[start, end)`.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end).next().is_none()
    }

    /// Whether every byte of `[start, end)` is in some region (true when `start >= end`).
    pub fn covered(&self, start: u64, end: u64) -> bool {
        let mut cursor = start;
        for r in self.overlapping(start, end) {
            if r.start > cursor {
                return false;
            }
            cursor = r.end;
        }
        cursor >= end
    }

    /// Adds `region` as it is, without merging. Refused when it overlaps a region of the map
    /// or is not valid ([`Region::is_valid`]).
    pub fn insert(&mut self, region: Region) -> Result<(), Overlap> {
        if !region.is_valid() || !self.is_free(region.start, region.end) {
            return Err(Overlap);
        }
        let taken = self.gaps.take(region.start, region.end);
        debug_assert!(taken, "the gaps disagree with the regions at {region:?}");
        self.regions.insert(region.start, region);
        Ok(())
    }

    /// Adds `region` as [`RegionMap::insert`] does, then merges it with compatible neighbours.
    pub fn insert_merged(&mut self, region: Region) -> Result<(), Overlap> {
        self.insert(region)?;
        self.merge_around(region.start, region.end);
        Ok(())
    }

    /// If a region strictly spans `addr` (starts below it and ends above it), replaces it with
    /// its two parts. Returns whether a split happened; an unaligned `addr` splits nothing.
    pub fn split_at(&mut self, addr: u64) -> bool {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return false;
        }
        let Some((_, r)) = self.regions.range_mut(..addr).next_back() else {
            return false;
        };
        if r.end <= addr {
            return false;
        }
        let (lower, upper) = r.split_at(addr);
        *r = lower;
        self.regions.insert(addr, upper);
        true
    }

    /// Removes every byte of `[start, end)` from the map and returns the removed pieces in
    /// address order. Regions crossing an edge are split: their parts outside stay.
    pub fn remove_range(&mut self, start: u64, end: u64) -> Vec<Region> {
        let mut removed = Vec::new();
        if start >= end {
            return removed;
        }
        self.split_at(start);
        self.split_at(end);
        while let Some((&key, _)) = self.regions.range(start..end).next() {
            if let Some(r) = self.regions.remove(&key) {
                self.gaps.give(r.start, r.end);
                removed.push(r);
            }
        }
        removed
    }

    /// Applies `f` to every region inside `[start, end)`, after splitting the regions that
    /// cross an edge, then merges what became compatible around the range. Holes in the range
    /// are left alone.
    ///
    /// `f` may change anything but the bounds: a region's `start` and `end` are restored after
    /// `f` returns (and a change is reported in debug builds).
    pub fn update_range(&mut self, start: u64, end: u64, mut f: impl FnMut(&mut Region)) {
        if start >= end {
            return;
        }
        self.split_at(start);
        self.split_at(end);
        for r in self.regions.range_mut(start..end).map(|(_, r)| r) {
            let (s, e) = (r.start, r.end);
            f(r);
            debug_assert!(r.start == s && r.end == e, "update_range moved {r:?}");
            r.start = s;
            r.end = e;
        }
        self.merge_around(start, end);
    }

    /// [`RegionMap::update_range`] for a range that lies inside one region, with the fewest
    /// map operations: applies `f` to the part `[start, end)` of the region containing it
    /// (split off as needed) and merges that part with compatible neighbours. Returns the
    /// containing region as it was and the part as `f` left it (bounds `[start, end)`), or
    /// `None`, with nothing changed, when no one region contains the range (or it is empty):
    /// then `update_range` is the way.
    ///
    /// When `f` changes nothing, nothing is done. Otherwise the map ends as `update_range`
    /// would leave it (for a map whose neighbours are merged, as [`RegionMap::insert_merged`]
    /// and `update_range` keep it). `f` may change anything but the bounds, as in
    /// `update_range`.
    pub fn update_within(
        &mut self,
        start: u64,
        end: u64,
        f: impl FnOnce(&mut Region),
    ) -> Option<(Region, Region)> {
        if start >= end {
            return None;
        }
        // One descent finds the containing region, the one before it and the one starting at
        // `end` (its right neighbour, if it ends there), and changes them in place.
        let mut found = self.regions.range_mut(..=end);
        let (&key, last) = found.next_back()?;
        let (at_end, old_ref) = if key == end {
            (Some(last), found.next_back()?.1)
        } else {
            (None, last)
        };
        let old = *old_ref;
        if start < old.start || end > old.end {
            return None;
        }
        // The parts: `lower` and `upper` keep the old access, `piece` gets `f`.
        let mut piece = old;
        let mut lower = None;
        if start > old.start {
            let (l, u) = piece.split_at(start);
            lower = Some(l);
            piece = u;
        }
        let mut upper = None;
        if end < old.end {
            let (l, u) = piece.split_at(end);
            upper = Some(u);
            piece = l;
        }
        let unchanged = piece;
        f(&mut piece);
        debug_assert!(
            piece.start == start && piece.end == end,
            "update_within moved {piece:?}"
        );
        piece.start = start;
        piece.end = end;
        if piece == unchanged {
            return Some((old, piece));
        }
        // Merge as `merge_around` does: (left, piece), then (the result, right). A neighbour
        // that is not adjacent never merges, so the region at `old.end` is the only right one.
        let before_ref = if lower.is_none() {
            found.next_back().map(|(_, r)| r)
        } else {
            None
        };
        let left = lower.or(before_ref.as_deref().copied());
        let merge_left = left.is_some_and(|l| l.can_merge_with(&piece));
        let mut merged = match left {
            Some(l) if merge_left => Region { end, ..l },
            _ => piece,
        };
        let right = upper.or(at_end.as_deref().copied());
        let merge_right = right.is_some_and(|r| merged.can_merge_with(&r));
        if let Some(r) = right.filter(|_| merge_right) {
            merged.end = r.end;
        }
        // The keys: `old.start` is the only one the map had in `[old.start, old.end)`. The
        // regions found are changed in place; at most one key is added or removed on each side.
        let mut insert_left = None;
        let mut remove_left = false;
        match (lower, before_ref) {
            (Some(l), _) if !merge_left => {
                *old_ref = l;
                insert_left = Some(merged);
            }
            (None, Some(before)) if merge_left => {
                *before = merged;
                remove_left = true;
            }
            _ => *old_ref = merged,
        }
        match (upper, merge_right) {
            (Some(u), false) => {
                self.regions.insert(end, u);
            }
            (None, true) => {
                self.regions.remove(&old.end);
            }
            (Some(_), true) | (None, false) => {}
        }
        if let Some(m) = insert_left {
            self.regions.insert(start, m);
        }
        if remove_left {
            self.regions.remove(&old.start);
        }
        Some((old, piece))
    }

    /// Merges every compatible adjacent pair from the region below `start` up to the first
    /// region starting at or after `end`: the regions in the range, and the range's neighbours.
    pub fn merge_around(&mut self, start: u64, end: u64) {
        let first = self
            .regions
            .range(..start)
            .next_back()
            .or_else(|| self.regions.range(start..).next())
            .map(|(&k, _)| k);
        let Some(mut cur) = first else {
            return;
        };
        // Each step looks at the pair (cur, next) and either absorbs next into cur or moves on.
        while cur < end {
            let Some(&current) = self.regions.get(&cur) else {
                return;
            };
            let Some((&next_key, &next)) = self.regions.range((Excluded(cur), Unbounded)).next()
            else {
                return;
            };
            if current.can_merge_with(&next) {
                self.regions.remove(&next_key);
                if let Some(r) = self.regions.get_mut(&cur) {
                    r.end = next.end;
                }
            } else {
                cur = next_key;
            }
        }
    }

    /// The lowest `s` with `[s, s + len)` free and inside `[lo, hi)` (first fit), or `None`.
    ///
    /// `len`, `lo` and `hi` should be page aligned; the answer is `lo` or the end of a region.
    /// Cost: O(log n), whatever the holes below the answer ([`Gaps::find`]).
    pub fn find_free(&self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        self.gaps.find(len, lo, hi)
    }

    /// The free extent `[start, end)` would be part of once every region byte in it is
    /// removed: the range widened by the gaps just below and just above it.
    pub fn free_around(&self, start: u64, end: u64) -> (u64, u64) {
        let below = start.checked_sub(1).and_then(|a| self.gaps.containing(a));
        let above = self.gaps.containing(end);
        (below.map_or(start, |g| g.0), above.map_or(end, |g| g.1))
    }

    /// The free gaps, in address order (for checks).
    pub fn gaps(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.gaps.iter()
    }
}

impl Default for RegionMap {
    fn default() -> RegionMap {
        RegionMap::new()
    }
}

impl Clone for RegionMap {
    fn clone(&self) -> RegionMap {
        RegionMap {
            regions: self.regions.clone(),
            gaps: self.gaps.clone(),
        }
    }
}

impl fmt::Debug for RegionMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = PAGE_SIZE;
    const RW: ProtectionFlags = ProtectionFlags::READ_WRITE;
    const RO: ProtectionFlags = ProtectionFlags::READ;

    fn anon(start_page: u64, end_page: u64, prot: ProtectionFlags) -> Region {
        Region::new(start_page * P, end_page * P, prot, RegionKind::Anonymous)
    }

    fn bounds(map: &RegionMap) -> Vec<(u64, u64)> {
        map.iter().map(|r| (r.start / P, r.end / P)).collect()
    }

    #[test]
    fn region_is_small() {
        assert!(size_of::<Region>() <= 32);
    }

    #[test]
    fn kind_codes_round_trip() {
        for kind in RegionKind::ALL {
            assert_eq!(RegionKind::from_code(kind.code()), Some(kind));
            assert!(!kind.name().is_empty());
        }
        assert_eq!(RegionKind::from_code(9), None);
        assert_eq!(RegionKind::from_code(u64::MAX), None);
    }

    #[test]
    fn region_basics() {
        let r = anon(1, 4, RW);
        assert_eq!(r.len(), 3 * P);
        assert_eq!(r.pages(), 3);
        assert!(!r.is_empty());
        assert!(r.contains(P));
        assert!(r.contains(4 * P - 1));
        assert!(!r.contains(4 * P));
        assert!(!r.contains(P - 1));
        assert!(r.is_valid());
        assert!(!anon(2, 2, RW).is_valid());
        assert!(!Region::new(1, P, RW, RegionKind::Anonymous).is_valid());
    }

    #[test]
    fn region_split_moves_offset() {
        let mut r = anon(10, 20, RW);
        r.object = 7;
        r.offset = 100;
        let (lo, hi) = r.split_at(13 * P);
        assert_eq!((lo.start, lo.end, lo.offset), (10 * P, 13 * P, 100));
        assert_eq!((hi.start, hi.end, hi.offset), (13 * P, 20 * P, 103));
        assert!(lo.can_merge_with(&hi));
    }

    #[test]
    fn merge_rules() {
        let a = anon(0, 2, RW);
        assert!(a.can_merge_with(&anon(2, 3, RW)));
        assert!(!a.can_merge_with(&anon(3, 4, RW)), "not adjacent");
        assert!(!a.can_merge_with(&anon(2, 3, RO)), "other prot");
        let mut heap = anon(2, 3, RW);
        heap.kind = RegionKind::Heap;
        assert!(!a.can_merge_with(&heap), "other kind");
        let mut shared = anon(2, 3, RW);
        shared.shared = true;
        assert!(!a.can_merge_with(&shared), "other sharing");
        let guard = Region::new(0, 2 * P, RW, RegionKind::Guard);
        let guard2 = Region::new(2 * P, 3 * P, RW, RegionKind::Guard);
        assert!(!guard.can_merge_with(&guard2), "guards never merge");

        let mut o1 = anon(0, 2, RW);
        o1.object = 3;
        o1.offset = 5;
        let mut o2 = anon(2, 3, RW);
        o2.object = 3;
        o2.offset = 7;
        assert!(o1.can_merge_with(&o2));
        o2.offset = 8;
        assert!(!o1.can_merge_with(&o2), "offsets not contiguous");
        o2.offset = 7;
        o2.object = 4;
        assert!(!o1.can_merge_with(&o2), "other object");
    }

    #[test]
    fn insert_refuses_overlap_and_invalid() {
        let mut map = RegionMap::new();
        assert!(map.is_empty());
        map.insert(anon(10, 20, RW)).unwrap();
        assert_eq!(map.insert(anon(15, 25, RW)), Err(Overlap));
        assert_eq!(map.insert(anon(5, 11, RW)), Err(Overlap));
        assert_eq!(map.insert(anon(12, 13, RW)), Err(Overlap));
        assert_eq!(map.insert(anon(0, 30, RW)), Err(Overlap));
        assert_eq!(map.insert(anon(30, 30, RW)), Err(Overlap));
        assert_eq!(
            map.insert(Region::new(P + 1, 2 * P, RW, RegionKind::Anonymous)),
            Err(Overlap)
        );
        assert_eq!(VmError::from(Overlap), VmError::AlreadyMapped);
        // Touching is not overlapping, and plain insert does not merge.
        map.insert(anon(20, 30, RW)).unwrap();
        map.insert(anon(5, 10, RW)).unwrap();
        assert_eq!(bounds(&map), [(5, 10), (10, 20), (20, 30)]);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn insert_merged_merges_only_compatible() {
        let mut map = RegionMap::new();
        map.insert_merged(anon(10, 20, RW)).unwrap();
        map.insert_merged(anon(30, 40, RW)).unwrap();
        map.insert_merged(anon(20, 30, RW)).unwrap();
        assert_eq!(bounds(&map), [(10, 40)]);
        map.insert_merged(anon(40, 50, RO)).unwrap();
        map.insert_merged(Region::new(50 * P, 51 * P, RO, RegionKind::Guard))
            .unwrap();
        map.insert_merged(Region::new(51 * P, 52 * P, RO, RegionKind::Guard))
            .unwrap();
        assert_eq!(bounds(&map), [(10, 40), (40, 50), (50, 51), (51, 52)]);
    }

    #[test]
    fn find_at_boundaries() {
        let mut map = RegionMap::new();
        map.insert(anon(10, 20, RW)).unwrap();
        map.insert(anon(20, 21, RO)).unwrap();
        assert_eq!(map.find(10 * P).map(|r| r.start), Some(10 * P));
        assert_eq!(map.find(20 * P - 1).map(|r| r.start), Some(10 * P));
        assert_eq!(map.find(20 * P).map(|r| r.start), Some(20 * P));
        assert!(map.find(21 * P).is_none());
        assert!(map.find(10 * P - 1).is_none());
        assert!(map.find(0).is_none());
        assert!(map.find(u64::MAX).is_none());
    }

    #[test]
    fn overlapping_free_and_covered() {
        let mut map = RegionMap::new();
        map.insert(anon(10, 20, RW)).unwrap();
        map.insert(anon(20, 30, RO)).unwrap();
        map.insert(anon(40, 50, RW)).unwrap();
        let starts = |s: u64, e: u64| -> Vec<u64> {
            map.overlapping(s * P, e * P).map(|r| r.start / P).collect()
        };
        assert_eq!(starts(15, 45), [10, 20, 40]);
        assert_eq!(starts(0, 10), [] as [u64; 0]);
        assert_eq!(starts(30, 40), [] as [u64; 0]);
        assert_eq!(starts(29, 41), [20, 40]);
        assert_eq!(starts(15, 15), [] as [u64; 0]);
        assert_eq!(starts(45, 15), [] as [u64; 0]);
        assert!(map.is_free(30 * P, 40 * P));
        assert!(!map.is_free(30 * P, 40 * P + 1));
        assert!(map.covered(10 * P, 30 * P));
        assert!(map.covered(12 * P, 25 * P));
        assert!(!map.covered(10 * P, 31 * P));
        assert!(!map.covered(9 * P, 20 * P));
        assert!(!map.covered(25 * P, 45 * P));
        assert!(map.covered(5 * P, 5 * P));
    }

    #[test]
    fn split_at_splits_only_inside() {
        let mut map = RegionMap::new();
        map.insert(anon(10, 20, RW)).unwrap();
        assert!(!map.split_at(10 * P));
        assert!(!map.split_at(20 * P));
        assert!(!map.split_at(5 * P));
        assert!(!map.split_at(15 * P + 1));
        assert!(map.split_at(15 * P));
        assert_eq!(bounds(&map), [(10, 15), (15, 20)]);
        map.merge_around(15 * P, 15 * P);
        assert_eq!(bounds(&map), [(10, 20)]);
    }

    #[test]
    fn remove_middle_of_region() {
        let mut map = RegionMap::new();
        map.insert(anon(10, 20, RW)).unwrap();
        let removed = map.remove_range(12 * P, 15 * P);
        assert_eq!(removed.len(), 1);
        assert_eq!((removed[0].start, removed[0].end), (12 * P, 15 * P));
        assert_eq!(bounds(&map), [(10, 12), (15, 20)]);
    }

    #[test]
    fn remove_across_regions_and_holes() {
        let mut map = RegionMap::new();
        map.insert(anon(10, 20, RW)).unwrap();
        map.insert(anon(20, 30, RO)).unwrap();
        map.insert(anon(40, 50, RW)).unwrap();
        map.insert(anon(60, 70, RW)).unwrap();
        let removed = map.remove_range(15 * P, 45 * P);
        let pieces: Vec<_> = removed
            .iter()
            .map(|r| (r.start / P, r.end / P, r.prot))
            .collect();
        assert_eq!(pieces, [(15, 20, RW), (20, 30, RO), (40, 45, RW)]);
        assert_eq!(bounds(&map), [(10, 15), (45, 50), (60, 70)]);
        assert!(map.remove_range(50 * P, 60 * P).is_empty());
        assert!(map.remove_range(70 * P, 60 * P).is_empty());
        let removed = map.remove_range(0, 100 * P);
        assert_eq!(removed.len(), 3);
        assert!(map.is_empty());
    }

    #[test]
    fn update_range_splits_then_merges_back() {
        let mut map = RegionMap::new();
        map.insert(anon(10, 20, RW)).unwrap();
        map.update_range(12 * P, 15 * P, |r| r.prot = RO);
        assert_eq!(bounds(&map), [(10, 12), (12, 15), (15, 20)]);
        assert_eq!(map.find(13 * P).map(|r| r.prot), Some(RO));
        map.update_range(12 * P, 15 * P, |r| r.prot = RW);
        assert_eq!(bounds(&map), [(10, 20)]);
        // Across a hole: the hole stays, both sides change.
        map.insert(anon(25, 30, RW)).unwrap();
        map.update_range(5 * P, 40 * P, |r| r.prot = RO);
        assert_eq!(bounds(&map), [(10, 20), (25, 30)]);
        assert!(map.iter().all(|r| r.prot == RO));
    }

    #[test]
    fn update_range_keeps_object_offsets() {
        let mut map = RegionMap::new();
        let mut r = anon(10, 20, RW);
        r.object = 1;
        r.offset = 4;
        r.shared = true;
        map.insert(r).unwrap();
        map.update_range(13 * P, 14 * P, |r| r.prot = RO);
        let offsets: Vec<u64> = map.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [4, 7, 8]);
        map.update_range(13 * P, 14 * P, |r| r.prot = RW);
        assert_eq!(map.iter().copied().collect::<Vec<_>>(), [r]);
    }

    #[test]
    fn update_within_splits_and_merges_back() {
        let mut map = RegionMap::new();
        map.insert_merged(anon(10, 20, RW)).unwrap();
        let (old, piece) = map.update_within(12 * P, 13 * P, |r| r.prot = RO).unwrap();
        assert_eq!(old, anon(10, 20, RW));
        assert_eq!((piece.start, piece.end, piece.prot), (12 * P, 13 * P, RO));
        assert_eq!(bounds(&map), [(10, 12), (12, 13), (13, 20)]);
        map.update_within(12 * P, 13 * P, |r| r.prot = RW).unwrap();
        assert_eq!(map.iter().copied().collect::<Vec<_>>(), [anon(10, 20, RW)]);
        // Unchanged: nothing to do; across regions or over a hole: not within one.
        map.update_within(12 * P, 13 * P, |r| r.prot = RW).unwrap();
        assert_eq!(bounds(&map), [(10, 20)]);
        assert!(map.update_within(5 * P, 12 * P, |r| r.prot = RO).is_none());
        assert!(map.update_within(15 * P, 25 * P, |r| r.prot = RO).is_none());
        assert!(map.update_within(12 * P, 12 * P, |r| r.prot = RO).is_none());
        assert_eq!(bounds(&map), [(10, 20)]);
    }

    #[test]
    fn update_within_agrees_with_update_range() {
        const PAGES: u64 = 256;
        let prots = [RW, RO, ProtectionFlags::READ_EXEC, ProtectionFlags::NONE];
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..200 {
            let mut map = RegionMap::new();
            for _ in 0..60 {
                let s = rng.below(PAGES);
                let e = (s + 1 + rng.below(12)).min(PAGES);
                let mut r = anon(s, e, prots[rng.below(2) as usize]);
                if rng.below(4) == 0 {
                    // Views of one object at the offsets of their addresses: they merge.
                    r.kind = RegionKind::Shared;
                    r.shared = true;
                    r.object = 1;
                    r.offset = s;
                }
                let _ = map.insert_merged(r);
            }
            for _ in 0..200 {
                let s = rng.below(PAGES);
                let e = (s + 1 + rng.below(8)).min(PAGES);
                let prot = prots[rng.below(4) as usize];
                let (start, end) = (s * P, e * P);
                let mut expected = map.clone();
                expected.update_range(start, end, |r| r.prot = prot);
                let within = map.find(start).is_some_and(|r| end <= r.end);
                let was = map.find(start).copied();
                match map.update_within(start, end, |r| r.prot = prot) {
                    Some((old, piece)) => {
                        assert!(within);
                        assert_eq!(Some(old), was);
                        assert_eq!((piece.start, piece.end, piece.prot), (start, end, prot));
                    }
                    None => {
                        assert!(!within);
                        map.update_range(start, end, |r| r.prot = prot);
                    }
                }
                let got: Vec<Region> = map.iter().copied().collect();
                let want: Vec<Region> = expected.iter().copied().collect();
                assert_eq!(got, want, "update of [{s}, {e}) to {prot:?}");
            }
        }
    }

    #[test]
    fn find_free_first_fit_with_holes() {
        let mut map = RegionMap::new();
        map.insert(anon(10, 20, RW)).unwrap();
        map.insert(anon(21, 30, RW)).unwrap();
        map.insert(anon(33, 40, RW)).unwrap();
        assert_eq!(map.find_free(P, 10 * P, 100 * P), Some(20 * P));
        assert_eq!(map.find_free(2 * P, 10 * P, 100 * P), Some(30 * P));
        assert_eq!(map.find_free(3 * P, 10 * P, 100 * P), Some(30 * P));
        assert_eq!(map.find_free(4 * P, 10 * P, 100 * P), Some(40 * P));
        assert_eq!(map.find_free(4 * P, 0, 100 * P), Some(0));
        assert_eq!(map.find_free(11 * P, 0, 100 * P), Some(40 * P));
        assert_eq!(map.find_free(4 * P, 10 * P, 43 * P), None);
        assert_eq!(map.find_free(3 * P, 10 * P, 43 * P), Some(30 * P));
        assert_eq!(map.find_free(P, 15 * P, 16 * P), None);
        assert_eq!(map.find_free(0, 0, 100 * P), None);
        assert_eq!(map.find_free(P, 50 * P, 50 * P), None);
        assert_eq!(map.find_free(P, 20 * P, 21 * P), Some(20 * P));
    }

    #[test]
    fn find_free_follows_removals() {
        let mut map = RegionMap::new();
        for i in 0..100 {
            let at = map.find_free(P, 10 * P, 1000 * P).unwrap();
            assert_eq!(at, (10 + i) * P);
            map.insert(anon(at / P, at / P + 1, if i % 2 == 0 { RW } else { RO }))
                .unwrap();
        }
        map.remove_range(50 * P, 51 * P);
        assert_eq!(map.find_free(P, 10 * P, 1000 * P), Some(50 * P));
        assert_eq!(map.find_free(2 * P, 10 * P, 1000 * P), Some(110 * P));
        map.remove_range(10 * P, 11 * P);
        assert_eq!(map.find_free(P, 10 * P, 1000 * P), Some(10 * P));
        assert_eq!(map.find_free(P, 12 * P, 1000 * P), Some(50 * P));
        assert_eq!(map.clone().find_free(P, 11 * P, 1000 * P), Some(50 * P));
    }

    #[test]
    fn sequential_placement_is_logarithmic() {
        // Walking the regions below the answer would make this quadratic (about 10^9 visits).
        let mut map = RegionMap::new();
        for i in 0..50_000u64 {
            let at = map.find_free(P, 16 * P, u64::MAX).unwrap();
            assert_eq!(at, (16 + i) * P);
            let prot = if i % 2 == 0 { RW } else { RO };
            map.insert_merged(anon(at / P, at / P + 1, prot)).unwrap();
        }
        assert_eq!(map.len(), 50_000);
    }

    /// A tiny deterministic generator (xorshift64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// The naive model: one entry per page, `Some(tag)` when mapped.
    struct Model(Vec<Option<u8>>);

    fn tag(r: &Region) -> u8 {
        r.prot.bits() * 16 + r.kind as u8
    }

    impl Model {
        fn is_free(&self, s: usize, e: usize) -> bool {
            self.0[s..e].iter().all(Option::is_none)
        }

        fn find_free(&self, len: usize, lo: usize, hi: usize) -> Option<usize> {
            let mut run = 0;
            for p in lo..hi {
                run = if self.0[p].is_none() { run + 1 } else { 0 };
                if run == len {
                    return Some(p + 1 - len);
                }
            }
            None
        }
    }

    fn check_against_model(map: &RegionMap, model: &Model) {
        let mut page = 0;
        for r in map.iter() {
            assert!(r.is_valid());
            let (s, e) = ((r.start / P) as usize, (r.end / P) as usize);
            assert!(model.0[page..s].iter().all(Option::is_none));
            assert!(model.0[s..e].iter().all(|&t| t == Some(tag(r))));
            page = e;
        }
        assert!(model.0[page..].iter().all(Option::is_none));
        // The gaps and the regions tile the address space, no two gaps adjacent.
        let mut pieces: Vec<(u64, u64, bool)> = map.gaps().map(|(s, e)| (s, e, true)).collect();
        pieces.extend(map.iter().map(|r| (r.start, r.end, false)));
        pieces.sort_unstable();
        let mut at = 0;
        let mut gap_before = false;
        for (s, e, gap) in pieces {
            assert_eq!(s, at, "a hole or an overlap at {s:#x}");
            assert!(!(gap && gap_before), "adjacent gaps at {s:#x}");
            (at, gap_before) = (e, gap);
        }
        assert_eq!(at, u64::MAX);
        for (a, b) in map.iter().zip(map.iter().skip(1)) {
            assert!(!a.can_merge_with(b), "unmerged neighbours {a:?} {b:?}");
        }
    }

    #[test]
    fn randomized_against_naive_model() {
        const PAGES: usize = 1 << 17;
        let prots = [RW, RO, ProtectionFlags::READ_EXEC, ProtectionFlags::NONE];
        let kinds = [RegionKind::Anonymous, RegionKind::Heap, RegionKind::Data];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut map = RegionMap::new();
        let mut model = Model(vec![None; PAGES]);
        let mut max_regions = 0;
        for step in 0..40_000 {
            let s = rng.below(PAGES as u64) as usize;
            let len = 1 + rng.below(if step < 20_000 { 4 } else { 40 }) as usize;
            let e = (s + len).min(PAGES);
            match rng.below(10) {
                0..=5 => {
                    let r = Region::new(
                        s as u64 * P,
                        e as u64 * P,
                        prots[rng.below(4) as usize],
                        kinds[rng.below(3) as usize],
                    );
                    let free = model.is_free(s, e);
                    assert_eq!(map.insert_merged(r).is_ok(), free);
                    if free {
                        model.0[s..e].fill(Some(tag(&r)));
                    }
                }
                6 if step >= 20_000 => {
                    let removed = map.remove_range(s as u64 * P, e as u64 * P);
                    let pages: u64 = removed.iter().map(Region::pages).sum();
                    let expected = model.0[s..e].iter().filter(|t| t.is_some()).count();
                    assert_eq!(pages as usize, expected);
                    model.0[s..e].fill(None);
                }
                7 => {
                    let prot = prots[rng.below(4) as usize];
                    map.update_range(s as u64 * P, e as u64 * P, |r| r.prot = prot);
                    for t in model.0[s..e].iter_mut().flatten() {
                        *t = prot.bits() * 16 + (*t % 16);
                    }
                }
                _ => {
                    let lo = if rng.below(2) == 0 { 0 } else { s };
                    let hi = (lo + 1 + rng.below(PAGES as u64) as usize).min(PAGES);
                    let got = map.find_free(len as u64 * P, lo as u64 * P, hi as u64 * P);
                    let want = model.find_free(len, lo, hi);
                    assert_eq!(got, want.map(|p| p as u64 * P), "find_free {len} {lo} {hi}");
                    assert_eq!(
                        map.covered(s as u64 * P, e as u64 * P),
                        model.0[s..e].iter().all(Option::is_some)
                    );
                    let addr = s as u64 * P + rng.below(P);
                    assert_eq!(map.find(addr).map(tag), model.0[s]);
                }
            }
            max_regions = max_regions.max(map.len());
            if step % 2000 == 0 {
                check_against_model(&map, &model);
            }
        }
        check_against_model(&map, &model);
        assert!(max_regions >= 10_000, "only {max_regions} regions");
    }
}
