//! Huge pages, on request (Linux's `madvise` mode of transparent huge pages): in a range
//! given `MADV_HUGEPAGE` (`MADV_NOHUGEPAGE` takes it back), a first touch of a 2 MiB block of
//! anonymous memory that its region covers whole, and where nothing of the process is resident
//! yet, maps the whole block at once as one 2 MiB page of 512 consecutive frames:
//! - private memory, at a first write, when memd has a wholly free 2 MiB of frames
//!   ([`crate::frames::FrameAllocator::alloc_huge`]);
//! - shared memory, at any first touch, when the block is 2 MiB-aligned in the object too and
//!   the object holds either a huge run there already (every process mapping the block maps
//!   the same 512 frames as one page) or nothing there yet and memd has a free 2 MiB
//!   (the object takes the run; [`crate::shared::SharedObject::huge`]).
//!
//! Else the fault backs 4 KiB pages as always. Mappings of 2 MiB or more are placed on a 2 MiB
//! boundary where they fit. With [`crate::Config::huge_always`] (`thp=always` on the kernel
//! command line, Linux's `always` mode) every such block may be, unless `MADV_NOHUGEPAGE`
//! says not.
//!
//! The kernel changes a huge page whole or not at all, so memd splits every huge page a
//! change meets into 512 pages of 4 KiB first ([`Memd::split_huge`]: mremap; munmap,
//! `MADV_DONTNEED` and mprotect split only those they cover in part, and change the others
//! whole, but for an mprotect to or from `PROT_NONE`), in a batch of its own before the
//! change. A fork keeps them (the child maps the same frames as huge pages, read-only where
//! copy-on-write: a write splits the writer's mapping, [`Memd::reuse_huge`] makes one whole
//! again when its frames are the writer's alone), but for those meeting `MADV_DONTFORK` or
//! `MADV_WIPEONFORK` memory. The
//! page map holds a huge page's 512 pages as any others; [`AddressSpace::huge`] says which
//! blocks are mapped whole. A split mapping of a shared block leaves the object's run as it
//! is: another process may still map it whole.

use crate::daemon::Memd;
use crate::fault::{Access, Unresolved};
use crate::kernel::{BatchError, FrameAddr, Kernel, KernelError, PAGE_SIZE, PageOp, PageOps};
use crate::region::{Region, RegionFlags};
use crate::space::AddressSpace;
use crate::stats::bump;
use crate::tables::ApplyError;
use kernel_shim::paging::HUGE_PAGE_SIZE;
use libvm::VmError;

/// Pages of a huge page.
pub const HUGE_PAGES: u64 = HUGE_PAGE_SIZE / PAGE_SIZE;

/// Whether the kernel refused a batch for what its page tables hold (a huge page where a
/// table of 4 KiB pages is).
fn refused(result: &Result<(), ApplyError>) -> bool {
    matches!(
        result,
        Err(ApplyError::Kernel(BatchError {
            error: KernelError::Refused,
            ..
        }))
    )
}

impl<K: Kernel> Memd<K> {
    /// A first touch at `page` of `region` (a write, for private memory): the whole 2 MiB
    /// block holding it mapped as one huge page when it may be (see the module doc); `None`
    /// when not, and the fault backs 4 KiB pages.
    pub(crate) fn fill_huge(
        &self,
        space: &mut AddressSpace,
        region: &Region,
        page: u64,
    ) -> Option<Result<(), Unresolved>> {
        let block = page & !(HUGE_PAGE_SIZE - 1);
        let eligible = (region.flags.contains(RegionFlags::HUGE)
            || (self.config.huge_always && !region.flags.contains(RegionFlags::NOHUGE)))
            && region.start <= block
            && block + HUGE_PAGE_SIZE <= region.end
            && space
                .pages
                .range(block, block + HUGE_PAGE_SIZE)
                .next()
                .is_none()
            && self.page_room(HUGE_PAGES as usize) == HUGE_PAGES as usize;
        if !eligible {
            return None;
        }
        let frame = if region.object == 0 {
            let frame = self.frames.alloc_huge()?;
            self.zero_huge(frame);
            frame
        } else {
            self.shared_huge(region, block)?
        };
        let op = PageOp::MapHuge {
            page: block,
            frame,
            prot: region.prot,
        };
        let mut applied = self.apply(space, &[op]);
        if refused(&applied) {
            // A page table of 4 KiB pages is there, mapping nothing of the process (an unmap
            // or `MADV_DONTNEED` keeps the tables): give it back, then map the block whole.
            let prune = PageOp::Prune {
                page: block,
                pages: HUGE_PAGES,
            };
            applied = self
                .apply(space, &[prune])
                .and_then(|()| self.apply(space, &[op]));
        }
        if let Err(e) = applied {
            let frames = &self.frames;
            (0..HUGE_PAGES).for_each(|i| frames.drop_ref(frame + i * PAGE_SIZE));
            // Refused still: the fault backs 4 KiB pages.
            if refused(&Err(e)) {
                return None;
            }
            return Some(Err(e.into()));
        }
        space
            .pages
            .insert_run((0..HUGE_PAGES).map(|i| (block + i * PAGE_SIZE, frame + i * PAGE_SIZE)));
        space.huge.insert(block);
        bump(&self.counters.huge);
        Some(Ok(()))
    }

    fn zero_huge(&self, frame: u64) {
        for i in 0..HUGE_PAGES {
            self.kernel.zero_frame(frame + i * PAGE_SIZE);
        }
        bump(&self.counters.zero_fill);
    }

    /// The huge run of `region`'s shared object at `block`, with a reference taken on each of
    /// its frames for the mapping: the object's run if it has one there, else a new zeroed run
    /// if the object has no page there yet and a free 2 MiB is to be had; `None` otherwise.
    fn shared_huge(&self, region: &Region, block: u64) -> Option<FrameAddr> {
        let index = region.offset + (block - region.start) / PAGE_SIZE;
        if !index.is_multiple_of(HUGE_PAGES) {
            return None;
        }
        let mut objects = self.objects.lock();
        let object = objects.get_mut(region.object)?;
        let frames = &self.frames;
        if object.huge.contains(&index) {
            let base = *object.pages.get(&index)?;
            for i in 0..HUGE_PAGES {
                if frames.share(base + i * PAGE_SIZE).is_err() {
                    (0..i).for_each(|j| frames.drop_ref(base + j * PAGE_SIZE));
                    return None;
                }
            }
            bump(&self.counters.shared);
            return Some(base);
        }
        if object
            .pages
            .range(index..index + HUGE_PAGES)
            .next()
            .is_some()
        {
            return None;
        }
        // The object holds the count `alloc_huge` gives; the mapping takes one more (a fresh
        // frame's count cannot overflow).
        let base = self.frames.alloc_huge()?;
        for i in 0..HUGE_PAGES {
            if frames.share(base + i * PAGE_SIZE).is_err() {
                (0..HUGE_PAGES).for_each(|j| frames.drop_ref(base + j * PAGE_SIZE));
                (0..i).for_each(|j| frames.drop_ref(base + j * PAGE_SIZE));
                return None;
            }
        }
        self.zero_huge(base);
        object
            .pages
            .extend((0..HUGE_PAGES).map(|i| (index + i, base + i * PAGE_SIZE)));
        object.huge.insert(index);
        Some(base)
    }

    /// A write fault at `page` of a huge page of `space` (in private memory) whose 512 frames
    /// are all the process's alone: the whole huge page regains `region`'s access in one
    /// operation. `None` when it is not so (the fault splits it and goes on page by page).
    pub(crate) fn reuse_huge(
        &self,
        space: &mut AddressSpace,
        region: &Region,
        page: u64,
        access: Access,
    ) -> Option<Result<(), Unresolved>> {
        if access != Access::Write || region.object != 0 {
            return None;
        }
        let block = page & !(HUGE_PAGE_SIZE - 1);
        {
            let frames = &self.frames;
            let mut pages = space.pages.range(block, block + HUGE_PAGE_SIZE);
            if !pages.all(|(_, f)| frames.refcount(f) == 1) {
                return None;
            }
        }
        bump(&self.counters.cow);
        let op = PageOp::Protect {
            page: block,
            pages: HUGE_PAGES,
            prot: region.prot,
        };
        Some(self.apply(space, &[op]).map_err(Unresolved::from))
    }

    /// Splits every huge page of `space` that meets `[start, end)` into 512 pages of 4 KiB, in
    /// one batch; `OutOfMemory` (nothing changed) when it cannot be had.
    pub(crate) fn split_huge(
        &self,
        space: &mut AddressSpace,
        start: u64,
        end: u64,
    ) -> Result<(), VmError> {
        self.split_blocks(space, start, end, false)
    }

    /// Before an unmap of `[start, end)` (its pages dropped): splits the huge pages it covers
    /// in part; those it covers whole go whole with the unmap ([`Memd::forget_huge`] after).
    pub(crate) fn split_huge_edges(
        &self,
        space: &mut AddressSpace,
        start: u64,
        end: u64,
    ) -> Result<(), VmError> {
        self.split_blocks(space, start, end, true)
    }

    /// Forgets the huge pages wholly inside `[start, end)`, which an unmap took away.
    pub(crate) fn forget_huge(&self, space: &mut AddressSpace, start: u64, end: u64) {
        space
            .huge
            .retain(|&b| !(start <= b && b + HUGE_PAGE_SIZE <= end));
    }

    fn split_blocks(
        &self,
        space: &mut AddressSpace,
        start: u64,
        end: u64,
        edges_only: bool,
    ) -> Result<(), VmError> {
        let from = start & !(HUGE_PAGE_SIZE - 1);
        let mut ops = PageOps::new();
        for &block in space.huge.range(from..end) {
            let whole = start <= block && block + HUGE_PAGE_SIZE <= end;
            if !(edges_only && whole) {
                ops.push(PageOp::Split { page: block });
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        if ops.is_incomplete() {
            return Err(VmError::OutOfMemory);
        }
        self.apply(space, &ops).map_err(|_| VmError::OutOfMemory)?;
        for op in ops.iter() {
            if let PageOp::Split { page } = *op {
                space.huge.remove(&page);
            }
        }
        Ok(())
    }
}
