//! Unit tests over a heap buffer standing for RAM.

use super::*;
use std::collections::BTreeSet;
use std::vec::Vec;
use x86_64::structures::paging::PageTable;
use x86_64::structures::paging::page_table::PageTableEntry;
use x86_64::{PhysAddr, VirtAddr};

/// Frames of the simulated RAM (4 MiB).
const RAM_FRAMES: u64 = 1024;
/// The table pool is frames `1..=POOL_FRAMES`; data frames start at `DATA_START`.
const POOL_FRAMES: u64 = 64;
const DATA_START: u64 = 128;

const USER_RW: PageTableFlags = PageTableFlags::PRESENT
    .union(PageTableFlags::WRITABLE)
    .union(PageTableFlags::USER_ACCESSIBLE);
const USER_RO: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::USER_ACCESSIBLE);

/// A table pool that checks it only gets back what it gave out, once.
struct Pool {
    free: Vec<PhysAddr>,
    out: BTreeSet<PhysAddr>,
}

impl Pool {
    fn new(frames: u64) -> Pool {
        Pool {
            free: (1..=frames)
                .rev()
                .map(|n| PhysAddr::new(n * PAGE_SIZE))
                .collect(),
            out: BTreeSet::new(),
        }
    }

    fn outstanding(&self) -> usize {
        self.out.len()
    }
}

impl TableAlloc for Pool {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let frame = self.free.pop()?;
        assert!(self.out.insert(frame));
        Some(frame)
    }

    fn free_table(&mut self, frame: PhysAddr) {
        assert!(self.out.remove(&frame), "{frame:?} freed but not given out");
        self.free.push(frame);
    }
}

/// RAM, its window, a pool and one address space.
struct Machine {
    _ram: Vec<PageTable>,
    window: PhysWindow,
    pool: Pool,
    root: PhysAddr,
}

impl Machine {
    fn new() -> Machine {
        Machine::with_pool(POOL_FRAMES)
    }

    fn with_pool(frames: u64) -> Machine {
        let mut ram = vec![PageTable::new(); RAM_FRAMES as usize];
        // Fill RAM with garbage so that a table the code forgot to zero shows.
        for table in ram.iter_mut() {
            for entry in table.iter_mut() {
                entry.set_addr(PhysAddr::new(0xdead_0000), PageTableFlags::all());
            }
        }
        // SAFETY: the buffer is page aligned (`PageTable` is), lives as long as the machine,
        // and is reached only through the window from here on.
        let window = unsafe { PhysWindow::new(ram.as_mut_ptr().cast(), RAM_FRAMES * PAGE_SIZE) };
        let mut pool = Pool::new(frames);
        let root = page_table_create(window, &mut pool, None).unwrap();
        Machine {
            _ram: ram,
            window,
            pool,
            root,
        }
    }

    fn mapper(&mut self) -> Mapper<'_, Pool> {
        Mapper::new(self.window, self.root, &mut self.pool)
    }

    fn map(&mut self, virt: u64, phys: PhysAddr, flags: PageTableFlags) -> Result<(), PagingError> {
        page_table_map(self.window, self.root, virt, phys, flags, &mut self.pool)
    }

    fn translate(&self, virt: u64) -> Option<Translation> {
        page_table_translate(self.window, self.root, virt)
    }

    fn frame_of(&self, virt: u64) -> Option<PhysAddr> {
        self.translate(virt).map(|t| t.frame)
    }

    /// The entry of `virt` at `level`, with the tables above it present.
    fn entry_at(&self, virt: u64, level: u8) -> (PhysAddr, usize) {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            table = self
                .window
                .entry(table, addr::table_index(virt, l))
                .unwrap()
                .addr();
        }
        (table, addr::table_index(virt, level))
    }

    fn edit_entry(&self, virt: u64, level: u8, f: impl FnOnce(&mut PageTableEntry)) {
        let (table, index) = self.entry_at(virt, level);
        self.window.with_table(table, |t| f(&mut t[index])).unwrap();
    }
}

fn data(n: u64) -> PhysAddr {
    PhysAddr::new((DATA_START + n) * PAGE_SIZE)
}

#[test]
fn map_translate_unmap_protect() {
    let mut m = Machine::new();
    m.map(0x40_0000, data(0), USER_RW).unwrap();
    let t = m.translate(0x40_0123).unwrap();
    assert_eq!(t.phys, data(0) + 0x123u64);
    assert_eq!(t.frame, data(0));
    assert_eq!(t.flags, USER_RW);
    assert!(t.writable && t.user && t.executable);

    m.window.write(t.phys, b"hello").unwrap();
    let mut back = [0u8; 5];
    m.window.read(data(0) + 0x123u64, &mut back).unwrap();
    assert_eq!(&back, b"hello");

    let (old, flush) = page_table_protect(
        m.window,
        m.root,
        0x40_0000,
        USER_RO | PageTableFlags::NO_EXECUTE,
    )
    .unwrap();
    assert_eq!(old, USER_RW);
    assert_eq!(flush.pages(), &[VirtAddr::new(0x40_0000)]);
    flush.ignore();
    let t = m.translate(0x40_0000).unwrap();
    assert!(!t.writable && t.user && !t.executable);
    assert_eq!(t.frame, data(0));

    let (frame, flags, flush) = page_table_unmap(m.window, m.root, 0x40_0000, &mut m.pool).unwrap();
    assert_eq!(
        (frame, flags),
        (data(0), USER_RO | PageTableFlags::NO_EXECUTE)
    );
    assert_eq!(flush.pages(), &[VirtAddr::new(0x40_0000)]);
    flush.ignore();
    assert_eq!(m.translate(0x40_0000), None);
    assert_eq!(m.pool.outstanding(), 1);
}

#[test]
fn protect_page_agrees_with_the_mapper_and_checks_the_same() {
    let mut m = Machine::new();
    m.map(0x40_0000, data(0), USER_RW).unwrap();
    let ro = USER_RO | PageTableFlags::NO_EXECUTE;
    assert_eq!(
        page_table_protect_page(m.window, m.root, 0x40_0000, ro),
        Ok(USER_RW)
    );
    let t = m.translate(0x40_0000).unwrap();
    assert!(!t.writable && t.user && !t.executable);
    assert_eq!(t.frame, data(0));
    assert_eq!(
        page_table_protect_page(m.window, m.root, 0x40_0000, USER_RW),
        Ok(ro)
    );
    assert!(m.translate(0x40_0000).unwrap().writable);
    // An absent leaf, an absent table on the way, and every refusal of `Mapper::protect`.
    for (virt, flags, error) in [
        (0x40_1000, USER_RO, PagingError::NotMapped),
        (0x4000_0000, USER_RO, PagingError::NotMapped),
        (0x40_0008, USER_RO, PagingError::NotAligned),
        (0x0000_8000_0000_0000, USER_RO, PagingError::NonCanonical),
        (0xFFFF_8000_0000_0000, USER_RO, PagingError::NotUserAddress),
        (
            0x40_0000,
            PageTableFlags::USER_ACCESSIBLE,
            PagingError::InvalidFlags,
        ),
    ] {
        assert_eq!(
            page_table_protect_page(m.window, m.root, virt, flags),
            Err(error),
            "{virt:#x}"
        );
        assert_eq!(m.mapper().protect(virt, flags), Err(error), "{virt:#x}");
    }
    assert_eq!(m.translate(0x40_0000).unwrap().flags, USER_RW);
    // A huge page on the way is refused, the entry untouched.
    m.edit_entry(0x40_0000, 2, |e| {
        let flags = e.flags() | PageTableFlags::HUGE_PAGE;
        e.set_flags(flags);
    });
    assert_eq!(
        page_table_protect_page(m.window, m.root, 0x40_0000, USER_RO),
        Err(PagingError::HugePage)
    );
}

#[test]
fn map_page_writes_the_leaf_only_where_its_table_exists() {
    let mut m = Machine::new();
    m.map(0x40_0000, data(0), USER_RW).unwrap();
    // The table of 0x40_1000 exists: mapped in place, nothing replaced.
    assert_eq!(
        page_table_map_page(m.window, m.root, 0x40_1000, data(1), USER_RO),
        Ok(None)
    );
    let t = m.translate(0x40_1000).unwrap();
    assert_eq!((t.frame, t.writable), (data(1), false));
    // Replacing answers the old frame.
    assert_eq!(
        page_table_map_page(m.window, m.root, 0x40_0000, data(2), USER_RW),
        Ok(Some(data(0)))
    );
    assert_eq!(m.translate(0x40_0000).unwrap().frame, data(2));
    // A missing table: refused with nothing changed (the batch path adds tables); and the
    // mapper's refusals.
    for (virt, frame, flags, error) in [
        (0x4000_0000, data(3), USER_RW, PagingError::NotMapped),
        (0x40_0008, data(3), USER_RW, PagingError::NotAligned),
        (
            0xFFFF_8000_0000_0000,
            data(3),
            USER_RW,
            PagingError::NotUserAddress,
        ),
        (
            0x40_2000,
            data(3),
            PageTableFlags::USER_ACCESSIBLE,
            PagingError::InvalidFlags,
        ),
    ] {
        assert_eq!(
            page_table_map_page(m.window, m.root, virt, frame, flags),
            Err(error),
            "{virt:#x}"
        );
    }
    assert!(m.translate(0x4000_0000).is_none());
    assert!(m.translate(0x40_2000).is_none());
}

#[test]
fn all_four_levels_and_the_top_of_the_user_half() {
    let mut m = Machine::new();
    let base = 0x1000;
    let pages = [
        base,
        base + (1 << 12), // another PT entry
        base + (1 << 21), // another PD entry: a new PT
        base + (1 << 30), // another PDPT entry: a new PD and PT
        base + (1 << 39), // another PML4 entry: a new PDPT, PD and PT
        0x7FFF_FFFF_F000, // the last user page: PML4 entry 255
    ];
    for (n, &page) in pages.iter().enumerate() {
        m.map(page, data(n as u64), USER_RW).unwrap();
    }
    // root + 3 + 0 + 1 + 2 + 3 + 3
    assert_eq!(m.pool.outstanding(), 13);
    for (n, &page) in pages.iter().enumerate() {
        assert_eq!(m.frame_of(page), Some(data(n as u64)), "page {page:#x}");
        assert_eq!(
            m.translate(page + 0xfff).unwrap().phys,
            data(n as u64) + 0xfffu64
        );
    }
    assert_eq!(m.frame_of(base + (2 << 12)), None);

    for (n, &page) in pages.iter().enumerate().rev() {
        let mut mapper = m.mapper();
        assert_eq!(mapper.unmap(page).unwrap().0, data(n as u64));
        mapper.finish().ignore();
        // The other pages are unaffected.
        for (k, &other) in pages.iter().enumerate().take(n) {
            assert_eq!(m.frame_of(other), Some(data(k as u64)));
        }
    }
    assert_eq!(m.pool.outstanding(), 1, "only the root is left");
}

#[test]
fn remap_replaces_and_reports_the_old_frame() {
    let mut m = Machine::new();
    let mut mapper = m.mapper();
    assert_eq!(mapper.remap(0x5000, data(1), USER_RO), Ok(None));
    assert_eq!(mapper.remap(0x5000, data(2), USER_RW), Ok(Some(data(1))));
    let t = mapper.translate(0x5000).unwrap();
    assert_eq!((t.frame, t.writable), (data(2), true));
    assert_eq!(
        mapper.map(0x5000, data(3), USER_RW),
        Err(PagingError::AlreadyMapped)
    );
    let flush = mapper.finish();
    assert_eq!(
        flush.pages(),
        &[VirtAddr::new(0x5000)],
        "only the replacement needs a flush"
    );
    flush.ignore();
    assert_eq!(m.frame_of(0x5000), Some(data(2)));
}

#[test]
fn unmap_range_skips_holes_and_keeps_tables_and_a_prune_frees_them() {
    let mut m = Machine::new();
    let start = 0x4000_0000u64; // 1 GiB aligned
    let mapped = [
        start,
        start + 0x1000,
        start + (7 << 21),
        start + (1 << 30) - 0x1000,
    ];
    for (n, &page) in mapped.iter().enumerate() {
        m.map(page, data(n as u64), USER_RW).unwrap();
    }
    // A neighbour outside the range keeps its tables.
    m.map(start + (1 << 30), data(9), USER_RW).unwrap();
    let tables_with_neighbour = m.pool.outstanding();

    let mut seen = Vec::new();
    let mut mapper = m.mapper();
    let count = mapper
        .unmap_range(start, (1 << 30) / PAGE_SIZE, |page, frame| {
            seen.push((page.as_u64(), frame))
        })
        .unwrap();
    let flush = mapper.finish();
    assert_eq!(count, 4);
    assert_eq!(
        seen,
        mapped
            .iter()
            .enumerate()
            .map(|(n, &p)| (p, data(n as u64)))
            .collect::<Vec<_>>()
    );
    assert_eq!(flush.pages().len(), 4);
    flush.ignore();
    for &page in &mapped {
        assert_eq!(m.frame_of(page), None);
    }
    assert_eq!(m.frame_of(start + (1 << 30)), Some(data(9)));
    // The tables stay, empty: the next mapping near reuses them.
    assert_eq!(m.pool.outstanding(), tables_with_neighbour);
    // Pruned: the range's PD and its three PTs are gone (without a walk of the PTs' entries);
    // the neighbour's PDPT, PD and PT stay.
    let mut mapper = m.mapper();
    let pruned = mapper.unmap_and_prune(start, (1 << 30) / PAGE_SIZE, |_, _| {});
    assert_eq!(pruned, Ok(0));
    mapper.finish().ignore();
    assert_eq!(m.pool.outstanding(), tables_with_neighbour - 4);

    let mut mapper = m.mapper();
    assert_eq!(mapper.unmap_and_prune(start, 2 << 18, |_, _| {}), Ok(1));
    mapper.finish().ignore();
    assert_eq!(m.pool.outstanding(), 1);
}

#[test]
fn a_pruned_range_keeps_the_tables_that_map_outside_it() {
    // A PT holding a page outside the pruned range stays (the range covers it in part); a PT
    // the range covers whole but that still maps a page inside is walked, unmapped and freed.
    let mut m = Machine::new();
    let base = 0x4000_0000u64;
    m.map(base, data(0), USER_RW).unwrap();
    m.map(base + 0x1000, data(1), USER_RW).unwrap();
    m.map(base + (1 << 21), data(2), USER_RW).unwrap();
    let before = m.pool.outstanding();
    let mut mapper = m.mapper();
    assert_eq!(mapper.unmap_and_prune(base + 0x1000, 1, |_, _| {}), Ok(1));
    mapper.finish().ignore();
    assert_eq!(m.pool.outstanding(), before, "the PT still maps base");
    assert_eq!(m.frame_of(base), Some(data(0)));
    let mut mapper = m.mapper();
    assert_eq!(
        mapper.unmap_and_prune(base + (1 << 21), 512, |_, _| {}),
        Ok(1)
    );
    mapper.finish().ignore();
    assert_eq!(m.pool.outstanding(), before - 1, "the second PT is gone");
    assert_eq!(m.frame_of(base), Some(data(0)));
}

#[test]
fn a_sparse_huge_range_costs_little() {
    let mut m = Machine::new();
    m.map(0x7000_0000_0000, data(0), USER_RW).unwrap();
    let mut mapper = m.mapper();
    // The whole user half: 2^35 pages, nearly all of them absent.
    let count = mapper
        .unmap_and_prune(0, USER_END / PAGE_SIZE, |_, _| {})
        .unwrap();
    let flush = mapper.finish();
    assert_eq!(count, 1);
    flush.ignore();
    assert_eq!(m.pool.outstanding(), 1);
}

#[test]
fn protect_range_changes_present_pages_only() {
    let mut m = Machine::new();
    for n in [0u64, 1, 3, 600] {
        m.map(0x10_0000 + n * PAGE_SIZE, data(n), USER_RW).unwrap();
    }
    let tables = m.pool.outstanding();
    let mut mapper = m.mapper();
    assert_eq!(mapper.protect_range(0x10_0000, 512, USER_RO), Ok(3));
    let flush = mapper.finish();
    assert_eq!(flush.pages().len(), 3);
    flush.ignore();
    for n in [0u64, 1, 3] {
        let t = m.translate(0x10_0000 + n * PAGE_SIZE).unwrap();
        assert_eq!((t.frame, t.writable), (data(n), false));
    }
    assert!(m.translate(0x10_0000 + 600 * PAGE_SIZE).unwrap().writable);
    assert_eq!(m.frame_of(0x10_0000 + 2 * PAGE_SIZE), None);
    assert_eq!(m.pool.outstanding(), tables, "protect creates no table");
}

#[test]
fn a_change_of_access_keeps_how_a_page_is_cached() {
    let uncached = PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH;
    let mut m = Machine::new();
    m.map(0x10_0000, data(0), USER_RW | uncached).unwrap();
    m.map(0x10_1000, data(1), USER_RW | PageTableFlags::WRITE_THROUGH)
        .unwrap();
    m.map(0x10_2000, data(2), USER_RW).unwrap();
    let mut mapper = m.mapper();
    assert_eq!(mapper.protect_range(0x10_0000, 3, USER_RO), Ok(3));
    mapper.finish().ignore();
    assert_eq!(
        page_table_protect_page(
            m.window,
            m.root,
            0x10_0000,
            USER_RW | PageTableFlags::NO_CACHE
        ),
        Ok(USER_RO | uncached)
    );
    let caching = |virt| m.translate(virt).unwrap().flags & uncached;
    assert_eq!(
        caching(0x10_0000),
        uncached,
        "the caching asked for is ignored"
    );
    assert_eq!(caching(0x10_1000), PageTableFlags::WRITE_THROUGH);
    assert_eq!(caching(0x10_2000), PageTableFlags::empty());
    assert!(m.translate(0x10_0000).unwrap().writable);
    assert!(!m.translate(0x10_1000).unwrap().writable);
}

#[test]
fn destroy_returns_every_table_and_leaves_data_alone() {
    let mut m = Machine::new();
    for n in 0..20u64 {
        m.map(n << 30 | n << 12, data(n), USER_RW).unwrap();
    }
    m.window.write(data(7), b"kept").unwrap();
    // Root, one PDPT, and a PD and a PT per page.
    assert_eq!(m.pool.outstanding(), 42);
    page_table_destroy(m.window, m.root, &mut m.pool).unwrap();
    assert_eq!(m.pool.outstanding(), 0);
    let mut back = [0u8; 4];
    m.window.read(data(7), &mut back).unwrap();
    assert_eq!(&back, b"kept");
}

#[test]
fn bad_addresses_are_refused() {
    let mut m = Machine::new();
    assert_eq!(
        m.map(0x1001, data(0), USER_RW),
        Err(PagingError::NotAligned)
    );
    assert_eq!(
        m.map(0x1000, data(0) + 8u64, USER_RW),
        Err(PagingError::NotAligned)
    );
    assert_eq!(
        m.map(0x0000_8000_0000_0000, data(0), USER_RW),
        Err(PagingError::NonCanonical)
    );
    assert_eq!(
        m.map(0x1234_5678_9000_0000, data(0), USER_RW),
        Err(PagingError::NonCanonical)
    );
    assert_eq!(
        m.map(0xFFFF_8000_0000_0000, data(0), USER_RW),
        Err(PagingError::NotUserAddress)
    );
    assert_eq!(
        m.map(0xFFFF_FFFF_FFFF_F000, data(0), USER_RW),
        Err(PagingError::NotUserAddress)
    );
    assert_eq!(
        m.map(0x1000, PhysAddr::new(RAM_FRAMES * PAGE_SIZE), USER_RW),
        Err(PagingError::OutsideWindow)
    );
    assert_eq!(
        m.map(0x1000, data(0), PageTableFlags::USER_ACCESSIBLE),
        Err(PagingError::InvalidFlags)
    );
    assert_eq!(
        m.map(
            0x1000,
            data(0),
            PageTableFlags::from_bits_retain(0x1000) | USER_RW
        ),
        Err(PagingError::InvalidFlags)
    );
    let mut mapper = m.mapper();
    assert_eq!(mapper.unmap(0x1000), Err(PagingError::NotMapped));
    assert_eq!(mapper.protect(0x1000, USER_RO), Err(PagingError::NotMapped));
    assert_eq!(
        mapper.unmap_range(0x7FFF_FFFF_F000, 2, |_, _| {}),
        Err(PagingError::NotUserAddress)
    );
    assert_eq!(
        mapper.unmap_range(0x1000, u64::MAX, |_, _| {}),
        Err(PagingError::NotUserAddress)
    );
    assert_eq!(
        mapper.protect_range(0x1001, 1, USER_RO),
        Err(PagingError::NotAligned)
    );
    assert!(mapper.finish().is_empty());
    assert_eq!(m.translate(0x0000_8000_0000_0000), None);
    assert_eq!(m.pool.outstanding(), 1, "nothing was created");
}

#[test]
fn an_exhausted_pool_changes_nothing() {
    // Root, then three tables for the first page: nothing left for a page in a new PDPT.
    let mut m = Machine::with_pool(5);
    m.map(0x1000, data(0), USER_RW).unwrap();
    assert_eq!(m.pool.outstanding(), 4);
    assert_eq!(
        m.map(1 << 39, data(1), USER_RW),
        Err(PagingError::OutOfTableFrames)
    );
    assert_eq!(m.pool.outstanding(), 4);
    assert_eq!(m.frame_of(1 << 39), None);
    assert_eq!(m.frame_of(0x1000), Some(data(0)));
    // A page under the existing PT needs no table.
    m.map(0x2000, data(2), USER_RW).unwrap();
    // One table left: enough for a new PT only.
    m.map(1 << 21, data(3), USER_RW).unwrap();
    assert_eq!(m.pool.outstanding(), 5);
    assert_eq!(
        m.map(1 << 30, data(4), USER_RW),
        Err(PagingError::OutOfTableFrames)
    );
    assert_eq!(m.pool.outstanding(), 5);
    assert_eq!(m.frame_of(1 << 30), None);
}

#[test]
fn a_table_frame_outside_the_window_is_refused_and_returned() {
    struct Bad(Vec<PhysAddr>);
    impl TableAlloc for Bad {
        fn alloc_table(&mut self) -> Option<PhysAddr> {
            Some(PhysAddr::new(RAM_FRAMES * PAGE_SIZE))
        }
        fn free_table(&mut self, frame: PhysAddr) {
            self.0.push(frame);
        }
    }
    let mut m = Machine::new();
    let mut bad = Bad(Vec::new());
    assert_eq!(
        page_table_map(m.window, m.root, 0x1000, data(0), USER_RW, &mut bad),
        Err(PagingError::OutsideWindow)
    );
    assert_eq!(bad.0, [PhysAddr::new(RAM_FRAMES * PAGE_SIZE)]);
    assert_eq!(
        page_table_create(
            m.window,
            &mut m.pool,
            Some(PhysAddr::new(RAM_FRAMES * PAGE_SIZE))
        ),
        Err(PagingError::OutsideWindow)
    );
    assert_eq!(m.frame_of(0x1000), None);
}

#[test]
fn the_kernel_half_is_shared_through_the_template() {
    let mut m = Machine::new();
    let template = m.root;
    // The kernel half, by hand: PML4[256] -> PDPT -> PD -> PT[1] = a 4 KiB page, and
    // PD[1] = a 2 MiB page. No USER_ACCESSIBLE anywhere below the PML4 entry.
    let kernel = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    let [pdpt, pd, pt] = [(); 3].map(|_| table_alloc::new_table(m.window, &mut m.pool).unwrap());
    let link = |table: PhysAddr, index: usize, to: PhysAddr, flags: PageTableFlags| {
        let mut entry = PageTableEntry::new();
        entry.set_addr(to, flags);
        m.window.put_entry(table, index, entry).unwrap();
    };
    link(template, 256, pdpt, kernel);
    link(pdpt, 0, pd, kernel);
    link(pd, 0, pt, kernel);
    link(pt, 1, data(0), kernel | PageTableFlags::GLOBAL);
    link(
        pd,
        1,
        PhysAddr::new(0x20_0000),
        kernel | PageTableFlags::HUGE_PAGE,
    );
    let template_tables = m.pool.outstanding();

    let space = page_table_create(m.window, &mut m.pool, Some(template)).unwrap();
    let t = page_table_translate(m.window, space, PHYSMAP_BASE + 0x1010).unwrap();
    assert_eq!(t.phys, data(0) + 0x10u64);
    assert!(t.writable && !t.user);
    let t = page_table_translate(m.window, space, PHYSMAP_BASE + 0x20_1234).unwrap();
    assert_eq!(
        (t.phys, t.frame),
        (PhysAddr::new(0x20_1234), PhysAddr::new(0x20_1000))
    );
    assert!(t.flags.contains(PageTableFlags::HUGE_PAGE));

    // A later kernel mapping below the PML4 shows in every space: the tables are shared.
    link(pt, 2, data(1), kernel);
    assert_eq!(
        page_table_translate(m.window, space, PHYSMAP_BASE + 0x2000).map(|t| t.frame),
        Some(data(1))
    );
    // User operations cannot reach it.
    let mut mapper = Mapper::new(m.window, space, &mut m.pool);
    assert_eq!(
        mapper.unmap(PHYSMAP_BASE + 0x1000),
        Err(PagingError::NotUserAddress)
    );
    mapper.map(0x1000, data(2), USER_RW).unwrap();
    mapper.finish().ignore();

    page_table_destroy(m.window, space, &mut m.pool).unwrap();
    assert_eq!(
        m.pool.outstanding(),
        template_tables,
        "the kernel half is not freed"
    );
    assert_eq!(
        m.translate(PHYSMAP_BASE + 0x1000).map(|t| t.frame),
        Some(data(0))
    );
}

#[test]
fn flush_records_only_what_can_be_stale() {
    let mut m = Machine::new();
    let mut mapper = m.mapper();
    for n in 0..40 {
        mapper.map(n * PAGE_SIZE, data(n), USER_RW).unwrap();
    }
    let flush = mapper.finish();
    assert!(
        flush.is_empty() && !flush.is_full(),
        "fresh maps need no flush"
    );
    flush.ignore();

    let mut mapper = m.mapper();
    mapper.protect(0, USER_RO).unwrap();
    mapper.protect(0, USER_RW).unwrap();
    mapper.unmap(PAGE_SIZE).unwrap();
    let flush = mapper.finish();
    assert_eq!(
        flush.pages(),
        &[VirtAddr::new(0), VirtAddr::new(PAGE_SIZE)],
        "once per page"
    );

    let mut pages = Vec::new();
    let mut full = 0;
    flush.flush_with(|page| pages.push(page), || full += 1);
    assert_eq!((pages.len(), full), (2, 0));

    let mut mapper = m.mapper();
    assert_eq!(
        mapper.protect_range(2 * PAGE_SIZE, FLUSH_THRESHOLD as u64, USER_RO),
        Ok(32)
    );
    let flush = mapper.finish();
    assert!(!flush.is_full());
    assert_eq!(flush.pages().len(), FLUSH_THRESHOLD);
    flush.ignore();

    let mut mapper = m.mapper();
    assert_eq!(mapper.unmap_range(0, 40, |_, _| {}), Ok(39));
    let flush = mapper.finish();
    assert!(flush.is_full() && flush.pages().is_empty());
    let mut pages = 0;
    let mut full = 0;
    flush.flush_with(|_| pages += 1, || full += 1);
    assert_eq!((pages, full), (0, 1));
}

#[test]
fn permissions_are_the_and_of_all_levels() {
    let mut m = Machine::new();
    let page = 0x20_0000 + 0x3000;
    m.map(page, data(0), USER_RW).unwrap();
    let t = m.translate(page).unwrap();
    assert!(t.writable && t.user && t.executable);

    // The PD entry that points at the PT.
    m.edit_entry(page, 2, |e| {
        e.set_flags(e.flags() - PageTableFlags::WRITABLE)
    });
    let t = m.translate(page).unwrap();
    assert!(!t.writable && t.user && t.executable);
    assert_eq!(t.flags, USER_RW, "the leaf itself is unchanged");

    m.edit_entry(page, 3, |e| {
        e.set_flags(e.flags() | PageTableFlags::NO_EXECUTE)
    });
    let t = m.translate(page).unwrap();
    assert!(!t.writable && t.user && !t.executable);

    m.edit_entry(page, 4, |e| {
        e.set_flags(e.flags() - PageTableFlags::USER_ACCESSIBLE)
    });
    assert!(!m.translate(page).unwrap().user);

    // A huge page met by a 4 KiB operation, or by a range over part of it, is refused, not
    // followed.
    m.edit_entry(page, 2, |e| {
        e.set_flags(e.flags() | PageTableFlags::HUGE_PAGE)
    });
    assert_eq!(
        m.map(page + PAGE_SIZE, data(1), USER_RW),
        Err(PagingError::HugePage)
    );
    let mut mapper = m.mapper();
    assert_eq!(
        mapper.unmap_range(page + PAGE_SIZE, 1, |_, _| {}),
        Err(PagingError::HugePage)
    );
    mapper.finish().ignore();
}

#[test]
fn window_helpers_check_bounds() {
    let m = Machine::new();
    let end = PhysAddr::new(RAM_FRAMES * PAGE_SIZE);
    let mut buf = [0u8; 8];
    assert_eq!(
        m.window.read(end - 4u64, &mut buf),
        Err(PagingError::OutsideWindow)
    );
    assert_eq!(
        m.window.write(end - 4u64, &buf),
        Err(PagingError::OutsideWindow)
    );
    assert_eq!(m.window.read(end - 8u64, &mut buf), Ok(()));
    assert_eq!(m.window.zero_frame(end), Err(PagingError::OutsideWindow));
    assert_eq!(
        m.window.zero_frame(data(0) + 1u64),
        Err(PagingError::NotAligned)
    );
    assert_eq!(
        m.window.copy_frame(data(0), end),
        Err(PagingError::OutsideWindow)
    );

    m.window.write(data(1) + 100u64, b"frame").unwrap();
    m.window.copy_frame(data(2), data(1)).unwrap();
    m.window.read(data(2) + 100u64, &mut buf[..5]).unwrap();
    assert_eq!(&buf[..5], b"frame");
    m.window.zero_frame(data(2)).unwrap();
    m.window.read(data(2) + 100u64, &mut buf[..5]).unwrap();
    assert_eq!(&buf[..5], &[0; 5]);
    assert_eq!(m.window.size(), RAM_FRAMES * PAGE_SIZE);
}

/// The tables a batch of maps needs, as [`TableNeed`] counts them before the batch, are
/// exactly those the maps take from the pool (maps in address order), and never more than
/// [`map_table_bound`] says without reading a table.
#[test]
fn table_need_counts_what_maps_take() {
    let frame = PhysAddr::new(DATA_START * PAGE_SIZE);
    let batches: [&[u64]; 5] = [
        &[0x1000, 0x2000, 0x3000],
        &[0x40_0000, 0x60_0000, 0x4000_0000, 0x80_0000_0000],
        &[0x1000, 0x20_1000, 0x1000],
        &[0x7F_FFFF_F000, 0x80_0000_0000, 0x80_0000_1000],
        &[0x4000, 0x4000_5000, 0x5000],
    ];
    for batch in batches {
        let mut m = Machine::new();
        // A page already mapped: its tables are there.
        m.map(0x3000, frame, USER_RW).unwrap();
        let mut need = TableNeed::new();
        let mut bound = 0;
        let mut prev = None;
        for &page in batch {
            need.add_map(m.window, m.root, page);
            bound += map_table_bound(prev, page);
            prev = Some(page);
        }
        let before = m.pool.outstanding();
        let mut mapper = Mapper::new(m.window, m.root, &mut m.pool);
        for &page in batch {
            mapper.remap(page, frame, USER_RW).unwrap();
        }
        mapper.finish().ignore();
        let taken = (m.pool.outstanding() - before) as u64;
        let sorted = batch.windows(2).all(|w| w[0] <= w[1]);
        if sorted {
            assert_eq!(need.total(), taken, "{batch:x?}");
        } else {
            assert!(need.total() >= taken, "{batch:x?}");
        }
        assert!(bound >= need.total(), "{batch:x?}: bound {bound}");
    }
}

#[test]
fn a_map_after_an_unmap_freed_its_table_walks_again() {
    // One batch: two maps in one 2 MiB (the second reuses the first's page table), an unmap
    // that empties and frees that table, then a map in the same 2 MiB: it must make a new
    // table, not write into the freed one.
    let mut m = Machine::new();
    let mut mapper = m.mapper();
    mapper.map(0x40_0000, data(0), USER_RW).unwrap();
    mapper.map(0x40_1000, data(1), USER_RW).unwrap();
    mapper.unmap_range(0x40_0000, 2, |_, _| ()).unwrap();
    mapper.map(0x40_2000, data(2), USER_RW).unwrap();
    mapper.finish().ignore();
    assert!(m.translate(0x40_0000).is_none());
    assert!(m.translate(0x40_1000).is_none());
    assert_eq!(m.translate(0x40_2000).unwrap().frame, data(2));
    let tables_before = m.pool.outstanding();
    let mut mapper = m.mapper();
    mapper.map(0x40_3000, data(3), USER_RW).unwrap();
    assert_eq!(
        mapper.map(0x40_3000, data(4), USER_RW),
        Err(PagingError::AlreadyMapped),
        "the same page again, through the remembered table"
    );
    assert_eq!(mapper.remap(0x40_3000, data(4), USER_RO), Ok(Some(data(3))));
    mapper.finish().ignore();
    assert_eq!(
        m.pool.outstanding(),
        tables_before,
        "no table for a known 2 MiB"
    );
    let t = m.translate(0x40_3000).unwrap();
    assert_eq!((t.frame, t.writable), (data(4), false));
}

/// The one 2 MiB-aligned run of frames of the simulated RAM that holds no table.
const HUGE_FRAME: PhysAddr = PhysAddr::new(2 << 20);

#[test]
fn a_huge_page_maps_translates_and_goes_whole_or_not_at_all() {
    let mut m = Machine::new();
    let base = 0x4000_0000;
    let tables = m.pool.outstanding();
    let mut mapper = m.mapper();
    assert_eq!(mapper.map_huge(base, HUGE_FRAME, USER_RW), Ok(None));
    mapper.finish().ignore();
    assert_eq!(m.pool.outstanding(), tables + 2, "a PDPT and a PD, no PT");
    for off in [0, PAGE_SIZE, HUGE_PAGE_SIZE - PAGE_SIZE] {
        let t = m.translate(base + off + 8).unwrap();
        assert_eq!(t.frame, HUGE_FRAME + off);
        assert!(t.writable && t.user);
    }
    assert!(page_table_huge_at(m.window, m.root, base + 12345));
    assert!(!page_table_huge_at(m.window, m.root, base + HUGE_PAGE_SIZE));
    // A part of it: refused by unmap and protect alike, and found by the check.
    assert!(page_table_cuts_huge(m.window, m.root, base + PAGE_SIZE, 1));
    assert!(page_table_cuts_huge(m.window, m.root, base - PAGE_SIZE, 2));
    assert!(!page_table_cuts_huge(m.window, m.root, base, 512));
    assert!(!page_table_cuts_huge(
        m.window,
        m.root,
        base - PAGE_SIZE,
        514
    ));
    let mut mapper = m.mapper();
    assert_eq!(
        mapper.unmap_range(base + PAGE_SIZE, 1, |_, _| ()),
        Err(PagingError::HugePage)
    );
    assert_eq!(
        mapper.protect_range(base, 1, USER_RO),
        Err(PagingError::HugePage)
    );
    // A 4 KiB map or protect inside it is refused too.
    assert_eq!(
        mapper.map(base + PAGE_SIZE, data(0), USER_RW),
        Err(PagingError::HugePage)
    );
    assert_eq!(
        page_table_protect_page(m.window, m.root, base, USER_RO),
        Err(PagingError::HugePage)
    );
    // Whole: protect, then unmap with its 512 pages reported.
    let mut mapper = m.mapper();
    assert_eq!(mapper.protect_range(base, 512, USER_RO), Ok(512));
    mapper.finish().ignore();
    assert!(!m.translate(base).unwrap().writable);
    let mut seen = Vec::new();
    let mut mapper = m.mapper();
    assert_eq!(
        mapper.unmap_range(base - PAGE_SIZE, 514, |v, f| seen.push((v.as_u64(), f))),
        Ok(512)
    );
    mapper.finish().ignore();
    assert_eq!(seen.len(), 512);
    assert_eq!(seen[7], (base + 7 * PAGE_SIZE, HUGE_FRAME + 7 * PAGE_SIZE));
    assert!(m.translate(base).is_none());
}

#[test]
fn a_huge_page_refuses_what_cannot_be_one_and_is_split_into_pages() {
    let mut m = Machine::new();
    let base = 0x4000_0000;
    let mut mapper = m.mapper();
    for (virt, phys, error) in [
        (base + PAGE_SIZE, HUGE_FRAME, PagingError::NotAligned),
        (base, HUGE_FRAME + PAGE_SIZE, PagingError::NotAligned),
        (base, PhysAddr::new(4 << 20), PagingError::OutsideWindow),
        (
            USER_END - PAGE_SIZE,
            HUGE_FRAME,
            PagingError::NotUserAddress,
        ),
    ] {
        assert_eq!(
            mapper.map_huge(virt, phys, USER_RW),
            Err(error),
            "{virt:#x}"
        );
    }
    // A page table in the 2 MiB (4 KiB pages): refused, nothing changed.
    mapper.map(base, data(0), USER_RW).unwrap();
    assert_eq!(
        mapper.map_huge(base, HUGE_FRAME, USER_RW),
        Err(PagingError::AlreadyMapped)
    );
    mapper.unmap_and_prune(base, 1, |_, _| ()).unwrap();
    assert_eq!(mapper.map_huge(base, HUGE_FRAME, USER_RO), Ok(None));
    assert_eq!(
        mapper.split_huge(base + HUGE_PAGE_SIZE),
        Err(PagingError::NotMapped)
    );
    let tables = mapper.tables().outstanding();
    assert_eq!(mapper.split_huge(base), Ok(()));
    assert_eq!(mapper.tables().outstanding(), tables + 1, "one page table");
    mapper.finish().ignore();
    assert!(!page_table_huge_at(m.window, m.root, base));
    for i in [0, 1, 511] {
        let t = m.translate(base + i * PAGE_SIZE).unwrap();
        assert_eq!(t.frame, HUGE_FRAME + i * PAGE_SIZE);
        assert!(!t.writable && t.user);
    }
    // Now pages of 4 KiB: one unmapped alone, one protected alone.
    let mut mapper = m.mapper();
    assert_eq!(mapper.unmap_range(base + PAGE_SIZE, 1, |_, _| ()), Ok(1));
    assert_eq!(mapper.protect(base, USER_RW), Ok(USER_RO));
    mapper.finish().ignore();
    assert!(m.translate(base + PAGE_SIZE).is_none());
    assert!(m.translate(base).unwrap().writable);
    assert_eq!(
        m.frame_of(base + 2 * PAGE_SIZE),
        Some(HUGE_FRAME + 2 * PAGE_SIZE)
    );
}

#[test]
fn destroying_a_space_frees_its_tables_never_a_huge_page() {
    let mut m = Machine::new();
    let before = m.pool.outstanding();
    let mut mapper = m.mapper();
    mapper.map_huge(0x4000_0000, HUGE_FRAME, USER_RW).unwrap();
    mapper.map(0x4020_0000, data(0), USER_RW).unwrap();
    mapper.finish().ignore();
    assert!(m.pool.outstanding() > before);
    page_table_destroy(m.window, m.root, &mut m.pool).unwrap();
    assert_eq!(
        m.pool.outstanding(),
        0,
        "every table back, the pool checked each"
    );
}

#[test]
fn the_tables_a_huge_map_needs_are_counted() {
    let mut m = Machine::new();
    let mut need = TableNeed::new();
    need.add_map_huge(m.window, m.root, 0x4000_0000);
    assert_eq!(need.total(), 2, "a PDPT and a PD");
    m.map(0x4020_0000, data(0), USER_RW).unwrap();
    let mut need = TableNeed::new();
    need.add_map_huge(m.window, m.root, 0x4000_0000);
    assert_eq!(need.total(), 0, "the PD is there");
    need.add_tables(1);
    assert_eq!(need.total(), 1);
}
