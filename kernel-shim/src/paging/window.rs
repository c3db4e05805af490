//! The physical-memory window: the one way this module reaches physical memory.
//!
//! Physical address `p` is at `base + p`. Every access is bounds checked: an address outside
//! the window is an error, never undefined behaviour.
//!
//! Why the safe methods are sound: the creator of a window promises (in [`PhysWindow::new`])
//! that it owns the memory behind it exclusively, so no Rust reference to that memory exists
//! outside this module. Inside it, a `&mut PageTable` is only ever made by
//! [`PhysWindow::with_table`] and lives for one closure call; the paging code never nests two
//! such calls, so two references to one frame never coexist even if a corrupted entry made a
//! table point at itself. The byte helpers copy through raw pointers and hold no reference.
//! A window is neither `Send` nor `Sync`: whoever shares the memory between threads states in
//! its own `unsafe impl` why that is race free.

use super::addr::{self, PAGE_SIZE};
use super::error::PagingError;
use core::ptr;
use x86_64::PhysAddr;
use x86_64::structures::paging::PageTable;
use x86_64::structures::paging::page_table::PageTableEntry;

/// A window onto physical memory: physical address `p` is at `base + p`, for `p < size`.
#[derive(Clone, Copy, Debug)]
pub struct PhysWindow {
    /// Where physical address 0 is.
    base: *mut u8,
    /// Bytes of physical memory behind `base`.
    size: u64,
}

impl PhysWindow {
    /// Makes a window of `size` bytes of physical memory starting at `base`.
    ///
    /// Panics if `base` is not 4096-byte aligned.
    ///
    /// # Safety
    ///
    /// - `[base, base + size)` is valid for reads and writes for as long as this window or
    ///   any copy of it is used, and `size` fits in an `isize`.
    /// - The caller owns that memory exclusively: nothing reaches it except through windows
    ///   over it (no Rust reference to it is alive while a window is used).
    /// - Windows over the same memory are not used by two threads on the same bytes at once:
    ///   a space's page tables are changed and walked by one thread at a time, and a data
    ///   frame is written by one thread at a time.
    pub unsafe fn new(base: *mut u8, size: u64) -> PhysWindow {
        assert!(
            base.addr().is_multiple_of(PAGE_SIZE as usize),
            "a physical window must be page aligned"
        );
        PhysWindow { base, size }
    }

    /// Size of the window in bytes: physical addresses `0..size` are inside it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether `[phys, phys + len)` lies inside the window.
    #[inline(always)]
    pub fn contains(&self, phys: PhysAddr, len: u64) -> bool {
        phys.as_u64()
            .checked_add(len)
            .is_some_and(|end| end <= self.size)
    }

    /// Copies `buf.len()` bytes from physical address `phys` into `buf`.
    pub fn read(&self, phys: PhysAddr, buf: &mut [u8]) -> Result<(), PagingError> {
        let src = self.bytes(phys, buf.len() as u64)?;
        // SAFETY: `bytes` checked that `[phys, phys + len)` is inside the window, which is
        // valid for reads (the promise of `new`); `buf` is a Rust reference, so it cannot
        // overlap the window's memory, which no reference points into.
        unsafe { ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `bytes` to physical address `phys`.
    pub fn write(&self, phys: PhysAddr, bytes: &[u8]) -> Result<(), PagingError> {
        let dst = self.bytes(phys, bytes.len() as u64)?;
        // SAFETY: as in `read`: the destination is inside the window, valid for writes, and
        // cannot overlap `bytes`.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        Ok(())
    }

    /// Fills the frame at `frame` with zeros.
    pub fn zero_frame(&self, frame: PhysAddr) -> Result<(), PagingError> {
        addr::frame(*self, frame)?;
        // SAFETY: `addr::frame` checked that the whole frame is inside the window.
        unsafe { ptr::write_bytes(self.at(frame), 0, PAGE_SIZE as usize) };
        Ok(())
    }

    /// Copies the frame at `src` to the frame at `dst`.
    pub fn copy_frame(&self, dst: PhysAddr, src: PhysAddr) -> Result<(), PagingError> {
        addr::frame(*self, dst)?;
        addr::frame(*self, src)?;
        if dst != src {
            // SAFETY: both frames are inside the window (checked above); two different
            // page-aligned frames do not overlap.
            unsafe {
                ptr::copy_nonoverlapping(self.at(src), self.at(dst), PAGE_SIZE as usize);
            }
        }
        Ok(())
    }

    /// Runs `f` on the page table in the frame at `table`.
    ///
    /// The reference cannot escape `f`. Callers never call this from inside `f` (see the
    /// module documentation): that is what keeps table references unique.
    #[inline(always)]
    pub(super) fn with_table<R>(
        &self,
        table: PhysAddr,
        f: impl FnOnce(&mut PageTable) -> R,
    ) -> Result<R, PagingError> {
        addr::frame(*self, table)?;
        // SAFETY: the frame is page aligned and inside the window (checked above), and the
        // window's base is page aligned (checked in `new`), so the pointer is valid and
        // aligned for a `PageTable`; every bit pattern is a valid `PageTable`. No other
        // reference to this memory is alive: the creator of the window owns it exclusively
        // and this module makes one table reference at a time.
        let table = unsafe { &mut *self.at(table).cast::<PageTable>() };
        Ok(f(table))
    }

    /// A copy of entry `index` of the table at `table`.
    #[inline(always)]
    pub(super) fn entry(
        &self,
        table: PhysAddr,
        index: usize,
    ) -> Result<PageTableEntry, PagingError> {
        self.with_table(table, |t| t[index].clone())
    }

    /// Sets entry `index` of the table at `table`.
    #[inline(always)]
    pub(super) fn put_entry(
        &self,
        table: PhysAddr,
        index: usize,
        entry: PageTableEntry,
    ) -> Result<(), PagingError> {
        self.with_table(table, |t| t[index] = entry)
    }

    /// The address of `[phys, phys + len)` if it lies inside the window.
    fn bytes(&self, phys: PhysAddr, len: u64) -> Result<*mut u8, PagingError> {
        if self.contains(phys, len) {
            Ok(self.at(phys))
        } else {
            Err(PagingError::OutsideWindow)
        }
    }

    /// The address of physical address `phys`, which the caller checked is inside the window.
    #[inline(always)]
    fn at(&self, phys: PhysAddr) -> *mut u8 {
        self.base.wrapping_add(phys.as_u64() as usize)
    }
}

/// Builds the kernel's window: all of physical memory, `size` bytes, mapped at virtual
/// address `offset` (the physmap at [`PHYSMAP_BASE`](super::PHYSMAP_BASE)).
///
/// # Safety
///
/// Physical memory `[0, size)` is mapped readable and writable at `offset` for the rest of
/// the kernel's life, and the kernel reaches the frames it gives to page tables and to memd's
/// window only through windows, as [`PhysWindow::new`] requires.
pub unsafe fn init_virtual_memory(offset: u64, size: u64) -> PhysWindow {
    // SAFETY: the caller's promise is exactly `new`'s, for the physmap.
    unsafe { PhysWindow::new(ptr::with_exposed_provenance_mut(offset as usize), size) }
}
