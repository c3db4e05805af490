//! The pool page-table frames come from.

use super::error::PagingError;
use super::window::PhysWindow;
use x86_64::PhysAddr;

/// The pool page-table frames come from: the kernel's own, never memd's frames.
pub trait TableAlloc {
    /// A free frame for a page table, or `None` when the pool is empty. Its contents do not
    /// matter: the paging code zeroes it.
    fn alloc_table(&mut self) -> Option<PhysAddr>;

    /// Takes back a frame that held a page table.
    ///
    /// A CPU's paging-structure caches may still hold the freed table until the batch's
    /// [`Flush`](super::Flush) has been carried out; a pool shared between CPUs must not hand
    /// the frame out again before that.
    fn free_table(&mut self, frame: PhysAddr);
}

/// Takes a frame from `alloc` and zeroes it; gives it back if it is unusable (misaligned or
/// outside the window).
pub(super) fn new_table<A: TableAlloc + ?Sized>(
    window: PhysWindow,
    alloc: &mut A,
) -> Result<PhysAddr, PagingError> {
    let frame = alloc.alloc_table().ok_or(PagingError::OutOfTableFrames)?;
    match window.zero_frame(frame) {
        Ok(()) => Ok(frame),
        Err(error) => {
            alloc.free_table(frame);
            Err(error)
        }
    }
}
