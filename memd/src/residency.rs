//! `mincore` and `msync`: which pages of a range are resident, and writing a range back to
//! what backs it (anonymous memory has nothing: the call checks its arguments, as Linux
//! does, and returns).

use crate::daemon::{Memd, Pid};
use crate::kernel::{Kernel, PAGE_SIZE};
use crate::layout::{self, page_round_up};
use libvm::VmError;
use libvm::proto::{MS_ASYNC, MS_INVALIDATE, MS_SYNC};

impl<K: Kernel> Memd<K> {
    /// Which pages of `[addr, addr + len)` of process `pid` are resident: one byte a page in
    /// `out` (1 when resident, else 0); how many pages. Linux's answers: unaligned EINVAL; an
    /// empty range nothing; a range past the user half or with a page not mapped ENOMEM;
    /// `out` too short `BadBuffer`.
    pub fn mincore(&self, pid: Pid, addr: u64, len: u64, out: &mut [u8]) -> Result<u64, VmError> {
        self.with_space(pid, |space| {
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(VmError::NotAligned);
            }
            let end = page_round_up(len)
                .and_then(|size| addr.checked_add(size))
                .ok_or(VmError::OutOfMemory)?;
            if end == addr {
                return Ok(0);
            }
            if end > layout::USER_END || !space.regions.covered(addr, end) {
                return Err(VmError::RegionNotFound);
            }
            let pages = (end - addr) / PAGE_SIZE;
            let out = usize::try_from(pages)
                .ok()
                .and_then(|n| out.get_mut(..n))
                .ok_or(VmError::BadBuffer)?;
            out.fill(0);
            for (page, _) in space.resident(addr, end) {
                out[((page - addr) / PAGE_SIZE) as usize] = 1;
            }
            Ok(pages)
        })
    }

    /// `msync` of `[addr, addr + len)` of process `pid`: Linux's checks, in its order
    /// (unknown flags, unaligned, `MS_ASYNC` with `MS_SYNC`: EINVAL; a range that overflows
    /// or has a page not mapped: ENOMEM; empty, a length that wraps to 0 when rounded up
    /// included: nothing); nothing to write back.
    pub fn msync(&self, pid: Pid, addr: u64, len: u64, flags: u64) -> Result<(), VmError> {
        self.with_space(pid, |space| {
            if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 {
                return Err(VmError::InvalidFlags);
            }
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(VmError::NotAligned);
            }
            if flags & MS_ASYNC != 0 && flags & MS_SYNC != 0 {
                return Err(VmError::InvalidFlags);
            }
            // As Linux rounds it: a length that wraps to 0 when rounded up to pages is empty.
            let size = len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
            let end = addr.checked_add(size).ok_or(VmError::OutOfMemory)?;
            if end == addr {
                return Ok(());
            }
            if end > layout::USER_END || !space.regions.covered(addr, end) {
                return Err(VmError::RegionNotFound);
            }
            Ok(())
        })
    }
}
