//! The walk from a virtual address to the byte it names, with the effective permissions.
//!
//! The hosted testbed's MMU calls it on every TLB miss, so it allocates nothing and reads one
//! entry per level.

use super::addr::{PAGE_SIZE, entry_span, table_index};
use super::window::PhysWindow;
use x86_64::structures::paging::PageTableFlags;
use x86_64::{PhysAddr, VirtAddr};

/// Where a virtual address leads and what an access to it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte.
    pub phys: PhysAddr,
    /// The 4 KiB frame holding the byte.
    pub frame: PhysAddr,
    /// Flags of the leaf entry (the PT entry, or the PD/PDPT entry of a huge page).
    pub flags: PageTableFlags,
    /// Stores allowed: `WRITABLE` at all four levels.
    pub writable: bool,
    /// Ring-3 accesses allowed: `USER_ACCESSIBLE` at all four levels.
    pub user: bool,
    /// Instruction fetches allowed: `NO_EXECUTE` at no level.
    pub executable: bool,
}

/// Translates `virt` (any byte, any half) in the space whose PML4 is at `root`.
///
/// `None` if it is not canonical or not mapped, or if a table on the way lies outside the
/// window. A `HUGE_PAGE` entry in the PDPT or PD is a 1 GiB or 2 MiB leaf (the kernel half may
/// use them; user spaces built by this module never do).
pub fn page_table_translate(window: PhysWindow, root: PhysAddr, virt: u64) -> Option<Translation> {
    VirtAddr::try_new(virt).ok()?;
    let mut table = root;
    let mut allowed = PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
    let mut executable = true;
    let mut level = 4;
    loop {
        let entry = window.entry(table, table_index(virt, level)).ok()?;
        let flags = entry.flags();
        if !flags.contains(PageTableFlags::PRESENT) {
            return None;
        }
        allowed &= flags;
        executable &= !flags.contains(PageTableFlags::NO_EXECUTE);
        if level == 1 || (level < 4 && flags.contains(PageTableFlags::HUGE_PAGE)) {
            let offset_mask = entry_span(level) - 1;
            let phys = PhysAddr::new((entry.addr().as_u64() & !offset_mask) | (virt & offset_mask));
            return Some(Translation {
                phys,
                frame: phys.align_down(PAGE_SIZE),
                flags,
                writable: allowed.contains(PageTableFlags::WRITABLE),
                user: allowed.contains(PageTableFlags::USER_ACCESSIBLE),
                executable,
            });
        }
        table = entry.addr();
        level -= 1;
    }
}
