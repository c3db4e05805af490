//! memd's [`Kernel`] on the metal: kernel-shim's pager system calls (`space_create`,
//! `space_destroy`, `space_apply`, `space_apply1`, `space_reclaim`) and the window onto
//! memd's frames, which the kernel maps read/write at [`WINDOW_BASE`] + physical address
//! before memd starts.

use super::sys::{call, syscall4, syscall5};
use alloc::vec::Vec;
use kernel_shim::abi::{
    self as nr, CACHE_UNCACHED, CACHE_WRITE_COMBINING, OP_DONATE, OP_MAP, OP_MAP_DEVICE,
    OP_MAP_HUGE, OP_PROTECT, OP_SPLIT, OP_UNMAP, UNMAP_PRUNE, WINDOW_BASE,
};
use libvm::ProtectionFlags;
use memd::kernel::{
    BatchError, Caching, FrameAddr, Kernel, KernelError, PAGE_SIZE, PageOp, SpaceId,
};

/// The largest batch encoded on the stack.
const SMALL: usize = 16;

/// The kernel capability of memd on the metal.
pub struct MetalKernel;

fn errno_of(ret: i64) -> KernelError {
    match ret.unsigned_abs() {
        12 => KernelError::OutOfMemory,
        3 => KernelError::NoSuchSpace,
        _ => KernelError::Refused,
    }
}

fn prot_bits(p: ProtectionFlags) -> u64 {
    u64::from(p.bits()) & (nr::PROT_READ | nr::PROT_WRITE | nr::PROT_EXEC)
}

fn encode(op: &PageOp) -> [u64; 4] {
    match *op {
        PageOp::Map { page, frame, prot } => [OP_MAP, page, frame, prot_bits(prot)],
        PageOp::Unmap { page, pages } => [OP_UNMAP, page, pages, 0],
        PageOp::Prune { page, pages } => [OP_UNMAP, page, pages, UNMAP_PRUNE],
        PageOp::Protect { page, pages, prot } => [OP_PROTECT, page, pages, prot_bits(prot)],
        PageOp::Donate { frame } => [OP_DONATE, 0, frame, 0],
        PageOp::MapHuge { page, frame, prot } => [OP_MAP_HUGE, page, frame, prot_bits(prot)],
        PageOp::Split { page } => [OP_SPLIT, page, 0, 0],
        PageOp::MapDevice {
            page,
            phys,
            prot,
            caching,
        } => {
            let cache = match caching {
                Caching::Uncached => CACHE_UNCACHED,
                Caching::WriteCombining => CACHE_WRITE_COMBINING,
            };
            [OP_MAP_DEVICE, page, phys, prot_bits(prot) | cache << 8]
        }
    }
}

/// The window address of `frame` at `offset`.
fn window(frame: FrameAddr, offset: usize) -> *mut u8 {
    (WINDOW_BASE + frame + offset as u64) as *mut u8
}

impl Kernel for MetalKernel {
    fn create_space(&self, root: FrameAddr) -> Result<SpaceId, KernelError> {
        let r = call(nr::SPACE_CREATE, root, 0, 0, 0);
        if r < 0 {
            Err(errno_of(r))
        } else {
            Ok(r as u64)
        }
    }

    fn destroy_space(&self, space: SpaceId) -> Result<(), KernelError> {
        let r = call(nr::SPACE_DESTROY, space, 0, 0, 0);
        if r < 0 { Err(errno_of(r)) } else { Ok(()) }
    }

    fn reclaim_tables(&self, space: SpaceId, out: &mut [FrameAddr]) -> Result<usize, KernelError> {
        let r = call(
            nr::SPACE_RECLAIM,
            space,
            out.as_mut_ptr() as u64,
            out.len() as u64,
            0,
        );
        if r < 0 {
            Err(errno_of(r))
        } else {
            Ok((r as usize).min(out.len()))
        }
    }

    fn apply(&self, space: SpaceId, ops: &[PageOp]) -> Result<u64, BatchError> {
        // A batch of one (most faults, an mprotect of one page) goes in registers.
        if let [op] = ops {
            let [kind, page, a, b] = encode(op);
            let (r, _) = syscall5(nr::SPACE_APPLY1, space, kind, page, a, b);
            return if r < 0 {
                Err(BatchError {
                    done: 0,
                    error: errno_of(r),
                })
            } else {
                Ok(r as u64)
            };
        }
        // One `space_apply` per batch (the kernel flushes the TLB once per call), up to the
        // kernel's largest batch. Small batches (fault-around) are encoded on the stack.
        let mut done = 0;
        let mut spare = 0;
        for chunk in ops.chunks(nr::MAX_BATCH as usize) {
            let mut small = [[0u64; 4]; SMALL];
            let mut large = Vec::new();
            let words: &mut [[u64; 4]] = if chunk.len() <= SMALL {
                &mut small[..chunk.len()]
            } else {
                large.resize(chunk.len(), [0u64; 4]);
                &mut large
            };
            for (w, op) in words.iter_mut().zip(chunk) {
                *w = encode(op);
            }
            let (r, n) = syscall4(
                nr::SPACE_APPLY,
                space,
                words.as_ptr() as u64,
                words.len() as u64,
                0,
            );
            if r < 0 {
                return Err(BatchError {
                    done: done + n as usize,
                    error: errno_of(r),
                });
            }
            done += chunk.len();
            spare = r as u64;
        }
        Ok(spare)
    }

    fn zero_frame(&self, frame: FrameAddr) {
        // SAFETY: `frame` is one of memd's frames (the allocator hands out no other), mapped
        // read/write in the window for good; no process writes it through memd's mapping.
        unsafe { core::ptr::write_bytes(window(frame, 0), 0, PAGE_SIZE as usize) };
    }

    fn copy_frame(&self, dst: FrameAddr, src: FrameAddr) {
        // SAFETY: as `zero_frame`; two distinct frames (memd copies into a fresh one).
        unsafe {
            core::ptr::copy_nonoverlapping(window(src, 0), window(dst, 0), PAGE_SIZE as usize)
        };
    }

    fn write_frame(&self, frame: FrameAddr, offset: usize, bytes: &[u8]) {
        let len = bytes.len().min((PAGE_SIZE as usize).saturating_sub(offset));
        // SAFETY: as `zero_frame`; the write stays inside the frame (clamped above).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), window(frame, offset), len) };
    }

    fn worker(&self) -> usize {
        super::sys::worker()
    }
}
