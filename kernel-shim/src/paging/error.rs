//! Why a paging operation was refused.

use core::fmt;

/// Why a paging operation was refused.
///
/// A refused single-page operation has changed nothing; a refused range operation has
/// applied (and recorded in its [`Flush`](super::Flush)) the pages before the one it stopped
/// at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// A virtual or physical address that must be page aligned is not.
    NotAligned,
    /// A virtual address is not canonical (bits 48..64 are not copies of bit 47).
    NonCanonical,
    /// A user operation named an address in the kernel half (at or above
    /// [`USER_END`](super::USER_END)), or a range that reaches into it.
    NotUserAddress,
    /// `map` found the page already mapped.
    AlreadyMapped,
    /// The page is not mapped.
    NotMapped,
    /// The table pool has no frame left for a new page table.
    OutOfTableFrames,
    /// A 2 MiB or 1 GiB mapping was met where a page table was expected.
    HugePage,
    /// A table or frame physical address lies outside the physical window.
    OutsideWindow,
    /// Leaf flags without `PRESENT`: map and protect only make present mappings (removing a
    /// mapping is `unmap`'s job, which also frees the tables).
    InvalidFlags,
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PagingError::NotAligned => "address not page aligned",
            PagingError::NonCanonical => "virtual address not canonical",
            PagingError::NotUserAddress => "virtual address not in the user half",
            PagingError::AlreadyMapped => "page already mapped",
            PagingError::NotMapped => "page not mapped",
            PagingError::OutOfTableFrames => "no frame left for a page table",
            PagingError::HugePage => "huge page where a page table was expected",
            PagingError::OutsideWindow => "physical address outside the window",
            PagingError::InvalidFlags => "leaf flags without PRESENT",
        })
    }
}

impl core::error::Error for PagingError {}
