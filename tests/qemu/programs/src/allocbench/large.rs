//! Large blocks as mappings of their own, for the allocators allocbench wraps around libvm's
//! `vm_mmap` and `vm_munmap` (the same logic as libvm's allocator, for alignments up to a
//! page: the wrappers leave larger ones to their heap).

use core::ptr::null_mut;
use libvm::{MmapFlags, ProtectionFlags, vm_mmap, vm_munmap};

/// Page size of the mappings.
pub const PAGE: usize = 4096;

/// Bytes of pages covering `size` bytes.
fn pages(size: usize) -> Option<usize> {
    size.max(1).checked_next_multiple_of(PAGE)
}

/// A mapping of pages covering `size` bytes (page aligned), or null.
pub fn map(size: usize) -> *mut u8 {
    let Some(len) = pages(size) else {
        return null_mut();
    };
    vm_mmap(
        null_mut(),
        len,
        ProtectionFlags::READ_WRITE,
        MmapFlags::anonymous_private(),
    )
    .unwrap_or(null_mut())
}

/// Unmaps the block of `size` bytes at `block` (a mapping stays if memd refuses: a leak,
/// never an error).
pub fn unmap(block: *mut u8, size: usize) {
    if let Some(len) = pages(size) {
        let _ = vm_munmap(block, len);
    }
}

/// Resizes the block at `block` from `old` to `new` bytes without moving it: unmapping the
/// pages no longer needed, or mapping the pages right after it if they are free.
pub fn resize(block: *mut u8, old: usize, new: usize) -> bool {
    let (Some(old_len), Some(new_len)) = (pages(old), pages(new)) else {
        return false;
    };
    if new_len <= old_len {
        if new_len < old_len {
            let _ = vm_munmap(block.wrapping_add(new_len), old_len - new_len);
        }
        return true;
    }
    let after = block.wrapping_add(old_len);
    let more = new_len - old_len;
    let flags = MmapFlags::anonymous_private().fixed_noreplace();
    match vm_mmap(after, more, ProtectionFlags::READ_WRITE, flags) {
        Ok(got) if got.addr() == after.addr() => true,
        Ok(got) => {
            let _ = vm_munmap(got, more);
            false
        }
        Err(_) => false,
    }
}
