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
    Unmap {
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
}

/// A list of page operations that keeps its first [`PageOps::INLINE`] on the stack and moves
/// to the heap only beyond them: most requests (one fault, one `mprotect` of one region) make
/// one or two operations, and they should cost no allocation.
pub struct PageOps {
    /// The operations while there are at most `INLINE`: `inline[..len]`.
    inline: [PageOp; PageOps::INLINE],
    /// How many of `inline` are used (until the list spills).
    len: usize,
    /// Every operation, once there were more than `INLINE` (empty until then).
    spill: Vec<PageOp>,
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
        }
    }

    /// Appends `op`.
    #[inline]
    pub fn push(&mut self, op: PageOp) {
        if self.spill.is_empty() {
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = op;
                self.len += 1;
                return;
            }
            self.spill.reserve(2 * PageOps::INLINE);
            self.spill.extend_from_slice(&self.inline);
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
    /// The kernel has no frame left for page tables (or address spaces).
    OutOfMemory,
    /// The space does not exist.
    NoSuchSpace,
    /// An address or frame the kernel will not map (not user, not memd's, misaligned).
    Refused,
}

/// A batch that failed: the operations before `done` were applied, the rest were not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchError {
    /// Number of operations applied before the failure.
    pub done: usize,
    /// Why the next one failed.
    pub error: KernelError,
}

/// The kernel's paging capability as memd sees it.
///
/// Every method may be called from several threads at once for different spaces.
pub trait Kernel: Sync + Send {
    /// Creates an empty user address space.
    fn create_space(&self) -> Result<SpaceId, KernelError>;

    /// Destroys a space: its page tables are returned to the kernel. The frames it mapped are
    /// memd's and are not touched.
    fn destroy_space(&self, space: SpaceId);

    /// Applies `ops` in order to `space`, then flushes the TLB once for the whole batch
    /// before returning. On failure, the applied prefix stays applied (and flushed).
    fn apply(&self, space: SpaceId, ops: &[PageOp]) -> Result<(), BatchError>;

    /// Frames the kernel currently holds as page tables of user spaces.
    fn page_table_frames(&self) -> u64;

    /// Fills a frame with zeros (through memd's window onto its frames).
    fn zero_frame(&self, frame: FrameAddr);

    /// Copies one frame to another (through memd's window onto its frames).
    fn copy_frame(&self, dst: FrameAddr, src: FrameAddr);

    /// Writes `bytes` into a frame at `offset` (used to load program images and zero the tail
    /// of a partial page). `offset + bytes.len()` never exceeds a page.
    fn write_frame(&self, frame: FrameAddr, offset: usize, bytes: &[u8]);
}
