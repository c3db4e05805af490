//! The simulated physical RAM.
//!
//! ```text
//! 0                          frame 0: never handed out, so physical address 0 is never a frame
//! 0x1000                     `table_frames` frames: the kernel's page-table pool
//! 0x1000 * (1 + table_frames) .. ram_bytes - device_bytes
//!                            memd's frames, given to it as one free range
//! ram_bytes - device_bytes .. ram_bytes
//!                            a device's memory (none by default): never memd's
//! ```
//!
//! RAM starts filled with [`POISON`], as real memory holds whatever it held at boot: a frame
//! that reaches a process without being zeroed shows.

use kernel_shim::paging::{PAGE_SIZE, PhysWindow};
use std::alloc::{self, Layout};
use std::ptr::{self, NonNull};
use x86_64::PhysAddr;

/// The byte RAM holds before anything writes it.
pub const POISON: u8 = 0xA5;

/// The simulated physical RAM: one page-aligned heap allocation, reached only through
/// [`PhysWindow`]s over it.
pub struct PhysMem {
    base: NonNull<u8>,
    layout: Layout,
    table_frames: u64,
    device_bytes: u64,
}

// SAFETY: the RAM is a heap allocation owned by this value and reached only through windows
// (no reference to it is ever made outside kernel-shim's paging module), so moving the owner
// to another thread is fine, and sharing it is race free because every user keeps to the
// window's rule of one thread per bytes at a time:
// - the page tables of a space are changed (`HostKernel::apply`, `destroy_space`) and walked
//   (`Mmu`) only under that space's lock; the kernel template is only read after `new`;
// - a page-table frame belongs to one space at a time, handed over under the pool's lock;
// - data frames are touched by their owner: memd zeroes, copies or fills a frame while no
//   process can reach it, or copies from a frame that is mapped read-only everywhere; the
//   MMU touches a frame for the one thread that simulates a process's access. Two threads
//   storing to the same shared frame at the same moment would race, as they would on real
//   hardware; the testbed's tests do not do that.
unsafe impl Send for PhysMem {}
// SAFETY: as for `Send` above.
unsafe impl Sync for PhysMem {}

impl PhysMem {
    /// `ram_bytes` of RAM, of which `table_frames` frames (after frame 0) are kept for the
    /// kernel's page tables.
    ///
    /// Panics unless `ram_bytes` is a multiple of the page size that leaves memd at least
    /// one frame.
    pub fn new(ram_bytes: u64, table_frames: u64) -> PhysMem {
        PhysMem::with_device(ram_bytes, table_frames, 0)
    }

    /// As [`PhysMem::new`], with the last `device_bytes` (page aligned) a device's memory,
    /// not memd's.
    pub fn with_device(ram_bytes: u64, table_frames: u64, device_bytes: u64) -> PhysMem {
        assert!(
            ram_bytes.is_multiple_of(PAGE_SIZE)
                && device_bytes.is_multiple_of(PAGE_SIZE)
                && table_frames
                    .checked_add(2)
                    .and_then(|frames| frames.checked_mul(PAGE_SIZE))
                    .and_then(|needed| needed.checked_add(device_bytes))
                    .is_some_and(|needed| needed <= ram_bytes),
            "{ram_bytes:#x} bytes of RAM cannot hold frame 0, {table_frames} table frames, \
             {device_bytes:#x} bytes of device and a frame for memd"
        );
        let layout = Layout::from_size_align(ram_bytes as usize, PAGE_SIZE as usize)
            .expect("RAM size fits the address space");
        // SAFETY: the layout's size is not zero (checked above).
        let base = NonNull::new(unsafe { alloc::alloc(layout) })
            .unwrap_or_else(|| alloc::handle_alloc_error(layout));
        // SAFETY: `base` is a fresh allocation of `ram_bytes` bytes.
        unsafe { ptr::write_bytes(base.as_ptr(), POISON, ram_bytes as usize) };
        PhysMem {
            base,
            layout,
            table_frames,
            device_bytes,
        }
    }

    /// A window over all of RAM.
    pub fn window(&self) -> PhysWindow {
        // SAFETY: the allocation is page aligned, `ram_bytes` long, lives as long as `self`
        // (windows are only used while the `PhysMem` is borrowed or held in an `Arc`), and is
        // reached only through windows; the threads that share it keep to the rule stated at
        // the `Sync` impl.
        unsafe { PhysWindow::new(self.base.as_ptr(), self.ram_bytes()) }
    }

    /// Size of RAM in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.layout.size() as u64
    }

    /// The frames kept for the kernel's page-table pool.
    pub fn table_frames(&self) -> impl DoubleEndedIterator<Item = PhysAddr> + use<> {
        (1..=self.table_frames).map(|frame| PhysAddr::new(frame * PAGE_SIZE))
    }

    /// The frames given to memd, as `(start, end)` physical ranges (end exclusive).
    pub fn memd_ranges(&self) -> Vec<(u64, u64)> {
        vec![(
            (1 + self.table_frames) * PAGE_SIZE,
            self.ram_bytes() - self.device_bytes,
        )]
    }

    /// The device's memory, as (first byte, length); `None` without one.
    pub fn device_range(&self) -> Option<(u64, u64)> {
        (self.device_bytes > 0).then(|| (self.ram_bytes() - self.device_bytes, self.device_bytes))
    }
}

impl Drop for PhysMem {
    fn drop(&mut self) {
        // SAFETY: `base` was allocated in `new` with this layout and is freed once.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_zero_the_pool_and_memd_ranges_split_ram() {
        let phys = PhysMem::new(1 << 20, 16);
        let pool: Vec<_> = phys.table_frames().map(PhysAddr::as_u64).collect();
        assert_eq!(pool.len(), 16);
        assert_eq!(pool.first(), Some(&PAGE_SIZE), "frame 0 is not in the pool");
        assert_eq!(phys.memd_ranges(), vec![(17 * PAGE_SIZE, 1 << 20)]);
        assert_eq!(phys.window().size(), 1 << 20);

        let mut byte = [0u8];
        phys.window()
            .read(PhysAddr::new((1 << 20) - 1), &mut byte)
            .unwrap();
        assert_eq!(byte, [POISON], "RAM starts poisoned, not zeroed");
    }

    #[test]
    #[should_panic(expected = "cannot hold")]
    fn ram_must_leave_memd_a_frame() {
        PhysMem::new(4 * PAGE_SIZE, 3);
    }
}
