//! `MADV_REMOVE`: a hole punched in shared memory. The pages of the object behind the range
//! are freed, so every mapping of them, in every process, reads zero afterwards (as Linux's
//! hole punch in shared memory). Each process's page-table entries for them go first, the
//! kernel confirming each unmap before memd forgets the page; only then does the object drop
//! its own references. A refusal part-way leaves the object whole: a process that lost its
//! entries refaults the same contents.

use crate::daemon::{Memd, Pid};
use crate::kernel::{Kernel, PAGE_SIZE, PageOp};
use crate::region::Region;
use alloc::vec::Vec;
use libvm::VmError;

/// Pages `[first, end)` (indices) of shared object `object`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hole {
    /// The object.
    pub object: u32,
    /// First page index.
    pub first: u64,
    /// One past the last page index.
    pub end: u64,
}

impl Hole {
    /// The object pages `region` shows in `[start, end)` (within the region).
    pub fn within(region: &Region, start: u64, end: u64) -> Hole {
        let (lo, hi) = (start.max(region.start), end.min(region.end));
        Hole {
            object: region.object,
            first: region.offset + (lo - region.start) / PAGE_SIZE,
            end: region.offset + (hi - region.start) / PAGE_SIZE,
        }
    }

    /// Whether page index `index` of `object` is in the hole.
    fn holds(&self, object: u32, index: u64) -> bool {
        self.object == object && (self.first..self.end).contains(&index)
    }
}

impl<K: Kernel> Memd<K> {
    /// Punches `holes` in their shared objects: every process's resident pages of them are
    /// unmapped (one batch a process) and released, then the objects' own pages.
    pub(crate) fn remove_shared(&self, holes: &[Hole]) -> Result<(), VmError> {
        if holes.is_empty() {
            return Ok(());
        }
        for pid in self.pids() {
            self.unmap_holes(pid, holes)?;
        }
        let mut objects = self.objects.lock();
        let frames = &self.frames;
        for hole in holes {
            let Some(object) = objects.get_mut(hole.object) else {
                continue;
            };
            let gone: Vec<u64> = object
                .pages
                .range(hole.first..hole.end)
                .map(|(&i, _)| i)
                .collect();
            for index in gone {
                if let Some(frame) = object.pages.remove(&index) {
                    frames.drop_ref(frame);
                }
            }
        }
        Ok(())
    }

    /// Unmaps and releases process `pid`'s resident pages of `holes` (none: nothing to do; a
    /// process that has ended meanwhile: nothing to do).
    fn unmap_holes(&self, pid: Pid, holes: &[Hole]) -> Result<(), VmError> {
        let result = self.with_space(pid, |space| {
            let mut pages = Vec::new();
            for r in space.regions.iter().filter(|r| r.object != 0) {
                for (page, _) in space.resident(r.start, r.end) {
                    let index = r.offset + (page - r.start) / PAGE_SIZE;
                    if holes.iter().any(|h| h.holds(r.object, index)) {
                        pages.push(page);
                    }
                }
            }
            if pages.is_empty() {
                return Ok(());
            }
            // One operation a run of consecutive pages (the pages come in address order).
            let mut ops: Vec<PageOp> = Vec::new();
            for &page in &pages {
                match ops.last_mut() {
                    Some(PageOp::Unmap { page: first, pages })
                        if *first + *pages * PAGE_SIZE == page =>
                    {
                        *pages += 1
                    }
                    _ => ops.push(PageOp::Unmap { page, pages: 1 }),
                }
            }
            self.apply(space, &ops).map_err(|_| VmError::OutOfMemory)?;
            let frames = &self.frames;
            for page in pages {
                if let Some(frame) = space.pages.remove(page) {
                    frames.drop_ref(frame);
                }
            }
            Ok(())
        });
        match result {
            Err(VmError::NoSuchProcess) => Ok(()),
            other => other,
        }
    }
}
