//! Creating and destroying an address space, and single-page shorthands over [`Mapper`].

use super::addr::{ENTRIES, KERNEL_HALF_START};
use super::error::PagingError;
use super::flush::Flush;
use super::mapper::{Mapper, protect_page, set_page_flags};
use super::table_alloc::{TableAlloc, new_table};
use super::window::PhysWindow;
use x86_64::PhysAddr;
use x86_64::structures::paging::PageTableFlags;

/// Creates an address space: a zeroed PML4 from `alloc`, returned by its physical address.
///
/// With `kernel_template` (the PML4 of a template space), entries 256..512 are copied from
/// it, so every space shares the kernel half's tables. The template must have all of its
/// kernel-half entries in place before spaces are made from it: later changes to a template
/// PML4 entry do not reach the copies (changes below the PML4 do, the tables being shared).
pub fn page_table_create<A: TableAlloc + ?Sized>(
    window: PhysWindow,
    alloc: &mut A,
    kernel_template: Option<PhysAddr>,
) -> Result<PhysAddr, PagingError> {
    if let Some(template) = kernel_template {
        window.with_table(template, |_| ())?;
    }
    let root = new_table(window, alloc)?;
    if let Some(template) = kernel_template {
        for index in KERNEL_HALF_START..ENTRIES {
            let entry = window.entry(template, index)?;
            window.put_entry(root, index, entry)?;
        }
    }
    Ok(root)
}

/// Destroys the address space whose PML4 is at `root`: gives every table of the user half
/// and the root back to `alloc`.
///
/// Never touches the frames the space mapped, nor the shared kernel half. No CPU may run on
/// `root` any more. A table pointer outside the window (a corrupted entry) is skipped and
/// reported as `OutsideWindow` once everything else is freed; a root outside the window frees
/// nothing.
pub fn page_table_destroy<A: TableAlloc + ?Sized>(
    window: PhysWindow,
    root: PhysAddr,
    alloc: &mut A,
) -> Result<(), PagingError> {
    let mut result = Ok(());
    for index in 0..KERNEL_HALF_START {
        let entry = window.entry(root, index)?;
        if is_table(entry.flags()) {
            result = result.and(free_tables(window, entry.addr(), 3, alloc));
        }
    }
    alloc.free_table(root);
    result
}

/// Frees the level-`level` table at `table` and every table below it.
fn free_tables<A: TableAlloc + ?Sized>(
    window: PhysWindow,
    table: PhysAddr,
    level: u8,
    alloc: &mut A,
) -> Result<(), PagingError> {
    // Refuse a table outside the window before freeing anything of it.
    window.with_table(table, |_| ())?;
    let mut result = Ok(());
    if level > 1 {
        for index in 0..ENTRIES {
            let entry = window.entry(table, index)?;
            if is_table(entry.flags()) {
                result = result.and(free_tables(window, entry.addr(), level - 1, alloc));
            }
        }
    }
    alloc.free_table(table);
    result
}

/// Whether a PML4, PDPT or PD entry with `flags` points to a table.
fn is_table(flags: PageTableFlags) -> bool {
    flags.contains(PageTableFlags::PRESENT) && !flags.contains(PageTableFlags::HUGE_PAGE)
}

/// Maps one page (see [`Mapper::map`]). A fresh mapping replaces nothing, so no TLB entry
/// can be stale: there is nothing to flush.
pub fn page_table_map<A: TableAlloc + ?Sized>(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    phys: PhysAddr,
    flags: PageTableFlags,
    alloc: &mut A,
) -> Result<(), PagingError> {
    let mut mapper = Mapper::new(window, root, alloc);
    mapper.map(virt, phys, flags)?;
    let flush = mapper.finish();
    debug_assert!(flush.is_empty(), "a fresh map needs no flush");
    flush.ignore();
    Ok(())
}

/// Unmaps one page (see [`Mapper::unmap`]): its frame, its leaf flags, and the flush owed.
pub fn page_table_unmap<A: TableAlloc + ?Sized>(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    alloc: &mut A,
) -> Result<(PhysAddr, PageTableFlags, Flush), PagingError> {
    let mut mapper = Mapper::new(window, root, alloc);
    let (frame, flags) = mapper.unmap(virt)?;
    Ok((frame, flags, mapper.finish()))
}

/// Sets the leaf flags of one mapped page (see [`Mapper::protect`]): the old flags, and the
/// flush owed.
pub fn page_table_protect(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    flags: PageTableFlags,
) -> Result<(PageTableFlags, Flush), PagingError> {
    let mut flush = Flush::new();
    let old = protect_page(window, root, virt, flags, &mut flush)?;
    Ok((old, flush))
}

/// Maps one page in place, replacing (see [`Mapper::remap`]), when its page table exists:
/// returns the frame it replaced, or `NotMapped` with nothing changed when a table is
/// missing. No [`Flush`]: the caller must invalidate `virt` wherever the space may be active
/// when a frame was replaced. For the kernel's map of one page, where a batch is overhead.
pub fn page_table_map_page(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    phys: PhysAddr,
    flags: PageTableFlags,
) -> Result<Option<PhysAddr>, PagingError> {
    super::mapper::set_leaf_in_place(window, root, virt, phys, flags)
}

/// Sets the leaf flags of one mapped page like [`page_table_protect`], and returns the old
/// flags, without a [`Flush`]: the caller must invalidate `virt` (that one page) wherever the
/// space may be active. For the kernel's protection of one page, where a batch is overhead.
pub fn page_table_protect_page(
    window: PhysWindow,
    root: PhysAddr,
    virt: u64,
    flags: PageTableFlags,
) -> Result<PageTableFlags, PagingError> {
    set_page_flags(window, root, virt, flags)
}

/// Whether the 2 MiB holding `virt` in the space at `root` is one huge page.
pub fn page_table_huge_at(window: PhysWindow, root: PhysAddr, virt: u64) -> bool {
    matches!(super::mapper::huge_pd(window, root, virt), Ok(Some(_)))
}

/// Whether a page table (of 4 KiB pages) covers `virt`, mapping pages or empty.
pub fn page_table_at(window: PhysWindow, root: PhysAddr, virt: u64) -> bool {
    matches!(
        super::mapper::present_table(window, root, virt, 1),
        Ok(Some(_))
    )
}

/// Whether the range of `pages` pages at `virt` covers part of a huge page and not all of it
/// (then an unmap or protect of it is refused with `HugePage`; split the page first).
pub fn page_table_cuts_huge(window: PhysWindow, root: PhysAddr, virt: u64, pages: u64) -> bool {
    let huge = super::addr::HUGE_PAGE_SIZE;
    let Some(end) = pages
        .checked_mul(super::addr::PAGE_SIZE)
        .and_then(|len| virt.checked_add(len))
    else {
        return false;
    };
    if end <= virt {
        return false;
    }
    (!virt.is_multiple_of(huge) && page_table_huge_at(window, root, virt))
        || (!end.is_multiple_of(huge) && page_table_huge_at(window, root, end - 1))
}
