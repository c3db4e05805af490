//! The kernel's own page tables, built once in long mode to replace the boot tables, and the
//! CPU's protections of ring 0 from ring 3's memory (SMEP, SMAP).
//!
//! ```text
//! PML4[256] -> physical window: 0xFFFF_8000_0000_0000 + phys, the first 64 GiB, 2 MiB pages,
//!              read/write, never executable; the 2 MiB pages holding the kernel image are
//!              split into 4 KiB pages, the image's read-only (no second way to write it)
//! PML4[511] -> the kernel image at KERNEL_VMA + phys, 4 KiB pages (W^X):
//!              text read/execute, rodata read-only, data and bss read/write, never executable;
//!              the guard pages under the kernel stack and the double-fault stack unmapped
//! ```
//!
//! Nothing else is mapped: the boot code's identity map of low memory is gone once CR3 holds
//! these tables, and every kernel mapping is supervisor-only. The tables are static (in the
//! image's bss) and never change afterwards; every address space shares their upper half
//! (`pt::create` copies the PML4 entries 256..512 from `Kernel::kernel_root`).

use super::boot::{self, KERNEL_VMA, PHYS_OFFSET, PHYS_WINDOW_SIZE};
use super::global::Global;
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr4, Cr4Flags};
use x86_64::structures::paging::PhysFrame;

/// Present.
const P: u64 = 1 << 0;
/// Writable.
const W: u64 = 1 << 1;
/// A 2 MiB page (in a page directory).
const HUGE: u64 = 1 << 7;
/// Not executable.
const NX: u64 = 1 << 63;

const PAGE: u64 = 4096;
const HUGE_PAGE: u64 = 2 << 20;
/// Page directories of the window: one per GiB.
const WINDOW_PDS: usize = (PHYS_WINDOW_SIZE >> 30) as usize;
/// Page tables for the image (and for its alias in the window): the image may span this many
/// 2 MiB pages.
const IMAGE_PTS: usize = 4;

#[repr(C, align(4096))]
struct Table([u64; 512]);

const EMPTY: Table = Table([0; 512]);

/// Every table of the kernel half.
struct Tables {
    pml4: Table,
    window_pdpt: Table,
    window_pd: [Table; WINDOW_PDS],
    window_pt: [Table; IMAGE_PTS],
    image_pdpt: Table,
    image_pd: Table,
    image_pt: [Table; IMAGE_PTS],
}

static TABLES: Global<Tables> = Global::new(Tables {
    pml4: EMPTY,
    window_pdpt: EMPTY,
    window_pd: [EMPTY; WINDOW_PDS],
    window_pt: [EMPTY; IMAGE_PTS],
    image_pdpt: EMPTY,
    image_pd: EMPTY,
    image_pt: [EMPTY; IMAGE_PTS],
});

/// The physical address of a table (they are in the kernel image).
fn phys(t: &Table) -> u64 {
    boot::image_to_phys(t as *const Table as u64)
}

/// An entry pointing at the next-level table `t` (the leaves decide the access).
fn table_entry(t: &Table) -> u64 {
    phys(t) | P | W
}

/// The access of the image page at `virt`: 0 for a guard page.
fn image_page_flags(virt: u64, layout: &boot::ImageLayout) -> u64 {
    if boot::is_guard_page(virt) {
        0
    } else if virt < layout.rodata {
        P
    } else if virt < layout.data {
        P | NX
    } else {
        P | W | NX
    }
}

/// Builds the kernel's tables and loads them into CR3. Returns `false` (nothing changed) if
/// the image spans more 2 MiB pages than there are tables for (or lies above 1 GiB). Call
/// once at boot, before any address space is created.
pub fn init() -> bool {
    let layout = boot::image_layout();
    let first_huge = layout.text / HUGE_PAGE;
    let last_huge = (layout.end - 1) / HUGE_PAGE;
    let (img_phys_start, img_phys_end) = boot::kernel_image();
    let phys_huge = img_phys_start / HUGE_PAGE..=(img_phys_end - 1) / HUGE_PAGE;
    if last_huge - first_huge >= IMAGE_PTS as u64
        || phys_huge.clone().count() > IMAGE_PTS
        || img_phys_end > 1 << 30
    {
        return false;
    }
    // SAFETY: boot, single-threaded, before the tables are in use: no other reference exists.
    let t = unsafe { &mut *TABLES.as_ptr() };

    // The window: 2 MiB pages, read/write, not executable.
    t.pml4.0[(PHYS_OFFSET >> 39) as usize & 511] = table_entry(&t.window_pdpt);
    for gib in 0..WINDOW_PDS {
        t.window_pdpt.0[gib] = table_entry(&t.window_pd[gib]);
        for i in 0..512 {
            let pa = ((gib as u64) << 30) + i as u64 * HUGE_PAGE;
            t.window_pd[gib].0[i] = pa | P | W | HUGE | NX;
        }
    }
    // Its 2 MiB pages over the kernel image, split: the image read-only, the rest read/write.
    for (n, huge) in phys_huge.enumerate() {
        let base = huge * HUGE_PAGE;
        for i in 0..512 {
            let pa = base + i as u64 * PAGE;
            let image = (img_phys_start..img_phys_end).contains(&pa);
            t.window_pt[n].0[i] = pa | P | NX | if image { 0 } else { W };
        }
        t.window_pd[0].0[huge as usize] = table_entry(&t.window_pt[n]);
    }

    // The image: 4 KiB pages with each part's access; nothing else in its GiB.
    t.pml4.0[(KERNEL_VMA >> 39) as usize & 511] = table_entry(&t.image_pdpt);
    t.image_pdpt.0[(KERNEL_VMA >> 30) as usize & 511] = table_entry(&t.image_pd);
    for (n, huge) in (first_huge..=last_huge).enumerate() {
        let base = huge * HUGE_PAGE;
        for i in 0..512 {
            let va = base + i as u64 * PAGE;
            if (layout.text..layout.end).contains(&va) {
                let flags = image_page_flags(va, &layout);
                if flags != 0 {
                    t.image_pt[n].0[i] = boot::image_to_phys(va) | flags;
                }
            }
        }
        t.image_pd.0[(huge % 512) as usize] = table_entry(&t.image_pt[n]);
    }

    let pml4 = PhysFrame::containing_address(PhysAddr::new(phys(&t.pml4)));
    let (_, flags) = Cr3::read_raw();
    // SAFETY: the new tables map everything the kernel uses from now on: its image (the code
    // running, its stack and statics) at the same addresses and the window; the boot
    // identity map is used by nothing after the jump to the higher half.
    unsafe { Cr3::write_raw(pml4, flags) };
    true
}

/// Which of the CPU's protections of ring 0 from ring-3 memory are on.
#[derive(Clone, Copy, Debug)]
pub struct Protections {
    /// SMEP: ring 0 cannot execute user pages.
    pub smep: bool,
    /// SMAP: ring 0 cannot read or write user pages (the kernel never needs to: it reaches
    /// user memory through the window, see `usercopy`).
    pub smap: bool,
}

/// Turns SMEP and SMAP on where the CPU has them (CPUID leaf 7, EBX bits 7 and 20).
pub fn protect_from_user() -> Protections {
    let max_leaf = core::arch::x86_64::__cpuid(0).eax;
    let ebx = if max_leaf >= 7 {
        core::arch::x86_64::__cpuid_count(7, 0).ebx
    } else {
        0
    };
    let p = Protections {
        smep: ebx & (1 << 7) != 0,
        smap: ebx & (1 << 20) != 0,
    };
    let mut set = Cr4Flags::empty();
    if p.smep {
        set |= Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION;
    }
    if p.smap {
        set |= Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION;
    }
    // SAFETY: the CPU has the features being enabled; the kernel never executes user pages and
    // never touches them but through the window (supervisor pages), so nothing it does starts
    // to fault. RFLAGS.AC is clear in ring 0 (see trap.rs), so SMAP is always in force.
    unsafe { Cr4::update(|f| f.insert(set)) };
    p
}
