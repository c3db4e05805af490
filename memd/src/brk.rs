//! The program break: `brk` and `sbrk` over one Heap region that starts at the heap start.
//!
//! Pages released by shrinking are returned at once and read as zero when the break grows
//! again; a partially used last page keeps its bytes, as on Linux.

use crate::daemon::{Memd, Pid};
use crate::kernel::Kernel;
use crate::layout::{self, page_round_up};
use crate::region::{Region, RegionFlags, RegionKind};
use crate::space::AddressSpace;
use crate::stats::bump;
use libvm::{ProtectionFlags, VmError};

impl<K: Kernel> Memd<K> {
    /// Sets the break of process `pid` to `addr` (0 queries it); returns the new break.
    pub fn brk(&self, pid: Pid, addr: u64) -> Result<u64, VmError> {
        bump(&self.counters.brk);
        self.with_space(pid, |space| {
            if addr != 0 {
                self.set_brk(space, addr)?;
            }
            Ok(space.brk)
        })
    }

    /// Moves the break of process `pid` by `increment`; returns the old break.
    pub fn sbrk(&self, pid: Pid, increment: i64) -> Result<u64, VmError> {
        bump(&self.counters.brk);
        self.with_space(pid, |space| {
            let old = space.brk;
            let new = old
                .checked_add_signed(increment)
                .ok_or(VmError::InvalidSize)?;
            if new != old {
                self.set_brk(space, new)?;
            }
            Ok(old)
        })
    }

    fn set_brk(&self, space: &mut AddressSpace, addr: u64) -> Result<(), VmError> {
        if addr < space.heap_start {
            return Err(VmError::InvalidAddress);
        }
        if addr - space.heap_start > space.limits.data || addr > layout::MMAP_BASE {
            return Err(VmError::LimitExceeded);
        }
        let old_end = page_round_up(space.brk).ok_or(VmError::InvalidAddress)?;
        let new_end = page_round_up(addr).ok_or(VmError::InvalidAddress)?;
        if new_end > old_end {
            if !space.regions.is_free(old_end, new_end) {
                return Err(VmError::OutOfMemory);
            }
            self.region_room(space, 1)?;
            if space.mapped_bytes + (new_end - old_end) > space.limits.address_space {
                return Err(VmError::LimitExceeded);
            }
            space.add_region(Region {
                start: old_end,
                end: new_end,
                prot: ProtectionFlags::READ_WRITE,
                kind: RegionKind::Heap,
                shared: false,
                object: 0,
                flags: RegionFlags::empty(),
                offset: 0,
            });
        } else if new_end < old_end {
            self.unmap_in(space, new_end, old_end)?;
        }
        space.brk = addr;
        Ok(())
    }
}
