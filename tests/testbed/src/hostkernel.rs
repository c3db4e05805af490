//! The emulated kernel: memd's [`Kernel`] over kernel-shim's page tables in simulated RAM,
//! done exactly as the real kernel does it.
//!
//! - Each space is a PML4 made with `page_table_create` from a kernel template whose half
//!   (a physmap of 1 GiB pages at `PHYSMAP_BASE`, kernel only) every space shares.
//! - Page tables come from the kernel's own pool (the frames [`PhysMem`] keeps for it), never
//!   from memd's frames. The pool is locked per frame, and each space has its own lock, so
//!   batches on different spaces do not queue behind one another.
//! - `apply` checks each operation (user page, memd's own frame, a protection x86 can
//!   express), runs the batch through one [`Mapper`] and flushes the space's TLB once.
//!
//! Lock order: the space table, then one space, then the pool.

use crate::mmu::{Mmu, Tlb};
use crate::physmem::PhysMem;
use kernel_shim::paging::{
    Mapper, PHYSMAP_BASE, PageTableFlags, PagingError, TableAlloc, page_table_create,
    page_table_destroy,
};
use libvm::ProtectionFlags;
use memd::kernel::{BatchError, FrameAddr, Kernel, KernelError, PAGE_SIZE, PageOp, SpaceId};
use spin::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The kernel's page-table frames.
    pool: Mutex<TablePool>,
    /// The PML4 of the kernel template.
    template: PhysAddr,
    /// Frames the template holds (they are not counted as user page tables).
    template_frames: u64,
    /// memd's frames: the only frames a user page may map.
    memd_ranges: Vec<(u64, u64)>,
    /// What happened, for tests and benchmarks.
    counters: Counters,
}

/// One address space, behind its own lock.
pub(crate) struct Space {
    /// Its PML4; `None` once destroyed.
    pub(crate) root: Option<PhysAddr>,
    /// The TLB of the CPUs running it: only the kernel's flushes invalidate it.
    pub(crate) tlb: Tlb,
}

impl Machine {
    /// Space `id`, if it was ever created and not yet destroyed.
    pub(crate) fn space(&self, id: SpaceId) -> Option<Arc<Mutex<Space>>> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.spaces.read().get(index)?.clone()
    }
}

/// The kernel's page-table frames: a free list over the frames [`PhysMem`] keeps for them.
///
/// A freed table may be handed out again at once: the emulated TLB caches leaf translations
/// only, and frees happen under the space's lock, which the MMU's walks also take.
struct TablePool {
    /// Frames not in use.
    free: Vec<PhysAddr>,
    /// Frames in use as page tables (the template's included).
    out: u64,
}

/// The pool as a [`TableAlloc`], locking it for each frame.
struct PoolRef<'a>(&'a Mutex<TablePool>);

impl TableAlloc for PoolRef<'_> {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        let mut pool = self.0.lock();
        let frame = pool.free.pop()?;
        pool.out += 1;
        Some(frame)
    }

    fn free_table(&mut self, frame: PhysAddr) {
        let mut pool = self.0.lock();
        pool.out -= 1;
        pool.free.push(frame);
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
}

/// What the kernel has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames out of the pool as page tables of user spaces (the template's excluded).
    pub page_table_frames: u64,
    /// Batches applied (failed ones included).
    pub batches: u64,
    /// Pages invalidated one by one.
    pub page_flushes: u64,
    /// Full TLB flushes.
    pub full_flushes: u64,
}

impl HostKernel {
    /// A kernel over `phys`, with its template space built.
    ///
    /// Panics if the table pool cannot hold the template (two frames).
    pub fn new(phys: Arc<PhysMem>) -> HostKernel {
        let window = phys.window();
        let pool = Mutex::new(TablePool {
            free: phys.table_frames().rev().collect(),
            out: 0,
        });
        let mut alloc = PoolRef(&pool);
        let template = page_table_create(window, &mut alloc, None)
            .expect("the table pool holds the kernel template");
        // The kernel half, made by hand as boot code makes it: PML4[256] -> a PDPT of 1 GiB
        // pages mapping all of RAM at PHYSMAP_BASE, kernel only, global, not executable.
        let pdpt = alloc
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
        let template_frames = pool.lock().out;
        let memd_ranges = phys.memd_ranges();
        HostKernel {
            machine: Arc::new(Machine {
                phys,
                spaces: RwLock::new(Vec::new()),
                pool,
                template,
                template_frames,
                memd_ranges,
                counters: Counters::default(),
            }),
        }
    }

    /// The MMU that walks this kernel's page tables and caches in its TLBs.
    pub fn mmu(&self) -> Mmu {
        Mmu::new(Arc::clone(&self.machine))
    }

    /// The PML4 of `space`, if it exists.
    pub fn root(&self, space: SpaceId) -> Option<PhysAddr> {
        self.machine.space(space)?.lock().root
    }

    /// What the kernel has done so far.
    pub fn stats(&self) -> KernelStats {
        let counters = &self.machine.counters;
        KernelStats {
            page_table_frames: self.page_table_frames(),
            batches: counters.batches.load(Ordering::Relaxed),
            page_flushes: counters.page_flushes.load(Ordering::Relaxed),
            full_flushes: counters.full_flushes.load(Ordering::Relaxed),
        }
    }

    /// `frame` as a physical address, if it is one of memd's frames.
    fn memd_frame(&self, frame: FrameAddr) -> Option<PhysAddr> {
        let ours = frame.is_multiple_of(PAGE_SIZE)
            && self
                .machine
                .memd_ranges
                .iter()
                .any(|&(start, end)| start <= frame && frame < end);
        ours.then(|| PhysAddr::new(frame))
    }

    /// `frame` as a physical address; panics if memd names a frame that is not its own.
    fn own_frame(&self, frame: FrameAddr, call: &str) -> PhysAddr {
        self.memd_frame(frame)
            .unwrap_or_else(|| panic!("memd's {call} names frame {frame:#x}, not one of its own"))
    }

    /// Checks one operation and applies it to the batch.
    fn perform(
        &self,
        mapper: &mut Mapper<'_, PoolRef<'_>>,
        op: &PageOp,
    ) -> Result<(), KernelError> {
        match *op {
            PageOp::Map { page, frame, prot } => {
                let frame = self.memd_frame(frame).ok_or(KernelError::Refused)?;
                let flags = leaf_flags(prot)?;
                mapper.remap(page, frame, flags).map(drop)
            }
            PageOp::Unmap { page, pages } => mapper.unmap_range(page, pages, |_, _| {}).map(drop),
            PageOp::Protect { page, pages, prot } => {
                let flags = leaf_flags(prot)?;
                mapper.protect_range(page, pages, flags).map(drop)
            }
        }
        .map_err(kernel_error)
    }
}

impl Kernel for HostKernel {
    fn create_space(&self) -> Result<SpaceId, KernelError> {
        let machine = &self.machine;
        let root = page_table_create(
            machine.phys.window(),
            &mut PoolRef(&machine.pool),
            Some(machine.template),
        )
        .map_err(kernel_error)?;
        let mut spaces = machine.spaces.write();
        spaces.push(Some(Arc::new(Mutex::new(Space {
            root: Some(root),
            tlb: Tlb::new(),
        }))));
        Ok(spaces.len() as SpaceId)
    }

    fn destroy_space(&self, space: SpaceId) {
        let machine = &self.machine;
        let Some(slot) = machine.space(space) else {
            return;
        };
        machine.spaces.write()[space as usize - 1] = None;
        let mut space = slot.lock();
        if let Some(root) = space.root.take() {
            page_table_destroy(machine.phys.window(), root, &mut PoolRef(&machine.pool))
                .expect("the page tables of a space stay inside RAM");
        }
        // Its CR3 is never loaded again: nothing of it stays cached.
        space.tlb.invalidate_all();
    }

    fn apply(&self, space: SpaceId, ops: &[PageOp]) -> Result<(), BatchError> {
        let machine = &self.machine;
        let no_space = BatchError {
            done: 0,
            error: KernelError::NoSuchSpace,
        };
        let slot = machine.space(space).ok_or(no_space)?;
        let mut space = slot.lock();
        let root = space.root.ok_or(no_space)?;
        let mut pool = PoolRef(&machine.pool);
        let mut mapper = Mapper::new(machine.phys.window(), root, &mut pool);
        let result = ops.iter().enumerate().try_for_each(|(done, op)| {
            self.perform(&mut mapper, op)
                .map_err(|error| BatchError { done, error })
        });
        // The applied prefix is flushed whether or not the batch completed.
        let flush = mapper.finish();
        machine.counters.batches.fetch_add(1, Ordering::Relaxed);
        let mut pages = 0;
        let mut full = false;
        flush.flush_with(
            |page| {
                space.tlb.invalidate(page);
                pages += 1;
            },
            || full = true,
        );
        if full {
            space.tlb.invalidate_all();
            machine
                .counters
                .full_flushes
                .fetch_add(1, Ordering::Relaxed);
        }
        machine
            .counters
            .page_flushes
            .fetch_add(pages, Ordering::Relaxed);
        result
    }

    fn page_table_frames(&self) -> u64 {
        self.machine.pool.lock().out - self.machine.template_frames
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

    /// A kernel over 4 MiB of RAM with `table_frames` table frames, and memd's first frame.
    pub(crate) fn kernel_with(table_frames: u64) -> (HostKernel, u64) {
        let phys = Arc::new(PhysMem::new(4 << 20, table_frames));
        let first = phys.memd_ranges()[0].0;
        (HostKernel::new(phys), first)
    }

    /// A kernel with a roomy table pool, and memd's first frame.
    pub(crate) fn kernel() -> (HostKernel, u64) {
        kernel_with(64)
    }

    pub(crate) fn map(page: u64, frame: u64, prot: ProtectionFlags) -> PageOp {
        PageOp::Map { page, frame, prot }
    }

    fn translate(
        k: &HostKernel,
        space: SpaceId,
        virt: u64,
    ) -> Option<kernel_shim::paging::Translation> {
        page_table_translate(k.machine.phys.window(), k.root(space)?, virt)
    }

    const RW: ProtectionFlags = ProtectionFlags::READ_WRITE;

    #[test]
    fn page_table_frames_go_back_to_zero_after_destroy() {
        let (k, f) = kernel();
        let s = k.create_space().unwrap();
        assert_eq!(k.page_table_frames(), 1);
        let ops: Vec<_> = (0..8u64)
            .map(|n| map(n << 30 | 0x1000, f + n * PAGE_SIZE, RW))
            .collect();
        k.apply(s, &ops).unwrap();
        assert_eq!(k.page_table_frames(), 1 + 1 + 8 * 2);
        k.destroy_space(s);
        assert_eq!(k.page_table_frames(), 0);
        assert_eq!(k.root(s), None);
        assert_eq!(k.create_space(), Ok(s + 1), "ids are never reused");
    }

    #[test]
    fn frames_that_are_not_memds_are_refused() {
        let (k, f) = kernel();
        let s = k.create_space().unwrap();
        let ram_end = k.machine.phys.ram_bytes();
        for bad in [0, PAGE_SIZE, f - PAGE_SIZE, ram_end, f + 8] {
            assert_eq!(
                k.apply(s, &[map(0x1000, f, RW), map(0x2000, bad, RW)]),
                Err(BatchError {
                    done: 1,
                    error: KernelError::Refused
                }),
                "frame {bad:#x}"
            );
            assert_eq!(translate(&k, s, 0x2000), None);
        }
        // The prefix stays applied.
        assert_eq!(translate(&k, s, 0x1000).map(|t| t.frame.as_u64()), Some(f));
    }

    #[test]
    #[should_panic(expected = "not one of its own")]
    fn memd_cannot_write_a_page_table_frame() {
        let (k, _) = kernel();
        k.zero_frame(PAGE_SIZE);
    }

    #[test]
    fn addresses_and_protections_the_kernel_will_not_map_are_refused() {
        let (k, f) = kernel();
        let s = k.create_space().unwrap();
        let refused = |op: PageOp| {
            assert_eq!(
                k.apply(s, &[op]),
                Err(BatchError {
                    done: 0,
                    error: KernelError::Refused
                }),
                "{op:?}"
            );
        };
        refused(map(PHYSMAP_BASE, f, RW));
        refused(map(USER_END, f, RW));
        refused(map(0x1001, f, RW));
        refused(map(0x1000, f, ProtectionFlags::NONE));
        refused(PageOp::Unmap {
            page: USER_END - PAGE_SIZE,
            pages: 2,
        });
        refused(PageOp::Protect {
            page: 0,
            pages: 1,
            prot: ProtectionFlags::NONE,
        });
        assert_eq!(k.page_table_frames(), 1);
    }

    #[test]
    fn an_empty_pool_is_out_of_memory() {
        // Template (2), root (1), and the three tables of the first page.
        let (k, f) = kernel_with(6);
        let s = k.create_space().unwrap();
        assert_eq!(
            k.apply(s, &[map(0x1000, f, RW), map(1 << 39, f, RW)]),
            Err(BatchError {
                done: 1,
                error: KernelError::OutOfMemory
            })
        );
        assert_eq!(k.page_table_frames(), 4);
        assert_eq!(k.create_space(), Err(KernelError::OutOfMemory));
        k.destroy_space(s);
        assert_eq!(k.page_table_frames(), 0);
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
        let s = k.create_space().unwrap();
        k.destroy_space(s);
        k.destroy_space(s);
        k.destroy_space(42);
        assert_eq!(k.apply(s, &[]), no_space);
    }

    #[test]
    fn protections_become_leaf_flags() {
        let (k, f) = kernel();
        let s = k.create_space().unwrap();
        k.apply(
            s,
            &[
                map(0x1000, f, ProtectionFlags::READ),
                map(0x2000, f, RW),
                map(0x3000, f, ProtectionFlags::READ_EXEC),
                map(0x4000, f, ProtectionFlags::READ_WRITE_EXEC),
            ],
        )
        .unwrap();
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
        let (k, _) = kernel();
        let a = k.create_space().unwrap();
        let b = k.create_space().unwrap();
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
        let s = k.create_space().unwrap();
        let ops: Vec<_> = (0..40u64)
            .map(|n| map(n * PAGE_SIZE, f + n * PAGE_SIZE, RW))
            .collect();
        k.apply(s, &ops).unwrap();
        assert_eq!(
            k.stats(),
            KernelStats {
                page_table_frames: 4,
                batches: 1,
                page_flushes: 0,
                full_flushes: 0
            },
            "fresh maps need no flush"
        );
        k.apply(s, &[map(0, f + PAGE_SIZE, RW)]).unwrap();
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
}
