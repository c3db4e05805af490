//! `mmap`, `munmap`, `mprotect` and `madvise`, with Linux's semantics: decode and validate
//! first, then perform.

use crate::daemon::{Memd, Pid};
use crate::fault::{Access, allows};
use crate::hole::Hole;
use crate::kernel::{Kernel, PAGE_SIZE, PageOp, PageOps};
use crate::layout::{self, check_user_range, page_round_up};
use crate::region::{Region, RegionFlags, RegionKind};
use crate::space::{AddressSpace, COW_CHECK_CREDIT, sync_region_ops, uniform_op};
use crate::stats::bump;
use crate::tables::ApplyError;
use alloc::vec::Vec;
use libvm::proto::{
    KNOWN_ADVICE, MADV_COLD, MADV_DOFORK, MADV_DONTFORK, MADV_DONTNEED, MADV_FREE, MADV_HUGEPAGE,
    MADV_KEEPONFORK, MADV_NOHUGEPAGE, MADV_NORMAL, MADV_PAGEOUT, MADV_POPULATE_READ,
    MADV_POPULATE_WRITE, MADV_RANDOM, MADV_REMOVE, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_WIPEONFORK,
};
use libvm::{MmapFlags, ProtectionFlags, VmError};

impl<K: Kernel> Memd<K> {
    /// Maps `len` bytes of anonymous memory for process `pid`; returns the address.
    pub fn mmap(
        &self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: ProtectionFlags,
        flags: MmapFlags,
    ) -> Result<u64, VmError> {
        bump(&self.counters.mmap);
        self.with_space(pid, |space| self.mmap_in(space, addr, len, prot, flags))
    }

    fn mmap_in(
        &self,
        space: &mut AddressSpace,
        addr: u64,
        len: u64,
        prot: ProtectionFlags,
        flags: MmapFlags,
    ) -> Result<u64, VmError> {
        // Decode, in Linux's order. An empty mapping is a bad argument; a length that overflows
        // when rounded to pages is no room (ENOMEM), as on Linux.
        if len == 0 {
            return Err(VmError::InvalidSize);
        }
        let size = page_round_up(len).ok_or(VmError::OutOfMemory)?;
        if !ProtectionFlags::all().contains(prot) {
            return Err(VmError::InvalidFlags);
        }
        let shared = flags.contains(MmapFlags::SHARED);
        if shared == flags.contains(MmapFlags::PRIVATE) || !flags.contains(MmapFlags::ANONYMOUS) {
            return Err(VmError::InvalidFlags);
        }
        // A stack that grows down is not offered (a departure, see README).
        if flags.contains(MmapFlags::GROWSDOWN) {
            return Err(VmError::InvalidFlags);
        }
        if space.deny_write_exec && prot.contains(ProtectionFlags::WRITE | ProtectionFlags::EXECUTE)
        {
            return Err(VmError::PermissionDenied);
        }
        // A thread's stack (private `MAP_STACK`, placed by memd) is a Stack region with a Guard
        // page under it, placed together: an overflow faults on the guard instead of running
        // into whatever lies below.
        let stack = flags.contains(MmapFlags::STACK)
            && !shared
            && !flags.intersects(MmapFlags::FIXED | MmapFlags::FIXED_NOREPLACE);
        let guard = if stack { PAGE_SIZE } else { 0 };
        let size = if stack {
            size.checked_add(guard).ok_or(VmError::OutOfMemory)?
        } else {
            size
        };
        // The new region (and a guard), and a region it may split in two.
        self.region_room(space, 2 + usize::from(stack))?;
        let fixed = flags.intersects(MmapFlags::FIXED | MmapFlags::FIXED_NOREPLACE);
        let start = if fixed {
            // Linux's order: the range (past the user half: ENOMEM), its alignment (EINVAL),
            // the lowest address a process may map (EPERM, `vm.mmap_min_addr`).
            if size > layout::USER_END || addr > layout::USER_END - size {
                return Err(VmError::OutOfMemory);
            }
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(VmError::NotAligned);
            }
            if addr < layout::MIN_ADDR {
                return Err(VmError::NotPermitted);
            }
            if flags.contains(MmapFlags::FIXED_NOREPLACE)
                && !space.regions.is_free(addr, addr + size)
            {
                return Err(VmError::AlreadyMapped);
            }
            addr
        } else {
            // A hint is a hint: rounded down to its page, raised to the lowest address a
            // process may map; taken if it is free, else the mapping goes where memd places.
            let mut hint = addr & !(PAGE_SIZE - 1);
            if hint != 0 && hint < layout::MIN_ADDR {
                hint = layout::MIN_ADDR;
            }
            if flags.contains(MmapFlags::BELOW_2G) {
                // MAP_32BIT: the lowest free gap of [1 GiB, 2 GiB), as Linux on x86_64.
                space
                    .regions
                    .find_free(size, layout::MMAP_BASE, layout::BELOW_2G_END)
                    .ok_or(VmError::OutOfMemory)?
            } else {
                layout::place(&space.regions, size, hint, &space.placement)
                    .ok_or(VmError::OutOfMemory)?
            }
        };
        let end = start + size;
        let replaced: u64 = space
            .regions
            .overlapping(start, end)
            .map(|r| r.end.min(end) - r.start.max(start))
            .sum();
        if space.mapped_bytes - replaced + size > space.limits.address_space {
            return Err(VmError::LimitExceeded);
        }
        // Under mlockall(MCL_FUTURE), or with MAP_LOCKED, the mapping is locked: within
        // RLIMIT_MEMLOCK.
        let locked = space.lock_future || flags.contains(MmapFlags::LOCKED);
        if locked {
            self.lock_room(space, size / PAGE_SIZE)?;
        }
        let object = if shared {
            self.objects
                .lock()
                .create(size / PAGE_SIZE)
                .ok_or(VmError::OutOfMemory)?
        } else {
            0
        };
        // Perform.
        if replaced != 0
            && let Err(e) = self.unmap_in(space, start, end)
        {
            if object != 0 {
                self.objects
                    .lock()
                    .drop_mapped(object, size / PAGE_SIZE, &mut self.frames.lock());
            }
            return Err(e);
        }
        if stack {
            space.add_region(Region {
                start,
                end: start + guard,
                prot: ProtectionFlags::NONE,
                kind: RegionKind::Guard,
                shared: false,
                object: 0,
                flags: RegionFlags::empty(),
                offset: 0,
            });
        }
        let start = start + guard;
        space.add_region(Region {
            start,
            end,
            prot,
            kind: if shared {
                RegionKind::Shared
            } else if stack {
                RegionKind::Stack
            } else {
                RegionKind::Anonymous
            },
            shared,
            object,
            flags: if locked {
                RegionFlags::LOCKED
            } else {
                RegionFlags::empty()
            },
            offset: 0,
        });
        if locked || flags.contains(MmapFlags::POPULATE) {
            // Backed now; short of frames the call still succeeds, as Linux's mmap does for
            // MAP_LOCKED and MAP_POPULATE.
            self.populate(space, start, end);
        }
        Ok(start)
    }

    /// Unmaps `[addr, addr + len)` of process `pid`; unmapped parts are fine.
    pub fn munmap(&self, pid: Pid, addr: u64, len: u64) -> Result<(), VmError> {
        bump(&self.counters.munmap);
        self.with_space(pid, |space| {
            let end = check_user_range(addr, len)?;
            let Some(first) = space.regions.overlapping(addr, end).next().copied() else {
                return Ok(());
            };
            // Only a hole punched inside one region adds one (Linux's munmap can fail so too).
            if first.start < addr && first.end > end {
                self.region_room(space, 1)?;
            }
            self.unmap_regions(space, addr, end, first)
        })
    }

    /// Removes every region and resident page of `[start, end)`: the kernel unmaps the range
    /// (one operation of any size, one flush) first, and only once it has confirmed are the
    /// regions removed and the frames released. A refusal changes nothing (`OutOfMemory`).
    pub(crate) fn unmap_in(
        &self,
        space: &mut AddressSpace,
        start: u64,
        end: u64,
    ) -> Result<(), VmError> {
        let first = space.regions.overlapping(start, end).next().copied();
        match first {
            Some(first) => self.unmap_regions(space, start, end, first),
            None => Ok(()),
        }
    }

    /// [`Memd::unmap_in`], `first` being the first region overlapping `[start, end)`.
    fn unmap_regions(
        &self,
        space: &mut AddressSpace,
        start: u64,
        end: u64,
        first: Region,
    ) -> Result<(), VmError> {
        self.split_huge_edges(space, start, end)?;
        // Only resident pages can be in the page tables; the tables of the 2 MiB spans the
        // unmap leaves without a region go too (see `prune_op`), in the same batch, after
        // the pages (so that the kernel finds them empty without a walk of their entries).
        let mut ops = [PageOp::Unmap { page: 0, pages: 0 }; 2];
        let mut n = 0;
        // (Device pages are never resident: a device region's range is unmapped whole.)
        if space.resident(start, end).next().is_some()
            || space
                .regions
                .overlapping(start, end)
                .any(|r| r.kind == RegionKind::Device)
        {
            ops[n] = PageOp::Unmap {
                page: start,
                pages: (end - start) / PAGE_SIZE,
            };
            n += 1;
        }
        if let Some(prune) = prune_op(space, start, end) {
            ops[n] = prune;
            n += 1;
        }
        if n > 0 {
            self.apply(space, &ops[..n])
                .map_err(|_| VmError::OutOfMemory)?;
            self.forget_huge(space, start, end);
        }
        // Region by region, in address order: no list of them all (memd's heap may not hold
        // one at once).
        let mut next = Some(first);
        while let Some(r) = next {
            let removed = space.remove_regions(r.start.max(start), r.end.min(end));
            self.drop_pages(space, &removed);
            next = if r.end >= end {
                None
            } else {
                space.regions.overlapping(r.end, end).next().copied()
            };
        }
        Ok(())
    }

    /// Gives back the page tables of the 2 MiB spans around `[start, end)`, whose regions are
    /// gone and pages unmapped already, that no region has a byte of (see [`prune_op`]). A
    /// refusal is logged and does no harm: the tables stay the space's, charged to it, and go
    /// at its end.
    pub(crate) fn prune_freed(&self, space: &mut AddressSpace, start: u64, end: u64) {
        let Some(op) = prune_op(space, start, end) else {
            return;
        };
        if let Err(e) = self.apply(space, &[op]) {
            log::warn!("memd: pid {}: page tables not pruned: {:?}", space.pid, e);
        }
    }

    /// Releases the resident pages of the removed regions and their share of objects.
    pub(crate) fn drop_pages(&self, space: &mut AddressSpace, removed: &[Region]) {
        let mut objects = self.objects.lock();
        for r in removed {
            space.take_pages(r.start, r.end, |_, frame| self.frames.drop_ref(frame));
            if r.object != 0 {
                objects.drop_mapped(r.object, r.pages(), &mut self.frames.lock());
            }
        }
    }

    /// Changes the protection of `[addr, addr + len)` of process `pid`. The whole range must be
    /// mapped (`RegionNotFound`, nothing changed, otherwise).
    pub fn mprotect(
        &self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: ProtectionFlags,
    ) -> Result<(), VmError> {
        bump(&self.counters.mprotect);
        self.with_space(pid, |space| self.mprotect_in(space, addr, len, prot))
    }

    /// Clears [`AddressSpace::cow`] once no private page of the space maps a shared frame
    /// (its fork's sharers gone or written, no zero frame mapped), checking only when the
    /// per-page `mprotect`s it cost have earned a look at every resident page
    /// ([`AddressSpace::cow_credit`]). From then on `mprotect` of one region is one operation
    /// again. A page still mapped read-only from its shared days gets its region's access
    /// from that operation, or regains write access at its next fault: its frame is its own.
    fn settle_cow(&self, space: &mut AddressSpace) {
        if !space.cow {
            return;
        }
        space.cow_credit += COW_CHECK_CREDIT;
        if space.cow_credit < space.pages.len() as u64 {
            return;
        }
        space.cow_credit = 0;
        let frames = &self.frames;
        let shared = space.pages.iter().any(|(page, frame)| {
            frames.refcount(frame) > 1 && space.regions.find(page).is_some_and(|r| r.object == 0)
        });
        space.cow = shared;
    }

    fn mprotect_in(
        &self,
        space: &mut AddressSpace,
        addr: u64,
        len: u64,
        prot: ProtectionFlags,
    ) -> Result<(), VmError> {
        // Linux's order: alignment (EINVAL); an empty range changes nothing; a range that
        // overflows is ENOMEM; then the protection (EINVAL); past the user half nothing is
        // mapped (ENOMEM).
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(VmError::NotAligned);
        }
        if len == 0 {
            return Ok(());
        }
        let end = page_round_up(len)
            .and_then(|size| addr.checked_add(size))
            .ok_or(VmError::OutOfMemory)?;
        if !ProtectionFlags::all().contains(prot) {
            return Err(VmError::InvalidFlags);
        }
        if end > layout::USER_END {
            return Err(VmError::RegionNotFound);
        }
        // W^X: never writable and executable at once, never executable where it was not.
        if space.deny_write_exec
            && prot.contains(ProtectionFlags::EXECUTE)
            && (prot.contains(ProtectionFlags::WRITE)
                || space
                    .regions
                    .overlapping(addr, end)
                    .any(|r| !r.prot.contains(ProtectionFlags::EXECUTE)))
        {
            return Err(VmError::PermissionDenied);
        }
        // A range inside a region splits it in three.
        self.region_room(space, 2)?;
        // A huge page the range covers whole keeps its 2 MiB mapping (the kernel protects it
        // whole), unless the change unmaps or maps it again (to or from `PROT_NONE`); those,
        // and the huge pages the range covers in part, are split first.
        // (Asked only of a process with huge pages: the look at the regions costs a descent.)
        if !space.huge.is_empty() {
            let remaps = prot == ProtectionFlags::NONE
                || space
                    .regions
                    .overlapping(addr, end)
                    .any(|r| r.prot == ProtectionFlags::NONE);
            if remaps {
                self.split_huge(space, addr, end)?;
            } else {
                self.split_huge_edges(space, addr, end)?;
            }
        }
        // The common case, a range inside one region: the split and merge with the fewest map
        // operations, then the page-table changes of that one region. If the kernel refuses
        // them, the same update with the old protection gives back the map as it was (the
        // map is kept merged, so its shape follows from what each byte is).
        if let Some((old, piece)) = space.regions.update_within(addr, end, |r| r.prot = prot) {
            if old.prot == prot {
                // Nothing changes: the page tables already agree with the region.
                return Ok(());
            }
            let remap = old.prot == ProtectionFlags::NONE;
            let applied = if let Some(op) = uniform_op(space, &piece, addr, end, remap) {
                // One operation for the whole range: no page to look up, no list to build.
                self.apply(space, &[op])
            } else {
                let mut ops = PageOps::new();
                {
                    let frames = &self.frames;
                    sync_region_ops(
                        space,
                        &piece,
                        addr,
                        end,
                        |f| frames.refcount(f),
                        remap,
                        &mut ops,
                    );
                }
                if ops.is_incomplete() {
                    Err(ApplyError::NoFrames)
                } else {
                    self.apply(space, &ops)
                }
            };
            if applied.is_err() {
                space
                    .regions
                    .update_within(addr, end, |r| r.prot = old.prot);
                return Err(VmError::OutOfMemory);
            }
            self.settle_cow(space);
            return Ok(());
        }
        // Across regions: one pass checks that every byte is mapped (nothing changes
        // otherwise) and makes the pieces as they will be; the page tables change first, the
        // regions once the kernel has accepted.
        let mut cursor = addr;
        let mut pieces = Vec::new();
        for r in space.regions.overlapping(addr, end) {
            if r.start > cursor {
                return Err(VmError::RegionNotFound);
            }
            cursor = r.end;
            if r.prot != prot {
                pieces.push(*r);
            }
        }
        if cursor < end {
            return Err(VmError::RegionNotFound);
        }
        if pieces.is_empty() {
            return Ok(());
        }
        let mut ops = PageOps::new();
        {
            let frames = &self.frames;
            for old in &pieces {
                let piece = Region {
                    start: old.start.max(addr),
                    end: old.end.min(end),
                    prot,
                    ..*old
                };
                let remap = old.prot == ProtectionFlags::NONE;
                sync_region_ops(
                    space,
                    &piece,
                    piece.start,
                    piece.end,
                    |f| frames.refcount(f),
                    remap,
                    &mut ops,
                );
            }
        }
        if ops.is_incomplete() {
            return Err(VmError::OutOfMemory);
        }
        self.apply(space, &ops).map_err(|_| VmError::OutOfMemory)?;
        space.regions.update_range(addr, end, |r| r.prot = prot);
        Ok(())
    }

    /// Advice about `[addr, addr + len)` of process `pid`.
    pub fn madvise(&self, pid: Pid, addr: u64, len: u64, advice: u64) -> Result<(), VmError> {
        bump(&self.counters.madvise);
        let mut holes = Vec::new();
        self.with_space(pid, |space| {
            self.madvise_in(space, addr, len, advice, &mut holes)
        })?;
        self.remove_shared(&holes)
    }

    fn madvise_in(
        &self,
        space: &mut AddressSpace,
        addr: u64,
        len: u64,
        advice: u64,
        holes: &mut Vec<Hole>,
    ) -> Result<(), VmError> {
        // Linux's order: the advice (EINVAL), alignment (EINVAL), a range that overflows
        // (EINVAL); an empty range does nothing; then holes (ENOMEM, nothing done).
        if !KNOWN_ADVICE.contains(&advice) {
            return Err(VmError::InvalidFlags);
        }
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(VmError::NotAligned);
        }
        let end = page_round_up(len)
            .and_then(|size| addr.checked_add(size))
            .ok_or(VmError::InvalidSize)?;
        if end == addr {
            return Ok(());
        }
        if end > layout::USER_END || !space.regions.covered(addr, end) {
            return Err(VmError::RegionNotFound);
        }
        let overlapping = || space.regions.overlapping(addr, end);
        // Device memory has no pages of memd's to drop, or to keep from a fork's child
        // (Linux refuses these for `VM_IO | VM_PFNMAP` mappings).
        if matches!(
            advice,
            MADV_DONTNEED
                | MADV_FREE
                | MADV_REMOVE
                | MADV_DONTFORK
                | MADV_DOFORK
                | MADV_WIPEONFORK
                | MADV_KEEPONFORK
        ) && overlapping().any(|r| r.kind == RegionKind::Device)
        {
            return Err(VmError::InvalidFlags);
        }
        match advice {
            // Accepted; nothing changes (no reclaim yet for COLD and PAGEOUT).
            MADV_NORMAL | MADV_RANDOM | MADV_SEQUENTIAL | MADV_COLD | MADV_PAGEOUT => Ok(()),
            MADV_WILLNEED => {
                self.populate(space, addr, end);
                Ok(())
            }
            MADV_POPULATE_READ | MADV_POPULATE_WRITE => {
                let access = if advice == MADV_POPULATE_WRITE {
                    Access::Write
                } else {
                    Access::Read
                };
                // Where the access would fault, EFAULT, with nothing done (Linux).
                if overlapping().any(|r| !allows(r.prot, access)) {
                    return Err(VmError::BadBuffer);
                }
                self.populate_for(space, addr, end, access)
            }
            MADV_DONTNEED | MADV_FREE => {
                // Lazily freeable memory is private anonymous memory only; locked pages stay.
                if advice == MADV_FREE && overlapping().any(|r| r.object != 0)
                    || overlapping().any(|r| r.flags.contains(RegionFlags::LOCKED))
                {
                    return Err(VmError::InvalidFlags);
                }
                if space.resident(addr, end).next().is_none() {
                    return Ok(());
                }
                self.split_huge_edges(space, addr, end)?;
                // The frames are released only once the kernel has unmapped them.
                let op = PageOp::Unmap {
                    page: addr,
                    pages: (end - addr) / PAGE_SIZE,
                };
                self.apply(space, &[op]).map_err(|_| VmError::OutOfMemory)?;
                self.forget_huge(space, addr, end);
                let frames = &self.frames;
                space.take_pages(addr, end, |_, frame| frames.drop_ref(frame));
                Ok(())
            }
            MADV_REMOVE => {
                // Linux's order: locked or private memory EINVAL, read-only EACCES.
                if overlapping().any(|r| r.object == 0 || r.flags.contains(RegionFlags::LOCKED)) {
                    return Err(VmError::InvalidFlags);
                }
                if overlapping().any(|r| !r.prot.contains(ProtectionFlags::WRITE)) {
                    return Err(VmError::PermissionDenied);
                }
                holes.extend(overlapping().map(|r| Hole::within(r, addr, end)));
                Ok(())
            }
            MADV_HUGEPAGE | MADV_NOHUGEPAGE => {
                // The range may split a region at both ends.
                self.region_room(space, 2)?;
                let on = advice == MADV_HUGEPAGE;
                space.regions.update_range(addr, end, |r| {
                    r.flags.set(RegionFlags::HUGE, on);
                    r.flags.set(RegionFlags::NOHUGE, !on);
                });
                Ok(())
            }
            MADV_DONTFORK | MADV_DOFORK | MADV_WIPEONFORK | MADV_KEEPONFORK => {
                // Wiping on fork is for private anonymous memory only.
                if advice == MADV_WIPEONFORK && overlapping().any(|r| r.object != 0) {
                    return Err(VmError::InvalidFlags);
                }
                // The range may split a region at both ends.
                self.region_room(space, 2)?;
                let (flag, set) = match advice {
                    MADV_DONTFORK => (RegionFlags::DONTFORK, true),
                    MADV_DOFORK => (RegionFlags::DONTFORK, false),
                    MADV_WIPEONFORK => (RegionFlags::WIPEONFORK, true),
                    _ => (RegionFlags::WIPEONFORK, false),
                };
                space
                    .regions
                    .update_range(addr, end, |r| r.flags.set(flag, set));
                Ok(())
            }
            _ => Err(VmError::InvalidFlags),
        }
    }
}

/// The operation that prunes the page tables of the whole 2 MiB spans around `[start, end)`
/// (free, or about to be: its regions going) that no region has a byte of, or `None` when
/// there is no such span (the kernel then keeps the tables, empty or not, for the next
/// mapping near, as Linux frees page tables only where no mapping is left).
fn prune_op(space: &AddressSpace, start: u64, end: u64) -> Option<PageOp> {
    const SPAN: u64 = kernel_shim::paging::HUGE_PAGE_SIZE;
    let (free_start, free_end) = space.regions.free_around(start, end);
    let lo = free_start.next_multiple_of(SPAN).max(start & !(SPAN - 1));
    let hi = (free_end & !(SPAN - 1))
        .min(end.next_multiple_of(SPAN))
        .min(layout::USER_END & !(SPAN - 1));
    (lo < hi).then(|| PageOp::Prune {
        page: lo,
        pages: (hi - lo) / PAGE_SIZE,
    })
}
