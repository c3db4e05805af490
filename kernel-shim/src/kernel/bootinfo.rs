//! What the boot loader tells the kernel: the PVH `hvm_start_info` block, read through the
//! physical memory window.
//!
//! Layout (Xen `arch-x86/hvm/start_info.h`): magic, version, flags, nr_modules,
//! modlist_paddr, cmdline_paddr, rsdp_paddr, and from version 1 memmap_paddr, memmap_entries.
//!
//! Hand-written rather than the `pvh` crate's reader: that reader makes slices from the
//! loader's counts and addresses as they are, where this one copies a bounded number of
//! entries (at most [`MAX_ENTRIES`] of each list, 255 bytes of command line) out through the
//! physical window after checking the block lies in it; the structures are three and small.

use super::boot::phys_to_virt;

const HVM_START_MAGIC: u32 = 0x336e_c578;
/// Memory-map type of usable RAM.
pub const E820_RAM: u32 = 1;
/// The most memory-map entries and modules the kernel keeps.
pub const MAX_ENTRIES: usize = 32;

/// One physical memory range of the boot memory map.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// E820 type (1 = RAM).
    pub kind: u32,
}

/// One boot module (the `-initrd` file is module 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct Module {
    /// Physical address of the first byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The boot information, copied out of the loader's memory.
pub struct BootInfo {
    /// The memory map.
    pub memory: [MemRange; MAX_ENTRIES],
    /// Entries used in `memory`.
    pub memory_len: usize,
    /// The modules.
    pub modules: [Module; MAX_ENTRIES],
    /// Entries used in `modules`.
    pub modules_len: usize,
    /// The kernel command line (`-append`), up to 255 bytes.
    pub cmdline: [u8; 256],
    /// Bytes used in `cmdline`.
    pub cmdline_len: usize,
    /// Physical address of the ACPI RSDP (0: none given).
    pub rsdp: u64,
}

#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
struct ModEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

fn read<T>(phys: u64) -> T {
    // SAFETY: the caller passes physical addresses from the loader's start-info block, which
    // lie in the first 4 GiB (checked in `read`), all of which the boot tables and the
    // kernel's map in the window. The reads
    // are unaligned-safe.
    unsafe { core::ptr::read_unaligned(phys_to_virt(phys) as *const T) }
}

impl BootInfo {
    /// Reads the start-info block at physical address `phys`; `None` if it is not one.
    pub fn read(phys: u64) -> Option<BootInfo> {
        if phys == 0 || phys >= super::boot::BOOT_WINDOW_SIZE {
            return None;
        }
        let si: StartInfo = read(phys);
        if si.magic != HVM_START_MAGIC {
            return None;
        }
        let mut info = BootInfo {
            memory: [MemRange::default(); MAX_ENTRIES],
            memory_len: 0,
            modules: [Module::default(); MAX_ENTRIES],
            modules_len: 0,
            cmdline: [0; 256],
            cmdline_len: 0,
            rsdp: si.rsdp_paddr,
        };
        if si.version >= 1 {
            let n = (si.memmap_entries as usize).min(MAX_ENTRIES);
            for i in 0..n {
                let e: MemmapEntry = read(si.memmap_paddr + (i * 24) as u64);
                info.memory[i] = MemRange {
                    start: e.addr,
                    len: e.size,
                    kind: e.kind,
                };
            }
            info.memory_len = n;
        }
        let n = (si.nr_modules as usize).min(MAX_ENTRIES);
        for i in 0..n {
            let m: ModEntry = read(si.modlist_paddr + (i * 32) as u64);
            info.modules[i] = Module {
                start: m.paddr,
                len: m.size,
            };
        }
        info.modules_len = n;
        if si.cmdline_paddr != 0 {
            while info.cmdline_len < 255 {
                let b: u8 = read(si.cmdline_paddr + info.cmdline_len as u64);
                if b == 0 {
                    break;
                }
                info.cmdline[info.cmdline_len] = b;
                info.cmdline_len += 1;
            }
        }
        Some(info)
    }

    /// The memory map.
    pub fn memory(&self) -> &[MemRange] {
        &self.memory[..self.memory_len]
    }

    /// The boot modules.
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.modules_len]
    }

    /// The command line as text (empty if it is not UTF-8).
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    /// Whether the command line holds the word `word`.
    pub fn has_flag(&self, word: &str) -> bool {
        self.cmdline().split(' ').any(|w| w == word)
    }
}
