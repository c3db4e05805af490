//! The one trait memd is generic over: the kernel's paging capability, and memd's window onto
//! the frames it was given.
//!
//! On the metal it is implemented with system calls into kernel-shim; on the host by the
//! testbed's emulated kernel, over the same page-table code.

use alloc::vec::Vec;
use libvm::ProtectionFlags;

/// Size of a page and of a frame.
pub const PAGE_SIZE: u64 = 4096;

/// The kernel's name for an address space.
pub type SpaceId = u64;

/// The physical address of a 4 KiB frame (page aligned).
pub type FrameAddr = u64;

/// One page-table operation of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageOp {
    /// Map the page at `page` to `frame`, user-accessible, with `prot` (never `NONE`; memd
    /// unmaps pages that must not be accessible). Replaces an existing mapping of that page.
    Map {
        /// Page-aligned virtual address.
        page: u64,
        /// Frame to map.
        frame: FrameAddr,
        /// Access allowed.
        prot: ProtectionFlags,
    },
    /// Unmap every mapped page of `[page, page + pages * PAGE_SIZE)`; absent pages are skipped.
    /// The page tables stay, empty or not (the next mapping near reuses them).
    Unmap {
        /// Page-aligned virtual address.
        page: u64,
        /// Number of pages.
        pages: u64,
    },
    /// [`PageOp::Unmap`], then give every page table under the range that maps nothing back
    /// to the space's spare table frames (and the tables above it left empty).
    Prune {
        /// Page-aligned virtual address.
        page: u64,
        /// Number of pages.
        pages: u64,
    },
    /// Set the protection of every mapped page of the range (never `NONE`); absent pages are
    /// skipped.
    Protect {
        /// Page-aligned virtual address.
        page: u64,
        /// Number of pages.
        pages: u64,
        /// New access.
        prot: ProtectionFlags,
    },
    /// Give `frame` (free, unmapped everywhere) to the space's reserve of page-table frames;
    /// the kernel takes a batch's donations before its other operations.
    Donate {
        /// The frame.
        frame: FrameAddr,
    },
    /// Map the 2 MiB at `page` (aligned) to the 512 frames from `frame` (aligned) as one huge
    /// page with `prot` (never `NONE`), replacing a huge page there. Refused where a page
    /// table is (pages of 4 KiB).
    MapHuge {
        /// 2 MiB-aligned virtual address.
        page: u64,
        /// The first of 512 consecutive frames, 2 MiB aligned.
        frame: FrameAddr,
        /// Access allowed.
        prot: ProtectionFlags,
    },
    /// Replace the huge page at `page` by 512 pages of a new page table (one table frame),
    /// the same frames and access. A batch that changes part of a huge page, or maps a page
    /// inside one, is refused: the split goes in a batch before.
    Split {
        /// 2 MiB-aligned virtual address.
        page: u64,
    },
    /// Map the page at `page` to the page at physical `phys` of a device range (see
    /// [`crate::device`]: never one of memd's frames), with `prot` (never `NONE`) and
    /// `caching`, replacing.
    MapDevice {
        /// Page-aligned virtual address.
        page: u64,
        /// Page-aligned physical address in a device range.
        phys: u64,
        /// Access allowed.
        prot: ProtectionFlags,
        /// How the page is cached.
        caching: Caching,
    },
}

pub use libvm::Caching;

/// A list of page operations that keeps its first [`PageOps::INLINE`] on the stack and moves
/// to the heap only beyond them: most requests (one fault, one `mprotect` of one region) make
/// one or two operations, and they should cost no allocation. Growing it never fails memd: when
/// its heap has no room for more, the list is marked [`PageOps::is_incomplete`] and must not
/// be applied (the request is refused with ENOMEM instead).
pub struct PageOps {
    /// The operations while there are at most `INLINE`: `inline[..len]`.
    inline: [PageOp; PageOps::INLINE],
    /// How many of `inline` are used (until the list spills).
    len: usize,
    /// Every operation, once there were more than `INLINE` (empty until then).
    spill: Vec<PageOp>,
    /// Whether an operation was dropped for want of memory.
    incomplete: bool,
}

impl PageOps {
    /// Operations kept without allocation.
    pub const INLINE: usize = 8;

    /// An empty list.
    pub fn new() -> PageOps {
        PageOps {
            inline: [PageOp::Unmap { page: 0, pages: 0 }; PageOps::INLINE],
            len: 0,
            spill: Vec::new(),
            incomplete: false,
        }
    }

    /// Whether an operation could not be kept (memd's heap had no room): the list must not
    /// be applied.
    pub fn is_incomplete(&self) -> bool {
        self.incomplete
    }

    /// Appends `op`.
    #[inline]
    pub fn push(&mut self, op: PageOp) {
        if self.incomplete {
            return;
        }
        if self.spill.is_empty() {
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = op;
                self.len += 1;
                return;
            }
            if self.spill.try_reserve(2 * PageOps::INLINE).is_err() {
                self.incomplete = true;
                return;
            }
            self.spill.extend_from_slice(&self.inline);
        }
        if self.spill.try_reserve(1).is_err() {
            self.incomplete = true;
            return;
        }
        self.spill.push(op);
    }

    /// The operations, in the order they were pushed.
    pub fn as_slice(&self) -> &[PageOp] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

impl Default for PageOps {
    fn default() -> PageOps {
        PageOps::new()
    }
}

impl core::ops::Deref for PageOps {
    type Target = [PageOp];

    fn deref(&self) -> &[PageOp] {
        self.as_slice()
    }
}

impl Extend<PageOp> for PageOps {
    fn extend<I: IntoIterator<Item = PageOp>>(&mut self, ops: I) {
        ops.into_iter().for_each(|op| self.push(op));
    }
}

/// Why the kernel refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// The space lacks the page-table frames the batch needs (memd donated too few), or the
    /// kernel has no room for another space or thread.
    OutOfMemory,
    /// The space does not exist.
    NoSuchSpace,
    /// An address or frame the kernel will not map (not user, not memd's, misaligned).
    Refused,
}

/// A batch that failed: the operations before `done` were applied, the rest were not.
///
/// The kernel checks a batch whole before it performs any of it, so a refusal has `done` 0;
/// only a batch too large for one kernel call (more than the kernel's largest) can fail after
/// a prefix (whole calls) was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// Number of operations applied before the failure.
    pub done: usize,
    /// Why the next one failed.
    pub error: KernelError,
}

/// The kernel's paging capability as memd sees it.
///
/// Page tables are memory memd gives the kernel: a space's PML4 comes with
/// [`create_space`](Kernel::create_space), its other tables from a reserve memd fills with
/// [`PageOp::Donate`] and empties with [`reclaim_tables`](Kernel::reclaim_tables); when the
/// space is destroyed every frame donated to it is memd's again.
///
/// Every method may be called from several threads at once for different spaces.
pub trait Kernel: Sync + Send {
    /// Creates an empty user address space whose PML4 is the donated frame `root` (free,
    /// unmapped everywhere).
    fn create_space(&self, root: FrameAddr) -> Result<SpaceId, KernelError>;

    /// Destroys a space: its threads end and every frame donated to it (tables and spare
    /// ones) is memd's again once this returns `Ok`. The frames it mapped are memd's and are
    /// not touched; no translation of them survives.
    fn destroy_space(&self, space: SpaceId) -> Result<(), KernelError>;

    /// Applies `ops` to `space`, decode then perform: the kernel checks the whole batch, and
    /// that the space's spare table frames and the batch's donations cover the tables its maps
    /// need ([`kernel_shim::paging::TableNeed`]), before it changes anything (a refusal changes
    /// nothing); then it takes the donations, performs the other operations in order and
    /// flushes the TLB once before returning. Returns the space's spare table frames.
    fn apply(&self, space: SpaceId, ops: &[PageOp]) -> Result<u64, BatchError>;

    /// Takes up to `out.len()` spare table frames of `space` back into `out` (unlinked and
    /// flushed: memd may use them at once); how many.
    fn reclaim_tables(&self, space: SpaceId, out: &mut [FrameAddr]) -> Result<usize, KernelError>;

    /// Fills a frame with zeros (through memd's window onto its frames).
    fn zero_frame(&self, frame: FrameAddr);

    /// Copies one frame to another (through memd's window onto its frames).
    fn copy_frame(&self, dst: FrameAddr, src: FrameAddr);

    /// Writes `bytes` into a frame at `offset` (used to load program images and zero the tail
    /// of a partial page). `offset + bytes.len()` never exceeds a page.
    fn write_frame(&self, frame: FrameAddr, offset: usize, bytes: &[u8]);

    /// Which of memd's threads calls (any number: its frame cache is this modulo
    /// [`crate::frame_cache::CACHES`]).
    fn worker(&self) -> usize;
}
