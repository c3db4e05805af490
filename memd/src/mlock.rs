//! `mlock`, `munlock`, `mlockall` and `munlockall`: pages locked in are made resident now and
//! kept so — memd reclaims nothing yet, and `MADV_DONTNEED`/`MADV_FREE` are refused on them,
//! as on Linux. A region's lock is its [`RegionFlags::LOCKED`]; the pages locked count
//! against the process's `RLIMIT_MEMLOCK` (ENOMEM past it, nothing locked). Device memory is
//! not locked (its pages are the device's, never reclaimed): skipped, as Linux skips
//! `VM_IO | VM_PFNMAP` mappings.

use crate::daemon::{Memd, Pid};
use crate::fault::Access;
use crate::kernel::{Kernel, PAGE_SIZE};
use crate::layout;
use crate::region::{Region, RegionFlags, RegionKind};
use crate::space::AddressSpace;
use libvm::proto::{MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT};
use libvm::{ProtectionFlags, VmError};

/// Whether `mlock` locks region `r` (not device memory).
fn lockable(r: &Region) -> bool {
    r.kind != RegionKind::Device
}

/// `r` locked (`lock`) or unlocked, if it is [`lockable`].
fn set_locked(r: &mut Region, lock: bool) {
    if lockable(r) {
        r.flags.set(RegionFlags::LOCKED, lock);
    }
}

/// Pages of `space` locked in.
fn locked_pages(space: &AddressSpace) -> u64 {
    space
        .regions
        .iter()
        .filter(|r| r.flags.contains(RegionFlags::LOCKED))
        .map(|r| r.pages())
        .sum()
}

impl<K: Kernel> Memd<K> {
    /// `mlock` (or, with `unlock`, `munlock`) of `[addr, addr + len)` of process `pid`, as
    /// Linux: the start rounded down to its page, the length up; an empty range nothing; a
    /// range past the user half or with a page not mapped ENOMEM; locking more pages than
    /// `RLIMIT_MEMLOCK` allows ENOMEM. Nothing changes when refused.
    pub fn mlock(&self, pid: Pid, addr: u64, len: u64, unlock: bool) -> Result<(), VmError> {
        self.with_space(pid, |space| {
            let start = addr & !(PAGE_SIZE - 1);
            let end = len
                .checked_add(addr - start)
                .and_then(layout::page_round_up)
                .and_then(|size| start.checked_add(size))
                .ok_or(VmError::OutOfMemory)?;
            if end == start {
                return Ok(());
            }
            if end > layout::USER_END || !space.regions.covered(start, end) {
                return Err(VmError::RegionNotFound);
            }
            if !unlock {
                let more: u64 = space
                    .regions
                    .overlapping(start, end)
                    .filter(|r| lockable(r) && !r.flags.contains(RegionFlags::LOCKED))
                    .map(|r| (r.end.min(end) - r.start.max(start)) / PAGE_SIZE)
                    .sum();
                self.lock_room(space, more)?;
            }
            self.region_room(space, 2)?;
            space
                .regions
                .update_range(start, end, |r| set_locked(r, !unlock));
            if unlock {
                return Ok(());
            }
            self.populate_locked(space, start, end)
        })
    }

    /// `mlockall(flags)` of process `pid` (or, with `unlock`, `munlockall`): `MCL_CURRENT`
    /// locks every region now, `MCL_FUTURE` every mapping to come; unknown flags, none, or
    /// `MCL_ONFAULT` alone EINVAL; more pages than `RLIMIT_MEMLOCK` allows ENOMEM.
    pub fn mlockall(&self, pid: Pid, flags: u64, unlock: bool) -> Result<(), VmError> {
        self.with_space(pid, |space| {
            if unlock {
                space.lock_future = false;
                let end = layout::USER_END;
                space
                    .regions
                    .update_range(0, end, |r| r.flags.remove(RegionFlags::LOCKED));
                return Ok(());
            }
            if flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0
                || flags & (MCL_CURRENT | MCL_FUTURE) == 0
            {
                return Err(VmError::InvalidFlags);
            }
            if flags & MCL_CURRENT != 0 {
                let more: u64 = space
                    .regions
                    .iter()
                    .filter(|r| lockable(r) && !r.flags.contains(RegionFlags::LOCKED))
                    .map(|r| r.pages())
                    .sum();
                self.lock_room(space, more)?;
                let end = layout::USER_END;
                space.regions.update_range(0, end, |r| set_locked(r, true));
                if flags & MCL_ONFAULT == 0 {
                    self.populate_locked(space, 0, end)?;
                }
            }
            space.lock_future = flags & MCL_FUTURE != 0;
            Ok(())
        })
    }

    /// Refuses (ENOMEM) locking `more` pages of `space` past its `RLIMIT_MEMLOCK`.
    pub(crate) fn lock_room(&self, space: &AddressSpace, more: u64) -> Result<(), VmError> {
        let limit = space.rlimits.memlock.soft / PAGE_SIZE;
        if locked_pages(space).saturating_add(more) > limit {
            return Err(VmError::OutOfMemory);
        }
        Ok(())
    }

    /// Backs every page of the locked regions in `[start, end)` (none of a `PROT_NONE`
    /// region, which no access can reach; for writing where the region allows it, so no
    /// copy-on-write is left).
    pub(crate) fn populate_locked(
        &self,
        space: &mut AddressSpace,
        start: u64,
        end: u64,
    ) -> Result<(), VmError> {
        let pieces: alloc::vec::Vec<(u64, u64, Access)> = space
            .regions
            .overlapping(start, end)
            .filter(|r| r.prot != ProtectionFlags::NONE && lockable(r))
            .map(|r| {
                let access = if r.prot.contains(ProtectionFlags::WRITE) {
                    Access::Write
                } else {
                    Access::Read
                };
                (r.start.max(start), r.end.min(end), access)
            })
            .collect();
        for (lo, hi, access) in pieces {
            self.populate_for(space, lo, hi, access)?;
        }
        Ok(())
    }
}
