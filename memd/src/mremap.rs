//! `mremap`: shrink a mapping, grow it in place when the pages after it are free, or move it
//! (`MREMAP_MAYMOVE`; to an address of the caller's choosing with `MREMAP_FIXED`; leaving the
//! old range mapped and empty with `MREMAP_DONTUNMAP`), with Linux's answers. A move carries
//! the resident pages' frames to their new addresses — page-table entries, not copies — and
//! keeps contents, protection and sharing; an old length of 0 makes a second mapping of the
//! same shared memory.

use crate::daemon::{Memd, Pid};
use crate::kernel::{Kernel, PAGE_SIZE, PageOp};
use crate::layout;
use crate::region::{Region, RegionFlags, RegionKind};
use crate::space::{AddressSpace, page_prot};
use alloc::vec::Vec;
use libvm::proto::{MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE};
use libvm::{ProtectionFlags, VmError};

/// A length rounded up to pages as Linux rounds it (wrapping to 0 past the top).
fn page_align(len: u64) -> u64 {
    len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// A region like `region` over `[start, start + len)`, showing what `region` shows at `from`
/// (the same object pages, for shared memory).
fn view(region: &Region, from: u64, start: u64, len: u64) -> Region {
    Region {
        start,
        end: start + len,
        offset: region.offset + (from - region.start) / PAGE_SIZE,
        ..*region
    }
}

impl<K: Kernel> Memd<K> {
    /// Counts the pages of `region` as a mapping of its shared object, if it has one.
    fn count_view(&self, region: &Region) {
        if region.object != 0 {
            self.objects
                .lock()
                .add_mapped(region.object, region.pages());
        }
    }

    /// `mremap(old_addr, old_len, new_len, flags, new_addr)` for process `pid`; the address of
    /// the mapping afterwards. Refused, with nothing changed: unknown flags, `FIXED` or
    /// `DONTUNMAP` without `MAYMOVE`, an unaligned address, a new length of 0, `DONTUNMAP`
    /// with a change of length, a `FIXED` target out of the user half or overlapping the old
    /// range (EINVAL); an old range not inside one mapping (EFAULT, `BadBuffer`); no room to
    /// grow without `MAYMOVE`, or anywhere (ENOMEM).
    pub fn mremap(
        &self,
        pid: Pid,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        new_addr: u64,
    ) -> Result<u64, VmError> {
        self.with_space(pid, |space| {
            self.mremap_in(space, old_addr, old_len, new_len, flags, new_addr)
        })
    }

    fn mremap_in(
        &self,
        space: &mut AddressSpace,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: u64,
        target: u64,
    ) -> Result<u64, VmError> {
        // Decode, in Linux's order.
        let may_move = flags & MREMAP_MAYMOVE != 0;
        let fixed = flags & MREMAP_FIXED != 0;
        let keep_old = flags & MREMAP_DONTUNMAP != 0;
        // (DONTUNMAP compares the lengths as given, before rounding, as Linux does.)
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0
            || (fixed || keep_old) && !may_move
            || keep_old && old_len != new_len
        {
            return Err(VmError::InvalidFlags);
        }
        if !old.is_multiple_of(PAGE_SIZE) {
            return Err(VmError::NotAligned);
        }
        let (old_len, new_len) = (page_align(old_len), page_align(new_len));
        if new_len == 0 {
            return Err(VmError::InvalidSize);
        }
        if fixed {
            if !target.is_multiple_of(PAGE_SIZE) {
                return Err(VmError::NotAligned);
            }
            if new_len > layout::USER_END || target > layout::USER_END - new_len {
                return Err(VmError::InvalidAddress);
            }
            if target < layout::MIN_ADDR {
                return Err(VmError::NotPermitted);
            }
            if target < old.saturating_add(old_len.max(1)) && old < target + new_len {
                return Err(VmError::InvalidFlags);
            }
        }
        let region = *space.regions.find(old).ok_or(VmError::BadBuffer)?;
        if old_len > region.end - old {
            return Err(VmError::BadBuffer);
        }
        if old_len == 0 {
            // A second mapping of the same shared memory.
            if region.object == 0 || !may_move {
                return Err(VmError::InvalidFlags);
            }
        }
        // Shrink in place.
        if !fixed && !keep_old && old_len != 0 && new_len <= old_len {
            self.unmap_in(space, old + new_len, old + old_len)?;
            return Ok(old);
        }
        // Device memory shrinks only: growth is EFAULT as on Linux (`VM_PFNMAP`); a move is
        // refused too (EINVAL; Linux moves it).
        if region.kind == RegionKind::Device {
            return Err(if new_len > old_len {
                VmError::BadBuffer
            } else {
                VmError::InvalidFlags
            });
        }
        let grow = new_len.saturating_sub(old_len);
        let added = if keep_old || old_len == 0 {
            new_len
        } else {
            grow
        };
        if space.mapped_bytes.saturating_add(added) > space.limits.address_space {
            return Err(VmError::LimitExceeded);
        }
        let locked = region.flags.contains(RegionFlags::LOCKED);
        // DONTUNMAP unlocks the old range (as Linux): the pages locked stay as many.
        if locked && !keep_old {
            self.lock_room(space, added / PAGE_SIZE)?;
        }
        // Grow in place, when the pages after the mapping are free.
        let end = old + old_len;
        if !fixed
            && !keep_old
            && old_len != 0
            && end == region.end
            && old
                .checked_add(new_len)
                .is_some_and(|e| e <= layout::USER_END && space.regions.is_free(end, e))
        {
            self.region_room(space, 1)?;
            let added = view(&region, end, end, grow);
            self.count_view(&added);
            space.add_region(added);
            if locked {
                self.populate_locked(space, end, old + new_len)?;
            }
            return Ok(old);
        }
        if !may_move {
            return Err(VmError::OutOfMemory);
        }
        // Move: where to. (The target, the old range and an unlocked rest may each split a
        // region.)
        self.region_room(space, 3)?;
        let to = if fixed {
            target
        } else {
            layout::place(&space.regions, new_len, 0, &space.placement)
                .ok_or(VmError::OutOfMemory)?
        };
        let moved_len = old_len.min(new_len);
        // Pages move one by one: a huge page among them is split first, and so is one a FIXED
        // target would cut.
        self.split_huge(space, old, old + old_len)?;
        if fixed {
            self.split_huge(space, to, to + new_len)?;
        }
        // However many pages move, memd's heap may not hold their list: ENOMEM, nothing
        // changed, rather than a failed allocation.
        let resident = if old_len == 0 {
            0
        } else {
            space.resident(old, old + moved_len).count()
        };
        let mut moved: Vec<(u64, u64)> = Vec::new();
        let mut ops = Vec::new();
        moved
            .try_reserve_exact(resident)
            .and_then(|()| ops.try_reserve_exact(resident + 2))
            .map_err(|_| VmError::OutOfMemory)?;
        if old_len != 0 {
            moved.extend(space.resident(old, old + moved_len));
        }
        // The page tables first, in one batch (one flush), so a refusal changes nothing: what
        // a FIXED target held goes, the old range's entries go, its frames appear at the new
        // addresses; then memd's records.
        let clear_target = fixed && space.resident(to, to + new_len).next().is_some();
        if clear_target {
            ops.push(PageOp::Unmap {
                page: to,
                pages: new_len / PAGE_SIZE,
            });
        }
        if old_len != 0 {
            ops.push(PageOp::Unmap {
                page: old,
                pages: old_len / PAGE_SIZE,
            });
        }
        if region.prot != ProtectionFlags::NONE {
            let frames = &self.frames;
            for &(page, frame) in &moved {
                ops.push(PageOp::Map {
                    page: to + (page - old),
                    frame,
                    prot: page_prot(&region, frames.refcount(frame)),
                });
            }
        }
        self.apply(space, &ops).map_err(|_| VmError::OutOfMemory)?;
        // The new view is counted before any old one is dropped, so the object lives on.
        let new_region = view(&region, old, to, new_len);
        self.count_view(&new_region);
        if fixed {
            let replaced = space.remove_regions(to, to + new_len);
            self.drop_pages(space, &replaced);
        }
        for &(page, frame) in &moved {
            space.pages.remove(page);
            space.pages.insert(to + (page - old), frame);
        }
        if !keep_old && old_len != 0 {
            // The old range's regions go, their other pages (past a shrink) with them.
            let removed = space.remove_regions(old, old + old_len);
            self.drop_pages(space, &removed);
        }
        // With DONTUNMAP the old range stays mapped, empty and unlocked: its pages moved, so
        // private memory there reads zero again, shared memory refaults from its object, as on
        // Linux.
        if keep_old && locked {
            space
                .regions
                .update_range(old, old + old_len, |r| r.flags.remove(RegionFlags::LOCKED));
        }
        space.add_region(new_region);
        if !keep_old && old_len != 0 {
            self.prune_freed(space, old, old + old_len);
        }
        if locked {
            self.populate_locked(space, to, to + new_len)?;
        }
        Ok(to)
    }
}
