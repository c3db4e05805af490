//! Address checks and the index arithmetic of the four levels.
//!
//! Levels are numbered by the table they index: 4 is the PML4, 3 the PDPT, 2 the PD and 1 the
//! PT.

use super::error::PagingError;
use super::window::PhysWindow;
use x86_64::{PhysAddr, VirtAddr};

/// Size of a page and of a frame.
pub const PAGE_SIZE: u64 = 4096;

/// Size of a huge page: one entry of a page directory, 512 pages.
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;

/// The first address past the user half: user operations work below it.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Where the kernel maps all of physical memory (the start of the kernel half): the offset
/// the kernel gives [`init_virtual_memory`](super::init_virtual_memory).
pub const PHYSMAP_BASE: u64 = 0xFFFF_8000_0000_0000;

/// Entries in one table.
pub(super) const ENTRIES: usize = 512;

/// The first PML4 entry of the kernel half.
pub(super) const KERNEL_HALF_START: usize = 256;

/// The index into the level-`level` table of the entry that translates `virt`.
#[inline(always)]
pub(super) fn table_index(virt: u64, level: u8) -> usize {
    ((virt >> (12 + 9 * (u32::from(level) - 1))) & 0x1ff) as usize
}

/// Bytes covered by one entry of a level-`level` table.
#[inline(always)]
pub(super) fn entry_span(level: u8) -> u64 {
    1 << (12 + 9 * (u32::from(level) - 1))
}

/// Checks a user page address: page aligned, canonical and in the lower half.
pub(super) fn user_page(virt: u64) -> Result<VirtAddr, PagingError> {
    if !virt.is_multiple_of(PAGE_SIZE) {
        return Err(PagingError::NotAligned);
    }
    match VirtAddr::try_new(virt) {
        Err(_) => Err(PagingError::NonCanonical),
        Ok(_) if virt >= USER_END => Err(PagingError::NotUserAddress),
        Ok(page) => Ok(page),
    }
}

/// Checks a user range of `pages` pages at `virt` and returns its end (exclusive).
pub(super) fn user_range(virt: u64, pages: u64) -> Result<u64, PagingError> {
    user_page(virt)?;
    pages
        .checked_mul(PAGE_SIZE)
        .and_then(|len| virt.checked_add(len))
        .filter(|&end| end <= USER_END)
        .ok_or(PagingError::NotUserAddress)
}

/// Checks a frame: page aligned and inside the window.
pub(super) fn frame(window: PhysWindow, frame: PhysAddr) -> Result<(), PagingError> {
    if !frame.as_u64().is_multiple_of(PAGE_SIZE) {
        return Err(PagingError::NotAligned);
    }
    if !window.contains(frame, PAGE_SIZE) {
        return Err(PagingError::OutsideWindow);
    }
    Ok(())
}
