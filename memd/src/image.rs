//! Program images: the segments of a program loaded as Code and Data regions of a process.
//!
//! A segment's pages are backed at once (the bytes come from a boot module that memd reads,
//! not from a file system it could page in from later); they are private, so a fork shares
//! them copy-on-write like any other private memory.

use crate::daemon::{Memd, PAGE_COST, Pid};
use crate::kernel::{Kernel, PAGE_SIZE, PageOp};
use crate::layout::{self, check_user_range, page_round_up};
use crate::region::{Region, RegionFlags, RegionKind};
use crate::space::AddressSpace;
use alloc::vec::Vec;
use libvm::{ProtectionFlags, VmError};

/// One loadable segment of a program.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// Virtual address of its first byte (need not be page aligned).
    pub vaddr: u64,
    /// Bytes it covers in memory (at least `data.len()`; the rest reads as zero).
    pub mem_size: u64,
    /// Its bytes from the image.
    pub data: &'a [u8],
    /// Its protection.
    pub prot: ProtectionFlags,
}

impl<K: Kernel> Memd<K> {
    /// Loads a segment into process `pid`: a Code region if executable, else Data, backed now.
    /// Refused with nothing changed if it overlaps a region or memory is short.
    pub fn load_segment(&self, pid: Pid, segment: &Segment) -> Result<(), VmError> {
        if segment.mem_size < segment.data.len() as u64 || segment.mem_size == 0 {
            return Err(VmError::InvalidSize);
        }
        let start = segment.vaddr & !(PAGE_SIZE - 1);
        let last = segment
            .vaddr
            .checked_add(segment.mem_size)
            .ok_or(VmError::InvalidSize)?;
        let end = page_round_up(last).ok_or(VmError::InvalidSize)?;
        check_user_range(start, end - start)?;
        if start < layout::MIN_ADDR {
            return Err(VmError::InvalidAddress);
        }
        self.with_space(pid, |space| self.load_in(space, segment, start, end))
    }

    fn load_in(
        &self,
        space: &mut AddressSpace,
        segment: &Segment,
        start: u64,
        end: u64,
    ) -> Result<(), VmError> {
        if !space.regions.is_free(start, end) {
            return Err(VmError::AlreadyMapped);
        }
        if space.deny_write_exec
            && segment
                .prot
                .contains(ProtectionFlags::WRITE | ProtectionFlags::EXECUTE)
        {
            return Err(VmError::PermissionDenied);
        }
        self.region_room(space, 1)?;
        let pages = ((end - start) / PAGE_SIZE) as usize;
        self.room(pages * PAGE_COST)?;
        let mut frames = Vec::new();
        self.frames
            .alloc_many(pages, &mut frames)
            .map_err(|_| VmError::OutOfMemory)?;
        let mut ops = Vec::with_capacity(pages);
        for (i, &frame) in frames.iter().enumerate() {
            let page = start + i as u64 * PAGE_SIZE;
            self.kernel.zero_frame(frame);
            // The part of the segment's bytes that falls in this page.
            let lo = page.max(segment.vaddr);
            let hi = (page + PAGE_SIZE).min(segment.vaddr + segment.data.len() as u64);
            if lo < hi {
                let from = (lo - segment.vaddr) as usize;
                let to = (hi - segment.vaddr) as usize;
                self.kernel
                    .write_frame(frame, (lo - page) as usize, &segment.data[from..to]);
            }
            if segment.prot != ProtectionFlags::NONE {
                ops.push(PageOp::Map {
                    page,
                    frame,
                    prot: segment.prot,
                });
            }
        }
        if let Err(e) = self.apply(space, &ops) {
            // A batch too large for one kernel call may have mapped a prefix: take it back
            // before the frames go (a refused batch changed nothing).
            if e.done() > 0 {
                let op = PageOp::Unmap {
                    page: start,
                    pages: pages as u64,
                };
                if self.apply(space, &[op]).is_err() {
                    // They may stay mapped: keep them out of use.
                    self.quarantine(frames.len() as u64);
                    return Err(VmError::OutOfMemory);
                }
            }
            let allocator = &self.frames;
            for frame in frames {
                allocator.drop_ref(frame);
            }
            return Err(VmError::OutOfMemory);
        }
        for (i, frame) in frames.into_iter().enumerate() {
            space.pages.insert(start + i as u64 * PAGE_SIZE, frame);
        }
        space.add_region(Region {
            start,
            end,
            prot: segment.prot,
            kind: if segment.prot.contains(ProtectionFlags::EXECUTE) {
                RegionKind::Code
            } else {
                RegionKind::Data
            },
            shared: false,
            object: 0,
            flags: RegionFlags::empty(),
            offset: 0,
        });
        // The heap starts above the image when the image reaches into the heap area.
        // (As far above it as the layout's heap offset, within the heap area.)
        if end > space.heap_start && space.brk == space.heap_start && end <= layout::MMAP_BASE {
            let start = end
                .saturating_add(space.placement.heap_offset)
                .min(layout::MMAP_BASE);
            space.heap_start = start;
            space.brk = start;
        }
        Ok(())
    }
}
