//! Device ranges: the physical memory outside RAM the command line names
//! ([`kernel_shim::abi::devices`]), which the pager may map into a process with
//! `OP_MAP_DEVICE`, and the caching such a mapping gets.
//!
//! A range is accepted when it is page aligned, not empty, inside the physical window, clear
//! of every RAM range of the memory map (so never a frame of the kernel's or the pager's) and
//! of the local APIC's registers (the kernel's own device); the others are logged and refused
//! for good. Accepted ranges never change after
//! boot, so the checks read them without a lock.
//!
//! Caching goes through the page attribute table: every processor programs entry 1
//! (`PWT` alone) as write-combining, and entry 3 (`PCD | PWT`) stays uncached, as at reset.

use super::boot::PHYS_WINDOW_SIZE;
use super::bootinfo::{E820_RAM, MemRange};
use super::frames::PAGE;
use super::lapic;
use kernel_shim::abi::devices::{self, MAX_DEVICES};
use kernel_shim::abi::{CACHE_UNCACHED, CACHE_WRITE_COMBINING};
use x86_64::structures::paging::PageTableFlags;

/// The device ranges the kernel accepted, by their index on the command line.
pub struct Devices {
    ranges: [Option<(u64, u64)>; MAX_DEVICES],
}

impl Devices {
    /// No device.
    pub const NONE: Devices = Devices {
        ranges: [None; MAX_DEVICES],
    };

    /// The `device=` words of `cmdline` checked against the memory map `memory`; each refused
    /// one is logged with the reason.
    pub fn accept(cmdline: &str, memory: &[MemRange]) -> Devices {
        let mut d = Devices::NONE;
        for (i, word) in devices::parse(cmdline).enumerate() {
            let Some(dev) = word else {
                log::warn!("kernel-shim: device {}: not NAME:BASE:LEN, refused", i);
                continue;
            };
            let end = dev.base.checked_add(dev.len);
            let why = if dev.len == 0
                || !dev.base.is_multiple_of(PAGE)
                || !dev.len.is_multiple_of(PAGE)
            {
                Some("not page aligned, or empty")
            } else if end.is_none_or(|e| e > PHYS_WINDOW_SIZE) {
                Some("beyond the physical window")
            } else if memory
                .iter()
                .any(|r| r.kind == E820_RAM && overlaps(dev.base, dev.len, r.start, r.len))
            {
                Some("overlaps RAM")
            } else if overlaps(dev.base, dev.len, lapic::BASE, PAGE) {
                Some("overlaps the local APIC the kernel drives")
            } else {
                None
            };
            match why {
                Some(why) => log::warn!(
                    "kernel-shim: device {} ({}) at {:#x}, {:#x} bytes: {}, refused",
                    i,
                    dev.name,
                    dev.base,
                    dev.len,
                    why
                ),
                None => {
                    log::info!(
                        "kernel-shim: device {} ({}) at {:#x}, {:#x} bytes",
                        i,
                        dev.name,
                        dev.base,
                        dev.len
                    );
                    d.ranges[i] = Some((dev.base, dev.len));
                }
            }
        }
        d
    }

    /// The accepted range at `index`: (base, length).
    pub fn get(&self, index: u64) -> Option<(u64, u64)> {
        *self.ranges.get(usize::try_from(index).ok()?)?
    }

    /// Whether the page at physical address `page` lies in an accepted range.
    pub fn contains_page(&self, page: u64) -> bool {
        page.is_multiple_of(PAGE)
            && self
                .ranges
                .iter()
                .flatten()
                .any(|&(base, len)| page >= base && page - base < len)
    }
}

/// Whether `[a, a + a_len)` and `[b, b + b_len)` share a byte.
fn overlaps(a: u64, a_len: u64, b: u64, b_len: u64) -> bool {
    a < b.saturating_add(b_len) && b < a.saturating_add(a_len)
}

/// The page-table bits of caching `cache` (`EINVAL`'s `None` for an unknown one).
pub fn cache_flags(cache: u64) -> Option<PageTableFlags> {
    match cache {
        CACHE_UNCACHED => Some(PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH),
        CACHE_WRITE_COMBINING if pat_present() => Some(PageTableFlags::WRITE_THROUGH),
        // Without a page attribute table, uncached is the nearest.
        CACHE_WRITE_COMBINING => Some(PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH),
        _ => None,
    }
}

/// The page attribute table MSR.
const IA32_PAT: u32 = 0x277;
/// Entries 0..8: write-back, write-combining, uncached-minus, uncached, and the same again
/// (reset has write-through where entries 1 and 5 are).
const PAT_VALUE: u64 = 0x0007_0106_0007_0106;

fn pat_present() -> bool {
    // CPUID leaf 1, EDX bit 16.
    core::arch::x86_64::__cpuid(1).edx & (1 << 16) != 0
}

/// Programs this processor's page attribute table (every processor, before its first user
/// mapping): entry 1 write-combining.
pub fn init_pat() {
    if pat_present() {
        // SAFETY: the MSR exists (CPUID says so); entries 0, 2 and 3, the only ones the
        // kernel's own mappings use, keep their reset values.
        unsafe { x86_64::registers::model_specific::Msr::new(IA32_PAT).write(PAT_VALUE) };
    }
}
