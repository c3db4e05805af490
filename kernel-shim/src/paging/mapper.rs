//! A batch of changes to one user address space.

use super::addr::{
    self, HUGE_PAGE_SIZE, PAGE_SIZE, entry_span, table_index, user_page, user_range,
};
use super::error::PagingError;
use super::flush::Flush;
use super::table_alloc::{TableAlloc, new_table};
use super::translate::{Translation, page_table_translate};
use super::window::PhysWindow;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::structures::paging::{PageTable, PageTableFlags};
use x86_64::{PhysAddr, VirtAddr};

/// Flags of the entries that link tables: the leaf entry decides what an access may do.
const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT
    .union(PageTableFlags::WRITABLE)
    .union(PageTableFlags::USER_ACCESSIBLE);

/// A batch of changes to the user half of one address space, with the TLB flush it owes.
///
/// Every change is applied at once; the invalidations collect in the batch and
/// [`finish`](Mapper::finish) hands them over as one [`Flush`]. Dropping a mapper without
/// calling `finish` loses them.
#[must_use = "a batch's TLB flush comes from finish()"]
pub struct Mapper<'a, A: TableAlloc + ?Sized> {
    window: PhysWindow,
    root: PhysAddr,
    alloc: &'a mut A,
    flush: Flush,
    /// The PT of the last map and the 2 MiB it covers (`virt / 2 MiB`): the next map in the
    /// same 2 MiB writes its leaf without walking down again. Forgotten by every unmap (which
    /// may free tables).
    last_pt: Option<(u64, PhysAddr)>,
}

impl<'a, A: TableAlloc + ?Sized> Mapper<'a, A> {
    /// Starts a batch on the space whose PML4 is at `root`; new tables come from `alloc`.
    pub fn new(window: PhysWindow, root: PhysAddr, alloc: &'a mut A) -> Mapper<'a, A> {
        Mapper {
            window,
            root,
            alloc,
            flush: Flush::new(),
            last_pt: None,
        }
    }

    /// Maps the page at `virt` to the frame at `phys` with leaf `flags`, creating the tables
    /// on the way. Refuses with `AlreadyMapped` if the page is mapped, and with `InvalidFlags`
    /// if `flags` lacks `PRESENT`. On error nothing has changed. Needs no flush.
    pub fn map(
        &mut self,
        virt: u64,
        phys: PhysAddr,
        flags: PageTableFlags,
    ) -> Result<(), PagingError> {
        self.set_leaf(virt, phys, flags, false).map(drop)
    }

    /// Maps like [`map`](Mapper::map) but replaces an existing mapping of the page, and
    /// returns its frame (the page is then recorded for the flush).
    pub fn remap(
        &mut self,
        virt: u64,
        phys: PhysAddr,
        flags: PageTableFlags,
    ) -> Result<Option<PhysAddr>, PagingError> {
        self.set_leaf(virt, phys, flags, true)
    }

    /// Unmaps the page at `virt`, returning its frame and leaf flags, and frees the tables
    /// that became empty.
    pub fn unmap(&mut self, virt: u64) -> Result<(PhysAddr, PageTableFlags), PagingError> {
        self.last_pt = None;
        let page = user_page(virt)?;
        let path = Path::walk(self.window, self.root, virt)?;
        let pt = path.table(1).ok_or(PagingError::NotMapped)?;
        let leaf = self.window.entry(pt, table_index(virt, 1))?;
        if !leaf.flags().contains(PageTableFlags::PRESENT) {
            return Err(PagingError::NotMapped);
        }
        self.window
            .put_entry(pt, table_index(virt, 1), PageTableEntry::new())?;
        self.flush.page(page);
        for level in 1..4 {
            let table = path.tables[usize::from(level) - 1];
            if !self.is_empty(table)? {
                break;
            }
            let parent = path.tables[usize::from(level)];
            self.window
                .put_entry(parent, table_index(virt, level + 1), PageTableEntry::new())?;
            self.alloc.free_table(table);
        }
        Ok((leaf.addr(), leaf.flags()))
    }

    /// Unmaps every present page of the `pages` pages at `virt`, calling `f` with each page
    /// and its frame, and returns how many there were.
    ///
    /// Absent tables are skipped whole (a 1 GiB hole costs one entry read). The tables stay,
    /// empty or not (the next mapping near reuses them, as Linux keeps a table while a mapping
    /// is near): [`unmap_and_prune`](Mapper::unmap_and_prune) gives them back. A huge page
    /// the range covers whole goes (its 512 pages given to `f`); one it covers in part stops
    /// it (`HugePage`), with the pages before unmapped and recorded
    /// ([`page_table_cuts_huge`](super::page_table_cuts_huge) finds it first).
    pub fn unmap_range(
        &mut self,
        virt: u64,
        pages: u64,
        f: impl FnMut(VirtAddr, PhysAddr),
    ) -> Result<u64, PagingError> {
        self.unmap_with(virt, pages, false, f)
    }

    /// [`unmap_range`](Mapper::unmap_range), then frees every table under the range that maps
    /// nothing (one wholly inside the range is looked at without a walk of its entries), and
    /// the tables above it that it leaves empty.
    pub fn unmap_and_prune(
        &mut self,
        virt: u64,
        pages: u64,
        f: impl FnMut(VirtAddr, PhysAddr),
    ) -> Result<u64, PagingError> {
        self.unmap_with(virt, pages, true, f)
    }

    fn unmap_with(
        &mut self,
        virt: u64,
        pages: u64,
        prune: bool,
        mut f: impl FnMut(VirtAddr, PhysAddr),
    ) -> Result<u64, PagingError> {
        self.last_pt = None;
        let end = user_range(virt, pages)?;
        let mut count = 0;
        self.unmap_in(self.root, 4, virt, end, prune, &mut f, &mut count)?;
        Ok(count)
    }

    /// Sets the leaf flags of the mapped page at `virt` (keeping its frame) and returns the
    /// old ones.
    pub fn protect(
        &mut self,
        virt: u64,
        flags: PageTableFlags,
    ) -> Result<PageTableFlags, PagingError> {
        protect_page(self.window, self.root, virt, flags, &mut self.flush)
    }

    /// Sets the leaf flags of every present page of the `pages` pages at `virt` and returns
    /// how many there were. Absent pages and tables are skipped.
    pub fn protect_range(
        &mut self,
        virt: u64,
        pages: u64,
        flags: PageTableFlags,
    ) -> Result<u64, PagingError> {
        let end = user_range(virt, pages)?;
        let flags = leaf_flags(flags)?;
        let mut count = 0;
        self.protect_in(self.root, 4, virt, end, flags, &mut count)?;
        Ok(count)
    }

    /// Maps the 2 MiB at `virt` (aligned) to the 2 MiB of frames at `phys` (aligned) as one
    /// huge page with leaf `flags`, creating the PDPT and PD on the way, and returns the frame
    /// of the huge page it replaced (the page is then recorded for the flush). Refuses with
    /// `AlreadyMapped` when a page table is there (pages of 4 KiB, or an empty table), and as
    /// `map` does otherwise; on error nothing has changed.
    pub fn map_huge(
        &mut self,
        virt: u64,
        phys: PhysAddr,
        flags: PageTableFlags,
    ) -> Result<Option<PhysAddr>, PagingError> {
        self.last_pt = None;
        let page = user_page(virt)?;
        user_range(virt, HUGE_PAGE_SIZE / PAGE_SIZE)?;
        if !virt.is_multiple_of(HUGE_PAGE_SIZE) || !phys.as_u64().is_multiple_of(HUGE_PAGE_SIZE) {
            return Err(PagingError::NotAligned);
        }
        if !self.window.contains(phys, HUGE_PAGE_SIZE) {
            return Err(PagingError::OutsideWindow);
        }
        let flags = leaf_flags(flags)? | PageTableFlags::HUGE_PAGE;
        // Decode: the PDPT and PD as far as they exist, and what the PD entry holds.
        let present = |e: &PageTableEntry| e.flags().contains(PageTableFlags::PRESENT);
        let e4 = self.window.entry(self.root, table_index(virt, 4))?;
        let pdpt = if present(&e4) {
            Some(table_of(&e4)?)
        } else {
            None
        };
        let pd = match pdpt {
            Some(t) => {
                let e3 = self.window.entry(t, table_index(virt, 3))?;
                if present(&e3) {
                    Some(table_of(&e3)?)
                } else {
                    None
                }
            }
            None => None,
        };
        let old = match pd {
            Some(t) => {
                let e2 = self.window.entry(t, table_index(virt, 2))?;
                match (present(&e2), e2.flags().contains(PageTableFlags::HUGE_PAGE)) {
                    (false, _) => None,
                    (true, true) => Some(e2.addr()),
                    (true, false) => return Err(PagingError::AlreadyMapped),
                }
            }
            None => None,
        };
        // Take the missing tables before linking any, so a failure changes nothing.
        let missing = usize::from(pdpt.is_none()) + usize::from(pd.is_none());
        let mut new = [PhysAddr::zero(); 2];
        for n in 0..missing {
            match new_table(self.window, self.alloc) {
                Ok(table) => new[n] = table,
                Err(error) => {
                    new[..n]
                        .iter()
                        .for_each(|&table| self.alloc.free_table(table));
                    return Err(error);
                }
            }
        }
        let mut fresh = new[..missing].iter().copied();
        let pdpt = match pdpt {
            Some(t) => t,
            None => {
                let t = fresh.next().ok_or(PagingError::OutOfTableFrames)?;
                self.window
                    .put_entry(self.root, table_index(virt, 4), entry(t, TABLE_FLAGS))?;
                t
            }
        };
        let pd = match pd {
            Some(t) => t,
            None => {
                let t = fresh.next().ok_or(PagingError::OutOfTableFrames)?;
                self.window
                    .put_entry(pdpt, table_index(virt, 3), entry(t, TABLE_FLAGS))?;
                t
            }
        };
        self.window
            .put_entry(pd, table_index(virt, 2), entry(phys, flags))?;
        if old.is_some() {
            self.flush.page(page);
        }
        Ok(old)
    }

    /// Splits the huge page at `virt` (aligned) into the 512 pages of a new page table: the
    /// same frames, the same access. `NotMapped` when no huge page is there; nothing changes
    /// on error.
    pub fn split_huge(&mut self, virt: u64) -> Result<(), PagingError> {
        self.last_pt = None;
        let page = user_page(virt)?;
        if !virt.is_multiple_of(HUGE_PAGE_SIZE) {
            return Err(PagingError::NotAligned);
        }
        let pd = huge_pd(self.window, self.root, virt)?.ok_or(PagingError::NotMapped)?;
        let index = table_index(virt, 2);
        let huge = self.window.entry(pd, index)?;
        let base = huge.addr();
        let flags = huge.flags() - PageTableFlags::HUGE_PAGE;
        let pt = new_table(self.window, self.alloc)?;
        self.window.with_table(pt, |t| {
            for (i, e) in t.iter_mut().enumerate() {
                *e = entry(base + i as u64 * PAGE_SIZE, flags);
            }
        })?;
        self.window.put_entry(pd, index, entry(pt, TABLE_FLAGS))?;
        self.flush.page(page);
        Ok(())
    }

    /// Translates `virt` as the tables stand now (see [`page_table_translate`]).
    pub fn translate(&self, virt: u64) -> Option<Translation> {
        page_table_translate(self.window, self.root, virt)
    }

    /// The allocator new tables come from (to add to it in the middle of a batch).
    pub fn tables(&mut self) -> &mut A {
        self.alloc
    }

    /// Ends the batch: the TLB invalidations its changes need.
    #[inline(always)]
    pub fn finish(self) -> Flush {
        self.flush
    }

    /// Writes the leaf entry of `virt`; the common part of `map` and `remap`.
    fn set_leaf(
        &mut self,
        virt: u64,
        phys: PhysAddr,
        flags: PageTableFlags,
        replace: bool,
    ) -> Result<Option<PhysAddr>, PagingError> {
        // Decode: check everything and find what is missing.
        let page = user_page(virt)?;
        addr::frame(self.window, phys)?;
        let flags = leaf_flags(flags)?;
        let span = entry_span(2);
        if let Some((block, pt)) = self.last_pt
            && block == virt / span
        {
            // The PT of the previous map: no table to walk to or to create.
            let index = table_index(virt, 1);
            let leaf = self.window.entry(pt, index)?;
            let present = leaf.flags().contains(PageTableFlags::PRESENT);
            if present && !replace {
                return Err(PagingError::AlreadyMapped);
            }
            self.window.put_entry(pt, index, entry(phys, flags))?;
            if present {
                self.flush.page(page);
            }
            return Ok(present.then(|| leaf.addr()));
        }
        let path = Path::walk(self.window, self.root, virt)?;
        let old = match path.table(1) {
            Some(pt) => {
                let leaf = self.window.entry(pt, table_index(virt, 1))?;
                let present = leaf.flags().contains(PageTableFlags::PRESENT);
                if present && !replace {
                    return Err(PagingError::AlreadyMapped);
                }
                present.then(|| leaf.addr())
            }
            None => None,
        };
        // Take every missing table before linking any, so a failure changes nothing.
        let missing = usize::from(path.lowest) - 1;
        let mut new = [PhysAddr::zero(); 3];
        for n in 0..missing {
            match new_table(self.window, self.alloc) {
                Ok(table) => new[n] = table,
                Err(error) => {
                    new[..n]
                        .iter()
                        .for_each(|&table| self.alloc.free_table(table));
                    return Err(error);
                }
            }
        }
        // Perform: every table below was checked above, so these writes cannot fail.
        let mut level = path.lowest;
        let mut table = path.tables[usize::from(level) - 1];
        for &child in &new[..missing] {
            self.window
                .put_entry(table, table_index(virt, level), entry(child, TABLE_FLAGS))?;
            table = child;
            level -= 1;
        }
        self.window
            .put_entry(table, table_index(virt, 1), entry(phys, flags))?;
        self.last_pt = Some((virt / span, table));
        if old.is_some() {
            self.flush.page(page);
        }
        Ok(old)
    }

    /// Unmaps the present pages of `[start, end)` under the level-`level` table at `table`;
    /// with `prune`, frees the tables under it that map nothing after.
    #[allow(clippy::too_many_arguments)]
    fn unmap_in<F: FnMut(VirtAddr, PhysAddr)>(
        &mut self,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
        prune: bool,
        f: &mut F,
        count: &mut u64,
    ) -> Result<(), PagingError> {
        let span = entry_span(level);
        let mut at = start;
        while at < end {
            let next = (at & !(span - 1)) + span;
            let index = table_index(at, level);
            let entry = self.window.entry(table, index)?;
            if entry.flags().contains(PageTableFlags::PRESENT) {
                if level == 1 {
                    self.window.put_entry(table, index, PageTableEntry::new())?;
                    let page = VirtAddr::new(at);
                    self.flush.page(page);
                    f(page, entry.addr());
                    *count += 1;
                } else if level == 2 && entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                    // A huge page goes whole, or not at all.
                    if !at.is_multiple_of(span) || next > end {
                        return Err(PagingError::HugePage);
                    }
                    self.window.put_entry(table, index, PageTableEntry::new())?;
                    self.flush.page(VirtAddr::new(at));
                    for i in 0..span / PAGE_SIZE {
                        f(
                            VirtAddr::new(at + i * PAGE_SIZE),
                            entry.addr() + i * PAGE_SIZE,
                        );
                    }
                    *count += span / PAGE_SIZE;
                } else {
                    let child = table_of(&entry)?;
                    // An empty table wholly inside a pruned range goes without a walk.
                    let whole = at.is_multiple_of(span) && next <= end;
                    let empty = prune && whole && self.is_empty(child)?;
                    if !empty {
                        self.unmap_in(child, level - 1, at, next.min(end), prune, f, count)?;
                    }
                    if empty || (prune && self.is_empty(child)?) {
                        self.window.put_entry(table, index, PageTableEntry::new())?;
                        self.alloc.free_table(child);
                    }
                }
            }
            at = next;
        }
        Ok(())
    }

    /// Sets `flags` on the present pages of `[start, end)` under the level-`level` table at
    /// `table`.
    fn protect_in(
        &mut self,
        table: PhysAddr,
        level: u8,
        start: u64,
        end: u64,
        flags: PageTableFlags,
        count: &mut u64,
    ) -> Result<(), PagingError> {
        let span = entry_span(level);
        let mut at = start;
        while at < end {
            let next = (at & !(span - 1)) + span;
            let index = table_index(at, level);
            let entry = self.window.entry(table, index)?;
            if entry.flags().contains(PageTableFlags::PRESENT) {
                if level == 1 {
                    let kept = with_caching(flags, entry.flags());
                    self.window
                        .with_table(table, |t| t[index].set_flags(kept))?;
                    self.flush.page(VirtAddr::new(at));
                    *count += 1;
                } else if level == 2 && entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                    // A huge page changes whole, or not at all.
                    if !at.is_multiple_of(span) || next > end {
                        return Err(PagingError::HugePage);
                    }
                    let huge = flags | PageTableFlags::HUGE_PAGE;
                    self.window
                        .with_table(table, |t| t[index].set_flags(huge))?;
                    self.flush.page(VirtAddr::new(at));
                    *count += span / PAGE_SIZE;
                } else {
                    let child = table_of(&entry)?;
                    self.protect_in(child, level - 1, at, next.min(end), flags, count)?;
                }
            }
            at = next;
        }
        Ok(())
    }

    /// Whether every entry of the table at `table` is zero: the OR of 16 entries at a time,
    /// stopping at the first group with a bit set (a table that just became empty is read
    /// whole, in about 1.3 instructions an entry instead of 4).
    fn is_empty(&self, table: PhysAddr) -> Result<bool, PagingError> {
        self.window.with_table(table, |t| {
            // SAFETY: a `PageTable` is 512 `PageTableEntry`s, each a `repr(transparent)` u64,
            // so it reads as 512 u64s; the borrow is shared and lives only for this read.
            let words = unsafe { &*(t as *const PageTable as *const [u64; 512]) };
            words
                .chunks_exact(16)
                .all(|group| group.iter().fold(0, |acc, w| acc | w) == 0)
        })
    }
}

/// The level-`level` table on the way to `virt` from the PML4 at `root` (1: the PT), when
/// every entry above it is present; `None` at the first absent one.
#[inline(always)]
pub(super) fn present_table(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    level: u8,
) -> Result<Option<PhysAddr>, PagingError> {
    let mut table = root;
    let mut above = 4;
    while above > level {
        let entry = window.entry(table, table_index(virt, above))?;
        if !entry.flags().contains(PageTableFlags::PRESENT) {
            return Ok(None);
        }
        table = table_of(&entry)?;
        above -= 1;
    }
    Ok(Some(table))
}

/// Sets the leaf flags of the mapped page at `virt` in the space at `root`, recording the
/// page in `flush`, and returns the old flags.
pub(super) fn protect_page(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    flags: PageTableFlags,
    flush: &mut Flush,
) -> Result<PageTableFlags, PagingError> {
    let old = set_page_flags(window, root, virt, flags)?;
    flush.page(VirtAddr::new(virt));
    Ok(old)
}

/// Sets the leaf flags of the mapped page at `virt` in the space at `root` and returns the old
/// ones; the caller owes the invalidation of `virt`. One walk straight down to the leaf, with
/// the checks of [`Mapper::protect`]: the address, the flags, and every table inside the
/// window; an absent entry on the way is `NotMapped`, a huge page `HugePage`.
#[inline]
pub(super) fn set_page_flags(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    flags: PageTableFlags,
) -> Result<PageTableFlags, PagingError> {
    user_page(virt)?;
    let flags = leaf_flags(flags)?;
    let table = present_table(window, root, virt, 1)?.ok_or(PagingError::NotMapped)?;
    let index = table_index(virt, 1);
    window.with_table(table, |t| {
        let old = t[index].flags();
        if !old.contains(PageTableFlags::PRESENT) {
            return Err(PagingError::NotMapped);
        }
        t[index].set_flags(with_caching(flags, old));
        Ok(old)
    })?
}

/// Maps `virt` to `phys` with `flags`, replacing, when every table on the way exists already;
/// returns the frame it replaced. `NotMapped`, with nothing changed, when a table is missing
/// (a batch must add it). No flush is recorded: the caller invalidates `virt` where the space
/// may be active when a frame was replaced.
pub(super) fn set_leaf_in_place(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    phys: PhysAddr,
    flags: PageTableFlags,
) -> Result<Option<PhysAddr>, PagingError> {
    user_page(virt)?;
    addr::frame(window, phys)?;
    let flags = leaf_flags(flags)?;
    let table = present_table(window, root, virt, 1)?.ok_or(PagingError::NotMapped)?;
    let index = table_index(virt, 1);
    window.with_table(table, |t| {
        let old = t[index].flags().contains(PageTableFlags::PRESENT);
        let old = old.then(|| t[index].addr());
        t[index] = entry(phys, flags);
        old
    })
}

/// The PD holding the huge page of the 2 MiB at `virt`, if a huge page is there.
pub(super) fn huge_pd(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
) -> Result<Option<PhysAddr>, PagingError> {
    let Some(table) = present_table(window, root, virt, 2)? else {
        return Ok(None);
    };
    let flags = window.entry(table, table_index(virt, 2))?.flags();
    let huge = PageTableFlags::PRESENT | PageTableFlags::HUGE_PAGE;
    Ok(flags.contains(huge).then_some(table))
}

/// The tables on the way to one page, as far as they exist.
struct Path {
    /// `tables[level - 1]` is the level-`level` table, for levels `lowest..=4`.
    tables: [PhysAddr; 4],
    /// The lowest level whose table exists (1 when the PT exists).
    lowest: u8,
}

impl Path {
    /// Follows the entries of `virt` down from the PML4 at `root` while they are present.
    fn walk(window: PhysWindow, root: PhysAddr, virt: u64) -> Result<Path, PagingError> {
        let mut path = Path {
            tables: [root; 4],
            lowest: 4,
        };
        while path.lowest > 1 {
            let level = path.lowest;
            let entry = window.entry(
                path.tables[usize::from(level) - 1],
                table_index(virt, level),
            )?;
            if !entry.flags().contains(PageTableFlags::PRESENT) {
                break;
            }
            path.tables[usize::from(level) - 2] = table_of(&entry)?;
            path.lowest -= 1;
        }
        Ok(path)
    }

    /// The level-`level` table, if it exists.
    fn table(&self, level: u8) -> Option<PhysAddr> {
        (level >= self.lowest).then(|| self.tables[usize::from(level) - 1])
    }
}

/// The table a present PML4, PDPT or PD entry points to.
fn table_of(entry: &PageTableEntry) -> Result<PhysAddr, PagingError> {
    if entry.flags().contains(PageTableFlags::HUGE_PAGE) {
        Err(PagingError::HugePage)
    } else {
        Ok(entry.addr())
    }
}

/// Checks leaf flags: `PRESENT` set, and no bit that is not a flag (it would land in the
/// address field).
fn leaf_flags(flags: PageTableFlags) -> Result<PageTableFlags, PagingError> {
    if flags.contains(PageTableFlags::PRESENT) && PageTableFlags::all().contains(flags) {
        Ok(flags)
    } else {
        Err(PagingError::InvalidFlags)
    }
}

/// The caching bits of a 4 KiB leaf (`PWT`, `PCD`, and `PAT`, bit 7 of a 4 KiB entry).
const CACHING: PageTableFlags = PageTableFlags::WRITE_THROUGH
    .union(PageTableFlags::NO_CACHE)
    .union(PageTableFlags::HUGE_PAGE);

/// Leaf `flags` with the caching of the entry whose flags were `old`: a change of access
/// keeps how the page is cached (a device page stays uncached).
fn with_caching(flags: PageTableFlags, old: PageTableFlags) -> PageTableFlags {
    (flags - CACHING) | (old & CACHING)
}

/// An entry pointing at the page-aligned `addr` with `flags`.
fn entry(addr: PhysAddr, flags: PageTableFlags) -> PageTableEntry {
    let mut entry = PageTableEntry::new();
    entry.set_addr(addr, flags);
    entry
}
