//! The kernel's use of `kernel_shim::paging` for user address spaces: the physical window,
//! the kernel pool as the table allocator, access bits to page-table flags, and the switch of
//! the active space (CR3).
//!
//! Tables are kernel-pool frames reached through the window; the upper half (PML4 entries
//! 256..512) is copied from the kernel's own PML4 at creation and never changed.
//!
//! Process-context identifiers, where the CPU has them: [`PcidTags`] says when a switch may
//! keep what the TLB holds of a space; [`forget`] is called for every change to a space that
//! is not active and for every space's end.

use super::boot::{PHYS_OFFSET, PHYS_WINDOW_SIZE};
use super::frames::FramePool;
use super::global::Global;
use super::shootdown;
use kernel_shim::paging::{
    self, Mapper, PageTableFlags, PcidTags, PhysWindow, TableAlloc, page_table_create,
    page_table_destroy, page_table_translate,
};
use x86_64::PhysAddr;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::PhysFrame;

/// The end of the user half: user addresses are below.
pub const USER_TOP: u64 = paging::USER_END;
/// The end of what the pager may map: the top page of the user half stays unmapped.
pub const MAP_TOP: u64 = kernel_shim::abi::USER_TOP;

/// Access bits of a user mapping (the bits of libvm's `ProtectionFlags`).
pub mod prot {
    /// Loads.
    pub const READ: u8 = 1;
    /// Stores.
    pub const WRITE: u8 = 2;
    /// Instruction fetches.
    pub const EXEC: u8 = 4;
}

static WINDOW: Global<Option<PhysWindow>> = Global::new(None);

/// Whether CR4.PCIDE is on.
static PCID_ON: Global<bool> = Global::new(false);
/// What the TLB may hold under each PCID.
static TAGS: Global<PcidTags> = Global::new(PcidTags::new());

/// Turns process-context identifiers on if the CPU has them (CPUID.1:ECX bit 17); whether
/// they are on. Call once at boot, while CR3's PCID is 0.
pub fn enable_pcid() -> bool {
    let ecx = core::arch::x86_64::__cpuid(1).ecx;
    if ecx & (1 << 17) == 0 {
        return false;
    }
    // SAFETY: the CPU has PCIDs and CR3's low 12 bits are 0 (the kernel's PML4 was loaded with
    // no flags), as setting CR4.PCIDE requires; from now on every CR3 write names a PCID
    // (`activate`) or keeps the current one (`tlb::flush_all`). Boot is single-threaded.
    unsafe {
        x86_64::registers::control::Cr4::update(|f| {
            f.insert(x86_64::registers::control::Cr4Flags::PCID)
        });
        *PCID_ON.as_ptr() = true;
    }
    true
}

/// Forgets what the TLB may hold of space `root` under its PCID (a change made while it was
/// not active, or its end): its next activation flushes that PCID.
pub fn forget(root: u64) {
    // SAFETY: PCIDs are on only when one processor runs the kernel (as in `activate`); no
    // reference to TAGS is kept.
    unsafe {
        if *PCID_ON.as_ptr() {
            (*TAGS.as_ptr()).forget(root);
        }
    }
}

/// Flushes user page `page` of space `root` from the TLB: an `invlpg` if `root` is active,
/// else [`forget`]; and on every other processor whose CR3 holds it ([`shootdown`]).
pub fn flush_page(root: u64, page: u64) {
    let page = x86_64::VirtAddr::new_truncate(page);
    if active() == root {
        x86_64::instructions::tlb::flush(page);
    } else {
        forget(root);
    }
    shootdown::flush_page_elsewhere(root, page);
}

/// Sets up the window onto physical memory (the kernel tables' physmap). Call once at boot.
pub fn init() {
    // SAFETY: the kernel's tables (kmap) map physical [0, PHYS_WINDOW_SIZE) at PHYS_OFFSET for
    // the kernel's whole life, read/write but for the kernel image (read-only: no table frame
    // lies there), and the kernel reaches page-table frames only through this window. Boot is single-threaded, so the write to WINDOW races nothing.
    unsafe { *WINDOW.as_ptr() = Some(paging::init_virtual_memory(PHYS_OFFSET, PHYS_WINDOW_SIZE)) };
}

/// The window onto physical memory.
pub fn window() -> PhysWindow {
    // SAFETY: written once by `init` at boot, only read afterwards.
    match unsafe { *WINDOW.as_ptr() } {
        Some(w) => w,
        None => panic!("pt::window before pt::init"),
    }
}

impl TableAlloc for FramePool {
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.alloc().map(PhysAddr::new)
    }

    fn free_table(&mut self, frame: PhysAddr) {
        self.free(frame.as_u64());
    }
}

/// The leaf flags of a user mapping with access `p`.
pub fn flags(p: u8) -> PageTableFlags {
    let mut f = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
    if p & prot::WRITE != 0 {
        f |= PageTableFlags::WRITABLE;
    }
    if p & prot::EXEC == 0 {
        f |= PageTableFlags::NO_EXECUTE;
    }
    f
}

/// A new user PML4, from `tables`, whose upper half is `kernel_root`'s.
pub fn create(tables: &mut impl TableAlloc, kernel_root: u64) -> Option<u64> {
    page_table_create(window(), tables, Some(PhysAddr::new(kernel_root)))
        .ok()
        .map(|r| r.as_u64())
}

/// Frees every user table of `root` and `root` itself into `tables` (not the mapped frames).
/// No CPU may run on `root` any more (see [`leave`]). A table outside the window would be a
/// kernel bug: it is reported, and the rest is freed.
pub fn destroy(tables: &mut impl TableAlloc, root: u64) {
    if page_table_destroy(window(), PhysAddr::new(root), tables).is_err() {
        kprintln!(
            "kernel-shim: a page table of {:#x} lies outside the window",
            root
        );
    }
}

/// A batch of changes to the space `root`, its new tables from `tables`.
pub fn mapper<A: TableAlloc>(tables: &mut A, root: u64) -> Mapper<'_, A> {
    Mapper::new(window(), PhysAddr::new(root), tables)
}

/// Ends a batch on `root`: one flush for the whole batch if `root` is the active space, else
/// (if it changed anything) [`forget`] of the space; and one round of shootdown interrupts
/// to the other processors whose CR3 holds it, waited for ([`shootdown`]).
#[inline(always)]
pub fn finish<A: TableAlloc>(m: Mapper<'_, A>, root: u64) {
    let flush = m.finish();
    shootdown::flush_elsewhere(root, &flush);
    if active() == root {
        flush.flush_local();
    } else {
        if !flush.is_empty() {
            forget(root);
        }
        flush.ignore();
    }
}

/// The frame and access of user page `va`, if it is mapped for ring 3.
pub fn translate(root: u64, va: u64) -> Option<(u64, u8)> {
    if va >= USER_TOP {
        return None;
    }
    let t = page_table_translate(window(), PhysAddr::new(root), va)?;
    if !t.user {
        return None;
    }
    let mut p = prot::READ;
    if t.writable {
        p |= prot::WRITE;
    }
    if t.executable {
        p |= prot::EXEC;
    }
    Some((t.frame.as_u64(), p))
}

/// The PML4 in CR3.
pub fn active() -> u64 {
    Cr3::read_raw().0.start_address().as_u64()
}

/// Makes `root` the active address space (reloading CR3 only when it changes). With PCIDs,
/// what the TLB holds of `root` is kept if its PCID is still tagged with it, else flushed.
pub fn activate(root: u64) {
    let (frame, flags) = Cr3::read_raw();
    if frame.start_address().as_u64() == root {
        return;
    }
    shootdown::loaded(root);
    // SAFETY: PCIDs are on only when one processor runs the kernel (boot turns them off
    // otherwise), so one flow of control reaches TAGS; the reference ends with this call.
    let (pcid_on, tags) = unsafe { (*PCID_ON.as_ptr(), &mut *TAGS.as_ptr()) };
    if pcid_on {
        let value = tags.switch_to(root);
        // SAFETY: as below; with bit 63 set the CPU keeps the translations tagged with
        // `root`'s PCID, which are `root`'s own and current (`PcidTags`'s rule).
        unsafe { core::arch::asm!("mov cr3, {}", in(reg) value, options(nostack)) };
    } else {
        let new = PhysFrame::containing_address(PhysAddr::new(root));
        // SAFETY: `root` is a PML4 made by `create`, whose upper half is the kernel's, so the
        // kernel keeps running unchanged after the switch.
        unsafe { Cr3::write_raw(new, flags) };
    }
}

/// Switches to `kernel_root` if `root` is the active space, and forgets `root`'s PCID tag
/// (before `root` is destroyed: its frame may become another space's PML4). The other
/// processors have left it already (its threads' end: `Kernel::stop_elsewhere`).
pub fn leave(root: u64, kernel_root: u64) {
    if active() == root {
        activate(kernel_root);
    }
    forget(root);
}
