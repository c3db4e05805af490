//! Large blocks: each an anonymous private mapping of its own, page rounded, for
//! [`crate::VmAllocator`] and for any other allocator built on libvm that wants the same.
//!
//! Giving pages back never fails the caller: when memd refuses an unmap (a split past the
//! process's `max_map_count`, say), the pages are dropped with `MADV_DONTNEED` instead, so
//! their frames go back to memd and only the addresses stay taken, unused; what memd refuses
//! both ways is counted ([`kept_bytes`]).

use crate::flags::{MmapFlags, ProtectionFlags};
use crate::global::{vm_madvise, vm_mmap, vm_mremap, vm_munmap};
use crate::proto::{MADV_DONTNEED, MREMAP_MAYMOVE};
use core::alloc::Layout;
use core::cmp::Ordering;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Page size of the mappings.
pub const PAGE: usize = 4096;

/// Bytes of pages covering `size` bytes.
fn pages(size: usize) -> Option<usize> {
    size.max(1).checked_next_multiple_of(PAGE)
}

/// Bytes memd refused to take back (see [`kept_bytes`]).
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// Bytes of pages libvm's allocator gave back that memd kept resident: a large block's pages
/// stay mapped and unused, a heap block's stay in the heap for its next blocks; still this
/// process's either way (a cost, never another's memory). Zero unless memd refused.
pub fn kept_bytes() -> usize {
    KEPT.load(Relaxed)
}

/// Drops the `len` bytes of pages at `at` (`MADV_DONTNEED`: frames back to memd, zero if
/// touched again), counted in [`kept_bytes`] when memd refuses.
pub(crate) fn drop_pages(at: *mut u8, len: usize) {
    if vm_madvise(at, len, MADV_DONTNEED).is_err() {
        KEPT.fetch_add(len, Relaxed);
    }
}

/// Gives back the `len` bytes of pages at `at`: unmapped, or dropped when memd refuses the
/// unmap.
fn release(at: *mut u8, len: usize) {
    if vm_munmap(at, len).is_err() {
        drop_pages(at, len);
    }
}

/// Maps a block for `layout`: anonymous private pages, aligned by mapping extra and giving the
/// slack on either side back. Null when memd refuses or the size overflows. (Out of line, like
/// the other calls to memd: an allocator's paths stay short.)
#[inline(never)]
pub fn map(layout: Layout) -> *mut u8 {
    let align = layout.align().max(PAGE);
    let Some((len, span)) =
        pages(layout.size()).and_then(|len| Some((len, len.checked_add(align - PAGE)?)))
    else {
        return null_mut();
    };
    let rw = ProtectionFlags::READ_WRITE;
    let Ok(base) = vm_mmap(null_mut(), span, rw, MmapFlags::anonymous_private()) else {
        return null_mut();
    };
    let Some(head) = base
        .addr()
        .checked_next_multiple_of(align)
        .map(|start| start - base.addr())
        .filter(|_| !base.is_null() && base.addr().is_multiple_of(PAGE))
    else {
        // Not a mapping that could be given back page-wise later.
        release(base, span);
        return null_mut();
    };
    let tail = span - head - len;
    if head > 0 {
        release(base, head);
    }
    if tail > 0 {
        release(base.wrapping_add(head + len), tail);
    }
    base.wrapping_add(head)
}

/// Gives back the block of `size` bytes at `block` that [`map`] returned.
#[inline(never)]
pub fn unmap(block: *mut u8, size: usize) {
    if let Some(len) = pages(size) {
        release(block, len);
    }
}

/// Resizes the block at `block` (from [`map`]) from `old_size` to `new_size` bytes without
/// moving it: giving back the pages no longer needed, or growing the mapping over the pages
/// right after it if they are free (`mremap` in place). False when it cannot stay where it is.
fn resize(block: *mut u8, old_size: usize, new_size: usize) -> bool {
    let (Some(old_len), Some(new_len)) = (pages(old_size), pages(new_size)) else {
        return false;
    };
    match new_len.cmp(&old_len) {
        Ordering::Equal => true,
        Ordering::Less => {
            release(block.wrapping_add(new_len), old_len - new_len);
            true
        }
        // Without `MREMAP_MAYMOVE` memd grows the mapping where it is or refuses.
        Ordering::Greater => vm_mremap(block, old_len, new_len, 0).is_ok(),
    }
}

/// Resizes the block at `block` (from [`map`] for `layout`) to `new_size` bytes, keeping its
/// contents: in place when it can ([`resize`]: the pages no longer needed given back, or the
/// mapping grown over free pages right after it), else moved where memd finds room, its pages
/// carried over rather than copied (`mremap` with `MREMAP_MAYMOVE`: the new pages read zero, a
/// move costs no page's contents). A block aligned above a page only resizes in place (a move
/// keeps page alignment only). Returns where the block is now; null when it cannot be resized
/// so, the block then being as it was.
#[inline(never)]
pub fn realloc(block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    if resize(block, layout.size(), new_size) {
        return block;
    }
    let (Some(old_len), Some(new_len)) = (pages(layout.size()), pages(new_size)) else {
        return null_mut();
    };
    if layout.align() > PAGE {
        return null_mut();
    }
    vm_mremap(block, old_len, new_len, MREMAP_MAYMOVE).unwrap_or(null_mut())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VmError;
    use crate::global::{bind_thread, unbind_thread};
    use crate::proto::{self, Cqe, MADVISE, MREMAP, MUNMAP, Request, Sqe};
    use crate::transport::Transport;
    use std::sync::{Arc, Mutex};
    use std::vec::Vec;

    /// A memd that refuses the opcodes in `refused` (with `OutOfMemory`, as a split past
    /// `max_map_count` is refused) and answers 0 to the others, keeping what it was sent.
    struct Refusing {
        refused: &'static [u8],
        sent: Mutex<Vec<Request>>,
    }

    impl Transport for Refusing {
        fn call(&self, request: &Sqe, _bulk: &mut [u8]) -> Cqe {
            self.sent.lock().unwrap().extend(Request::decode(request));
            let result = if self.refused.contains(&request.opcode) {
                Err(VmError::OutOfMemory)
            } else {
                Ok(0)
            };
            proto::encode_reply(request.tag, result)
        }
    }

    fn bind(refused: &'static [u8]) -> Arc<Refusing> {
        let memd = Arc::new(Refusing {
            refused,
            sent: Mutex::new(Vec::new()),
        });
        bind_thread(memd.clone());
        memd
    }

    const AT: usize = 0x4000_0000;

    #[test]
    fn a_refused_unmap_drops_the_pages_instead() {
        let memd = bind(&[MUNMAP]);
        let kept = kept_bytes();
        unmap(core::ptr::with_exposed_provenance_mut(AT), 3 * PAGE - 5);
        assert_eq!(
            *memd.sent.lock().unwrap(),
            [
                Request::Munmap {
                    addr: AT,
                    len: 3 * PAGE
                },
                Request::Madvise {
                    addr: AT,
                    len: 3 * PAGE,
                    advice: MADV_DONTNEED,
                },
            ]
        );
        assert_eq!(kept_bytes(), kept, "memd took the frames back");
        unbind_thread();
    }

    #[test]
    fn pages_memd_keeps_are_counted() {
        let memd = bind(&[MUNMAP, MADVISE]);
        let kept = kept_bytes();
        // Shrinking a 5-page block to 2 gives its last 3 pages back.
        assert!(resize(
            core::ptr::with_exposed_provenance_mut(AT),
            5 * PAGE,
            2 * PAGE
        ));
        assert_eq!(memd.sent.lock().unwrap().len(), 2);
        assert!(kept_bytes() >= kept + 3 * PAGE);
        unbind_thread();
    }

    #[test]
    fn a_block_that_cannot_grow_in_place_moves_unless_aligned_above_a_page() {
        let memd = bind(&[MREMAP]);
        let at = core::ptr::with_exposed_provenance_mut(AT);
        let remap = |flags| Request::Mremap {
            old_addr: AT,
            old_len: 2 * PAGE,
            new_len: 5 * PAGE,
            flags,
            new_addr: 0,
        };
        let (in_place, moving) = (remap(0), remap(MREMAP_MAYMOVE));
        // Page aligned: in place first, then moved; both refused, so null.
        let layout = Layout::from_size_align(2 * PAGE, 8).unwrap();
        assert!(realloc(at, layout, 5 * PAGE - 1).is_null());
        assert_eq!(*memd.sent.lock().unwrap(), [in_place, moving]);
        // Aligned above a page: never moved (a move keeps page alignment only).
        memd.sent.lock().unwrap().clear();
        let aligned = Layout::from_size_align(2 * PAGE, 4 * PAGE).unwrap();
        assert!(realloc(at, aligned, 5 * PAGE).is_null());
        assert_eq!(*memd.sent.lock().unwrap(), [in_place]);
        unbind_thread();
    }

    #[test]
    fn a_taken_unmap_sends_nothing_else() {
        let memd = bind(&[]);
        unmap(core::ptr::with_exposed_provenance_mut(AT), PAGE);
        assert_eq!(
            *memd.sent.lock().unwrap(),
            [Request::Munmap {
                addr: AT,
                len: PAGE
            }]
        );
        unbind_thread();
    }
}
