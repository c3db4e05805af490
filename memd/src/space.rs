//! `AddressSpace`: one process's memory as memd keeps it — its regions, which pages are backed
//! by which frame, its break and its limits.
//!
//! The hardware page tables are derived from this: a resident page is mapped iff its region's
//! protection is not `NONE`, writable iff the region allows writes and the frame is not shared
//! copy-on-write.

use crate::daemon::Pid;
use crate::kernel::{FrameAddr, PAGE_SIZE, PageOp, SpaceId};
use crate::layout::{self, Placement};
use crate::pages::PageMap;
use crate::region::{Region, RegionKind, RegionMap};
use crate::tables::SpaceTables;
use alloc::vec::Vec;
use libvm::ProtectionFlags;

/// Per-process limits (like `RLIMIT_AS` and `RLIMIT_DATA`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of address space the regions may cover.
    pub address_space: u64,
    /// Most bytes the heap may hold (break minus heap start).
    pub data: u64,
    /// Most regions the address space may have (like Linux's `vm.max_map_count`): every
    /// region costs memd memory, so a process cannot make memd run out by splitting.
    pub regions: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            address_space: layout::USER_END,
            data: layout::MMAP_BASE - layout::HEAP_START,
            regions: 65_530,
        }
    }
}

/// One process's address space.
pub struct AddressSpace {
    /// The process.
    pub pid: Pid,
    /// The kernel's address space.
    pub space: SpaceId,
    /// Its regions.
    pub regions: RegionMap,
    /// Resident pages: page address to frame.
    pub pages: PageMap,
    /// Bytes covered by regions.
    pub mapped_bytes: u64,
    /// First byte of the heap.
    pub heap_start: u64,
    /// The break.
    pub brk: u64,
    /// Whether a private page may map a frame shared copy-on-write with another space (set
    /// in both by a fork, never cleared). While it is false, every frame of a private region
    /// is this space's alone (only a fork shares one), and a resident page's access is its
    /// region's.
    pub cow: bool,
    /// Pages [`AddressSpace::cow`] may be checked for: each `mprotect` that took the per-page
    /// path because of it adds [`COW_CHECK_CREDIT`]; once they cover the resident pages, a
    /// check that finds no shared private frame clears it (the cost stays O(1) a call).
    pub cow_credit: u64,
    /// The page a walk of copy-on-write faults would fault at next: the page after the last
    /// one copied (0: none yet). A fault there copies the pages after it too.
    pub cow_next: u64,
    /// Its limits.
    pub limits: Limits,
    /// The frames memd donated to the kernel as its page tables.
    pub tables: SpaceTables,
    /// Where its mmap area, stack and heap begin.
    pub placement: Placement,
    /// The limits the process set itself (`prlimit`).
    pub rlimits: crate::rlimit::Rlimits,
    /// Whether every mapping to come is locked in (`mlockall(MCL_FUTURE)`).
    pub lock_future: bool,
    /// W^X (Linux's MDWE): no page writable and executable at once, none made executable
    /// that was not. Set for good; inherited by forks and spawns.
    pub deny_write_exec: bool,
    /// Its fault handler, if it registered one (inherited by forks).
    pub fault_handler: Option<crate::fault_handler::FaultHandler>,
    /// The 2 MiB blocks mapped as one huge page each (see [`crate::huge`]).
    pub huge: alloc::collections::BTreeSet<u64>,
    /// Whether the process has ended: this is the empty image its ending left behind for
    /// those still holding a handle to it (see [`crate::Memd::lock_live`]). Nothing acts on it.
    pub ended: bool,
    /// The device ranges it holds the capability of (bit `i`: device `i`, see
    /// [`crate::device`]); a fork's child holds none.
    pub devices: u32,
}

impl AddressSpace {
    /// An empty address space of process `pid` in kernel space `space`, laid out as
    /// `placement` says; `zero` is memd's shared zero frame (not counted as resident memory
    /// the way Linux counts it, [`PageMap::rss`]).
    pub fn new(
        pid: Pid,
        space: SpaceId,
        limits: Limits,
        placement: Placement,
        zero: Option<FrameAddr>,
    ) -> AddressSpace {
        let heap_start = layout::HEAP_START + placement.heap_offset;
        AddressSpace {
            pid,
            space,
            regions: RegionMap::new(),
            pages: PageMap::with_zero(zero),
            mapped_bytes: 0,
            heap_start,
            brk: heap_start,
            cow: false,
            cow_credit: 0,
            cow_next: 0,
            limits,
            tables: SpaceTables::default(),
            placement,
            rlimits: crate::rlimit::Rlimits::new(&limits),
            lock_future: false,
            fault_handler: None,
            huge: alloc::collections::BTreeSet::new(),
            deny_write_exec: false,
            ended: false,
            devices: 0,
        }
    }

    /// Adds a region (the range must be free), merging it with compatible neighbours.
    pub fn add_region(&mut self, region: Region) {
        self.mapped_bytes += region.end - region.start;
        let inserted = self.regions.insert(region);
        debug_assert!(inserted.is_ok(), "region added over another");
        self.regions.merge_around(region.start, region.end);
    }

    /// Removes every region piece inside `[start, end)` and returns them.
    pub fn remove_regions(&mut self, start: u64, end: u64) -> Vec<Region> {
        let removed = self.regions.remove_range(start, end);
        for r in &removed {
            self.mapped_bytes -= r.end - r.start;
        }
        removed
    }

    /// Removes the resident pages of `[start, end)` from the page map, calling `f` with each
    /// (page, frame) in address order: a few at a time, with no allocation, however many.
    pub fn take_pages(&mut self, start: u64, end: u64, mut f: impl FnMut(u64, FrameAddr)) {
        const CHUNK: usize = 64;
        loop {
            let mut chunk = [(0, 0); CHUNK];
            let mut n = 0;
            for (slot, (page, frame)) in chunk.iter_mut().zip(self.pages.range(start, end)) {
                *slot = (page, frame);
                n += 1;
            }
            if n == 0 {
                return;
            }
            for &(page, frame) in &chunk[..n] {
                self.pages.remove(page);
                f(page, frame);
            }
        }
    }

    /// Resident pages in `[start, end)`.
    pub fn resident(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, FrameAddr)> + '_ {
        self.pages.range(start, end)
    }
}

/// The access a resident page of `region` gets in the page tables, given its frame's reference
/// count: copy-on-write frames (private, shared by several mappings) are never writable. (A
/// write-only copy-on-write page is mapped readable: x86 cannot express write-only, and a
/// present page is always readable.)
pub fn page_prot(region: &Region, refcount: u32) -> ProtectionFlags {
    if region.object == 0 && refcount > 1 && region.prot.contains(ProtectionFlags::WRITE) {
        (region.prot - ProtectionFlags::WRITE) | ProtectionFlags::READ
    } else {
        region.prot
    }
}

/// Appends the operations that bring the page tables of `[start, end)` in line with the
/// regions, for pages resident there: one `Prune` where the protection is `NONE` (the page
/// tables map nothing of it: those under it that then map nothing go back), and
/// `Protect` ranges (coalesced runs of equal access) or `Map`s elsewhere. `remap` chooses `Map`
/// (pages not currently in the page tables) over `Protect` (pages that are).
pub fn sync_ops(
    space: &AddressSpace,
    start: u64,
    end: u64,
    refcount: impl Fn(FrameAddr) -> u32,
    remap: bool,
    ops: &mut impl Extend<PageOp>,
) {
    let mut run = None;
    for region in space.regions.overlapping(start, end) {
        sync_piece(space, region, start, end, &refcount, remap, &mut run, ops);
    }
    flush_run(&mut run, ops);
}

/// [`sync_ops`] for a range that lies inside one region, `region` (as it is now in the map):
/// the same operations, without looking the region up again.
pub fn sync_region_ops(
    space: &AddressSpace,
    region: &Region,
    start: u64,
    end: u64,
    refcount: impl Fn(FrameAddr) -> u32,
    remap: bool,
    ops: &mut impl Extend<PageOp>,
) {
    debug_assert!(region.start <= start && end <= region.end);
    let mut run = None;
    sync_piece(space, region, start, end, &refcount, remap, &mut run, ops);
    flush_run(&mut run, ops);
}

/// Pages of [`AddressSpace::cow_credit`] one per-page `mprotect` earns.
pub const COW_CHECK_CREDIT: u64 = 64;

/// Most pages [`uniform_op`] covers with one operation: beyond, the kernel would scan page
/// tables where few pages may be resident, and the resident pages are listed instead.
pub const UNIFORM_MAX_PAGES: u64 = 512;

/// The one operation that brings the page tables of `[start, end)`, inside `region` (as it is
/// now in `space`'s map), in line with it when every resident page there gets the region's
/// own access — what [`sync_region_ops`] would list page by page, with no page looked up: an
/// `Prune` of the range for `NONE`, else a `Protect` of the range (the kernel skips the absent
/// pages). `None` when a resident page's access may differ (write access to private memory
/// of a space that may hold copy-on-write frames, see [`page_prot`] and
/// [`AddressSpace::cow`]), when `remap` (the pages are not in the page tables), and for ranges
/// above [`UNIFORM_MAX_PAGES`].
pub fn uniform_op(
    space: &AddressSpace,
    region: &Region,
    start: u64,
    end: u64,
    remap: bool,
) -> Option<PageOp> {
    debug_assert!(region.start <= start && end <= region.end);
    let pages = (end - start) / PAGE_SIZE;
    if region.prot == ProtectionFlags::NONE {
        return Some(PageOp::Prune { page: start, pages });
    }
    if region.kind == RegionKind::Device {
        // Device pages are never resident and never copy-on-write: the range is protected
        // whole (the pages a `PROT_NONE` took away come back at their next fault).
        return Some(PageOp::Protect {
            page: start,
            pages,
            prot: region.prot,
        });
    }
    let cow = space.cow && region.object == 0 && region.prot.contains(ProtectionFlags::WRITE);
    (!remap && !cow && pages <= UNIFORM_MAX_PAGES).then_some(PageOp::Protect {
        page: start,
        pages,
        prot: region.prot,
    })
}

/// A run of resident pages `[start, end)` with the same access, not yet pushed.
type Run = Option<(u64, u64, ProtectionFlags)>;

/// The operations of the part of `region` inside `[start, end)`, continuing `run`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn sync_piece(
    space: &AddressSpace,
    region: &Region,
    start: u64,
    end: u64,
    refcount: &impl Fn(FrameAddr) -> u32,
    remap: bool,
    run: &mut Run,
    ops: &mut impl Extend<PageOp>,
) {
    let (lo, hi) = (region.start.max(start), region.end.min(end));
    if region.prot == ProtectionFlags::NONE || region.kind == RegionKind::Device {
        flush_run(run, ops);
        ops.extend([
            uniform_op(space, region, lo, hi, remap).unwrap_or(PageOp::Prune {
                page: lo,
                pages: (hi - lo) / PAGE_SIZE,
            }),
        ]);
        return;
    }
    for (page, frame) in space.resident(lo, hi) {
        let prot = page_prot(region, refcount(frame));
        if remap {
            ops.extend([PageOp::Map { page, frame, prot }]);
            continue;
        }
        match *run {
            Some((s, e, p)) if e == page && p == prot => *run = Some((s, e + PAGE_SIZE, p)),
            _ => {
                flush_run(run, ops);
                *run = Some((page, page + PAGE_SIZE, prot));
            }
        }
    }
}

fn flush_run(run: &mut Run, ops: &mut impl Extend<PageOp>) {
    if let Some((s, e, prot)) = run.take() {
        ops.extend([PageOp::Protect {
            page: s,
            pages: (e - s) / PAGE_SIZE,
            prot,
        }]);
    }
}
