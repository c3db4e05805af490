//! Checked access to user memory. A user pointer and length are an *allegation* until
//! checked: the range must lie in the user half without wrapping, and every page must be
//! mapped for ring 3 with the access needed. The kernel never dereferences a user address: it
//! translates each page through the space's tables and copies through the physical window.

use super::boot::phys_to_virt;
use super::errno::{EFAULT, Errno};
use super::frames::PAGE;
use super::pt::{self, USER_TOP, prot};

/// Checks that `[addr, addr + len)` lies in the user half.
pub fn check_range(addr: u64, len: u64) -> Result<(), Errno> {
    match addr.checked_add(len) {
        Some(end) if end <= USER_TOP => Ok(()),
        _ => Err(EFAULT),
    }
}

/// Calls `f(kernel_pointer, offset, length)` for each page-bounded piece of the user range,
/// after checking that the page is mapped with `need`.
fn pieces(
    root: u64,
    addr: u64,
    len: u64,
    need: u8,
    mut f: impl FnMut(*mut u8, usize, usize),
) -> Result<(), Errno> {
    check_range(addr, len)?;
    let mut done = 0u64;
    while done < len {
        let va = addr + done;
        let page = va & !(PAGE - 1);
        let (frame, have) = pt::translate(root, page).ok_or(EFAULT)?;
        if have & need != need {
            return Err(EFAULT);
        }
        let off = va - page;
        let n = (PAGE - off).min(len - done);
        f(
            phys_to_virt(frame + off) as *mut u8,
            done as usize,
            n as usize,
        );
        done += n;
    }
    Ok(())
}

/// Copies user memory at `addr` of the space `root` into `buf`.
pub fn copy_in(root: u64, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    pieces(root, addr, buf.len() as u64, prot::READ, |p, off, n| {
        // SAFETY: `p` points at `n` bytes of a user frame inside the window (checked by
        // `pieces`); `buf[off..off + n]` is in bounds. Frames and kernel memory never overlap.
        unsafe { core::ptr::copy_nonoverlapping(p, buf[off..off + n].as_mut_ptr(), n) }
    })
}

/// Copies `buf` to user memory at `addr` of the space `root` (needs write access).
pub fn copy_out(root: u64, addr: u64, buf: &[u8]) -> Result<(), Errno> {
    pieces(root, addr, buf.len() as u64, prot::WRITE, |p, off, n| {
        // SAFETY: as in `copy_in`, in the other direction.
        unsafe { core::ptr::copy_nonoverlapping(buf[off..off + n].as_ptr(), p, n) }
    })
}

/// Checks that every page of `[addr, addr + len)` of the space `root` is writable by the user,
/// without copying anything.
pub fn check_writable(root: u64, addr: u64, len: u64) -> Result<(), Errno> {
    pieces(root, addr, len, prot::WRITE, |_, _, _| {})
}

/// Copies `len` bytes from one space to another, in chunks through a kernel buffer.
pub fn copy_between(
    src_root: u64,
    src: u64,
    dst_root: u64,
    dst: u64,
    len: u64,
) -> Result<(), Errno> {
    check_range(src, len)?;
    check_range(dst, len)?;
    let mut buf = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        copy_in(src_root, src + done, &mut buf[..n])?;
        copy_out(dst_root, dst + done, &buf[..n])?;
        done += n as u64;
    }
    Ok(())
}
