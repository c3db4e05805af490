//! Process images: spawn an empty one, fork one copy-on-write, tear one down at exit or kill.

use crate::daemon::{Death, Memd, PAGE_COST, Pid, REGION_COST, cost};
use crate::kernel::{Kernel, PageOp, PageOps};
use crate::layout::{self, Placement};
use crate::region::{Region, RegionFlags, RegionKind};
use crate::space::{AddressSpace, page_prot, sync_ops};
use crate::stats::bump;
use alloc::sync::Arc;
use alloc::vec::Vec;
use kernel_shim::paging::HUGE_PAGE_SIZE;
use libvm::{ProtectionFlags, VmError};
use spin::Mutex;

/// Size of the stack region a new process gets (backed lazily, page by page).
pub const STACK_SIZE: u64 = layout::STACK_MAX;

impl<K: Kernel> Memd<K> {
    /// Creates a process with an empty image, laid out as memd's layout randomization draws it
    /// ([`crate::aslr`]): a stack below its stack top (with an unmapped guard page under it)
    /// and an empty heap.
    pub fn spawn(&self) -> Result<Pid, VmError> {
        self.room(REGION_COST + PAGE_COST)?;
        let (space, tables) = self.create_space().map_err(|_| VmError::OutOfMemory)?;
        let pid = self.new_pid();
        let placement = self.aslr.lock().draw();
        let mut image = AddressSpace::new(pid, space, self.config.limits, placement, self.zero);
        image.tables = tables;
        image.add_region(Region {
            start: placement.stack_top - STACK_SIZE,
            end: placement.stack_top,
            prot: ProtectionFlags::READ_WRITE,
            kind: RegionKind::Stack,
            shared: false,
            object: 0,
            flags: RegionFlags::empty(),
            offset: 0,
        });
        self.bookkeeping_changed(0, cost(&image));
        self.processes
            .write()
            .insert(pid, Arc::new(Mutex::new(image)));
        Ok(pid)
    }

    /// Forks process `parent`, the call made by its thread `thread` (the child's one thread,
    /// which keeps that thread's alternate stack for faults): private memory becomes
    /// copy-on-write in both, shared memory stays shared. Returns the child's pid.
    pub fn fork(&self, parent: Pid, thread: u64) -> Result<Pid, VmError> {
        bump(&self.counters.fork);
        let process = self.process(parent)?;
        let mut space = Self::lock_live(&process)?;
        self.room(cost(&space))?;
        // The parent's huge pages stay whole across the fork, but for those that meet memory
        // the child gets nothing of (`MADV_DONTFORK`) or an empty copy of
        // (`MADV_WIPEONFORK`): split first (their page tables counted in its bookkeeping).
        let before = cost(&space);
        let split = space
            .regions
            .iter()
            .filter(|r| {
                r.flags
                    .intersects(RegionFlags::DONTFORK | RegionFlags::WIPEONFORK)
            })
            .map(|r| (r.start, r.end))
            .collect::<Vec<_>>()
            .into_iter()
            .try_for_each(|(start, end)| self.split_huge(&mut space, start, end));
        self.bookkeeping_changed(before, cost(&space));
        split?;
        let (child_space, tables) = self.create_space().map_err(|_| VmError::OutOfMemory)?;
        let pid = self.new_pid();
        let mut child =
            AddressSpace::new(pid, child_space, space.limits, space.placement, self.zero);
        child.tables = tables;
        child.regions = space.regions.clone();
        child.mapped_bytes = space.mapped_bytes;
        child.heap_start = space.heap_start;
        child.brk = space.brk;
        child.deny_write_exec = space.deny_write_exec;
        child.rlimits = space.rlimits;
        child.fault_handler = space.fault_handler.as_ref().map(|h| h.forked(thread));
        child.pages = space.pages.clone();
        // `MADV_DONTFORK`: the child has nothing there; `MADV_WIPEONFORK`: the region, empty
        // (and wiped again at its own forks).
        let special: Vec<Region> = space
            .regions
            .iter()
            .filter(|r| {
                r.flags
                    .intersects(RegionFlags::DONTFORK | RegionFlags::WIPEONFORK)
            })
            .copied()
            .collect();
        for r in &special {
            // No reference of the child's was taken on them yet.
            child.take_pages(r.start, r.end, |_, _| {});
            if r.flags.contains(RegionFlags::DONTFORK) {
                child.remove_regions(r.start, r.end);
            }
        }
        // Device memory: nothing of a private mapping is the child's; a shared one maps the
        // same device pages (at the child's first touch of each).
        let private_devices: Vec<(u64, u64)> = child
            .regions
            .iter()
            .filter(|r| r.kind == RegionKind::Device && !r.shared)
            .map(|r| (r.start, r.end))
            .collect();
        for (start, end) in private_devices {
            child.remove_regions(start, end);
        }
        // The child's high-water mark starts from what it has now (Linux: from its RSS).
        child.pages.reset_peak();
        // The parent's huge pages stay huge, and the child maps the same 512 frames as huge
        // pages too (read-only where they are copy-on-write: a write splits the writer's
        // mapping and copies one page), but where it was left nothing.
        child.huge = space
            .huge
            .iter()
            .copied()
            .filter(|&block| child.pages.contains(block))
            .collect();
        {
            let mut objects = self.objects.lock();
            for r in child.regions.iter().filter(|r| r.object != 0) {
                objects.add_mapped(r.object, r.pages());
            }
            let frames = &self.frames;
            // A frame that cannot take one more reference (u32::MAX of them) is left to the
            // parent: the child's page is dropped from its map before anything maps it, and
            // the fork refused below, so no reference is ever released that was not taken.
            let mut unshared = Vec::new();
            for (page, frame) in child.pages.iter() {
                if frames.share(frame).is_err() {
                    unshared.push(page);
                }
            }
            if !unshared.is_empty() {
                for page in unshared {
                    child.pages.remove(page);
                }
                drop(objects);
                self.bookkeeping_changed(0, cost(&child));
                drop(space);
                self.teardown(child);
                return Err(VmError::OutOfMemory);
            }
        }
        // The child maps every resident page, writable only where shared memory allows it.
        let mut child_ops = PageOps::new();
        for region in child.regions.iter() {
            if region.prot == ProtectionFlags::NONE {
                continue;
            }
            for (page, frame) in child.resident(region.start, region.end) {
                let block = page & !(HUGE_PAGE_SIZE - 1);
                if !child.huge.is_empty() && child.huge.contains(&block) {
                    if page == block {
                        child_ops.push(PageOp::MapHuge {
                            page,
                            frame,
                            prot: page_prot(region, 2),
                        });
                    }
                    continue;
                }
                child_ops.push(PageOp::Map {
                    page,
                    frame,
                    prot: page_prot(region, 2),
                });
            }
        }
        // The parent loses write access to what is now copy-on-write (its `PROT_NONE`
        // regions' unmaps are left out: nothing of them is in its page tables).
        let mut parent_ops = NoUnmaps(PageOps::new());
        {
            let frames = &self.frames;
            sync_ops(
                &space,
                0,
                layout::USER_END,
                |f| frames.refcount(f),
                false,
                &mut parent_ops,
            );
        }
        let parent_ops = parent_ops.0;
        // The child first: if the kernel refuses either, the child goes and the parent is as
        // it was (its write access taken away only once the child exists). Lists memd's heap
        // had no room for are refused the same way.
        let parent_before = cost(&space);
        let applied = !child_ops.is_incomplete()
            && !parent_ops.is_incomplete()
            && self.apply(&mut child, &child_ops).is_ok()
            && self.apply(&mut space, &parent_ops).is_ok();
        self.bookkeeping_changed(parent_before, cost(&space));
        self.bookkeeping_changed(0, cost(&child));
        if !applied {
            drop(space);
            self.teardown(child);
            return Err(VmError::OutOfMemory);
        }
        // From now on a private page of either may map a frame the other maps too.
        space.cow = true;
        child.cow = true;
        drop(space);
        self.processes
            .write()
            .insert(pid, Arc::new(Mutex::new(child)));
        Ok(pid)
    }

    /// From now on process `pid` is under W^X: no page writable and executable at once, none
    /// made executable that was not (see [`libvm::Vm::deny_write_exec`]). For good.
    pub fn deny_write_exec(&self, pid: Pid) -> Result<(), VmError> {
        self.with_space(pid, |s| {
            s.deny_write_exec = true;
            Ok(())
        })
    }

    /// Whether process `pid` is under W^X.
    pub fn denies_write_exec(&self, pid: Pid) -> Result<bool, VmError> {
        self.with_space(pid, |s| Ok(s.deny_write_exec))
    }

    /// Where process `pid`'s areas begin (its first thread's stack pointer starts below
    /// `stack_top`).
    pub fn placement(&self, pid: Pid) -> Result<Placement, VmError> {
        self.with_space(pid, |s| Ok(s.placement))
    }

    /// Process `pid` exited with `status`: every frame it held is returned.
    pub fn exit(&self, pid: Pid, status: i32) -> Result<(), VmError> {
        if self.terminate(pid, Death::Exited(status)) {
            Ok(())
        } else {
            Err(VmError::NoSuchProcess)
        }
    }

    /// Removes process `pid`, records how it died and returns its memory; `false` if there
    /// was no such process.
    pub(crate) fn terminate(&self, pid: Pid, death: Death) -> bool {
        let Some(process) = self.processes.write().remove(&pid) else {
            return false;
        };
        self.dead.lock().insert(pid, death);
        let mut ended = AddressSpace::new(pid, 0, self.config.limits, Placement::FIXED, self.zero);
        ended.ended = true;
        let image = core::mem::replace(&mut *process.lock(), ended);
        self.teardown(image);
        true
    }

    /// Destroys the kernel space of an address space, then returns every frame and object
    /// share it held. If the kernel refused to destroy it, its frames may still be mapped:
    /// none is reused (see [`Memd::destroy_space`]).
    pub(crate) fn teardown(&self, mut image: AddressSpace) {
        self.bookkeeping_changed(cost(&image), 0);
        if !self.destroy_space(&mut image) {
            return;
        }
        // Region by region: no list of them all (memd's heap may not hold one at once).
        let regions = core::mem::take(&mut image.regions);
        for r in regions.iter() {
            self.drop_pages(&mut image, core::slice::from_ref(r));
        }
        debug_assert!(image.pages.is_empty());
    }
}

/// The operations a list receives, less its unmaps (`Unmap`, `Prune`).
struct NoUnmaps(PageOps);

impl Extend<PageOp> for NoUnmaps {
    fn extend<I: IntoIterator<Item = PageOp>>(&mut self, ops: I) {
        self.0.extend(
            ops.into_iter()
                .filter(|op| !matches!(op, PageOp::Unmap { .. } | PageOp::Prune { .. })),
        );
    }
}
