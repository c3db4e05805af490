//! Where the page tables of each space come from.
//!
//! The spaces the pager creates are built of frames the pager donates (as seL4 retypes
//! untyped memory): the PML4 comes with `space_create`, and every other table from the
//! space's *reserve*, which the pager fills with `OP_DONATE` operations and empties with
//! `space_reclaim`. So no client can exhaust a kernel pool shared by all: a space's tables
//! are memory the pager charged to that space. Tables an unmap leaves empty stay linked
//! until the pager prunes them (`OP_UNMAP` with `UNMAP_PRUNE`): then they go back to the
//! space's reserve; when the space ends, every frame it was given is the pager's again.
//!
//! The kernel keeps a mark per frame of the window that is a table or a spare frame of a
//! donated space: such a frame is never mapped into ring 3 and never donated twice.
//!
//! The pager's own space and the boot programs the kernel loads itself take their tables
//! from the kernel's pool ([`FramePool`]).

use super::boot::{PHYS_WINDOW_SIZE, phys_to_virt};
use super::frames::{FramePool, PAGE};
use core::sync::atomic::{AtomicU64, Ordering};
use kernel_shim::paging::TableAlloc;
use x86_64::PhysAddr;

const MARK_WORDS: usize = (PHYS_WINDOW_SIZE / PAGE / 64) as usize;

/// Which frames of the window are tables or spare table frames of donated spaces.
///
/// The marks are atomics: spaces change at once on several processors, each under its own
/// lock. A frame is marked before it becomes a table and unmarked only once no table links it;
/// a map checks the mark of its frame. A donation and a map of the same frame at once, in two
/// spaces, would be a pager donating a frame it maps, which the kernel trusts it never to do
/// (it cannot see where a frame is mapped), on one processor as on many.
pub struct TableMarks([AtomicU64; MARK_WORDS]);

impl TableMarks {
    /// No frame marked.
    pub const fn new() -> TableMarks {
        TableMarks([const { AtomicU64::new(0) }; MARK_WORDS])
    }

    /// Whether `pa` (page aligned, inside the window) is marked.
    pub fn is_marked(&self, pa: u64) -> bool {
        let i = (pa / PAGE) as usize;
        self.0
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Acquire) & (1 << (i % 64)) != 0)
    }

    /// Marks or unmarks `pa`.
    pub fn set(&self, pa: u64, marked: bool) {
        let i = (pa / PAGE) as usize;
        if let Some(w) = self.0.get(i / 64) {
            if marked {
                w.fetch_or(1 << (i % 64), Ordering::AcqRel);
            } else {
                w.fetch_and(!(1 << (i % 64)), Ordering::AcqRel);
            }
        }
    }
}

/// The spare table frames of a donated space, linked through their first word.
#[derive(Clone, Copy, Debug)]
pub struct Reserve {
    /// The first spare frame (0: none).
    head: u64,
    /// How many there are.
    spare: u64,
}

impl Reserve {
    /// No spare frame.
    pub const EMPTY: Reserve = Reserve { head: 0, spare: 0 };

    /// Spare frames.
    pub fn spare(&self) -> u64 {
        self.spare
    }

    /// Adds the marked frame `pa` (no longer linked into any table).
    fn push(&mut self, pa: u64) {
        // SAFETY: `pa` is a marked frame inside the window: a table just unlinked or a frame
        // just donated, which nothing else refers to. The link is a page-aligned address, so
        // to a stale paging-structure cache the word reads as a not-present entry.
        unsafe { (phys_to_virt(pa) as *mut u64).write(self.head) };
        self.head = pa;
        self.spare += 1;
    }

    /// Takes a spare frame (still marked).
    fn pop(&mut self) -> Option<u64> {
        if self.head == 0 {
            return None;
        }
        let pa = self.head;
        // SAFETY: `pa` is a spare frame of this reserve, inside the window; its first word is
        // the link `push` wrote.
        self.head = unsafe { (phys_to_virt(pa) as *const u64).read() };
        self.spare -= 1;
        Some(pa)
    }
}

/// Takes the frame `pa`, checked by the caller (aligned, one of the pager's, unmarked), into
/// `reserve`.
pub fn donate(marks: &TableMarks, reserve: &mut Reserve, pa: u64) {
    marks.set(pa, true);
    reserve.push(pa);
}

/// Takes up to `out.len()` spare frames out of `reserve`, unmarked; how many.
pub fn reclaim(marks: &TableMarks, reserve: &mut Reserve, out: &mut [u64]) -> usize {
    let mut n = 0;
    while n < out.len() {
        let Some(pa) = reserve.pop() else { break };
        marks.set(pa, false);
        out[n] = pa;
        n += 1;
    }
    n
}

/// The allocator of one space's tables.
pub enum Tables<'a> {
    /// The kernel's pool (the pager's space and the boot programs the kernel loaded).
    Pool(&'a mut FramePool),
    /// The space's reserve of donated frames.
    Reserve(&'a mut Reserve),
    /// The end of a donated space: every table freed is unmarked (the pager's again).
    Release(&'a TableMarks),
    /// One donated frame, for the PML4 of a new space.
    Root(Option<u64>),
}

impl TableAlloc for Tables<'_> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let pa = match self {
            Tables::Pool(pool) => pool.alloc(),
            Tables::Reserve(reserve) => reserve.pop(),
            Tables::Release(_) => None,
            Tables::Root(root) => root.take(),
        };
        pa.map(PhysAddr::new)
    }

    fn free_table(&mut self, frame: PhysAddr) {
        match self {
            Tables::Pool(pool) => pool.free(frame.as_u64()),
            Tables::Reserve(reserve) => reserve.push(frame.as_u64()),
            Tables::Release(marks) => marks.set(frame.as_u64(), false),
            Tables::Root(_) => {}
        }
    }
}

/// Ends a donated space's reserve: every spare frame unmarked (the pager's again).
pub fn release_reserve(marks: &TableMarks, reserve: &mut Reserve) {
    while let Some(pa) = reserve.pop() {
        marks.set(pa, false);
    }
}
