//! Page faults: resolved by a zero-filled frame, a shared-object frame or a copy-on-write, or
//! refused with a reason that kills the process.
//!
//! The zero frame: a first read of a private anonymous page (not locked) maps memd's one
//! shared zero frame read-only, as Linux maps its zero page; the first write there gets a
//! frame of its own, zeroed (no copy). A space that maps it counts as holding shared frames
//! ([`AddressSpace::cow`]).
//!
//! Fault-around: a first touch that continues a sequential walk through a private anonymous
//! region of at least [`FAULT_AROUND_MIN_REGION`] pages (the page before it is resident) backs
//! up to [`FAULT_AROUND`] absent pages from it on in the same batch, each with a fresh zeroed
//! frame, never past the region or the next resident page. An isolated touch backs one page.

use crate::daemon::{CHUNK_COST, Death, Memd, PAGE_COST, Pid, cost};
use crate::fault_handler::Delivery;
use crate::kernel::{FrameAddr, Kernel, KernelError, PAGE_SIZE, PageOp};
use crate::region::{Region, RegionFlags, RegionKind};
use crate::space::{AddressSpace, page_prot};
use crate::stats::bump;
use crate::tables::ApplyError;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use libvm::{ProtectionFlags, VmError};

/// Most pages one fault backs when it continues a sequential walk (fault-around).
pub const FAULT_AROUND: u64 = 16;

/// Fewest pages a region needs for fault-around.
pub const FAULT_AROUND_MIN_REGION: u64 = 64;

/// The access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An instruction fetch.
    Execute,
}

/// Why a fault was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultReason {
    /// No region covers the address (`SEGV_MAPERR`).
    MapErr,
    /// A region covers it but forbids the access (`SEGV_ACCERR`).
    AccErr,
    /// The fault was legal but no frame could be had.
    OutOfMemory,
}

/// A refused fault: the process is killed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultKill {
    /// The faulting address.
    pub addr: u64,
    /// The access.
    pub access: Access,
    /// Why it was refused.
    pub reason: FaultReason,
}

/// What memd answers to a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The page is mapped now: resume the thread.
    Resolved,
    /// Resume the thread in the process's fault handler (the frame's pages are ready); if the
    /// kernel refuses, kill the process for `kill` ([`Memd::kill_for`]).
    Deliver {
        /// Where and what.
        delivery: Delivery,
        /// The kill should the delivery fail.
        kill: FaultKill,
    },
    /// Kill the process (memd has already released its memory).
    Kill(FaultKill),
    /// The process was ended meanwhile by something else (another thread's fault made it the
    /// out-of-memory victim, its exit, its parent's kill): its death is recorded already; the
    /// thread is only told to die.
    Gone,
}

/// Whether `prot` allows `access` (on x86, any present page is readable).
pub fn allows(prot: ProtectionFlags, access: Access) -> bool {
    match access {
        Access::Read => prot != ProtectionFlags::NONE,
        Access::Write => prot.contains(ProtectionFlags::WRITE),
        Access::Execute => prot.contains(ProtectionFlags::EXECUTE),
    }
}

/// Why a fault was not resolved this time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unresolved {
    /// Refused for good: the process is killed for it (or, out of memory, the policy picks
    /// a process to kill and the fault is tried again).
    Refused(FaultReason),
    /// The kernel refused the page-table change (nothing changed).
    Kernel(KernelError),
}

impl From<FaultReason> for Unresolved {
    fn from(reason: FaultReason) -> Unresolved {
        Unresolved::Refused(reason)
    }
}

impl From<ApplyError> for Unresolved {
    fn from(e: ApplyError) -> Unresolved {
        match e {
            ApplyError::NoFrames => Unresolved::Refused(FaultReason::OutOfMemory),
            ApplyError::Kernel(e) => Unresolved::Kernel(e.error),
        }
    }
}

/// The most processes the out-of-memory policy kills for one fault before it gives up and
/// kills the faulting process.
pub const MAX_OOM_KILLS: usize = 8;

impl<K: Kernel> Memd<K> {
    /// Resolves a page fault of thread `thread` of process `pid` at `addr`, hands it to the
    /// process's handler (the thread's stack pointer is `sp`: see [`crate::fault_handler`]),
    /// or kills the process.
    ///
    /// Out of memory, the policy chooses whom to kill: the process holding the most memory
    /// (resident pages and page-table frames; never the exempt one, see
    /// [`crate::Config::oom_exempt`]), not whoever faulted. If that is another process, it is
    /// killed (see [`Memd::take_oom_victims`]) and the fault tried again; if it is the faulting
    /// process, that one is killed. A page-table change the kernel refused for want of table
    /// frames changed nothing: the thread is resumed and faults again.
    pub fn handle_fault(
        &self,
        pid: Pid,
        thread: u64,
        addr: u64,
        access: Access,
        sp: u64,
    ) -> FaultOutcome {
        let Ok(process) = self.process(pid) else {
            return FaultOutcome::Gone;
        };
        let mut kills = 0;
        let reason = loop {
            let epoch = self.oom_epoch.load(Ordering::Acquire);
            let result = {
                let Ok(mut space) = Self::lock_live(&process) else {
                    return FaultOutcome::Gone;
                };
                let before = cost(&space);
                let result = self.resolve(&mut space, addr, access);
                self.bookkeeping_changed(before, cost(&space));
                result
            };
            match result {
                Ok(()) | Err(Unresolved::Kernel(KernelError::OutOfMemory)) => {
                    return FaultOutcome::Resolved;
                }
                Err(Unresolved::Kernel(_)) => break FaultReason::OutOfMemory,
                Err(Unresolved::Refused(FaultReason::OutOfMemory)) if kills < MAX_OOM_KILLS => {
                    let _oom = self.oom_lock.lock();
                    if self.oom_epoch.load(Ordering::Acquire) != epoch {
                        // Another fault's kill freed memory meanwhile: try again.
                        continue;
                    }
                    match self.oom_victim() {
                        Some(victim) if victim != pid => {
                            self.oom_kill(victim);
                            kills += 1;
                        }
                        _ => {
                            bump(&self.counters.oom_kills);
                            break FaultReason::OutOfMemory;
                        }
                    }
                }
                Err(Unresolved::Refused(reason)) => break reason,
            }
        };
        let kill = FaultKill {
            addr,
            access,
            reason,
        };
        let code = match reason {
            FaultReason::MapErr => Some(libvm::fault::SEGV_MAPERR),
            FaultReason::AccErr => Some(libvm::fault::SEGV_ACCERR),
            FaultReason::OutOfMemory => None,
        };
        let delivery =
            code.and_then(|code| self.delivery(pid, thread, libvm::fault::SIGSEGV, code, sp));
        if let Some(delivery) = delivery {
            return FaultOutcome::Deliver { delivery, kill };
        }
        if self.kill_for(pid, kill) {
            FaultOutcome::Kill(kill)
        } else {
            FaultOutcome::Gone
        }
    }

    /// Kills process `pid` for the refused fault `kill` (counted; its memory returned at
    /// once): what a refused fault does, and what a delivery the kernel refused comes to.
    /// Whether it did: `false` when the process was ended meanwhile by something else
    /// (nothing counted then).
    pub fn kill_for(&self, pid: Pid, kill: FaultKill) -> bool {
        if !self.terminate(pid, Death::Killed(kill)) {
            return false;
        }
        match kill.reason {
            FaultReason::MapErr => bump(&self.counters.maperr),
            FaultReason::AccErr => bump(&self.counters.accerr),
            FaultReason::OutOfMemory => {}
        }
        true
    }

    /// The process the out-of-memory policy kills: the one holding the most memory (resident
    /// pages and page-table frames), never the exempt one; `None` if there is none.
    fn oom_victim(&self) -> Option<Pid> {
        let processes: Vec<(Pid, _)> = self
            .processes
            .read()
            .iter()
            .map(|(&pid, p)| (pid, p.clone()))
            .collect();
        processes
            .into_iter()
            .filter(|&(pid, _)| Some(pid) != self.config.oom_exempt)
            .filter_map(|(pid, p)| {
                let space = Self::lock_live(&p).ok()?;
                Some((space.pages.len() + space.tables.len(), pid))
            })
            .max()
            .map(|(_, pid)| pid)
    }

    /// Kills `victim` for the out-of-memory policy: its memory is returned at once, its death
    /// recorded and queued for the server to announce.
    fn oom_kill(&self, victim: Pid) {
        let kill = FaultKill {
            addr: 0,
            access: Access::Read,
            reason: FaultReason::OutOfMemory,
        };
        // Counted once, by whoever ended it (two faults at once may pick the same victim).
        if self.terminate(victim, Death::Killed(kill)) {
            bump(&self.counters.oom_kills);
            self.oom_victims.lock().push(victim);
            self.oom_epoch.fetch_add(1, Ordering::Release);
        }
    }

    pub(crate) fn resolve(
        &self,
        space: &mut AddressSpace,
        addr: u64,
        access: Access,
    ) -> Result<(), Unresolved> {
        let region = *space.regions.find(addr).ok_or(FaultReason::MapErr)?;
        if !allows(region.prot, access) {
            return Err(FaultReason::AccErr.into());
        }
        let page = addr & !(PAGE_SIZE - 1);
        if region.kind == RegionKind::Device {
            return self.fill_device(space, &region, page);
        }
        match space.pages.get(page) {
            // A new resident page needs room in memd's bookkeeping too.
            None if self.page_room(1) == 0 => Err(FaultReason::OutOfMemory.into()),
            None => self.fill(space, &region, page, access),
            Some(frame) => self.refault(space, &region, page, frame, access),
        }
    }

    /// First touch of `page`: a shared-object frame, the zero frame (a read of private
    /// anonymous memory), or a new zeroed one.
    fn fill(
        &self,
        space: &mut AddressSpace,
        region: &Region,
        page: u64,
        access: Access,
    ) -> Result<(), Unresolved> {
        let frame = if region.object != 0 {
            if let Some(result) = self.fill_huge(space, region, page) {
                return result;
            }
            let index = region.offset + (page - region.start) / PAGE_SIZE;
            let mut objects = self.objects.lock();
            let object = objects.get_mut(region.object).ok_or(FaultReason::MapErr)?;
            match object.pages.get(&index) {
                Some(&frame) => {
                    self.frames
                        .share(frame)
                        .map_err(|_| FaultReason::OutOfMemory)?;
                    bump(&self.counters.shared);
                    frame
                }
                None => {
                    let frame = self.alloc_frame().ok_or(FaultReason::OutOfMemory)?;
                    // The object holds one reference, the mapping another (a fresh frame's
                    // count cannot overflow).
                    if self.frames.share(frame).is_err() {
                        self.release_frame(frame);
                        return Err(FaultReason::OutOfMemory.into());
                    }
                    self.kernel.zero_frame(frame);
                    object.pages.insert(index, frame);
                    bump(&self.counters.zero_fill);
                    frame
                }
            }
        } else {
            if let Some(zero) = self.zero
                && access == Access::Read
                && !region.flags.contains(RegionFlags::LOCKED)
            {
                return self.fill_zero(space, region, page, zero);
            }
            if access == Access::Write
                && let Some(result) = self.fill_huge(space, region, page)
            {
                return result;
            }
            if self.streaming(space, region, page) {
                return self.fill_around(space, region, page);
            }
            let frame = self.alloc_frame().ok_or(FaultReason::OutOfMemory)?;
            self.kernel.zero_frame(frame);
            bump(&self.counters.zero_fill);
            frame
        };
        let op = PageOp::Map {
            page,
            frame,
            prot: page_prot(region, 1),
        };
        if let Err(e) = self.apply(space, &[op]) {
            self.release_frame(frame);
            return Err(e.into());
        }
        space.pages.insert(page, frame);
        Ok(())
    }

    /// Whether a first touch of `page` continues a sequential walk through a large private
    /// anonymous region: the page before it is resident. Only then is fault-around worth its
    /// frames; an isolated touch backs exactly one page.
    fn streaming(&self, space: &AddressSpace, region: &Region, page: u64) -> bool {
        region.object == 0
            && region.pages() >= FAULT_AROUND_MIN_REGION
            && page > region.start
            && space.pages.contains(page - PAGE_SIZE)
    }

    /// A first read of private anonymous memory: `page` (and, continuing a sequential walk,
    /// the absent pages after it as [`Memd::fill_around`] counts them) map the zero frame
    /// read-only, in one batch.
    fn fill_zero(
        &self,
        space: &mut AddressSpace,
        region: &Region,
        page: u64,
        zero: FrameAddr,
    ) -> Result<(), Unresolved> {
        let mut end = page + PAGE_SIZE;
        if self.streaming(space, region, page) {
            let room = self.page_room(FAULT_AROUND as usize) as u64;
            end = region.end.min(page + room.max(1) * PAGE_SIZE);
            if let Some((next, _)) = space.pages.range(page, end).next() {
                end = next;
            }
        }
        let prot = page_prot(region, 2);
        let mut ops = [PageOp::Unmap { page: 0, pages: 0 }; FAULT_AROUND as usize];
        let mut n = 0;
        for at in (page..end).step_by(PAGE_SIZE as usize) {
            if self.frames.share(zero).is_err() {
                break;
            }
            ops[n] = PageOp::Map {
                page: at,
                frame: zero,
                prot,
            };
            n += 1;
        }
        if n == 0 {
            return Err(FaultReason::OutOfMemory.into());
        }
        if let Err(e) = self.apply(space, &ops[..n]) {
            (0..n).for_each(|_| self.frames.drop_ref(zero));
            return Err(e.into());
        }
        space.cow = true;
        space
            .pages
            .insert_run(ops[..n].iter().filter_map(|op| match *op {
                PageOp::Map { page, .. } => Some((page, zero)),
                _ => None,
            }));
        bump(&self.counters.zero_fill);
        Ok(())
    }

    /// Fault-around: backs `page` and the absent pages that follow it, up to
    /// [`FAULT_AROUND`] pages, never past the region nor past the next resident page, with
    /// fresh zeroed frames, in one batch. Pages after the first are backed only while frames
    /// are free: running short limits the batch, never fails the fault.
    fn fill_around(
        &self,
        space: &mut AddressSpace,
        region: &Region,
        page: u64,
    ) -> Result<(), Unresolved> {
        let room = self.page_room(FAULT_AROUND as usize) as u64;
        let mut end = region.end.min(page + room.max(1) * PAGE_SIZE);
        if let Some((next, _)) = space.pages.range(page, end).next() {
            end = next;
        }
        let prot = page_prot(region, 1);
        let mut ops = [PageOp::Unmap { page: 0, pages: 0 }; FAULT_AROUND as usize];
        let mut n = 0;
        let mut at = page;
        while at < end {
            let Some(frame) = self.alloc_frame() else {
                break;
            };
            ops[n] = PageOp::Map {
                page: at,
                frame,
                prot,
            };
            n += 1;
            at += PAGE_SIZE;
        }
        if n == 0 {
            return Err(FaultReason::OutOfMemory.into());
        }
        for op in &ops[..n] {
            if let PageOp::Map { frame, .. } = *op {
                self.kernel.zero_frame(frame);
            }
        }
        if let Err(e) = self.apply(space, &ops[..n]) {
            // One kernel call: a refusal mapped nothing.
            for op in &ops[..n] {
                if let PageOp::Map { frame, .. } = *op {
                    self.release_frame(frame);
                }
            }
            return Err(e.into());
        }
        space
            .pages
            .insert_run(ops[..n].iter().filter_map(|op| match *op {
                PageOp::Map { page, frame, .. } => Some((page, frame)),
                _ => None,
            }));
        bump(&self.counters.zero_fill);
        Ok(())
    }

    /// A fault on a resident page: copy-on-write, or a spurious fault (another thread resolved
    /// it first), answered by mapping the page again.
    fn refault(
        &self,
        space: &mut AddressSpace,
        region: &Region,
        page: u64,
        frame: u64,
        access: Access,
    ) -> Result<(), Unresolved> {
        // A page of a huge page changes alone only once the huge page is split; but a write
        // to a huge page whose frames are all this process's alone again (its fork's other
        // side copied or let go of them) makes the whole of it writable, as it was.
        if space
            .huge
            .contains(&(page & !(kernel_shim::paging::HUGE_PAGE_SIZE - 1)))
        {
            if let Some(result) = self.reuse_huge(space, region, page, access) {
                return result;
            }
            self.split_huge(space, page, page + PAGE_SIZE)
                .map_err(|_| FaultReason::OutOfMemory)?;
        }
        let frames = &self.frames;
        let refcount = frames.refcount(frame);
        if access != Access::Write || region.object != 0 || refcount <= 1 {
            let mut ops = [PageOp::Unmap { page: 0, pages: 0 }; FAULT_AROUND as usize];
            ops[0] = PageOp::Map {
                page,
                frame,
                prot: page_prot(region, refcount),
            };
            let mut n = 1;
            if access == Access::Write && region.object == 0 {
                // The last owner of a copy-on-write frame just regains write access; so do the
                // pages after it that are its alone too (their sharer is gone as well, most
                // likely: the fork's child exited), in the same batch.
                bump(&self.counters.cow);
                let end = region.end.min(page + FAULT_AROUND * PAGE_SIZE);
                for (next, f) in space.pages.range(page + PAGE_SIZE, end) {
                    if frames.refcount(f) != 1 {
                        break;
                    }
                    ops[n] = PageOp::Map {
                        page: next,
                        frame: f,
                        prot: region.prot,
                    };
                    n += 1;
                }
            }
            return self.apply(space, &ops[..n]).map_err(Unresolved::from);
        }
        // The zero frame's copy is a zeroed frame. A fault that continues a walk of
        // copy-on-write faults (at the page right after the last one copied) copies the
        // shared pages after it in the region in the same batch too (copy-on-write
        // fault-around, as for first touches): a child writing its memory through takes a
        // fault in 16; isolated writes copy one page each. (A sharer that lets go of a frame
        // meanwhile only makes its copy one more than needed: this space's reference keeps the
        // frame.)
        let mut pairs = [(0u64, 0u64, 0u64); FAULT_AROUND as usize];
        pairs[0] = (page, frame, 0);
        let mut n = 1;
        if space.cow_next == page && Some(frame) != self.zero {
            let end = region.end.min(page + FAULT_AROUND * PAGE_SIZE);
            for (next, f) in space.pages.range(page + PAGE_SIZE, end) {
                if frames.refcount(f) <= 1 || Some(f) == self.zero {
                    break;
                }
                pairs[n] = (next, f, 0);
                n += 1;
            }
        }
        for (i, pair) in pairs[..n].iter_mut().enumerate() {
            match self.alloc_frame() {
                Some(copy) => pair.2 = copy,
                None if i == 0 => return Err(FaultReason::OutOfMemory.into()),
                None => {
                    n = i;
                    break;
                }
            }
        }
        let mut ops = [PageOp::Unmap { page: 0, pages: 0 }; FAULT_AROUND as usize];
        for (op, &(at, from, copy)) in ops.iter_mut().zip(&pairs[..n]) {
            if Some(from) == self.zero {
                self.kernel.zero_frame(copy);
            } else {
                self.kernel.copy_frame(copy, from);
            }
            *op = PageOp::Map {
                page: at,
                frame: copy,
                prot: region.prot,
            };
        }
        if let Err(e) = self.apply(space, &ops[..n]) {
            pairs[..n]
                .iter()
                .for_each(|&(_, _, copy)| self.frames.drop_ref(copy));
            return Err(e.into());
        }
        pairs[..n]
            .iter()
            .for_each(|&(_, from, _)| self.frames.drop_ref(from));
        space
            .pages
            .insert_run(pairs[..n].iter().map(|&(at, _, copy)| (at, copy)));
        space.cow_next = pairs[n - 1].0 + PAGE_SIZE;
        if Some(frame) == self.zero {
            bump(&self.counters.zero_fill);
        } else {
            bump(&self.counters.cow);
            for _ in 0..n {
                bump(&self.counters.cow_copies);
            }
        }
        Ok(())
    }

    /// Drops one mapping's reference on `frame` of `region`.
    pub(crate) fn release_frame(&self, frame: u64) {
        self.frames.drop_ref(frame);
    }

    /// A free frame (count 1, not zeroed) from the calling thread's cache; `None` when no
    /// frame is free anywhere. The caller must not hold the frame allocator's lock.
    pub(crate) fn alloc_frame(&self) -> Option<FrameAddr> {
        self.frames.alloc(self.kernel.worker())
    }

    /// Backs every page of `[start, end)` for `access` now (`MADV_POPULATE_READ`,
    /// `MADV_POPULATE_WRITE`: a write also breaks copy-on-write), every region of which allows
    /// it; `OutOfMemory` if a page cannot be had (the pages before it stay backed, as on
    /// Linux).
    pub(crate) fn populate_for(
        &self,
        space: &mut AddressSpace,
        start: u64,
        end: u64,
        access: Access,
    ) -> Result<(), VmError> {
        let mut page = start;
        while page < end {
            let needed = match space.pages.get(page) {
                None => true,
                Some(frame) => {
                    access == Access::Write
                        && space.regions.find(page).is_some_and(|r| r.object == 0)
                        && self.frames.refcount(frame) > 1
                }
            };
            if needed && self.resolve(space, page, access).is_err() {
                return Err(VmError::OutOfMemory);
            }
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// Backs every page of `[start, end)` now (`MAP_POPULATE`, `MADV_WILLNEED`), stopping
    /// quietly at the first page that cannot be had, as Linux does.
    pub(crate) fn populate(&self, space: &mut AddressSpace, start: u64, end: u64) {
        // Region by region and page by page, nothing collected: inaccessible regions are
        // skipped whole, and a huge range ends at the first page that cannot be had, after at
        // most as many pages as there are frames.
        // The bookkeeping budget is settled when the request ends: count against it here
        // (a page may need a new chunk of the page map).
        let room = self.byte_room();
        let base = cost(space);
        let mut page = start;
        while page < end {
            let Some(region) = space.regions.find(page).copied() else {
                return;
            };
            let stop = region.end.min(end);
            let access = if region.prot.contains(ProtectionFlags::WRITE) {
                Access::Write
            } else if region.prot != ProtectionFlags::NONE {
                Access::Read
            } else {
                page = stop;
                continue;
            };
            while page < stop {
                if cost(space) - base + PAGE_COST + CHUNK_COST > room {
                    return;
                }
                if !space.pages.contains(page) && self.resolve(space, page, access).is_err() {
                    return;
                }
                page += PAGE_SIZE;
            }
        }
    }
}
