//! Page tables as memd pays for them: every page-table frame of a process's space is one of
//! memd's own frames, donated to the kernel for that space and charged to the process (its
//! memory, its bookkeeping, its weight when memory runs out), so no process can exhaust a pool
//! the kernel shares among all of them.
//!
//! Every batch goes through [`Memd::apply`]: before the kernel call it donates what the
//! batch's maps may need beyond the space's spare table frames
//! ([`kernel_shim::paging::map_table_bound`]: three for a map into a new 2 MiB, none for the
//! next map of the same 2 MiB), so the kernel, which checks a batch whole before it performs
//! any of it, never stops a batch half-way for want of a table. Donations come from memd's
//! free frames; with none left the batch is refused before the kernel is asked, and nothing
//! changes. After the call the space keeps what was not used as spare frames for its next
//! faults; beyond [`MAX_SPARE`] (tables a prune gave back) memd takes them back, down to
//! [`KEEP_SPARE`]. When the space is destroyed, every frame donated to it is free again.

use crate::daemon::Memd;
use crate::kernel::{BatchError, FrameAddr, Kernel, KernelError, PageOp, PageOps};
use crate::space::AddressSpace;
use alloc::collections::BTreeSet;
use core::sync::atomic::Ordering;
use kernel_shim::paging::map_table_bound;

/// Spare table frames a space keeps when memd takes the others back: enough for a map
/// anywhere.
pub const KEEP_SPARE: u64 = 3;
/// Spare table frames above which memd takes them back (down to [`KEEP_SPARE`]).
pub const MAX_SPARE: u64 = 8;

/// The page-table frames of one space.
#[derive(Clone, Debug, Default)]
pub struct SpaceTables {
    /// Every frame donated to the space and not taken back: its tables (the PML4 among them)
    /// and its spare frames.
    pub frames: BTreeSet<FrameAddr>,
    /// How many of them are spare, as the kernel said after the last batch.
    pub spare: u64,
}

impl SpaceTables {
    /// Frames donated to the space and not taken back.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is donated (the space does not exist in the kernel).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// The tables the maps of `ops` may need, as the kernel's check counts them at most.
pub fn table_bound(ops: &[PageOp]) -> u64 {
    let mut prev = None;
    let mut need = 0;
    for op in ops {
        match *op {
            PageOp::Map { page, .. } | PageOp::MapDevice { page, .. } => {
                need += map_table_bound(prev, page);
                prev = Some(page);
            }
            // A PDPT and a PD at most; a page table.
            PageOp::MapHuge { .. } => need += 2,
            PageOp::Split { .. } => need += 1,
            _ => {}
        }
    }
    need
}

/// Why [`Memd::apply`] did not apply a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyError {
    /// memd had no free frame to donate for the batch's tables: nothing changed.
    NoFrames,
    /// The kernel refused: nothing changed, except for a batch larger than one kernel call,
    /// whose first `done` operations (whole calls) were applied.
    Kernel(BatchError),
}

impl ApplyError {
    /// Operations applied before the failure.
    pub fn done(&self) -> usize {
        match self {
            ApplyError::NoFrames => 0,
            ApplyError::Kernel(e) => e.done,
        }
    }
}

impl<K: Kernel> Memd<K> {
    /// Applies `ops` to the page tables of `space`, donating first the table frames its maps
    /// may need (see [`ApplyError`] for what a failure leaves).
    pub(crate) fn apply(&self, space: &mut AddressSpace, ops: &[PageOp]) -> Result<(), ApplyError> {
        if ops.is_empty() {
            return Ok(());
        }
        let deficit = table_bound(ops).saturating_sub(space.tables.spare);
        if deficit == 0 {
            let spare = self
                .kernel
                .apply(space.space, ops)
                .map_err(ApplyError::Kernel)?;
            self.spare_tables(space, spare);
            return Ok(());
        }
        let mut batch = PageOps::new();
        for _ in 0..deficit {
            let Some(frame) = self.alloc_frame() else {
                let frames = &self.frames;
                for op in batch.iter() {
                    if let PageOp::Donate { frame } = *op {
                        frames.drop_ref(frame);
                    }
                }
                return Err(ApplyError::NoFrames);
            };
            batch.push(PageOp::Donate { frame });
        }
        batch.extend(ops.iter().copied());
        if batch.is_incomplete() {
            let frames = &self.frames;
            for op in batch.iter() {
                if let PageOp::Donate { frame } = *op {
                    frames.drop_ref(frame);
                }
            }
            return Err(ApplyError::NoFrames);
        }
        let result = self.kernel.apply(space.space, &batch);
        // The donations lead the batch: those within `done` were taken.
        let taken = match result {
            Ok(_) => deficit as usize,
            Err(e) => e.done.min(deficit as usize),
        };
        {
            let frames = &self.frames;
            for (i, op) in batch[..deficit as usize].iter().enumerate() {
                if let PageOp::Donate { frame } = *op {
                    if i < taken {
                        space.tables.frames.insert(frame);
                    } else {
                        frames.drop_ref(frame);
                    }
                }
            }
        }
        self.table_frames.fetch_add(taken as u64, Ordering::Relaxed);
        match result {
            Ok(spare) => {
                self.spare_tables(space, spare);
                Ok(())
            }
            Err(e) => Err(ApplyError::Kernel(BatchError {
                done: e.done.saturating_sub(taken),
                error: e.error,
            })),
        }
    }

    /// Records the spare table frames of `space` after a batch (the kernel's count), and
    /// takes them back down to [`KEEP_SPARE`] when there are more than [`MAX_SPARE`] (tables
    /// a prune gave back). A refusal to give them back leaves them spare (still the space's).
    fn spare_tables(&self, space: &mut AddressSpace, spare: u64) {
        space.tables.spare = spare;
        if spare <= MAX_SPARE {
            return;
        }
        let keep = KEEP_SPARE;
        let mut out = [0 as FrameAddr; 64];
        while space.tables.spare > keep {
            let want = ((space.tables.spare - keep) as usize).min(out.len());
            let Ok(n) = self.kernel.reclaim_tables(space.space, &mut out[..want]) else {
                return;
            };
            if n == 0 {
                // The kernel has none left: believe the kernel.
                space.tables.spare = 0;
                return;
            }
            let frames = &self.frames;
            let mut back = 0;
            for &frame in &out[..n] {
                // Only a frame memd donated to this space is taken back.
                if space.tables.frames.remove(&frame) {
                    frames.drop_ref(frame);
                    back += 1;
                }
            }
            space.tables.spare = space.tables.spare.saturating_sub(n as u64);
            self.table_frames.fetch_sub(back, Ordering::Relaxed);
        }
    }

    /// A new kernel space with a PML4 donated from memd's frames, and its tables' record.
    pub(crate) fn create_space(&self) -> Result<(u64, SpaceTables), KernelError> {
        let root = self.alloc_frame().ok_or(KernelError::OutOfMemory)?;
        match self.kernel.create_space(root) {
            Ok(space) => {
                let mut tables = SpaceTables::default();
                tables.frames.insert(root);
                self.table_frames.fetch_add(1, Ordering::Relaxed);
                Ok((space, tables))
            }
            Err(e) => {
                self.frames.drop_ref(root);
                Err(e)
            }
        }
    }

    /// Keeps `frames` frames out of use for good (they may still be mapped somewhere).
    pub(crate) fn quarantine(&self, frames: u64) {
        self.quarantined.fetch_add(frames, Ordering::Relaxed);
    }

    /// Destroys the kernel space of `space`. Once the kernel has confirmed, every frame
    /// donated to it and every frame it mapped is free to be reused: `true`. If the kernel
    /// refused, nothing of the space may be reused (its frames may still be mapped): they are
    /// kept out of use for good (counted as quarantined), and `false`.
    pub(crate) fn destroy_space(&self, space: &mut AddressSpace) -> bool {
        let donated = core::mem::take(&mut space.tables);
        let n = donated.len() as u64;
        self.table_frames.fetch_sub(n, Ordering::Relaxed);
        if self.kernel.destroy_space(space.space).is_err() {
            self.quarantine(n + space.pages.len() as u64);
            return false;
        }
        let frames = &self.frames;
        for frame in donated.frames {
            frames.drop_ref(frame);
        }
        true
    }
}
