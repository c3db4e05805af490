//! How many page-table frames a batch of maps may need: the count a kernel checks against the
//! frames it holds for a space before it performs any operation of the batch, so a batch whose
//! tables are there never fails half-way for want of one.

use super::addr::{entry_span, table_index};
use super::window::PhysWindow;
use x86_64::PhysAddr;
use x86_64::structures::paging::PageTableFlags;

/// The most tables one map can need: a PDPT, a PD and a PT.
pub const TABLES_PER_MAP: u64 = 3;

/// The tables a batch of maps needs, counted map by map as the tables stand before the batch.
///
/// A map needs the tables missing on its way down (0 to 3); those a previous map of the batch
/// creates are not counted again when the two maps are next to each other in the batch (the
/// same PT, PD or PDPT). The count is exact for a batch in address order and an upper bound
/// otherwise; tables that unmaps of the same batch free go back to the space's reserve and
/// can serve the maps after them, which the count does not need to know.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableNeed {
    /// The previous map: its page and how many tables it found missing.
    prev: Option<(u64, u8)>,
    /// Tables counted so far.
    total: u64,
}

impl TableNeed {
    /// Nothing counted.
    pub const fn new() -> TableNeed {
        TableNeed {
            prev: None,
            total: 0,
        }
    }

    /// Counts a map of the user page `virt` in the space whose PML4 is at `root`. A table
    /// outside the window counts as missing (the map will then fail on it anyway).
    pub fn add_map(&mut self, window: PhysWindow, root: PhysAddr, virt: u64) {
        if let Some((prev, missing)) = self.prev
            && prev / entry_span(2) == virt / entry_span(2)
        {
            // The same PT as the previous map: the same tables missing, which it creates.
            self.prev = Some((virt, missing));
            return;
        }
        let missing = missing_tables(window, root, virt);
        let mut need = u64::from(missing);
        if let Some((prev, prev_missing)) = self.prev {
            // Level 3 (PDPT), 2 (PD), 1 (PT): a table the previous map created, shared.
            for level in 1..=3u8 {
                let span = entry_span(level + 1);
                if missing >= level && prev_missing >= level && prev / span == virt / span {
                    need -= 1;
                }
            }
        }
        self.prev = Some((virt, missing));
        self.total += need;
    }

    /// Counts a huge map of the 2 MiB at `virt`: the PDPT and PD missing on its way (0 to 2),
    /// none shared with the maps around it (an upper bound). `false` (nothing counted) when
    /// a page table is there: a huge map would be refused.
    pub fn add_map_huge(&mut self, window: PhysWindow, root: PhysAddr, virt: u64) -> bool {
        let missing = missing_tables(window, root, virt);
        if missing == 0 && !super::page_table_huge_at(window, root, virt) {
            return false;
        }
        self.prev = None;
        self.total += u64::from(missing.saturating_sub(1));
        true
    }

    /// Counts `n` tables more (a split takes one).
    pub fn add_tables(&mut self, n: u64) {
        self.total += n;
    }

    /// Tables counted.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// The tables a client of the kernel must make sure are there for a map of `page`, when the
/// map before it in the same batch was of `prev`: never fewer than [`TableNeed`] counts,
/// without reading any table — all three unless `prev` is in the same 2 MiB (the same PT).
pub fn map_table_bound(prev: Option<u64>, page: u64) -> u64 {
    let span = entry_span(2);
    match prev {
        Some(p) if p / span == page / span => 0,
        _ => TABLES_PER_MAP,
    }
}

/// How many tables are missing on the way to the PT entry of `virt`: 3 (no PDPT), 2 (no PD),
/// 1 (no PT) or 0.
fn missing_tables(window: PhysWindow, root: PhysAddr, virt: u64) -> u8 {
    let mut table = root;
    for level in (2..=4u8).rev() {
        let Ok(entry) = window.entry(table, table_index(virt, level)) else {
            return level - 1;
        };
        if !entry.flags().contains(PageTableFlags::PRESENT) {
            return level - 1;
        }
        table = entry.addr();
    }
    0
}
