//! `mmap`, `munmap`, `mprotect` and `madvise`, with Linux's semantics: decode and validate
//! first, then perform.

use crate::daemon::{Memd, Pid};
use crate::kernel::{Kernel, PAGE_SIZE, PageOp, PageOps};
use crate::layout::{self, check_user_range, page_round_up};
use crate::region::{Region, RegionKind};
use crate::space::{AddressSpace, sync_ops, sync_region_ops, uniform_op};
use crate::stats::bump;
use alloc::vec::Vec;
use libvm::proto::{MADV_DONTNEED, MADV_NORMAL, MADV_WILLNEED};
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
        // Decode.
        if len == 0 {
            return Err(VmError::InvalidSize);
        }
        let size = page_round_up(len).ok_or(VmError::InvalidSize)?;
        if !ProtectionFlags::all().contains(prot) {
            return Err(VmError::InvalidFlags);
        }
        let shared = flags.contains(MmapFlags::SHARED);
        if shared == flags.contains(MmapFlags::PRIVATE) || !flags.contains(MmapFlags::ANONYMOUS) {
            return Err(VmError::InvalidFlags);
        }
        // The new region, and a region it may split in two.
        self.region_room(space, 2)?;
        let fixed = flags.intersects(MmapFlags::FIXED | MmapFlags::FIXED_NOREPLACE);
        let start = if fixed {
            let end = check_user_range(addr, size)?;
            if addr < layout::MIN_ADDR {
                return Err(VmError::InvalidAddress);
            }
            if flags.contains(MmapFlags::FIXED_NOREPLACE) && !space.regions.is_free(addr, end) {
                return Err(VmError::AlreadyMapped);
            }
            addr
        } else {
            let hint = if addr.is_multiple_of(PAGE_SIZE) {
                addr
            } else {
                0
            };
            layout::place(&space.regions, size, hint).ok_or(VmError::OutOfMemory)?
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
        let object = if shared {
            self.objects
                .lock()
                .create(size / PAGE_SIZE)
                .ok_or(VmError::OutOfMemory)?
        } else {
            0
        };
        // Perform.
        if replaced != 0 {
            self.unmap_in(space, start, end);
        }
        space.add_region(Region {
            start,
            end,
            prot,
            kind: if shared {
                RegionKind::Shared
            } else {
                RegionKind::Anonymous
            },
            shared,
            object,
            offset: 0,
        });
        if flags.contains(MmapFlags::POPULATE) {
            self.populate(space, start, end);
        }
        Ok(start)
    }

    /// Unmaps `[addr, addr + len)` of process `pid`; unmapped parts are fine.
    pub fn munmap(&self, pid: Pid, addr: u64, len: u64) -> Result<(), VmError> {
        bump(&self.counters.munmap);
        self.with_space(pid, |space| {
            let end = check_user_range(addr, len)?;
            // Only a hole punched inside one region adds one (Linux's munmap can fail so too).
            if space
                .regions
                .find(addr)
                .is_some_and(|r| r.start < addr && r.end > end)
            {
                self.region_room(space, 1)?;
            }
            self.unmap_in(space, addr, end);
            Ok(())
        })
    }

    /// Removes every region and resident page of `[start, end)`, flushing once.
    pub(crate) fn unmap_in(&self, space: &mut AddressSpace, start: u64, end: u64) {
        let removed = space.remove_regions(start, end);
        if removed.is_empty() {
            return;
        }
        let mut ops = Vec::with_capacity(removed.len());
        for r in &removed {
            ops.push(PageOp::Unmap {
                page: r.start,
                pages: r.pages(),
            });
        }
        // Unmap ops never need a page-table frame: they cannot fail for want of memory.
        let _ = self.kernel.apply(space.space, &ops);
        self.drop_pages(space, &removed);
    }

    /// Releases the resident pages of the removed regions and their share of objects.
    pub(crate) fn drop_pages(&self, space: &mut AddressSpace, removed: &[Region]) {
        let mut objects = self.objects.lock();
        let mut frames = self.frames.lock();
        for r in removed {
            let gone: Vec<u64> = space.pages.range(r.start..r.end).map(|(&p, _)| p).collect();
            for page in gone {
                if let Some(frame) = space.pages.remove(&page) {
                    let _ = frames.release(frame);
                }
            }
            if r.object != 0 {
                objects.drop_mapped(r.object, r.pages(), &mut frames);
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

    fn mprotect_in(
        &self,
        space: &mut AddressSpace,
        addr: u64,
        len: u64,
        prot: ProtectionFlags,
    ) -> Result<(), VmError> {
        let end = check_user_range(addr, len)?;
        if !ProtectionFlags::all().contains(prot) {
            return Err(VmError::InvalidFlags);
        }
        // A range inside a region splits it in three.
        self.region_room(space, 2)?;
        // The common case, a range inside one region: split and merge with the fewest map
        // operations, and the page-table changes of that one region.
        if let Some((old, piece)) = space.regions.update_within(addr, end, |r| r.prot = prot) {
            if old.prot == prot {
                // Nothing changes: the page tables already agree with the region.
                return Ok(());
            }
            let remap = old.prot == ProtectionFlags::NONE;
            if let Some(op) = uniform_op(space, &piece, addr, end, remap) {
                // One operation for the whole range: no page to look up, no list to build.
                return self
                    .kernel
                    .apply(space.space, &[op])
                    .map_err(|_| VmError::OutOfMemory);
            }
            let mut ops = PageOps::new();
            {
                let frames = self.frames.lock();
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
            return self
                .kernel
                .apply(space.space, &ops)
                .map_err(|_| VmError::OutOfMemory);
        }
        // Across regions: one pass checks that every byte is mapped (nothing changes
        // otherwise) and whether anything changes at all.
        let mut cursor = addr;
        let mut from_none = false;
        let mut changes = false;
        for r in space.regions.overlapping(addr, end) {
            if r.start > cursor {
                return Err(VmError::RegionNotFound);
            }
            cursor = r.end;
            from_none |= r.prot == ProtectionFlags::NONE;
            changes |= r.prot != prot;
        }
        if cursor < end {
            return Err(VmError::RegionNotFound);
        }
        if !changes {
            return Ok(());
        }
        space.regions.update_range(addr, end, |r| r.prot = prot);
        let mut ops = Vec::new();
        {
            let frames = self.frames.lock();
            sync_ops(
                space,
                addr,
                end,
                |f| frames.refcount(f),
                from_none,
                &mut ops,
            );
        }
        self.kernel
            .apply(space.space, &ops)
            .map_err(|_| VmError::OutOfMemory)
    }

    /// Advice about `[addr, addr + len)` of process `pid`.
    pub fn madvise(&self, pid: Pid, addr: u64, len: u64, advice: u64) -> Result<(), VmError> {
        bump(&self.counters.madvise);
        self.with_space(pid, |space| self.madvise_in(space, addr, len, advice))
    }

    fn madvise_in(
        &self,
        space: &mut AddressSpace,
        addr: u64,
        len: u64,
        advice: u64,
    ) -> Result<(), VmError> {
        let end = check_user_range(addr, len)?;
        if !space.regions.covered(addr, end) {
            return Err(VmError::RegionNotFound);
        }
        match advice {
            MADV_NORMAL => Ok(()),
            MADV_WILLNEED => {
                self.populate(space, addr, end);
                Ok(())
            }
            MADV_DONTNEED => {
                let gone: Vec<(u64, u64)> = space.resident(addr, end).collect();
                if gone.is_empty() {
                    return Ok(());
                }
                let _ = self.kernel.apply(
                    space.space,
                    &[PageOp::Unmap {
                        page: addr,
                        pages: (end - addr) / PAGE_SIZE,
                    }],
                );
                let mut frames = self.frames.lock();
                for (page, frame) in gone {
                    space.pages.remove(&page);
                    let _ = frames.release(frame);
                }
                Ok(())
            }
            _ => Err(VmError::InvalidFlags),
        }
    }
}
