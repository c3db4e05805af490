//! Protection and mapping flags, and their `MapFlags` form on the wire.

use crate::error::VmError;
use bitflags::bitflags;
use syscall::flag::MapFlags;

bitflags! {
    /// What a process may do with a range of memory.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct ProtectionFlags: u8 {
        /// No access at all.
        const NONE = 0;
        /// Loads.
        const READ = 1;
        /// Stores.
        const WRITE = 2;
        /// Instruction fetches.
        const EXECUTE = 4;
        /// Loads and stores.
        const READ_WRITE = Self::READ.bits() | Self::WRITE.bits();
        /// Loads and instruction fetches.
        const READ_EXEC = Self::READ.bits() | Self::EXECUTE.bits();
        /// Everything.
        const READ_WRITE_EXEC = Self::READ.bits() | Self::WRITE.bits() | Self::EXECUTE.bits();
    }
}

impl ProtectionFlags {
    /// `mmap`'s `prot` argument as Linux reads it: bits it does not know are ignored
    /// (`mprotect`, which takes [`ProtectionFlags`], refuses them).
    pub fn from_linux(prot: u64) -> ProtectionFlags {
        ProtectionFlags::from_bits_truncate((prot & 7) as u8)
    }
}

bitflags! {
    /// How `mmap` places and backs a mapping (Linux's bit values).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct MmapFlags: u32 {
        /// Writes are seen by every process that maps the same memory.
        const SHARED = 0x01;
        /// Writes are private to the process (copy-on-write after fork).
        const PRIVATE = 0x02;
        /// Place exactly at the address given, replacing what is there.
        const FIXED = 0x10;
        /// Not backed by a file: zero filled on first touch.
        const ANONYMOUS = 0x20;
        /// Back every page now instead of on first touch.
        const POPULATE = 0x8000;
        /// Place exactly at the address given, refusing with `AlreadyMapped` if anything is there.
        const FIXED_NOREPLACE = 0x10_0000;
        /// Below 2 GiB (`MAP_32BIT`: placed in `[1 GiB, 2 GiB)`, as Linux on x86_64 places it).
        const BELOW_2G = 0x40;
        /// A stack that grows down (`MAP_GROWSDOWN`): refused here (EINVAL), see README.
        const GROWSDOWN = 0x100;
        /// Locked in (`MAP_LOCKED`): backed now and kept, as after `mlock`.
        const LOCKED = 0x2000;
        /// No swap reserved (`MAP_NORESERVE`): accepted; nothing is reserved anyway.
        const NORESERVE = 0x4000;
        /// A thread's stack (`MAP_STACK`): with `MAP_PRIVATE`, a Stack region with a one-page
        /// Guard region (never accessible) just under the address returned; unmap both with
        /// `munmap(addr - 4096, len + 4096)`.
        const STACK = 0x2_0000;
    }
}

impl MmapFlags {
    /// `mmap`'s `flags` argument as Linux reads it for anonymous memory: the mapping type
    /// (`flags & 0xf`) must be `MAP_SHARED` (1) or `MAP_PRIVATE` (2), else EINVAL
    /// (`MAP_SHARED_VALIDATE`, 3, included: Linux refuses it for anonymous memory); bits Linux
    /// does not know, or that change nothing here, are ignored, as Linux ignores them.
    pub fn from_linux(flags: u64) -> Result<MmapFlags, VmError> {
        let kind = match flags & 0xf {
            1 => MmapFlags::SHARED,
            2 => MmapFlags::PRIVATE,
            _ => return Err(VmError::InvalidFlags),
        };
        Ok(kind | MmapFlags::from_bits_truncate((flags & !0xf) as u32))
    }

    /// Anonymous private memory: the common `mmap(NULL, len, prot, MAP_PRIVATE|MAP_ANONYMOUS)`.
    pub const fn anonymous_private() -> MmapFlags {
        MmapFlags::ANONYMOUS.union(MmapFlags::PRIVATE)
    }

    /// Anonymous shared memory: shared with children across fork.
    pub const fn anonymous_shared() -> MmapFlags {
        MmapFlags::ANONYMOUS.union(MmapFlags::SHARED)
    }

    /// These flags with `FIXED` added.
    pub const fn fixed(self) -> MmapFlags {
        self.union(MmapFlags::FIXED)
    }

    /// These flags with `FIXED_NOREPLACE` added.
    pub const fn fixed_noreplace(self) -> MmapFlags {
        self.union(MmapFlags::FIXED_NOREPLACE)
    }

    /// These flags with `POPULATE` added.
    pub const fn populate(self) -> MmapFlags {
        self.union(MmapFlags::POPULATE)
    }
}

/// How a mapping of device memory is cached (see [`crate::Vm::map_device`]); the values are
/// the kernel's `CACHE_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Caching {
    /// Every load and store goes to the device, in program order (registers, and the default).
    #[default]
    Uncached = 0,
    /// Stores may be merged and reordered before they reach the device; loads are uncached
    /// (a framebuffer).
    WriteCombining = 1,
}

impl Caching {
    /// The caching with wire value `v`.
    pub fn from_wire(v: u64) -> Option<Caching> {
        match v {
            0 => Some(Caching::Uncached),
            1 => Some(Caching::WriteCombining),
            _ => None,
        }
    }
}

impl ProtectionFlags {
    /// The `PROT_*` bits of redox_syscall's `MapFlags`.
    pub fn to_map_flags(self) -> MapFlags {
        let mut m = MapFlags::PROT_NONE;
        if self.contains(ProtectionFlags::READ) {
            m |= MapFlags::PROT_READ;
        }
        if self.contains(ProtectionFlags::WRITE) {
            m |= MapFlags::PROT_WRITE;
        }
        if self.contains(ProtectionFlags::EXECUTE) {
            m |= MapFlags::PROT_EXEC;
        }
        m
    }

    /// Reads the `PROT_*` bits of `MapFlags`, ignoring every other bit.
    pub fn from_map_flags(m: MapFlags) -> ProtectionFlags {
        let mut p = ProtectionFlags::NONE;
        if m.contains(MapFlags::PROT_READ) {
            p |= ProtectionFlags::READ;
        }
        if m.contains(MapFlags::PROT_WRITE) {
            p |= ProtectionFlags::WRITE;
        }
        if m.contains(MapFlags::PROT_EXEC) {
            p |= ProtectionFlags::EXECUTE;
        }
        p
    }
}
