//! The TLB invalidations a batch owes.

use x86_64::VirtAddr;

/// Above this many pages a batch asks for a full flush instead of one `invlpg` per page.
pub const FLUSH_THRESHOLD: usize = 32;

/// The TLB entries a batch of page-table changes made stale: none, up to
/// [`FLUSH_THRESHOLD`] pages, or everything.
///
/// It must be consumed: [`flush_with`](Flush::flush_with) (any TLB, e.g. the testbed's),
/// `flush_local` (this CPU, bare metal only) or [`ignore`](Flush::ignore) (no CPU can hold a
/// translation of this space). On bare metal the kernel also sends it to the other CPUs that
/// run the space before the frames involved are reused.
#[must_use = "stale TLB entries stay usable until the flush is carried out"]
#[derive(Debug, PartialEq, Eq)]
pub struct Flush {
    /// The pages to invalidate, `pages[..len]`.
    pages: [VirtAddr; FLUSH_THRESHOLD],
    /// How many of `pages` are used.
    len: usize,
    /// More than `FLUSH_THRESHOLD` pages changed: flush everything.
    full: bool,
}

impl Flush {
    /// Nothing to flush.
    pub(super) const fn new() -> Flush {
        Flush {
            pages: [VirtAddr::zero(); FLUSH_THRESHOLD],
            len: 0,
            full: false,
        }
    }

    /// Records that the translation of `page` changed.
    pub(super) fn page(&mut self, page: VirtAddr) {
        if self.full || self.pages().contains(&page) {
            return;
        }
        if self.len == FLUSH_THRESHOLD {
            self.full = true;
            self.len = 0;
        } else {
            self.pages[self.len] = page;
            self.len += 1;
        }
    }

    /// Whether nothing needs flushing.
    pub fn is_empty(&self) -> bool {
        !self.full && self.len == 0
    }

    /// Whether the whole TLB must be flushed (more than [`FLUSH_THRESHOLD`] pages changed).
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// The pages to invalidate one by one; empty when [`is_full`](Flush::is_full).
    pub fn pages(&self) -> &[VirtAddr] {
        &self.pages[..self.len]
    }

    /// Carries out the flush: `page` for each page, or `all` once for a full flush.
    #[inline(always)]
    pub fn flush_with(self, mut page: impl FnMut(VirtAddr), mut all: impl FnMut()) {
        if self.full {
            all();
        } else {
            self.pages().iter().copied().for_each(&mut page);
        }
    }

    /// Drops the flush knowingly: no CPU can hold a translation it would invalidate.
    #[inline(always)]
    pub fn ignore(self) {}

    /// Carries out the flush on this CPU, for the address space loaded in CR3: `invlpg` per
    /// page, or a CR3 reload (which keeps global, i.e. kernel, entries).
    #[cfg(target_os = "none")]
    #[inline(always)]
    pub fn flush_local(self) {
        self.flush_with(
            x86_64::instructions::tlb::flush,
            x86_64::instructions::tlb::flush_all,
        );
    }
}
