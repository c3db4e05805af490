//! The pager's system calls: address spaces, page-table batches, threads in other spaces.
//!
//! Only the pager (the first boot program) may make them; every other caller gets EPERM. The
//! pager may map only frames of the physical ranges the kernel handed it at boot (which never
//! include kernel memory or page-table frames), only at user addresses.
//!
//! A batch (`space_apply`) is an array of 4-word operations in the pager's memory:
//!
//! | word 0 | word 1 | word 2 | word 3 | meaning |
//! |---|---|---|---|---|
//! | 1 (map) | page | frame | prot | map `page` to `frame` with `prot` (1 read, 2 write, 4 exec), replacing |
//! | 2 (unmap) | page | pages | 0 | unmap the mapped pages of the range |
//! | 3 (protect) | page | pages | prot | set `prot` on the mapped pages of the range |
//!
//! (The numbers are in [`kernel_shim::abi`].) `space_apply1` takes one operation in registers
//! instead, for the common batch of one (a fault, an `mprotect` of one page).
//!
//! Each operation is checked in full before it is performed; the batch stops at the first
//! bad one (rax = -errno, rdx = operations done). The TLB is flushed once, after the batch.

use super::errno::{E2BIG, EINVAL, ENOMEM, EPERM, ESRCH, Errno};
use super::frames::{FramePool, PAGE};
use super::ipc;
use super::pt::{self, USER_TOP};
use super::space;
use super::state::Kernel;
use super::thread::{Fpu, MsgKind};
use super::trap::TrapFrame;
use super::usercopy;
use kernel_shim::paging::{self, Mapper, PagingError};
use x86_64::{PhysAddr, VirtAddr};

pub use kernel_shim::abi::{BOOTPACK_BASE, MAX_BATCH, MAX_RANGE_PAGES, WINDOW_BASE};
use kernel_shim::abi::{OP_MAP, OP_PROTECT, OP_UNMAP};

fn pager_only(k: &Kernel, t: usize) -> Result<(), Errno> {
    if k.is_pager(k.threads[t].space) {
        Ok(())
    } else {
        Err(EPERM)
    }
}

fn space_of(k: &Kernel, id: u64) -> Result<usize, Errno> {
    space::lookup(&k.spaces, id).ok_or(ESRCH)
}

/// `space_create()`: a new empty space; its id.
pub fn space_create(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let s = k.create_space().ok_or(ENOMEM)?;
    Ok(k.badge(s))
}

/// `space_destroy(id)`: ends the space's threads and frees its tables; not the pager's own.
pub fn space_destroy(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let s = space_of(k, k.threads[t].frame.rdi)?;
    if k.is_pager(s) {
        return Err(EINVAL);
    }
    k.end_space(s);
    Ok(0)
}

fn valid_prot(p: u64) -> Result<u8, Errno> {
    if (1..=7).contains(&p) {
        Ok(p as u8)
    } else {
        Err(EINVAL)
    }
}

fn check_range(page: u64, pages: u64) -> Result<(), Errno> {
    if !page.is_multiple_of(PAGE) || page >= USER_TOP || pages > MAX_RANGE_PAGES {
        return Err(EINVAL);
    }
    if pages > (USER_TOP - page) / PAGE {
        return Err(EINVAL);
    }
    Ok(())
}

// Inlined into both callers: in `space_apply`'s loop a call per operation is a measurable
// part of a batch, and `space_apply1` is nothing but this.
#[inline(always)]
fn apply_one(
    m: &mut Mapper<'_, FramePool>,
    ranges: &[(u64, u64)],
    op: [u64; 4],
) -> Result<(), Errno> {
    let [kind, page, a, b] = op;
    match kind {
        OP_MAP => {
            check_range(page, 1)?;
            let p = valid_prot(b)?;
            let frame = a;
            let ours = ranges
                .iter()
                .any(|&(start, len)| frame >= start && frame - start < len);
            if !frame.is_multiple_of(PAGE) || !ours {
                return Err(EPERM);
            }
            m.remap(page, PhysAddr::new(frame), pt::flags(p))
                .map(drop)
                .map_err(paging_errno)
        }
        OP_UNMAP => {
            check_range(page, a)?;
            m.unmap_range(page, a, |_, _| ())
                .map(drop)
                .map_err(paging_errno)
        }
        OP_PROTECT => {
            check_range(page, a)?;
            let p = valid_prot(b)?;
            if a == 1 {
                // One page: one walk down to its entry; an absent page is skipped.
                return match m.protect(page, pt::flags(p)) {
                    Ok(_) | Err(PagingError::NotMapped) => Ok(()),
                    Err(e) => Err(paging_errno(e)),
                };
            }
            m.protect_range(page, a, pt::flags(p))
                .map(drop)
                .map_err(paging_errno)
        }
        _ => Err(EINVAL),
    }
}

fn paging_errno(e: PagingError) -> Errno {
    match e {
        PagingError::OutOfTableFrames => ENOMEM,
        _ => EINVAL,
    }
}

/// `space_apply(id, ops, count)`: applies a batch; 0, or -errno with rdx = operations done.
/// The operations are read from the pager's memory 16 at a time; the TLB is flushed once.
pub fn space_apply(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    let (ops, count) = (f.rsi, f.rdx);
    if count > MAX_BATCH {
        return Err(E2BIG);
    }
    usercopy::check_range(ops, count * 32)?;
    let mine = k.spaces[k.threads[t].space].root;
    let root = k.spaces[s].root;
    let ranges = k.pager_ranges;
    let ranges = &ranges[..k.pager_ranges_len];
    let mut m = pt::mapper(&mut k.frames, root);
    let mut done = 0;
    let mut result = Ok(0);
    'batch: while done < count {
        let n = (count - done).min(16) as usize;
        let mut bytes = [0u8; 16 * 32];
        if let Err(e) = usercopy::copy_in(mine, ops + done * 32, &mut bytes[..n * 32]) {
            result = Err(e);
            break;
        }
        for op in bytes[..n * 32].chunks_exact(32) {
            let mut words = [0u64; 4];
            for (w, b) in words.iter_mut().zip(op.chunks_exact(8)) {
                *w = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            }
            if let Err(e) = apply_one(&mut m, ranges, words) {
                result = Err(e);
                break 'batch;
            }
            done += 1;
        }
    }
    pt::finish(m, root);
    k.threads[t].frame.rdx = done;
    result
}

/// `space_apply1(id, kind, page, a, b)`: [`space_apply`] of the one operation `[kind, page,
/// a, b]` passed in registers (rsi, rdx, r10, r8), with no batch to copy in: 0, or -errno;
/// rdx = operations done (0 or 1). The same checks, the same flush. A protect of one page
/// (an `mprotect` of one page) goes straight to its entry, with no batch ([`space_protect1`]).
#[inline(always)]
pub fn space_apply1(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    let f = &k.threads[t].frame;
    if f.rsi == OP_PROTECT && f.r10 == 1 {
        space_protect1(k, t)
    } else {
        space_apply1_batch(k, t)
    }
}

/// [`space_apply1`] of any operation, as a batch of one.
#[inline(never)]
fn space_apply1_batch(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    let op = [f.rsi, f.rdx, f.r10, f.r8];
    let root = k.spaces[s].root;
    let ranges = &k.pager_ranges[..k.pager_ranges_len];
    let mut m = pt::mapper(&mut k.frames, root);
    let result = apply_one(&mut m, ranges, op);
    pt::finish(m, root);
    k.threads[t].frame.rdx = u64::from(result.is_ok());
    result.map(|()| 0)
}

/// [`space_apply1`] of `[OP_PROTECT, page, 1, prot]`, as [`apply_one`] performs it — the same
/// checks, an absent page skipped — with one walk to the page's entry and, if the space is
/// active, an `invlpg` of that page: no batch, no flush record.
#[inline(never)]
fn space_protect1(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    let root = k.spaces[s].root;
    let (page, prot) = (f.rdx, f.r8);
    let result = check_range(page, 1).and_then(|()| {
        let p = valid_prot(prot)?;
        let flags = pt::flags(p);
        match paging::page_table_protect_page(pt::window(), PhysAddr::new(root), page, flags) {
            Ok(_) => {
                if pt::active() == root {
                    x86_64::instructions::tlb::flush(VirtAddr::new(page));
                }
                Ok(())
            }
            Err(PagingError::NotMapped) => Ok(()),
            Err(e) => Err(paging_errno(e)),
        }
    });
    k.threads[t].frame.rdx = u64::from(result.is_ok());
    result.map(|()| 0)
}

/// `thread_start(space, rip, rsp, arg)`: a new thread in another space, rdi = `arg`.
pub fn thread_start(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    if f.rsi >= USER_TOP || f.rdx >= USER_TOP {
        return Err(EINVAL);
    }
    let mut frame = TrapFrame::user(f.rsi, f.rdx);
    frame.rdi = f.r10;
    let n = k.create_thread(s, frame, Fpu::initial()).ok_or(ENOMEM)?;
    Ok(k.thread_id(n))
}

/// `thread_clone(token, space, w0)`: for fork. A new thread in `space` with the registers and
/// FPU state of the caller behind `token` (which waits for the pager's reply); in the clone
/// the call returns status 0 and reply words (`w0`, 0).
pub fn thread_clone(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let c = ipc::replied_thread(k, t, f.rdi)?;
    if k.threads[c].kind != MsgKind::Call {
        return Err(EINVAL);
    }
    let s = space_of(k, f.rsi)?;
    if k.fpu_owner == Some(c) {
        k.threads[c].fpu.save();
    }
    let mut frame = k.threads[c].frame;
    frame.rax = 0;
    frame.rdi = f.rdx;
    frame.rsi = 0;
    let fpu = k.threads[c].fpu;
    let n = k.create_thread(s, frame, fpu).ok_or(ENOMEM)?;
    Ok(k.thread_id(n))
}

/// `pager_info(buf, len)`: writes `[window base, count, (start, length) * count]` (u64s) into
/// `buf`; returns the count of ranges.
pub fn pager_info(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let n = k.pager_ranges_len;
    let mut words = [0u64; 2 + 2 * super::state::MAX_PAGER_RANGES];
    words[0] = WINDOW_BASE;
    words[1] = n as u64;
    for (i, &(start, len)) in k.pager_ranges().iter().enumerate() {
        words[2 + 2 * i] = start;
        words[3 + 2 * i] = len;
    }
    let need = (2 + 2 * n) * 8;
    if f.rsi < need as u64 {
        return Err(EINVAL);
    }
    let mut bytes = [0u8; (2 + 2 * super::state::MAX_PAGER_RANGES) * 8];
    for (i, w) in words.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let root = k.spaces[k.threads[t].space].root;
    usercopy::copy_out(root, f.rdi, &bytes[..need])?;
    Ok(n as u64)
}

/// Maps the pager's ranges into its space at [`WINDOW_BASE`] (read/write, never executable).
pub fn map_window(k: &mut Kernel, s: usize) -> bool {
    let root = k.spaces[s].root;
    let ranges = k.pager_ranges;
    let mut m = pt::mapper(&mut k.frames, root);
    let flags = pt::flags(pt::prot::READ | pt::prot::WRITE);
    let mut ok = true;
    for &(start, len) in &ranges[..k.pager_ranges_len] {
        for off in (0..len).step_by(PAGE as usize) {
            let pa = PhysAddr::new(start + off);
            ok &= m.map(WINDOW_BASE + start + off, pa, flags).is_ok();
        }
    }
    pt::finish(m, root);
    ok
}

/// `bootpack_info()`: bytes of the boot pack mapped read-only at [`BOOTPACK_BASE`] in the
/// pager (0 when the kernel loaded the programs itself).
pub fn bootpack_info(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    Ok(k.bootpack_len)
}

/// `page_table_frames()`: kernel-pool frames in use, less the images of boot programs: the
/// page tables of every space (and of the pager's own).
pub fn page_table_frames(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let images: usize = k
        .spaces
        .iter()
        .filter(|s| s.live)
        .filter_map(|s| s.image.map(|(_, n)| n))
        .sum();
    Ok(k.frames.in_use().saturating_sub(images) as u64)
}

/// Maps the boot pack `[start, start + len)` (physical, reserved by the kernel, never in the
/// pager's ranges) read-only at [`BOOTPACK_BASE`] in space `s`.
pub fn map_bootpack(k: &mut Kernel, s: usize, start: u64, len: u64) -> bool {
    let root = k.spaces[s].root;
    let first = start & !(PAGE - 1);
    let end = (start + len).next_multiple_of(PAGE);
    let mut m = pt::mapper(&mut k.frames, root);
    let flags = pt::flags(pt::prot::READ);
    let mut ok = start == first;
    for pa in (first..end).step_by(PAGE as usize) {
        ok &= m
            .map(BOOTPACK_BASE + (pa - first), PhysAddr::new(pa), flags)
            .is_ok();
    }
    pt::finish(m, root);
    if ok {
        k.bootpack_len = len;
    }
    ok
}
