//! Device memory: physical ranges that are not RAM (memory-mapped I/O, a framebuffer), mapped
//! into the processes that hold their capability.
//!
//! The ranges come from the kernel, which accepted them from its command line and lets memd
//! map pages of them and nothing else outside memd's own frames ([`Memd::add_device`]). A
//! process holds a device's capability when memd granted it: every device goes to the first
//! program ([`Memd::grant_devices`]), and a holder may pass one on to a child
//! ([`Memd::grant_device`]); a fork's child holds none. Any other process is refused
//! (`NotPermitted`).
//!
//! A mapping is a [`RegionKind::Device`] region whose `offset` is the physical page number of
//! its start (so a split or a merge keeps every page on its device page), with its caching in
//! [`RegionFlags::WRITE_COMBINING`] (uncached without it). Its pages are the device's own:
//! never one of memd's frames, never zeroed, never copied on write, never in the page map
//! (they are not resident memory of the process, as Linux does not count `VM_PFNMAP`
//! pages), mapped by the fault of their first touch, and unmapped, never freed. What a fork's
//! child gets: nothing of a private mapping, the same device pages for a shared one.
//! `mremap` and the `madvise` advice that would drop, wipe or keep pages from a fork refuse
//! device memory (`InvalidFlags`), as Linux refuses them for `VM_IO | VM_PFNMAP` mappings.

use crate::daemon::{Memd, Pid};
use crate::fault::Unresolved;
use crate::kernel::{Caching, Kernel, PAGE_SIZE, PageOp};
use crate::layout::{self, page_round_up};
use crate::region::{Region, RegionFlags, RegionKind};
use crate::space::AddressSpace;
use alloc::string::String;
use libvm::{MmapFlags, ProtectionFlags, VmError};

/// The most device ranges memd keeps (the kernel accepts as many from its command line).
pub const MAX_DEVICES: usize = kernel_shim::abi::devices::MAX_DEVICES;

/// One device range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRange {
    /// Its name on the command line.
    pub name: String,
    /// First physical byte (page aligned).
    pub base: u64,
    /// Length in bytes (page aligned).
    pub len: u64,
}

/// The flags a device mapping may have.
const DEVICE_MAP_FLAGS: MmapFlags = MmapFlags::SHARED
    .union(MmapFlags::PRIVATE)
    .union(MmapFlags::FIXED)
    .union(MmapFlags::FIXED_NOREPLACE);

impl<K: Kernel> Memd<K> {
    /// Adds the device range `name` at physical `base`, `len` bytes (both page aligned: a
    /// range the kernel accepted); its index. `None` when [`MAX_DEVICES`] are known already or
    /// the range is not page aligned.
    pub fn add_device(&self, name: &str, base: u64, len: u64) -> Option<u32> {
        if len == 0 || !base.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let mut devices = self.devices.write();
        if devices.len() == MAX_DEVICES {
            return None;
        }
        devices.push(DeviceRange {
            name: name.into(),
            base,
            len,
        });
        Some(devices.len() as u32 - 1)
    }

    /// The device range named `name`: its index and length.
    pub fn device(&self, name: &str) -> Result<(u32, u64), VmError> {
        self.devices
            .read()
            .iter()
            .enumerate()
            .find(|(_, d)| d.name == name)
            .map(|(i, d)| (i as u32, d.len))
            .ok_or(VmError::NoSuchDevice)
    }

    /// Process `pid` holds the capability of every device of `mask` (bit `i`: device `i`)
    /// from now on, as well as those it held (for the first program, at boot).
    pub fn grant_devices(&self, pid: Pid, mask: u32) -> Result<(), VmError> {
        self.with_space(pid, |s| {
            s.devices |= mask;
            Ok(())
        })
    }

    /// Every device known, as a [`Memd::grant_devices`] mask.
    pub fn all_devices(&self) -> u32 {
        (1u32 << self.devices.read().len()) - 1
    }

    /// Process `holder` gives process `to` the capability of device `device`: `NoSuchDevice`
    /// for an unknown index, `NotPermitted` unless `holder` holds it. (Who may give to whom,
    /// a parent to its child, is the caller's to check: memd's core knows no parents.)
    pub fn grant_device(&self, holder: Pid, to: Pid, device: u32) -> Result<(), VmError> {
        if device as usize >= self.devices.read().len() {
            return Err(VmError::NoSuchDevice);
        }
        let held = self.with_space(holder, |s| Ok(s.devices & 1 << device != 0))?;
        if !held {
            return Err(VmError::NotPermitted);
        }
        self.grant_devices(to, 1 << device)
    }

    /// Maps `len` bytes of device `device` from byte `offset` into process `pid`, at or near
    /// `addr` as `mmap` places (see [`libvm::Vm::map_device`]); returns the address.
    #[allow(clippy::too_many_arguments)]
    pub fn map_device(
        &self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: ProtectionFlags,
        flags: MmapFlags,
        device: u32,
        offset: u64,
        caching: Caching,
    ) -> Result<u64, VmError> {
        // Decode: the flags, then the device and the caller's capability, then the range.
        if len == 0 {
            return Err(VmError::InvalidSize);
        }
        let size = page_round_up(len).ok_or(VmError::OutOfMemory)?;
        let shared = flags.contains(MmapFlags::SHARED);
        if !DEVICE_MAP_FLAGS.contains(flags) || shared == flags.contains(MmapFlags::PRIVATE) {
            return Err(VmError::InvalidFlags);
        }
        let (base, dev_len) = {
            let devices = self.devices.read();
            let d = devices.get(device as usize).ok_or(VmError::NoSuchDevice)?;
            (d.base, d.len)
        };
        if !offset.is_multiple_of(PAGE_SIZE) {
            return Err(VmError::NotAligned);
        }
        if offset.checked_add(size).is_none_or(|end| end > dev_len) {
            return Err(VmError::InvalidSize);
        }
        self.with_space(pid, |space| {
            if space.devices & 1 << device == 0 {
                return Err(VmError::NotPermitted);
            }
            if space.deny_write_exec
                && prot.contains(ProtectionFlags::WRITE | ProtectionFlags::EXECUTE)
            {
                return Err(VmError::PermissionDenied);
            }
            self.region_room(space, 2)?;
            let start = self.device_place(space, addr, size, flags)?;
            let end = start + size;
            let replaced: u64 = space
                .regions
                .overlapping(start, end)
                .map(|r| r.end.min(end) - r.start.max(start))
                .sum();
            if space.mapped_bytes - replaced + size > space.limits.address_space {
                return Err(VmError::LimitExceeded);
            }
            // Perform: what the range held goes first (nothing changed if the kernel refuses).
            if replaced != 0 {
                self.unmap_in(space, start, end)?;
            }
            space.add_region(Region {
                start,
                end,
                prot,
                kind: RegionKind::Device,
                shared,
                object: 0,
                flags: match caching {
                    Caching::Uncached => RegionFlags::empty(),
                    Caching::WriteCombining => RegionFlags::WRITE_COMBINING,
                },
                offset: (base + offset) / PAGE_SIZE,
            });
            Ok(start)
        })
    }

    /// Where a device mapping of `size` bytes goes: `addr` exactly with `FIXED` or
    /// `FIXED_NOREPLACE` (checked as `mmap` checks them), else where `mmap` would place it.
    fn device_place(
        &self,
        space: &AddressSpace,
        addr: u64,
        size: u64,
        flags: MmapFlags,
    ) -> Result<u64, VmError> {
        if !flags.intersects(MmapFlags::FIXED | MmapFlags::FIXED_NOREPLACE) {
            let hint = match addr & !(PAGE_SIZE - 1) {
                0 => 0,
                h => h.max(layout::MIN_ADDR),
            };
            return layout::place(&space.regions, size, hint, &space.placement)
                .ok_or(VmError::OutOfMemory);
        }
        if size > layout::USER_END || addr > layout::USER_END - size {
            return Err(VmError::OutOfMemory);
        }
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(VmError::NotAligned);
        }
        if addr < layout::MIN_ADDR {
            return Err(VmError::NotPermitted);
        }
        if flags.contains(MmapFlags::FIXED_NOREPLACE) && !space.regions.is_free(addr, addr + size) {
            return Err(VmError::AlreadyMapped);
        }
        Ok(addr)
    }

    /// The fault of an allowed access to `page` of device region `region`: the device's page
    /// mapped there, with the region's access and caching.
    pub(crate) fn fill_device(
        &self,
        space: &mut AddressSpace,
        region: &Region,
        page: u64,
    ) -> Result<(), Unresolved> {
        let phys = (region.offset + (page - region.start) / PAGE_SIZE) * PAGE_SIZE;
        let caching = if region.flags.contains(RegionFlags::WRITE_COMBINING) {
            Caching::WriteCombining
        } else {
            Caching::Uncached
        };
        let op = PageOp::MapDevice {
            page,
            phys,
            prot: region.prot,
            caching,
        };
        self.apply(space, &[op]).map_err(Unresolved::from)
    }
}
