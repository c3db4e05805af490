//! The emulated kernel: memd's [`Kernel`] over kernel-shim's page tables in simulated RAM,
//! done exactly as the real kernel does it.
//!
//! - Each space is a PML4 made with `page_table_create` from a kernel template whose half
//!   (a physmap of 1 GiB pages at `PHYSMAP_BASE`, kernel only) every space shares. The
//!   template's tables come from the kernel's own pool (the frames [`PhysMem`] keeps for it).
//! - A space's own tables are frames memd donated: its PML4 with `create_space`, the others
//!   from its reserve (`PageOp::Donate`), as kernel-shim keeps them. A frame that is a table
//!   or a spare table frame is marked: it is never mapped for a process, never donated twice.
//! - `apply` decodes, then performs: every operation is checked (user range below the mapping
//!   top, memd's own unmarked frame, a protection x86 can express) and the tables its maps need
//!   counted ([`TableNeed`]) against the reserve and the batch's donations before anything
//!   changes; then the donations are taken, the batch runs through one [`Mapper`] and the
//!   space's TLB is flushed once.
//! - [`HostKernel::refuse_randomly`] makes it refuse calls at random (as if the tables were
//!   short), so tests can check that memd changes nothing when the kernel refuses.
//!
//! Lock order: the space table, then one space.

use crate::mmu::{Mmu, Tlb};
use crate::physmem::PhysMem;
use kernel_shim::abi::USER_TOP;
use kernel_shim::paging::{
    HUGE_PAGE_SIZE, Mapper, PHYSMAP_BASE, PageTableFlags, PagingError, TableAlloc, TableNeed,
    page_table_create, page_table_cuts_huge, page_table_destroy, page_table_huge_at,
};
use libvm::ProtectionFlags;
use memd::kernel::{BatchError, FrameAddr, Kernel, KernelError, PAGE_SIZE, PageOp, SpaceId};
use spin::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use x86_64::PhysAddr;

/// The emulated kernel's paging capability, as memd uses it.
pub struct HostKernel {
    machine: Arc<Machine>,
}

/// What the kernel and the MMU share.
pub(crate) struct Machine {
    /// The simulated RAM.
    pub(crate) phys: Arc<PhysMem>,
    /// Space `id` is at index `id - 1`; a destroyed space leaves `None`, so ids are never
    /// reused.
    spaces: RwLock<Vec<Option<Arc<Mutex<Space>>>>>,
    /// The PML4 of the kernel template.
    template: PhysAddr,
    /// memd's frames: the only frames a user page may map or memd may donate.
    memd_ranges: Vec<(u64, u64)>,
    /// One mark per frame of RAM: a table or spare table frame of some space.
    marks: Vec<AtomicBool>,
    /// Frames donated to spaces and not given back (tables and spare frames).
    donated: AtomicU64,
    /// Refuse one call in this many at random (0: never), and the generator's state.
    refuse_one_in: AtomicU64,
    rng: AtomicU64,
    /// What happened, for tests and benchmarks.
    counters: Counters,
}

/// One address space, behind its own lock.
pub(crate) struct Space {
    /// Its PML4; `None` once destroyed.
    pub(crate) root: Option<PhysAddr>,
    /// The TLB of the CPUs running it: only the kernel's flushes invalidate it.
    pub(crate) tlb: Tlb,
    /// Its spare table frames (donated, marked).
    reserve: Vec<PhysAddr>,
}

impl Machine {
    /// Space `id`, if it was ever created and not yet destroyed.
    pub(crate) fn space(&self, id: SpaceId) -> Option<Arc<Mutex<Space>>> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.spaces.read().get(index)?.clone()
    }

    fn mark(&self, frame: PhysAddr) -> &AtomicBool {
        // Frames handed to the kernel are checked to lie in RAM first.
        &self.marks[(frame.as_u64() / PAGE_SIZE) as usize]
    }

    /// Whether the next call is refused (see [`HostKernel::refuse_randomly`]).
    fn refuses(&self) -> bool {
        let one_in = self.refuse_one_in.load(Ordering::Relaxed);
        if one_in == 0 {
            return false;
        }
        // splitmix64
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if z.is_multiple_of(one_in) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// The kernel pool, for the template's tables.
struct Pool(Vec<PhysAddr>);

impl TableAlloc for Pool {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.0.pop()
    }

    fn free_table(&mut self, frame: PhysAddr) {
        self.0.push(frame);
    }
}

/// Where a space's tables come from, and where they go.
enum Tables<'a> {
    /// The space's reserve.
    Reserve(&'a mut Vec<PhysAddr>),
    /// The one donated frame of a new space's PML4.
    Root(Option<PhysAddr>),
    /// Nowhere: the space ends and every table is unmarked (memd's again).
    Release(&'a Machine),
}

impl TableAlloc for Tables<'_> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        match self {
            Tables::Reserve(reserve) => reserve.pop(),
            Tables::Root(root) => root.take(),
            Tables::Release(_) => None,
        }
    }

    fn free_table(&mut self, frame: PhysAddr) {
        match self {
            Tables::Reserve(reserve) => reserve.push(frame),
            Tables::Root(_) => {}
            Tables::Release(machine) => {
                machine.mark(frame).store(false, Ordering::Relaxed);
                machine.donated.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// What the kernel has done, counted as it goes (see [`KernelStats`]).
#[derive(Default)]
struct Counters {
    /// Batches applied.
    batches: AtomicU64,
    /// Pages invalidated one by one.
    page_flushes: AtomicU64,
    /// Full flushes.
    full_flushes: AtomicU64,
    /// Calls refused at random.
    refused: AtomicU64,
}

/// What the kernel has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames memd donated as page tables (or spare table frames) and has not taken back.
    pub page_table_frames: u64,
    /// Batches applied (failed ones included).
    pub batches: u64,
    /// Pages invalidated one by one.
    pub page_flushes: u64,
    /// Full TLB flushes.
    pub full_flushes: u64,
    /// Calls refused at random ([`HostKernel::refuse_randomly`]).
    pub refused: u64,
}

/// One operation of a batch, checked.
#[derive(Clone, Copy)]
enum Op {
    Map {
        page: u64,
        frame: PhysAddr,
        flags: PageTableFlags,
    },
    Unmap {
        page: u64,
        pages: u64,
    },
    Prune {
        page: u64,
        pages: u64,
    },
    Protect {
        page: u64,
        pages: u64,
        flags: PageTableFlags,
    },
    MapHuge {
        page: u64,
        frame: PhysAddr,
        flags: PageTableFlags,
    },
    Split {
        page: u64,
    },
    Donate,
}

impl HostKernel {
    /// A kernel over `phys`, with its template space built.
    ///
    /// Panics if the table pool cannot hold the template (two frames).
    pub fn new(phys: Arc<PhysMem>) -> HostKernel {
        let window = phys.window();
        let mut pool = Pool(phys.table_frames().rev().collect());
        let template = page_table_create(window, &mut pool, None)
            .expect("the table pool holds the kernel template");
        // The kernel half, made by hand as boot code makes it: PML4[256] -> a PDPT of 1 GiB
        // pages mapping all of RAM at PHYSMAP_BASE, kernel only, global, not executable.
        let pdpt = pool
            .alloc_table()
            .expect("the table pool holds the kernel template");
        window.zero_frame(pdpt).expect("pool frames lie in RAM");
        let kernel = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        let huge = kernel
            | PageTableFlags::HUGE_PAGE
            | PageTableFlags::GLOBAL
            | PageTableFlags::NO_EXECUTE;
        let put = |table: PhysAddr, index: u64, entry: u64| {
            window
                .write(table + index * 8, &entry.to_le_bytes())
                .expect("pool frames lie in RAM");
        };
        put(
            template,
            pml4_index(PHYSMAP_BASE),
            pdpt.as_u64() | kernel.bits(),
        );
        for gib in 0..phys.ram_bytes().div_ceil(1 << 30) {
            put(pdpt, gib, (gib << 30) | huge.bits());
        }
        let memd_ranges = phys.memd_ranges();
        let marks = (0..phys.ram_bytes() / PAGE_SIZE)
            .map(|_| AtomicBool::new(false))
            .collect();
        HostKernel {
            machine: Arc::new(Machine {
                phys,
                spaces: RwLock::new(Vec::new()),
                template,
                memd_ranges,
                marks,
                donated: AtomicU64::new(0),
                refuse_one_in: AtomicU64::new(0),
                rng: AtomicU64::new(0),
                counters: Counters::default(),
            }),
        }
    }

    /// From now on refuses one call of `apply`, `create_space` and `reclaim_tables` in
    /// `one_in` at random (0: none), with `OutOfMemory` and nothing changed, drawn from a
    /// generator seeded with `seed`. `destroy_space` is never refused.
    pub fn refuse_randomly(&self, seed: u64, one_in: u64) {
        self.machine.rng.store(seed, Ordering::Relaxed);
        self.machine.refuse_one_in.store(one_in, Ordering::Relaxed);
    }

    /// The MMU that walks this kernel's page tables and caches in its TLBs.
    pub fn mmu(&self) -> Mmu {
        Mmu::new(Arc::clone(&self.machine))
    }

    /// The PML4 of `space`, if it exists.
    pub fn root(&self, space: SpaceId) -> Option<PhysAddr> {
        self.machine.space(space)?.lock().root
    }

    /// How the page tables of `space` translate `virt` now (no TLB, no fault).
    pub fn translate(&self, space: SpaceId, virt: u64) -> Option<kernel_shim::paging::Translation> {
        kernel_shim::paging::page_table_translate(
            self.machine.phys.window(),
            self.root(space)?,
            virt,
        )
    }

    /// Whether a page table of 4 KiB pages covers `virt` in `space` (mapping pages or empty).
    pub fn page_table_at(&self, space: SpaceId, virt: u64) -> bool {
        self.root(space).is_some_and(|root| {
            kernel_shim::paging::page_table_at(self.machine.phys.window(), root, virt)
        })
    }

    /// Whether the 2 MiB holding `virt` in `space` is one huge page.
    pub fn huge_at(&self, space: SpaceId, virt: u64) -> bool {
        self.root(space)
            .is_some_and(|root| page_table_huge_at(self.machine.phys.window(), root, virt))
    }

    /// What the kernel has done so far.
    pub fn stats(&self) -> KernelStats {
        let counters = &self.machine.counters;
        KernelStats {
            page_table_frames: self.machine.donated.load(Ordering::Relaxed),
            batches: counters.batches.load(Ordering::Relaxed),
            page_flushes: counters.page_flushes.load(Ordering::Relaxed),
            full_flushes: counters.full_flushes.load(Ordering::Relaxed),
            refused: counters.refused.load(Ordering::Relaxed),
        }
    }

    /// `frame` as a physical address, if it is one of memd's frames and no page table.
    fn memd_frame(&self, frame: FrameAddr) -> Option<PhysAddr> {
        let ours = frame.is_multiple_of(PAGE_SIZE)
            && self
                .machine
                .memd_ranges
                .iter()
                .any(|&(start, end)| start <= frame && frame < end);
        let frame = PhysAddr::new(frame);
        (ours && !self.machine.mark(frame).load(Ordering::Relaxed)).then_some(frame)
    }

    /// `frame` as a physical address; panics if memd names a frame that is not its own.
    fn own_frame(&self, frame: FrameAddr, call: &str) -> PhysAddr {
        self.memd_frame(frame)
            .unwrap_or_else(|| panic!("memd's {call} names frame {frame:#x}, not one of its own"))
    }

    /// Checks one operation in full.
    fn decode(&self, op: &PageOp) -> Result<Op, KernelError> {
        let range = |page: u64, pages: u64| {
            let ok = page.is_multiple_of(PAGE_SIZE)
                && page < USER_TOP
                && pages <= (USER_TOP - page) / PAGE_SIZE;
            if ok {
                Ok(())
            } else {
                Err(KernelError::Refused)
            }
        };
        let frame = |frame| self.memd_frame(frame).ok_or(KernelError::Refused);
        Ok(match *op {
            PageOp::Map {
                page,
                frame: f,
                prot,
            } => {
                range(page, 1)?;
                let flags = leaf_flags(prot)?;
                Op::Map {
                    page,
                    frame: frame(f)?,
                    flags,
                }
            }
            PageOp::Unmap { page, pages } => {
                range(page, pages)?;
                Op::Unmap { page, pages }
            }
            PageOp::Prune { page, pages } => {
                range(page, pages)?;
                Op::Prune { page, pages }
            }
            PageOp::Protect { page, pages, prot } => {
                range(page, pages)?;
                Op::Protect {
                    page,
                    pages,
                    flags: leaf_flags(prot)?,
                }
            }
            PageOp::Donate { frame: f } => {
                frame(f)?;
                Op::Donate
            }
            PageOp::MapHuge {
                page,
                frame: f,
                prot,
            } => {
                let huge = HUGE_PAGE_SIZE / PAGE_SIZE;
                if !page.is_multiple_of(HUGE_PAGE_SIZE) || !f.is_multiple_of(HUGE_PAGE_SIZE) {
                    return Err(KernelError::Refused);
                }
                range(page, huge)?;
                for i in 0..huge {
                    frame(f + i * PAGE_SIZE)?;
                }
                Op::MapHuge {
                    page,
                    frame: PhysAddr::new(f),
                    flags: leaf_flags(prot)?,
                }
            }
            PageOp::Split { page } => {
                if !page.is_multiple_of(HUGE_PAGE_SIZE) {
                    return Err(KernelError::Refused);
                }
                range(page, HUGE_PAGE_SIZE / PAGE_SIZE)?;
                Op::Split { page }
            }
            PageOp::MapDevice {
                page,
                phys,
                prot,
                caching,
            } => {
                range(page, 1)?;
                let device = self.machine.phys.device_range();
                let inside = device.is_some_and(|(base, len)| {
                    phys.is_multiple_of(PAGE_SIZE) && phys >= base && phys - base < len
                });
                if !inside {
                    return Err(KernelError::Refused);
                }
                // As kernel-shim caches them: uncached is PCD | PWT, write-combining PWT
                // (its page attribute table's entry 1).
                let cache = match caching {
                    memd::kernel::Caching::Uncached => {
                        PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH
                    }
                    memd::kernel::Caching::WriteCombining => PageTableFlags::WRITE_THROUGH,
                };
                Op::Map {
                    page,
                    frame: PhysAddr::new(phys),
                    flags: leaf_flags(prot)? | cache,
                }
            }
        })
    }
}

/// Performs one checked operation other than a donation.
fn perform(mapper: &mut Mapper<'_, Tables<'_>>, op: Op) -> Result<(), KernelError> {
    match op {
        Op::Map { page, frame, flags } => mapper.remap(page, frame, flags).map(drop),
        Op::Unmap { page, pages } => mapper.unmap_range(page, pages, |_, _| {}).map(drop),
        Op::Prune { page, pages } => mapper.unmap_and_prune(page, pages, |_, _| {}).map(drop),
        Op::Protect { page, pages, flags } => mapper.protect_range(page, pages, flags).map(drop),
        Op::MapHuge { page, frame, flags } => mapper.map_huge(page, frame, flags).map(drop),
        Op::Split { page } => mapper.split_huge(page),
        Op::Donate => Ok(()),
    }
    .map_err(kernel_error)
}

impl Kernel for HostKernel {
    fn create_space(&self, root: FrameAddr) -> Result<SpaceId, KernelError> {
        let machine = &self.machine;
        let root = self.memd_frame(root).ok_or(KernelError::Refused)?;
        if machine.refuses() {
            return Err(KernelError::OutOfMemory);
        }
        let root = page_table_create(
            machine.phys.window(),
            &mut Tables::Root(Some(root)),
            Some(machine.template),
        )
        .map_err(kernel_error)?;
        machine.mark(root).store(true, Ordering::Relaxed);
        machine.donated.fetch_add(1, Ordering::Relaxed);
        let mut spaces = machine.spaces.write();
        spaces.push(Some(Arc::new(Mutex::new(Space {
            root: Some(root),
            tlb: Tlb::new(),
            reserve: Vec::new(),
        }))));
        Ok(spaces.len() as SpaceId)
    }

    fn destroy_space(&self, space: SpaceId) -> Result<(), KernelError> {
        let machine = &self.machine;
        let slot = machine.space(space).ok_or(KernelError::NoSuchSpace)?;
        machine.spaces.write()[space as usize - 1] = None;
        let mut space = slot.lock();
        if let Some(root) = space.root.take() {
            page_table_destroy(machine.phys.window(), root, &mut Tables::Release(machine))
                .expect("the page tables of a space stay inside RAM");
        }
        for frame in space.reserve.drain(..) {
            Tables::Release(machine).free_table(frame);
        }
        // Its CR3 is never loaded again: nothing of it stays cached.
        space.tlb.invalidate_all();
        Ok(())
    }

    fn apply(&self, space: SpaceId, ops: &[PageOp]) -> Result<u64, BatchError> {
        let machine = &self.machine;
        let refuse = |error| BatchError { done: 0, error };
        let slot = machine
            .space(space)
            .ok_or(refuse(KernelError::NoSuchSpace))?;
        let mut space = slot.lock();
        let root = space.root.ok_or(refuse(KernelError::NoSuchSpace))?;
        machine.counters.batches.fetch_add(1, Ordering::Relaxed);
        // Decode: the whole batch, and the tables its maps need.
        let mut need = TableNeed::new();
        let mut donations = 0;
        let window = machine.phys.window();
        for op in ops {
            // As kernel-shim: a change to part of a huge page, or a page mapped inside one, is
            // refused with the batch unchanged.
            match self.decode(op).map_err(refuse)? {
                Op::Map { page, .. } => {
                    if page_table_huge_at(window, root, page) {
                        return Err(refuse(KernelError::Refused));
                    }
                    need.add_map(window, root, page)
                }
                Op::MapHuge { page, .. } => {
                    if !need.add_map_huge(window, root, page) {
                        return Err(refuse(KernelError::Refused));
                    }
                }
                Op::Split { page } => {
                    if !page_table_huge_at(window, root, page) {
                        return Err(refuse(KernelError::Refused));
                    }
                    need.add_tables(1);
                }
                Op::Donate => donations += 1,
                Op::Unmap { page, pages }
                | Op::Prune { page, pages }
                | Op::Protect { page, pages, .. } => {
                    if page_table_cuts_huge(window, root, page, pages) {
                        return Err(refuse(KernelError::Refused));
                    }
                }
            }
        }
        if need.total() > space.reserve.len() as u64 + donations || machine.refuses() {
            return Err(refuse(KernelError::OutOfMemory));
        }
        // Perform: the donations, then the rest.
        let mut done = 0;
        for op in ops {
            if let PageOp::Donate { frame } = *op {
                let frame = self.memd_frame(frame).ok_or(BatchError {
                    done,
                    error: KernelError::Refused,
                })?;
                machine.mark(frame).store(true, Ordering::Relaxed);
                machine.donated.fetch_add(1, Ordering::Relaxed);
                space.reserve.push(frame);
                done += 1;
            }
        }
        let Space { tlb, reserve, .. } = &mut *space;
        let mut tables = Tables::Reserve(reserve);
        let mut mapper = Mapper::new(machine.phys.window(), root, &mut tables);
        let mut result = Ok(());
        for op in ops {
            if matches!(op, PageOp::Donate { .. }) {
                continue;
            }
            let step = self.decode(op).and_then(|op| perform(&mut mapper, op));
            if let Err(error) = step {
                result = Err(BatchError { done, error });
                break;
            }
            done += 1;
        }
        // The applied prefix is flushed whether or not the batch completed.
        let flush = mapper.finish();
        let mut pages = 0;
        let mut full = false;
        flush.flush_with(
            |page| {
                tlb.invalidate(page);
                pages += 1;
            },
            || full = true,
        );
        if full {
            tlb.invalidate_all();
            machine
                .counters
                .full_flushes
                .fetch_add(1, Ordering::Relaxed);
        }
        machine
            .counters
            .page_flushes
            .fetch_add(pages, Ordering::Relaxed);
        result.map(|()| reserve.len() as u64)
    }

    fn reclaim_tables(&self, space: SpaceId, out: &mut [FrameAddr]) -> Result<usize, KernelError> {
        let machine = &self.machine;
        let slot = machine.space(space).ok_or(KernelError::NoSuchSpace)?;
        if machine.refuses() {
            return Err(KernelError::OutOfMemory);
        }
        let mut space = slot.lock();
        let mut n = 0;
        while n < out.len() {
            let Some(frame) = space.reserve.pop() else {
                break;
            };
            Tables::Release(machine).free_table(frame);
            out[n] = frame.as_u64();
            n += 1;
        }
        Ok(n)
    }

    fn zero_frame(&self, frame: FrameAddr) {
        let frame = self.own_frame(frame, "zero_frame");
        self.machine
            .phys
            .window()
            .zero_frame(frame)
            .expect("memd's frames lie in RAM");
    }

    fn copy_frame(&self, dst: FrameAddr, src: FrameAddr) {
        let dst = self.own_frame(dst, "copy_frame");
        let src = self.own_frame(src, "copy_frame");
        self.machine
            .phys
            .window()
            .copy_frame(dst, src)
            .expect("memd's frames lie in RAM");
    }

    fn write_frame(&self, frame: FrameAddr, offset: usize, bytes: &[u8]) {
        let frame = self.own_frame(frame, "write_frame");
        assert!(
            offset + bytes.len() <= PAGE_SIZE as usize,
            "write_frame past the end of the frame"
        );
        self.machine
            .phys
            .window()
            .write(frame + offset as u64, bytes)
            .expect("memd's frames lie in RAM");
    }

    fn worker(&self) -> usize {
        // Each thread that drives memd here is a worker of its own, numbered as it first
        // calls.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        INDEX.with(|i| *i)
    }
}

/// The leaf flags of a user page with `prot`, assuming EFER.NXE is on.
///
/// On x86 `PRESENT` implies READ: a page cannot be writable or executable without being
/// readable, and `NONE` cannot be expressed at all (memd unmaps such pages; the kernel
/// refuses it).
fn leaf_flags(prot: ProtectionFlags) -> Result<PageTableFlags, KernelError> {
    if prot.is_empty() {
        return Err(KernelError::Refused);
    }
    let mut flags = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
    if prot.contains(ProtectionFlags::WRITE) {
        flags |= PageTableFlags::WRITABLE;
    }
    if !prot.contains(ProtectionFlags::EXECUTE) {
        flags |= PageTableFlags::NO_EXECUTE;
    }
    Ok(flags)
}

/// What memd is told when the paging code refuses.
fn kernel_error(error: PagingError) -> KernelError {
    match error {
        PagingError::OutOfTableFrames => KernelError::OutOfMemory,
        _ => KernelError::Refused,
    }
}

/// The PML4 index of `virt`.
fn pml4_index(virt: u64) -> u64 {
    (virt >> 39) & 0x1ff
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kernel_shim::paging::{USER_END, page_table_translate};

    /// A kernel over 4 MiB of RAM, and memd's first frame.
    pub(crate) fn kernel() -> (HostKernel, u64) {
        let phys = Arc::new(PhysMem::new(4 << 20, 4));
        let first = phys.memd_ranges()[0].0;
        (HostKernel::new(phys), first)
    }

    pub(crate) fn map(page: u64, frame: u64, prot: ProtectionFlags) -> PageOp {
        PageOp::Map { page, frame, prot }
    }

    fn donate(frames: impl IntoIterator<Item = u64>) -> Vec<PageOp> {
        frames
            .into_iter()
            .map(|frame| PageOp::Donate { frame })
            .collect()
    }

    fn translate(
        k: &HostKernel,
        space: SpaceId,
        virt: u64,
    ) -> Option<kernel_shim::paging::Translation> {
        page_table_translate(k.machine.phys.window(), k.root(space)?, virt)
    }

    fn tables(k: &HostKernel) -> u64 {
        k.stats().page_table_frames
    }

    const RW: ProtectionFlags = ProtectionFlags::READ_WRITE;
    const P: u64 = PAGE_SIZE;

    #[test]
    fn tables_are_the_frames_donated_and_return_after_destroy() {
        let (k, f) = kernel();
        let s = k.create_space(f).unwrap();
        assert_eq!(tables(&k), 1);
        // Eight pages a GiB apart: a PDPT, then a PD and a PT for each.
        let maps: Vec<_> = (0..8u64)
            .map(|n| map(n << 30 | 0x1000, f + (100 + n) * P, RW))
            .collect();
        let mut need = TableNeed::new();
        for op in &maps {
            if let PageOp::Map { page, .. } = *op {
                need.add_map(k.machine.phys.window(), k.root(s).unwrap(), page);
            }
        }
        assert_eq!(need.total(), 1 + 8 * 2);
        // One frame short: refused, nothing changed.
        let short: Vec<_> = donate((1..17).map(|i| f + i * P))
            .into_iter()
            .chain(maps.iter().copied())
            .collect();
        assert_eq!(
            k.apply(s, &short),
            Err(BatchError {
                done: 0,
                error: KernelError::OutOfMemory
            })
        );
        assert_eq!(tables(&k), 1);
        assert!(translate(&k, s, 0x1000).is_none());
        // Enough, and one spare.
        let enough: Vec<_> = donate((1..19).map(|i| f + i * P))
            .into_iter()
            .chain(maps.iter().copied())
            .collect();
        assert_eq!(k.apply(s, &enough), Ok(1));
        assert_eq!(tables(&k), 19);
        assert!(translate(&k, s, 7 << 30 | 0x1000).is_some());
        // A table frame can be neither mapped nor donated again.
        for op in [map(0x2000, f + P, RW), PageOp::Donate { frame: f + P }] {
            assert_eq!(
                k.apply(s, &[op]),
                Err(BatchError {
                    done: 0,
                    error: KernelError::Refused
                })
            );
        }
        k.destroy_space(s).unwrap();
        assert_eq!(tables(&k), 0);
        assert_eq!(k.root(s), None);
        // Every frame is memd's again.
        let t = k.create_space(f + P).unwrap();
        assert_eq!(t, s + 1, "ids are never reused");
        assert_eq!(
            k.apply(t, &[map(0x1000, f, RW)]),
            Err(BatchError {
                done: 0,
                error: KernelError::OutOfMemory
            })
        );
        let ops: Vec<_> = donate([f + 2 * P, f + 3 * P, f + 4 * P])
            .into_iter()
            .chain([map(0x1000, f, RW)])
            .collect();
        assert_eq!(k.apply(t, &ops), Ok(0));
    }

    #[test]
    fn pruned_tables_go_back_to_the_reserve_and_are_reclaimed() {
        let (k, f) = kernel();
        let s = k.create_space(f).unwrap();
        let ops: Vec<_> = donate((1..4).map(|i| f + i * P))
            .into_iter()
            .chain([map(0x1000, f + 10 * P, RW)])
            .collect();
        assert_eq!(k.apply(s, &ops), Ok(0));
        let unmap = PageOp::Unmap {
            page: 0,
            pages: USER_TOP / P,
        };
        assert_eq!(k.apply(s, &[unmap]), Ok(0), "an unmap keeps the tables");
        let prune = PageOp::Prune {
            page: 0,
            pages: USER_TOP / P,
        };
        assert_eq!(k.apply(s, &[prune]), Ok(3), "the pruned tables are spare");
        let mut out = [0; 8];
        assert_eq!(k.reclaim_tables(s, &mut out), Ok(3));
        let mut got = out[..3].to_vec();
        got.sort_unstable();
        assert_eq!(got, [f + P, f + 2 * P, f + 3 * P]);
        assert_eq!(tables(&k), 1);
        // They are memd's again: mappable.
        assert_eq!(
            k.apply(s, &[map(0x1000, f + P, RW)]),
            Err(BatchError {
                done: 0,
                error: KernelError::OutOfMemory
            }),
            "no spare table left"
        );
        let ops: Vec<_> = donate([f + 20 * P, f + 21 * P, f + 22 * P])
            .into_iter()
            .chain([map(0x1000, f + P, RW)])
            .collect();
        assert_eq!(k.apply(s, &ops), Ok(0));
    }

    #[test]
    #[should_panic(expected = "not one of its own")]
    fn memd_cannot_write_a_page_table_frame() {
        let (k, _) = kernel();
        k.zero_frame(PAGE_SIZE);
    }

    #[test]
    fn a_batch_with_one_bad_operation_changes_nothing() {
        let (k, f) = kernel();
        let s = k.create_space(f).unwrap();
        let ram_end = k.machine.phys.ram_bytes();
        let tables: Vec<_> = donate((1..4).map(|i| f + i * P));
        for bad in [0, PAGE_SIZE, f - PAGE_SIZE, ram_end, f + 8, f] {
            let ops: Vec<_> = tables
                .iter()
                .copied()
                .chain([map(0x1000, f + 9 * P, RW), map(0x2000, bad, RW)])
                .collect();
            assert_eq!(
                k.apply(s, &ops),
                Err(BatchError {
                    done: 0,
                    error: KernelError::Refused
                }),
                "frame {bad:#x}"
            );
            assert_eq!(translate(&k, s, 0x1000), None);
        }
        assert_eq!(k.stats().page_table_frames, 1);
    }

    #[test]
    fn addresses_and_protections_the_kernel_will_not_map_are_refused() {
        let (k, f) = kernel();
        let s = k.create_space(f).unwrap();
        let refused = |op: PageOp| {
            let ops: Vec<_> = donate((1..4).map(|i| f + i * P))
                .into_iter()
                .chain([op])
                .collect();
            assert_eq!(
                k.apply(s, &ops),
                Err(BatchError {
                    done: 0,
                    error: KernelError::Refused
                }),
                "{op:?}"
            );
        };
        let g = f + 9 * P;
        refused(map(PHYSMAP_BASE, g, RW));
        refused(map(USER_END, g, RW));
        refused(map(USER_TOP, g, RW));
        refused(map(0x1001, g, RW));
        refused(map(0x1000, g, ProtectionFlags::NONE));
        refused(PageOp::Unmap {
            page: USER_TOP - PAGE_SIZE,
            pages: 2,
        });
        refused(PageOp::Protect {
            page: 0,
            pages: 1,
            prot: ProtectionFlags::NONE,
        });
        assert_eq!(tables(&k), 1);
        // A range of any size below the top is fine.
        let all = PageOp::Unmap {
            page: 0,
            pages: USER_TOP / P,
        };
        assert_eq!(k.apply(s, &[all]), Ok(0));
    }

    #[test]
    fn unknown_and_destroyed_spaces() {
        let (k, f) = kernel();
        let no_space = Err(BatchError {
            done: 0,
            error: KernelError::NoSuchSpace,
        });
        assert_eq!(k.apply(0, &[]), no_space);
        assert_eq!(k.apply(7, &[map(0x1000, f, RW)]), no_space);
        let s = k.create_space(f).unwrap();
        k.destroy_space(s).unwrap();
        assert_eq!(k.destroy_space(s), Err(KernelError::NoSuchSpace));
        assert_eq!(k.destroy_space(42), Err(KernelError::NoSuchSpace));
        assert_eq!(k.apply(s, &[]), no_space);
        let mut out = [0; 1];
        assert_eq!(k.reclaim_tables(s, &mut out), Err(KernelError::NoSuchSpace));
    }

    #[test]
    fn protections_become_leaf_flags() {
        let (k, f) = kernel();
        let s = k.create_space(f).unwrap();
        let g = f + 9 * P;
        let ops: Vec<_> = donate((1..4).map(|i| f + i * P))
            .into_iter()
            .chain([
                map(0x1000, g, ProtectionFlags::READ),
                map(0x2000, g, RW),
                map(0x3000, g, ProtectionFlags::READ_EXEC),
                map(0x4000, g, ProtectionFlags::READ_WRITE_EXEC),
            ])
            .collect();
        k.apply(s, &ops).unwrap();
        let rights = |virt| {
            let t = translate(&k, s, virt).unwrap();
            (t.user, t.writable, t.executable)
        };
        assert_eq!(rights(0x1000), (true, false, false));
        assert_eq!(rights(0x2000), (true, true, false));
        assert_eq!(rights(0x3000), (true, false, true));
        assert_eq!(rights(0x4000), (true, true, true));
    }

    #[test]
    fn every_space_shares_the_kernel_half() {
        let (k, f) = kernel();
        let a = k.create_space(f).unwrap();
        let b = k.create_space(f + P).unwrap();
        for s in [a, b] {
            let t = translate(&k, s, PHYSMAP_BASE + 0x5123).unwrap();
            assert_eq!(t.phys.as_u64(), 0x5123);
            assert!(!t.user && !t.executable);
        }
        let mut entries = [[0u8; 8]; 2];
        for (s, entry) in [a, b].into_iter().zip(&mut entries) {
            let root = k.root(s).unwrap();
            k.machine
                .phys
                .window()
                .read(root + pml4_index(PHYSMAP_BASE) * 8, entry)
                .unwrap();
        }
        assert_eq!(entries[0], entries[1], "one PDPT for all");
        assert_ne!(entries[0], [0; 8]);
    }

    #[test]
    fn counters_count_batches_and_flushes() {
        let (k, f) = kernel();
        let s = k.create_space(f).unwrap();
        let g = f + 16 * P;
        let ops: Vec<_> = donate((1..4).map(|i| f + i * P))
            .into_iter()
            .chain((0..40u64).map(|n| map(n * PAGE_SIZE, g + n * PAGE_SIZE, RW)))
            .collect();
        k.apply(s, &ops).unwrap();
        assert_eq!(
            k.stats(),
            KernelStats {
                page_table_frames: 4,
                batches: 1,
                page_flushes: 0,
                full_flushes: 0,
                refused: 0,
            },
            "fresh maps need no flush"
        );
        k.apply(s, &[map(0, g + PAGE_SIZE, RW)]).unwrap();
        k.apply(
            s,
            &[PageOp::Unmap {
                page: PAGE_SIZE,
                pages: 2,
            }],
        )
        .unwrap();
        k.apply(
            s,
            &[PageOp::Protect {
                page: 0,
                pages: 64,
                prot: ProtectionFlags::READ,
            }],
        )
        .unwrap();
        let stats = k.stats();
        assert_eq!(
            (stats.batches, stats.page_flushes, stats.full_flushes),
            (4, 3, 1)
        );
    }

    #[test]
    fn a_refusing_kernel_refuses_whole_calls() {
        let (k, f) = kernel();
        let s = k.create_space(f).unwrap();
        k.refuse_randomly(7, 2);
        let mut refused = 0;
        for n in 0..64u64 {
            let ops: Vec<_> = donate((0..3).map(|i| f + (1 + 3 * n + i) * P))
                .into_iter()
                .chain([map((n + 1) << 30, f + (300 + n) * P, RW)])
                .collect();
            let before = tables(&k);
            match k.apply(s, &ops) {
                Ok(_) => assert!(translate(&k, s, (n + 1) << 30).is_some()),
                Err(e) => {
                    assert_eq!(
                        e,
                        BatchError {
                            done: 0,
                            error: KernelError::OutOfMemory
                        }
                    );
                    assert!(translate(&k, s, (n + 1) << 30).is_none());
                    assert_eq!(tables(&k), before);
                    refused += 1;
                }
            }
        }
        assert!((10..54).contains(&refused), "{refused} of 64 refused");
        assert_eq!(k.stats().refused, refused);
    }
}
