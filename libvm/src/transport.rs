//! `Transport`: how one request reaches memd and how its reply comes back.
//!
//! A transport makes one synchronous IPC call: it sends the request [`Sqe`], lends `bulk` to
//! memd for the duration of the call, and returns memd's [`Cqe`]. It stamps the sender's
//! identity in `caller` (on the metal the kernel does it from the badge of the sender's address
//! space; in the hosted testbed the process's in-process transport does it), overwriting
//! whatever the client wrote there. A transport never interprets a request: encoding and
//! decoding are [`crate::vm::Vm`]'s on this side and memd's on the other.
//!
//! A transport that cannot deliver a call answers with an error reply
//! ([`crate::proto::encode_reply`] with the errno of the failure); it never panics.
//!
//! References, `Box`es and `Arc`s of a transport are transports too, so a [`crate::vm::Vm`] can
//! own its transport or borrow a shared one.

use crate::proto::{Cqe, Sqe};
use alloc::boxed::Box;
use alloc::sync::Arc;

/// One synchronous call to memd.
pub trait Transport {
    /// Sends `request` (its `caller` stamped by the transport), lends `bulk` to memd for the
    /// call, and returns the reply. memd writes into `bulk` only what the reply value says
    /// (statistics words, region entries), never beyond its length.
    fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe;
}

impl<T: Transport + ?Sized> Transport for &T {
    fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe {
        (**self).call(request, bulk)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe {
        (**self).call(request, bulk)
    }
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe {
        (**self).call(request, bulk)
    }
}

/// Test doubles of memd, for this crate's tests only.
#[cfg(test)]
pub(crate) mod doubles {
    use super::Transport;
    use crate::error::VmError;
    use crate::proto::{self, Cqe, Request, Sqe};
    use std::sync::Mutex;
    use std::vec::Vec;

    /// A test double that records every request (and the length of the buffer lent with it)
    /// and answers with a scripted closure.
    pub(crate) struct Recorder<F> {
        sent: Mutex<Vec<(Sqe, usize)>>,
        answer: F,
    }

    impl<F: Fn(&Sqe, &mut [u8]) -> Cqe> Recorder<F> {
        /// A recorder answering every request with `answer`.
        pub(crate) const fn new(answer: F) -> Recorder<F> {
            Recorder {
                sent: Mutex::new(Vec::new()),
                answer,
            }
        }

        /// Every request received so far, with the length of the lent buffer.
        pub(crate) fn sent(&self) -> Vec<(Sqe, usize)> {
            self.sent.lock().unwrap().clone()
        }
    }

    impl<F: Fn(&Sqe, &mut [u8]) -> Cqe> Transport for Recorder<F> {
        fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe {
            self.sent.lock().unwrap().push((*request, bulk.len()));
            (self.answer)(request, bulk)
        }
    }

    /// A recorder that answers every request with `result`.
    pub(crate) fn answering(
        result: Result<u64, VmError>,
    ) -> Recorder<impl Fn(&Sqe, &mut [u8]) -> Cqe> {
        Recorder::new(move |sqe: &Sqe, _: &mut [u8]| proto::encode_reply(sqe.tag, result))
    }

    const PAGE: usize = 4096;

    /// Anonymous pages of the host, standing for a process's memory: the host's kernel backs
    /// a page at its first touch, says which pages are resident (`mincore`), drops pages
    /// (`MADV_DONTNEED`: they read zero and are not resident again) and moves them (`mremap`:
    /// the pages go, not copies), as memd does. So a test can tell which pages the code under
    /// test wrote (or read).
    struct HostPages {
        base: usize,
        len: usize,
    }

    impl HostPages {
        fn new(len: usize) -> HostPages {
            // SAFETY: a new anonymous private mapping, at an address the host chooses; nothing
            // else refers to it. The result is checked.
            let base = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED, "host mmap of {len} bytes");
            HostPages {
                base: base.expose_provenance(),
                len,
            }
        }

        fn ptr(addr: usize) -> *mut libc::c_void {
            core::ptr::with_exposed_provenance_mut(addr)
        }

        /// Drops the pages of `[addr, addr + len)` (page aligned, inside the mapping).
        fn drop_pages(&self, addr: usize, len: usize) {
            if len == 0 {
                return;
            }
            // SAFETY: the range lies inside this mapping (the fake checks it), whose pages
            // stand for the process's memory: dropping them is what memd does to it.
            let rc = unsafe { libc::madvise(HostPages::ptr(addr), len, libc::MADV_DONTNEED) };
            assert_eq!(rc, 0, "host madvise {addr:#x}+{len}");
        }

        /// Writes a byte a page of `[addr, addr + len)` into `out`: 1 when resident.
        fn mincore(&self, addr: usize, len: usize, out: &mut [u8]) {
            // SAFETY: the range lies inside this mapping and `out` holds a byte for each of
            // its pages (the fake checks both).
            let rc = unsafe { libc::mincore(HostPages::ptr(addr), len, out.as_mut_ptr()) };
            assert_eq!(rc, 0, "host mincore {addr:#x}+{len}");
            for b in out.iter_mut().take(len.div_ceil(PAGE)) {
                *b &= 1;
            }
        }

        /// Moves the `old_len` bytes of pages at `from` to `to`, `new_len` bytes there (the
        /// pages past the old ones fresh); `from` gets fresh pages again.
        fn move_pages(&self, from: usize, old_len: usize, new_len: usize, to: usize) {
            // SAFETY: both ranges lie inside this mapping and do not overlap (the fake picks
            // `to` among pages not mapped, `from`'s being mapped); the moved pages are the
            // process's, going where memd would put them.
            let moved = unsafe {
                libc::mremap(
                    HostPages::ptr(from),
                    old_len,
                    new_len,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    HostPages::ptr(to),
                )
            };
            assert_eq!(moved.addr(), to, "host mremap");
            // SAFETY: `[from, from + old_len)` is the hole the move left inside this mapping:
            // filled with fresh pages again, so the mapping stays whole.
            let refill = unsafe {
                libc::mmap(
                    HostPages::ptr(from),
                    old_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            assert_eq!(refill.addr(), from, "host mmap of the hole");
        }
    }

    impl Drop for HostPages {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, used by nobody once its fake is dropped.
            let rc = unsafe { libc::munmap(HostPages::ptr(self.base), self.len) };
            assert_eq!(rc, 0, "host munmap");
        }
    }

    /// A test double of memd for one process, over host pages ([`HostPages`]): a heap moved by
    /// `BRK`/`SBRK` and an mmap area of pages handed out first fit by `MMAP`, given back by
    /// `MUNMAP`, resized or moved by `MREMAP`, dropped by `MADV_DONTNEED`, and asked about by
    /// `MINCORE`. It hands out addresses inside its pages, so what it maps can really be
    /// loaded and stored; as memd, it gives pages reading zero (pages given back are dropped)
    /// and says which are resident.
    pub(crate) struct FakeMemd {
        host: HostPages,
        heap_start: usize,
        heap_limit: usize,
        map_start: usize,
        state: Mutex<FakeState>,
    }

    struct FakeState {
        brk: usize,
        mapped: Vec<bool>,
        calls: [usize; 32],
    }

    impl FakeMemd {
        /// A process with `heap_bytes` of room for its break and `map_bytes` of mmap area
        /// (whole pages both).
        pub(crate) fn new(heap_bytes: usize, map_bytes: usize) -> FakeMemd {
            assert!(heap_bytes.is_multiple_of(PAGE) && map_bytes.is_multiple_of(PAGE));
            let host = HostPages::new(heap_bytes + map_bytes);
            let base = host.base;
            FakeMemd {
                host,
                heap_start: base,
                heap_limit: base + heap_bytes,
                map_start: base + heap_bytes,
                state: Mutex::new(FakeState {
                    brk: base,
                    mapped: vec![false; map_bytes / PAGE],
                    calls: [0; 32],
                }),
            }
        }

        /// How many requests with `opcode` were answered.
        pub(crate) fn calls(&self, opcode: u8) -> usize {
            self.state.lock().unwrap().calls[usize::from(opcode) % 32]
        }

        /// Pages of the mmap area mapped now.
        pub(crate) fn mapped_pages(&self) -> usize {
            self.state
                .lock()
                .unwrap()
                .mapped
                .iter()
                .filter(|&&m| m)
                .count()
        }

        /// How many of the pages of `[addr, addr + len)` (page aligned, backed) the host has
        /// resident: pages written (or read) since they were last dropped.
        pub(crate) fn resident_pages(&self, addr: usize, len: usize) -> usize {
            assert!(self.backed(addr, len), "{addr:#x}+{len} is not backed");
            let mut out = vec![0u8; len.div_ceil(PAGE)];
            self.host.mincore(addr, len, &mut out);
            out.iter().filter(|&&r| r != 0).count()
        }

        /// Whether every byte of `[addr, addr + len)` is below the break or mapped.
        pub(crate) fn backed(&self, addr: usize, len: usize) -> bool {
            self.backed_in(&self.state.lock().unwrap(), addr, len)
        }

        fn backed_in(&self, s: &FakeState, addr: usize, len: usize) -> bool {
            let end = addr + len;
            if addr >= self.heap_start && end <= s.brk {
                return true;
            }
            addr >= self.map_start
                && (addr - self.map_start) / PAGE <= s.mapped.len()
                && (end - self.map_start).div_ceil(PAGE) <= s.mapped.len()
                && s.mapped[(addr - self.map_start) / PAGE..(end - self.map_start).div_ceil(PAGE)]
                    .iter()
                    .all(|&m| m)
        }

        fn pages(&self, s: &FakeState, addr: usize, len: usize) -> Result<(usize, usize), VmError> {
            if !addr.is_multiple_of(PAGE) {
                return Err(VmError::NotAligned);
            }
            if len == 0 {
                return Err(VmError::InvalidSize);
            }
            let first = addr
                .checked_sub(self.map_start)
                .ok_or(VmError::InvalidAddress)?
                / PAGE;
            let count = len.div_ceil(PAGE);
            if first + count > s.mapped.len() {
                return Err(VmError::InvalidAddress);
            }
            Ok((first, count))
        }

        /// The first run of `count` pages of the mmap area not mapped.
        fn first_fit(s: &FakeState, count: usize) -> Result<usize, VmError> {
            let mut run = 0;
            let last = s
                .mapped
                .iter()
                .position(|&m| {
                    run = if m { 0 } else { run + 1 };
                    run == count
                })
                .ok_or(VmError::OutOfMemory)?;
            Ok(last + 1 - count)
        }

        fn page_addr(&self, page: usize) -> usize {
            self.map_start + page * PAGE
        }

        /// Moves the break to `new`, dropping the pages wholly above it.
        fn set_break(&self, s: &mut FakeState, new: usize) -> Result<(), VmError> {
            if new < self.heap_start {
                return Err(VmError::InvalidAddress);
            }
            if new > self.heap_limit {
                return Err(VmError::LimitExceeded);
            }
            let (keep, had) = (new.next_multiple_of(PAGE), s.brk.next_multiple_of(PAGE));
            if had > keep {
                self.host.drop_pages(keep, had - keep);
            }
            s.brk = new;
            Ok(())
        }

        fn mremap(
            &self,
            s: &mut FakeState,
            old_addr: usize,
            old_len: usize,
            new_len: usize,
            flags: u64,
        ) -> Result<u64, VmError> {
            if flags & !proto::MREMAP_MAYMOVE != 0 || new_len == 0 {
                return Err(VmError::InvalidFlags);
            }
            let (first, count) = self.pages(s, old_addr, old_len)?;
            if !s.mapped[first..first + count].iter().all(|&m| m) {
                return Err(VmError::InvalidAddress);
            }
            let want = new_len.div_ceil(PAGE);
            if want <= count {
                self.host
                    .drop_pages(self.page_addr(first + want), (count - want) * PAGE);
                s.mapped[first + want..first + count].fill(false);
                return Ok(old_addr as u64);
            }
            let after = s.mapped.get(first + count..first + want);
            if after.is_some_and(|after| after.iter().all(|&m| !m)) {
                s.mapped[first + count..first + want].fill(true);
                return Ok(old_addr as u64);
            }
            if flags & proto::MREMAP_MAYMOVE == 0 {
                return Err(VmError::OutOfMemory);
            }
            let to = FakeMemd::first_fit(s, want)?;
            self.host
                .move_pages(old_addr, count * PAGE, want * PAGE, self.page_addr(to));
            s.mapped[first..first + count].fill(false);
            s.mapped[to..to + want].fill(true);
            Ok(self.page_addr(to) as u64)
        }

        fn serve(
            &self,
            s: &mut FakeState,
            request: Request,
            bulk: &mut [u8],
        ) -> Result<u64, VmError> {
            match request {
                Request::Brk { addr: 0 } => Ok(s.brk as u64),
                Request::Brk { addr } => {
                    self.set_break(s, addr)?;
                    Ok(addr as u64)
                }
                Request::Sbrk { increment } => {
                    let old = s.brk;
                    let new = old
                        .checked_add_signed(increment)
                        .ok_or(VmError::InvalidSize)?;
                    self.set_break(s, new)?;
                    Ok(old as u64)
                }
                Request::Mmap {
                    addr, len, flags, ..
                } => {
                    let fixed = flags
                        .intersects(crate::MmapFlags::FIXED | crate::MmapFlags::FIXED_NOREPLACE);
                    let (first, count) = if fixed {
                        let (first, count) = self.pages(s, addr, len)?;
                        let taken = s.mapped[first..first + count].iter().any(|&m| m);
                        if taken && flags.contains(crate::MmapFlags::FIXED_NOREPLACE) {
                            return Err(VmError::AlreadyMapped);
                        }
                        // What it replaces is gone: the new pages read zero.
                        self.host.drop_pages(self.page_addr(first), count * PAGE);
                        (first, count)
                    } else {
                        let (_, count) = self.pages(s, self.map_start, len)?;
                        (FakeMemd::first_fit(s, count)?, count)
                    };
                    s.mapped[first..first + count].fill(true);
                    Ok(self.page_addr(first) as u64)
                }
                Request::Munmap { addr, len } => {
                    let (first, count) = self.pages(s, addr, len)?;
                    s.mapped[first..first + count].fill(false);
                    self.host.drop_pages(self.page_addr(first), count * PAGE);
                    Ok(0)
                }
                Request::Mremap {
                    old_addr,
                    old_len,
                    new_len,
                    flags,
                    ..
                } => self.mremap(s, old_addr, old_len, new_len, flags),
                Request::Madvise { addr, len, advice } => {
                    if advice != proto::MADV_DONTNEED {
                        return Err(VmError::InvalidFlags);
                    }
                    if !addr.is_multiple_of(PAGE) {
                        return Err(VmError::NotAligned);
                    }
                    let len = len.next_multiple_of(PAGE);
                    if !self.backed_in(s, addr, len) {
                        return Err(VmError::OutOfMemory);
                    }
                    self.host.drop_pages(addr, len);
                    Ok(0)
                }
                Request::Mincore { addr, len } => {
                    if !addr.is_multiple_of(PAGE) {
                        return Err(VmError::NotAligned);
                    }
                    let pages = len.div_ceil(PAGE);
                    if !self.backed_in(s, addr, pages * PAGE) {
                        return Err(VmError::OutOfMemory);
                    }
                    let out = bulk.get_mut(..pages).ok_or(VmError::BadBuffer)?;
                    self.host.mincore(addr, pages * PAGE, out);
                    Ok(pages as u64)
                }
                _ => Err(VmError::BadRequest),
            }
        }
    }

    impl Transport for FakeMemd {
        fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe {
            let mut s = self.state.lock().unwrap();
            s.calls[usize::from(request.opcode) % 32] += 1;
            let result = Request::decode(request).and_then(|r| self.serve(&mut s, r, bulk));
            proto::encode_reply(request.tag, result)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::doubles::answering;
    use super::*;
    use crate::proto::{self, Request};

    #[test]
    fn references_boxes_and_arcs_forward_the_call() {
        let direct = answering(Ok(42));
        let request = Request::Brk { addr: 0 }.encode();
        let by_ref: &dyn Transport = &direct;
        let boxed: Box<dyn Transport> = Box::new(answering(Ok(42)));
        let shared = Arc::new(answering(Ok(42)));
        for t in [&by_ref as &dyn Transport, &boxed, &shared] {
            assert_eq!(proto::decode_reply(&t.call(&request, &mut [])), Ok(42));
        }
        assert_eq!(direct.sent().len(), 1);
        assert_eq!(shared.sent().len(), 1);
    }
}
