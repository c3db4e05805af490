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
//! | 2 (unmap) | page | pages | 0, or 1 (`UNMAP_PRUNE`) | unmap the mapped pages of the range; the page tables stay, or with 1 every table under the range that then maps nothing is freed (to the space's reserve) |
//! | 3 (protect) | page | pages | prot | set `prot` on the mapped pages of the range |
//! | 4 (donate) | 0 | frame | 0 | give `frame` to the space's reserve of page-table frames |
//! | 5 (map huge) | page | frame | prot | map the 2 MiB at `page` to the 512 frames from `frame` as one huge page (both 2 MiB aligned), replacing a huge page; refused where a page table is |
//! | 6 (split) | page | 0 | 0 | replace the huge page at `page` by the 512 pages of a new page table, the same frames and access |
//!
//! A huge page changes whole: an unmap or protect that covers part of one, and a map of a
//! 4 KiB page inside one, are refused (the batch changes nothing); split it first, in a batch
//! before (the checks read the tables as they stand before the batch).
//!
//! (The numbers are in [`kernel_shim::abi`].) `space_apply1` takes one operation in registers
//! instead, for the common batch of one (a fault, an `mprotect` of one page).
//!
//! Decode, then perform: every operation of a batch is checked in full, and the page tables
//! its maps need are counted against the space's spare table frames and the batch's
//! donations, before anything changes; a refused batch changes nothing (rax = -errno, rdx =
//! 0). Ranges may be of any size inside what may be mapped (below [`MAP_TOP`], the top page
//! of the user half excepted). The TLB is flushed once, after the batch. Page tables of the
//! spaces the pager creates are frames it donated ([`super::tables`]).

use super::devices;
use super::errno::{E2BIG, EINVAL, ENODEV, ENOMEM, EPERM, ESRCH, EXCLUSIVE, Errno};
use super::frames::PAGE;
use super::ipc;
use super::lock::{self, Guard, Mode};
use super::pt::{self, MAP_TOP, USER_TOP};
use super::space;
use super::state::Kernel;
use super::tables::{self, Reserve, TableMarks, Tables};
use super::thread::{Fpu, MsgKind};
use super::trap::TrapFrame;
use super::usercopy;
use core::mem::MaybeUninit;
use kernel_shim::paging::{self, Mapper, PageTableFlags, PagingError, TableAlloc, TableNeed};
use x86_64::PhysAddr;

pub use kernel_shim::abi::{BOOTPACK_BASE, MAX_BATCH, MAX_RECLAIM, WINDOW_BASE};
use kernel_shim::abi::{
    OP_DONATE, OP_MAP, OP_MAP_DEVICE, OP_MAP_HUGE, OP_PROTECT, OP_SPLIT, OP_UNMAP, UNMAP_PRUNE,
};
use kernel_shim::paging::HUGE_PAGE_SIZE;

/// EPERM unless thread `t` is the pager's.
pub fn pager_only(k: &Kernel, t: usize) -> Result<(), Errno> {
    if k.is_pager(k.threads[t].space) {
        Ok(())
    } else {
        Err(EPERM)
    }
}

fn space_of(k: &Kernel, id: u64) -> Result<usize, Errno> {
    space::lookup(&k.spaces, id).ok_or(ESRCH)
}

/// The lock of space `s`'s tables, for a change in this entry. A space whose tables come
/// from the kernel pool (the pager's own, a boot program's) changes only in exclusive
/// entries ([`EXCLUSIVE`] otherwise): so the pager's tables, which shared entries walk to read
/// batches, never change under them.
fn lock_tables(k: &Kernel, s: usize) -> Result<Guard<'_, Option<Reserve>>, Errno> {
    let tables = k.spaces[s].tables.lock();
    if tables.is_none() && lock::mode() != Mode::Exclusive {
        return Err(EXCLUSIVE);
    }
    Ok(tables)
}

/// Thread `t`'s rdx (`t` runs here): the count of operations done, for the pager.
fn set_done(k: &Kernel, t: usize, done: u64) {
    // SAFETY: `t` runs here, so its slot is this entry's; the reference ends here.
    unsafe { k.threads.slot(t) }.frame.rdx = done;
}

/// `space_create(root)`: a new empty space whose PML4 is the donated frame `root` (see
/// [`super::tables`]); its id.
pub fn space_create(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let root = k.threads[t].frame.rdi;
    check_donation(k, root)?;
    let s = k.create_donated_space(root).ok_or(ENOMEM)?;
    Ok(k.badge(s))
}

/// `space_destroy(id)`: ends the space's threads and frees its tables (the donated ones are
/// the pager's again when the call returns); not the pager's own.
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

/// A range of `pages` pages at `page`, inside what may be mapped (below [`MAP_TOP`]), of any
/// size: the paging code skips absent tables whole.
fn check_range(page: u64, pages: u64) -> Result<(), Errno> {
    if !page.is_multiple_of(PAGE) || page >= MAP_TOP || pages > (MAP_TOP - page) / PAGE {
        return Err(EINVAL);
    }
    Ok(())
}

/// Whether `frame` is one of the pager's frames (page aligned, in its ranges).
fn pagers_frame(ranges: &[(u64, u64)], frame: u64) -> bool {
    frame.is_multiple_of(PAGE)
        && ranges
            .iter()
            .any(|&(start, len)| frame >= start && frame - start < len)
}

/// A frame the pager may donate or map: one of its own, not a page table.
fn check_frame(ranges: &[(u64, u64)], marks: &TableMarks, frame: u64) -> Result<(), Errno> {
    if !pagers_frame(ranges, frame) || marks.is_marked(frame) {
        return Err(EPERM);
    }
    Ok(())
}

fn check_donation(k: &Kernel, frame: u64) -> Result<(), Errno> {
    check_frame(k.pager_ranges(), &k.table_marks, frame)
}

/// A 2 MiB-aligned range of 2 MiB inside what may be mapped.
fn check_huge(page: u64) -> Result<(), Errno> {
    if !page.is_multiple_of(HUGE_PAGE_SIZE) {
        return Err(EINVAL);
    }
    check_range(page, HUGE_PAGE_SIZE / PAGE)
}

/// 512 frames from `frame` (2 MiB aligned) the pager may map: in one of its ranges, none a
/// page table.
fn check_huge_frames(ranges: &[(u64, u64)], marks: &TableMarks, frame: u64) -> Result<(), Errno> {
    if !frame.is_multiple_of(HUGE_PAGE_SIZE) {
        return Err(EINVAL);
    }
    let inside = ranges
        .iter()
        .any(|&(start, len)| frame >= start && frame - start <= len.saturating_sub(HUGE_PAGE_SIZE));
    if !inside || (0..HUGE_PAGE_SIZE / PAGE).any(|i| marks.is_marked(frame + i * PAGE)) {
        return Err(EPERM);
    }
    Ok(())
}

/// One operation of a batch, checked.
#[derive(Clone, Copy)]
enum Op {
    Map {
        page: u64,
        frame: u64,
        flags: PageTableFlags,
    },
    Unmap {
        page: u64,
        pages: u64,
        prune: bool,
    },
    Protect {
        page: u64,
        pages: u64,
        flags: PageTableFlags,
    },
    Donate {
        frame: u64,
    },
    MapHuge {
        page: u64,
        frame: u64,
        flags: PageTableFlags,
    },
    Split {
        page: u64,
    },
}

/// Checks the operation `[kind, page, a, b]` in full: user range, protection, and a frame the
/// pager may map or donate (its own, never a page table), or a page of a device range.
#[inline(always)]
fn decode(k: &Kernel, op: [u64; 4]) -> Result<Op, Errno> {
    let (ranges, marks) = (k.pager_ranges(), &k.table_marks);
    let [kind, page, a, b] = op;
    match kind {
        OP_MAP => {
            check_range(page, 1)?;
            let flags = pt::flags(valid_prot(b)?);
            check_frame(ranges, marks, a)?;
            Ok(Op::Map {
                page,
                frame: a,
                flags,
            })
        }
        OP_UNMAP => {
            check_range(page, a)?;
            let prune = match b {
                0 => false,
                UNMAP_PRUNE => true,
                _ => return Err(EINVAL),
            };
            Ok(Op::Unmap {
                page,
                pages: a,
                prune,
            })
        }
        OP_PROTECT => {
            check_range(page, a)?;
            let flags = pt::flags(valid_prot(b)?);
            Ok(Op::Protect {
                page,
                pages: a,
                flags,
            })
        }
        OP_DONATE => {
            check_frame(ranges, marks, a)?;
            Ok(Op::Donate { frame: a })
        }
        OP_MAP_HUGE => {
            check_huge(page)?;
            let flags = pt::flags(valid_prot(b)?);
            check_huge_frames(ranges, marks, a)?;
            Ok(Op::MapHuge {
                page,
                frame: a,
                flags,
            })
        }
        OP_SPLIT => {
            check_huge(page)?;
            Ok(Op::Split { page })
        }
        OP_MAP_DEVICE => {
            check_range(page, 1)?;
            let cache = devices::cache_flags(b >> 8).ok_or(EINVAL)?;
            let flags = pt::flags(valid_prot(b & 0xFF)?) | cache;
            if !k.devices.contains_page(a) {
                return Err(EPERM);
            }
            Ok(Op::Map {
                page,
                frame: a,
                flags,
            })
        }
        _ => Err(EINVAL),
    }
}

/// Performs one checked operation other than a donation.
#[inline(always)]
fn perform<A: TableAlloc>(m: &mut Mapper<'_, A>, op: Op) -> Result<(), Errno> {
    match op {
        Op::Map { page, frame, flags } => m
            .remap(page, PhysAddr::new(frame), flags)
            .map(drop)
            .map_err(paging_errno),
        Op::Unmap {
            page,
            pages,
            prune: false,
        } => m
            .unmap_range(page, pages, |_, _| ())
            .map(drop)
            .map_err(paging_errno),
        Op::Unmap {
            page,
            pages,
            prune: true,
        } => m
            .unmap_and_prune(page, pages, |_, _| ())
            .map(drop)
            .map_err(paging_errno),
        Op::MapHuge { page, frame, flags } => m
            .map_huge(page, PhysAddr::new(frame), flags)
            .map(drop)
            .map_err(paging_errno),
        Op::Split { page } => m.split_huge(page).map_err(paging_errno),
        Op::Protect { page, pages, flags } => {
            if pages == 1 {
                // One page: one walk down to its entry; an absent page is skipped.
                return match m.protect(page, flags) {
                    Ok(_) | Err(PagingError::NotMapped) => Ok(()),
                    Err(e) => Err(paging_errno(e)),
                };
            }
            m.protect_range(page, pages, flags)
                .map(drop)
                .map_err(paging_errno)
        }
        // Taken before the batch's other operations.
        Op::Donate { .. } => Ok(()),
    }
}

fn paging_errno(e: PagingError) -> Errno {
    match e {
        PagingError::OutOfTableFrames => ENOMEM,
        _ => EINVAL,
    }
}

/// The most operations read from the pager's memory at once.
const CHUNK: usize = 16;

/// Up to [`CHUNK`] items, written one by one or copied in, without zeroing the rest first
/// (under `-icount` every word a `memset` writes is an instruction, and a batch's buffers are
/// most of a small call's work otherwise).
struct Slots<T: Copy, const N: usize> {
    items: [MaybeUninit<T>; N],
    n: usize,
}

impl<T: Copy, const N: usize> Slots<T, N> {
    fn new() -> Self {
        Slots {
            items: [const { MaybeUninit::uninit() }; N],
            n: 0,
        }
    }

    /// Appends `item` (ignored when full: the callers never push more than `N`).
    fn push(&mut self, item: T) {
        if let Some(slot) = self.items.get_mut(self.n) {
            slot.write(item);
            self.n += 1;
        }
    }

    /// The items written.
    fn as_slice(&self) -> &[T] {
        // SAFETY: the first `n` slots were written (`push`, or `read_ops` which sets `n` only
        // after the copy succeeded), and `MaybeUninit<T>` has `T`'s layout.
        unsafe { core::slice::from_raw_parts(self.items.as_ptr() as *const T, self.n) }
    }
}

/// Operations copied from the pager's memory.
type Ops = Slots<[u64; 4], CHUNK>;

/// Where a batch's operations are: a few copied in already (one in registers, or a batch of
/// up to [`CHUNK`]), or `count` in the pager's memory, read [`CHUNK`] at a time on each pass.
enum Batch<'a> {
    Copied(&'a Ops),
    InMemory { root: u64, ops: u64, count: u64 },
}

impl Batch<'_> {
    /// Calls `f` with every operation in order; stops at the first error.
    #[inline(always)]
    fn each(&self, mut f: impl FnMut([u64; 4]) -> Result<(), Errno>) -> Result<(), Errno> {
        let (root, ops, count) = match *self {
            Batch::Copied(copied) => {
                return copied.as_slice().iter().try_for_each(|&op| f(op));
            }
            Batch::InMemory { root, ops, count } => (root, ops, count),
        };
        let mut at = 0;
        while at < count {
            let n = (count - at).min(CHUNK as u64) as usize;
            let mut chunk = Ops::new();
            read_ops(root, ops + at * 32, n, &mut chunk)?;
            chunk.as_slice().iter().try_for_each(|&op| f(op))?;
            at += n as u64;
        }
        Ok(())
    }
}

/// Copies `n` (at most [`CHUNK`]) operations from `addr` in the pager's space `root` into
/// `out`, which holds them once the copy succeeded.
fn read_ops(root: u64, addr: u64, n: usize, out: &mut Ops) -> Result<(), Errno> {
    let n = n.min(CHUNK);
    // SAFETY: the first `n` slots are `n * 32` bytes of `[u64; 4]`s, which any bytes make
    // valid; the kernel runs on x86_64, whose u64s are little-endian as the batch's words are.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(out.items.as_mut_ptr() as *mut u8, n * 32) };
    usercopy::copy_in(root, addr, bytes)?;
    out.n = n;
    Ok(())
}

/// Applies `batch` to space `s`, decode then perform. Decode: every operation is checked, and
/// the tables each map needs counted ([`TableNeed`]) against the space's spare frames and the
/// donations before it in the batch (or the kernel pool), so a refused batch changes nothing.
/// Perform: the operations in order, a donation adding its frame to the reserve, and one TLB
/// flush. Returns the space's spare table frames, or the error with rdx = operations done
/// (not 0 only if the pager changed its batch between check and perform, or donated one
/// frame twice in it).
fn apply(k: &Kernel, t: usize, s: usize, batch: Batch) -> Result<u64, Errno> {
    let table_marks = &k.table_marks;
    let root = k.spaces[s].root;
    let mut reserve = lock_tables(k, s)?;
    // Only an exclusive entry changes a space on the pool (`lock_tables`): the pool's lock is
    // free, and held to the end of the batch.
    let mut pool = reserve.is_none().then(|| k.frames.lock());
    set_done(k, t, 0);
    // Decode. A batch copied in already is decoded once: nothing can change it.
    let mut need = TableNeed::new();
    let mut have = match (&*reserve, &pool) {
        (Some(r), _) => r.spare(),
        (None, Some(p)) => p.free_frames() as u64,
        (None, None) => 0,
    };
    let donated = reserve.is_some();
    let mut decoded = Slots::<Op, CHUNK>::new();
    let window = pt::window();
    let root_pa = PhysAddr::new(root);
    // The 2 MiB of the last map checked for a huge page (one look per 2 MiB).
    let mut checked = None;
    batch.each(|w| {
        let op = decode(k, w)?;
        match op {
            Op::Map { page, .. } => {
                let block = page / HUGE_PAGE_SIZE;
                if checked != Some(block) {
                    if paging::page_table_huge_at(window, root_pa, page) {
                        return Err(EINVAL);
                    }
                    checked = Some(block);
                }
                need.add_map(window, root_pa, page);
                if need.total() > have {
                    return Err(ENOMEM);
                }
            }
            Op::MapHuge { page, .. } => {
                checked = None;
                if !need.add_map_huge(window, root_pa, page) {
                    return Err(EINVAL);
                }
                if need.total() > have {
                    return Err(ENOMEM);
                }
            }
            Op::Split { page } => {
                checked = None;
                if !paging::page_table_huge_at(window, root_pa, page) {
                    return Err(EINVAL);
                }
                need.add_tables(1);
                if need.total() > have {
                    return Err(ENOMEM);
                }
            }
            Op::Donate { .. } if donated => have += 1,
            Op::Donate { .. } => return Err(EINVAL),
            Op::Unmap { page, pages, .. } | Op::Protect { page, pages, .. } => {
                checked = None;
                if paging::page_table_cuts_huge(window, root_pa, page, pages) {
                    return Err(EINVAL);
                }
            }
        }
        decoded.push(op);
        Ok(())
    })?;
    // Perform.
    let mut tables = match (reserve.as_mut(), pool.as_deref_mut()) {
        (Some(reserve), _) => Tables::Reserve(reserve),
        (None, Some(pool)) => Tables::Pool(pool),
        (None, None) => return Err(EXCLUSIVE),
    };
    let mut m = pt::mapper(&mut tables, root);
    let mut done = 0;
    let mut step = |marks: &TableMarks, op: Op| {
        match (op, m.tables()) {
            // A frame donated earlier in the batch is a table now: neither mapped nor donated.
            (Op::Map { frame, .. } | Op::Donate { frame }, _) if marks.is_marked(frame) => {
                return Err(EPERM);
            }
            (Op::MapHuge { frame, .. }, _)
                if (0..HUGE_PAGE_SIZE / PAGE).any(|i| marks.is_marked(frame + i * PAGE)) =>
            {
                return Err(EPERM);
            }
            (Op::Donate { frame }, Tables::Reserve(reserve)) => {
                tables::donate(marks, reserve, frame);
            }
            _ => perform(&mut m, op)?,
        }
        done += 1;
        Ok(())
    };
    let result = match batch {
        Batch::Copied(_) => decoded
            .as_slice()
            .iter()
            .try_for_each(|&op| step(table_marks, op)),
        Batch::InMemory { .. } => batch.each(|w| {
            let op = decode(k, w)?;
            step(table_marks, op)
        }),
    };
    pt::finish(m, root);
    let spare = spare(&reserve);
    set_done(k, t, done);
    result.map(|()| spare)
}

/// The spare table frames of a space (0 for a space on the kernel pool), from its locked
/// tables.
fn spare(reserve: &Option<Reserve>) -> u64 {
    reserve.map_or(0, |r| r.spare())
}

/// `space_apply(id, ops, count)`: applies a batch of `count` operations read from the pager's
/// memory (see [`apply`]); the space's spare table frames, or -errno with rdx = operations
/// done.
pub fn space_apply(k: &Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    let (ops, count) = (f.rsi, f.rdx);
    if count > MAX_BATCH {
        return Err(E2BIG);
    }
    usercopy::check_range(ops, count * 32)?;
    let root = k.spaces[k.threads[t].space].root;
    if count as usize > CHUNK {
        return apply(k, t, s, Batch::InMemory { root, ops, count });
    }
    let mut copied = Ops::new();
    read_ops(root, ops, count as usize, &mut copied)?;
    apply(k, t, s, Batch::Copied(&copied))
}

/// `space_apply1(id, kind, page, a, b)`: [`space_apply`] of the one operation `[kind, page,
/// a, b]` passed in registers (rsi, rdx, r10, r8), with no batch to copy in. A map whose page
/// table exists (most faults) and a protect of one page (an `mprotect` of one page) go
/// straight to the page's entry ([`space_map1`], [`space_protect1`]).
#[inline(always)]
pub fn space_apply1(k: &Kernel, t: usize) -> Result<u64, Errno> {
    let f = &k.threads[t].frame;
    if f.rsi == OP_PROTECT && f.r10 == 1 {
        space_protect1(k, t)
    } else if f.rsi == OP_MAP {
        space_map1(k, t)
    } else {
        space_apply1_batch(k, t)
    }
}

/// [`space_apply1`] of `[OP_MAP, page, frame, prot]`, as [`apply`] performs it — the same
/// checks — with one walk to the page's entry when its page table exists and, if a frame was
/// replaced in the active space, an `invlpg` of that page. A missing table takes the batch
/// path, which counts and adds it.
#[inline(never)]
fn space_map1(k: &Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    let root = k.spaces[s].root;
    // rdx (the page) is read again by the batch path below: it becomes the count of
    // operations done only once this path has answered.
    let op = decode(k, [OP_MAP, f.rdx, f.r10, f.r8]);
    let Ok(Op::Map { page, frame, flags }) = op else {
        set_done(k, t, 0);
        return Err(op.err().unwrap_or(EINVAL));
    };
    let reserve = lock_tables(k, s)?;
    match paging::page_table_map_page(
        pt::window(),
        PhysAddr::new(root),
        page,
        PhysAddr::new(frame),
        flags,
    ) {
        Ok(replaced) => {
            if replaced.is_some() {
                pt::flush_page(root, page);
            }
            let spare = spare(&reserve);
            drop(reserve);
            set_done(k, t, 1);
            Ok(spare)
        }
        Err(PagingError::NotMapped) => {
            drop(reserve);
            space_apply1_batch(k, t)
        }
        Err(e) => {
            drop(reserve);
            set_done(k, t, 0);
            Err(paging_errno(e))
        }
    }
}

/// [`space_apply1`] of any operation: [`apply`] of a batch of one, copied from the
/// registers (every check of a batch: tables, huge pages).
#[inline(never)]
fn space_apply1_batch(k: &Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    let mut ops = Ops::new();
    ops.push([f.rsi, f.rdx, f.r10, f.r8]);
    apply(k, t, s, Batch::Copied(&ops))
}

/// [`space_apply1`] of `[OP_PROTECT, page, 1, prot]`, as [`apply`] performs it — the same
/// checks, an absent page skipped — with one walk to the page's entry and, if the space is
/// active, an `invlpg` of that page: no batch, no flush record.
#[inline(never)]
fn space_protect1(k: &Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    let root = k.spaces[s].root;
    let (page, prot) = (f.rdx, f.r8);
    let reserve = lock_tables(k, s)?;
    let result = check_range(page, 1).and_then(|()| {
        let p = valid_prot(prot)?;
        let flags = pt::flags(p);
        match paging::page_table_protect_page(pt::window(), PhysAddr::new(root), page, flags) {
            Ok(_) => {
                pt::flush_page(root, page);
                Ok(())
            }
            Err(PagingError::NotMapped) => Ok(()),
            Err(e) => Err(paging_errno(e)),
        }
    });
    let spare = spare(&reserve);
    drop(reserve);
    set_done(k, t, u64::from(result.is_ok()));
    result.map(|()| spare)
}

/// `space_reclaim(id, buf, max)`: takes up to `max` (at most [`MAX_RECLAIM`]) spare table
/// frames out of the space's reserve and writes their addresses (u64s) to `buf`; how many.
/// The frames were unlinked from every table and flushed by the batch that freed them: the
/// pager may use them at once.
pub fn space_reclaim(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    let n = f
        .rdx
        .min(MAX_RECLAIM)
        .min(spare(k.spaces[s].tables.get_mut()));
    usercopy::check_range(f.rsi, n * 8)?;
    let mine = k.spaces[k.threads[t].space].root;
    usercopy::check_writable(mine, f.rsi, n * 8)?;
    let Some(reserve) = k.spaces[s].tables.get_mut().as_mut() else {
        return Ok(0);
    };
    let mut frames = [0u64; MAX_RECLAIM as usize];
    let n = tables::reclaim(&k.table_marks, reserve, &mut frames[..n as usize]);
    let mut bytes = [0u8; MAX_RECLAIM as usize * 8];
    for (b, f) in bytes.chunks_exact_mut(8).zip(&frames[..n]) {
        b.copy_from_slice(&f.to_le_bytes());
    }
    usercopy::copy_out(mine, f.rsi, &bytes[..n * 8])?;
    Ok(n as u64)
}

/// `thread_start(space, rip, rsp, arg, tls)`: a new thread in another space, rdi = `arg`,
/// FS base `tls`.
pub fn thread_start(k: &mut Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let f = k.threads[t].frame;
    let s = space_of(k, f.rdi)?;
    if f.rsi >= USER_TOP || f.rdx >= USER_TOP || f.r8 >= USER_TOP {
        return Err(EINVAL);
    }
    let mut frame = TrapFrame::user(f.rsi, f.rdx);
    frame.rdi = f.r10;
    let n = k.create_thread(s, frame, Fpu::initial(), f.r8)?;
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
    // The caller waits for the reply, so its FPU state is in its slot (`sched`'s rule).
    let mut frame = k.threads[c].frame;
    frame.rax = 0;
    frame.rdi = f.rdx;
    frame.rsi = 0;
    let fpu = k.threads[c].fpu;
    let fs_base = k.threads[c].fs_base;
    let n = k.create_thread(s, frame, fpu, fs_base)?;
    Ok(k.thread_id(n))
}

/// `pager_info(buf, len)`: writes `[window base, count, (start, length) * count]` (u64s) into
/// `buf`; returns the count of ranges, and in bits 32.. the kernel's slots of spaces (and of
/// threads: as many), the most processes that can exist at once.
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
    Ok(n as u64 | (k.spaces.len() as u64) << 32)
}

/// `device_info(index)`: the device range at `index` of the command line, if the kernel
/// accepted it: its base (rdx = its length).
pub fn device_info(k: &Kernel, t: usize) -> Result<u64, Errno> {
    pager_only(k, t)?;
    let (base, len) = k.devices.get(k.threads[t].frame.rdi).ok_or(ENODEV)?;
    // The second result goes in rdx, as a batch's count does.
    set_done(k, t, len);
    Ok(base)
}

/// Maps the pager's ranges into its space at [`WINDOW_BASE`] (read/write, never executable).
pub fn map_window(k: &mut Kernel, s: usize) -> bool {
    let root = k.spaces[s].root;
    let ranges = k.pager_ranges;
    let mut m = pt::mapper(k.frames.get_mut(), root);
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
    Ok(k.frames.get_mut().in_use().saturating_sub(images) as u64)
}

/// Maps the boot pack `[start, start + len)` (physical, reserved by the kernel, never in the
/// pager's ranges) read-only at [`BOOTPACK_BASE`] in space `s`.
pub fn map_bootpack(k: &mut Kernel, s: usize, start: u64, len: u64) -> bool {
    let root = k.spaces[s].root;
    let first = start & !(PAGE - 1);
    let end = (start + len).next_multiple_of(PAGE);
    let mut m = pt::mapper(k.frames.get_mut(), root);
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
