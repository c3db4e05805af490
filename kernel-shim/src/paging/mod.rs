//! x86_64 4-level page tables, host-testable.
//!
//! This module builds, changes, walks and tears down the page tables of user address spaces.
//! It reaches the tables through a [`PhysWindow`], a mapping of physical memory at a known
//! offset: on the metal the physmap at [`PHYSMAP_BASE`], in the hosted testbed a heap buffer
//! that stands for RAM. The same code runs in both places; it never loads CR3 and never
//! touches a TLB except through [`Flush::flush_local`] on bare metal.
//!
//! Layout of the work:
//!
//! | file | holds |
//! |---|---|
//! | `window.rs` | [`PhysWindow`]: bounds-checked access to physical memory |
//! | `table_alloc.rs` | [`TableAlloc`]: the kernel's pool of page-table frames |
//! | `addr.rs` | address checks and the index arithmetic of the four levels |
//! | `translate.rs` | [`Translation`] and the allocation-free walk the emulated MMU uses |
//! | `mapper.rs` | [`Mapper`]: a batch of changes to one address space |
//! | `need.rs` | [`TableNeed`]: the page-table frames a batch of maps may need |
//! | `flush.rs` | [`Flush`]: the TLB invalidations a batch owes |
//! | `space.rs` | creating and destroying a space, and single-page shorthands |
//! | `error.rs` | [`PagingError`] |
//!
//! Rules every operation follows:
//!
//! - User operations take the virtual address as a raw `u64` (an *allegation*) and check it:
//!   page aligned, canonical, below [`USER_END`]. Physical frames must be page aligned and
//!   inside the window. Nothing outside the window is ever dereferenced.
//! - Decode, then perform: a single-page operation either succeeds or changes nothing (a map
//!   that needs three new tables allocates all three before linking any).
//! - Intermediate entries are created `PRESENT | WRITABLE | USER_ACCESSIBLE`; the leaf entry
//!   decides what an access may do.
//! - A table (PT, PD or PDPT, never the PML4 root) that becomes empty after an unmap is
//!   unlinked and returned to the pool. Emptiness is found by scanning its 512 entries after a
//!   removal: simple and clear, and it leaves the ignored bits of entries free.
//! - Only changes that can leave a stale translation are recorded in the [`Flush`]: an unmap,
//!   a remap of a present page and a protection change of a present page. A fresh map needs
//!   none.
//! - The kernel half of the PML4 (entries 256..512) is copied from a template when a space is
//!   created and is never changed or freed by this module.

mod addr;
mod error;
mod flush;
mod mapper;
mod need;
mod pcid;
mod space;
mod table_alloc;
mod translate;
mod window;

#[cfg(test)]
mod tests;

pub use addr::{HUGE_PAGE_SIZE, PAGE_SIZE, PHYSMAP_BASE, USER_END};
pub use error::PagingError;
pub use flush::{FLUSH_THRESHOLD, Flush};
pub use mapper::Mapper;
pub use need::{TABLES_PER_MAP, TableNeed, map_table_bound};
pub use pcid::{CR3_NOFLUSH, PcidTags};
pub use space::{
    page_table_at, page_table_create, page_table_cuts_huge, page_table_destroy, page_table_huge_at,
    page_table_map, page_table_map_page, page_table_protect, page_table_protect_page,
    page_table_unmap,
};
pub use table_alloc::TableAlloc;
pub use translate::{Translation, page_table_translate};
pub use window::{PhysWindow, init_virtual_memory};
pub use x86_64::structures::paging::PageTableFlags;
