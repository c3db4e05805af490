//! The processors of the machine, as the firmware's ACPI tables list them: the RSDP the boot
//! loader names (PVH `rsdp_paddr`), its root table, and the MADT's local APIC and x2APIC
//! entries, parsed by the `acpi` crate (rust-osdev's, without its `alloc` feature: it finds
//! and walks the tables in place, through the physical window). The kernel runs on the first
//! processor only so far; it says how many there are.

use super::boot::{PHYS_WINDOW_SIZE, phys_to_virt};
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;

/// The most processors the kernel keeps a record of.
pub const MAX_CPUS: usize = 64;

/// Maps ACPI tables through the kernel's physical window (every table lies in RAM or
/// firmware memory below the window's end; one that does not is refused before it is read).
#[derive(Clone, Copy)]
struct Window;

impl AcpiHandler for Window {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        // A region past the window reads as the first page (which holds no valid table:
        // its signature and checksum are refused), so nothing outside the window is touched.
        let inside = (phys as u64)
            .checked_add(size as u64)
            .is_some_and(|end| end <= PHYS_WINDOW_SIZE);
        let at = if inside { phys as u64 } else { 0 };
        // SAFETY: `[at, at + size)` lies inside the window, which maps all of it for good;
        // `phys_to_virt` of a window address is never null. The crate reads the table
        // through this mapping only while it lives, and writes nothing.
        unsafe {
            PhysicalMapping::new(
                phys,
                NonNull::new_unchecked(phys_to_virt(at) as *mut T),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The processors found: their local APIC ids, the first being the one booting.
pub struct Cpus {
    /// Local APIC (or x2APIC) ids, `ids[..count.min(MAX_CPUS)]`.
    pub ids: [u32; MAX_CPUS],
    /// Processors enabled or able to be (more than [`MAX_CPUS`] are counted, not kept).
    pub count: usize,
}

/// The processors the MADT lists as enabled or online-capable; `None` when there is no RSDP,
/// no valid root table or no MADT.
pub fn find(rsdp: u64) -> Option<Cpus> {
    if rsdp == 0 {
        return None;
    }
    // SAFETY: `rsdp` is the address the boot loader gave as the RSDP's; the crate checks its
    // signature and checksum (and those of every table it reads) before trusting it, and the
    // handler keeps every access inside the physical window.
    let tables = unsafe { AcpiTables::from_rsdp(Window, rsdp as usize) }.ok()?;
    let madt = tables.find_table::<Madt>().ok()?;
    let mut cpus = Cpus {
        ids: [0; MAX_CPUS],
        count: 0,
    };
    for entry in madt.get().entries() {
        // Bit 0: enabled; bit 1: online capable (may be enabled later).
        let id = match entry {
            MadtEntry::LocalApic(e) if { e.flags } & 3 != 0 => u32::from(e.apic_id),
            MadtEntry::LocalX2Apic(e) if { e.flags } & 3 != 0 => e.x2apic_id,
            _ => continue,
        };
        if let Some(slot) = cpus.ids.get_mut(cpus.count) {
            *slot = id;
        }
        cpus.count += 1;
    }
    Some(cpus)
}
