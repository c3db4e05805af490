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

    /// A test double of memd for one process, over a real host buffer: a heap moved by
    /// `BRK`/`SBRK` and an mmap area of pages handed out first fit by `MMAP`/`MUNMAP`. It hands
    /// out addresses inside its arena, so what it maps can really be loaded and stored.
    pub(crate) struct FakeMemd {
        /// Owns the memory the addresses point into; only ever reached through them.
        _arena: Vec<u8>,
        heap_start: usize,
        heap_limit: usize,
        map_start: usize,
        state: Mutex<FakeState>,
    }

    struct FakeState {
        brk: usize,
        mapped: Vec<bool>,
        calls: [usize; 16],
    }

    impl FakeMemd {
        /// A process with `heap_bytes` of room for its break and `map_bytes` of mmap area.
        pub(crate) fn new(heap_bytes: usize, map_bytes: usize) -> FakeMemd {
            let mut arena = vec![0u8; heap_bytes + map_bytes + PAGE];
            let base = arena
                .as_mut_ptr()
                .expose_provenance()
                .next_multiple_of(PAGE);
            FakeMemd {
                _arena: arena,
                heap_start: base,
                heap_limit: base + heap_bytes,
                map_start: base + heap_bytes,
                state: Mutex::new(FakeState {
                    brk: base,
                    mapped: vec![false; map_bytes / PAGE],
                    calls: [0; 16],
                }),
            }
        }

        /// How many requests with `opcode` were answered.
        pub(crate) fn calls(&self, opcode: u8) -> usize {
            self.state.lock().unwrap().calls[usize::from(opcode) % 16]
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

        /// Whether every byte of `[addr, addr + len)` is below the break or mapped.
        pub(crate) fn backed(&self, addr: usize, len: usize) -> bool {
            let s = self.state.lock().unwrap();
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

        fn serve(&self, s: &mut FakeState, request: Request) -> Result<u64, VmError> {
            match request {
                Request::Brk { addr: 0 } => Ok(s.brk as u64),
                Request::Brk { addr } => {
                    if addr < self.heap_start {
                        return Err(VmError::InvalidAddress);
                    }
                    if addr > self.heap_limit {
                        return Err(VmError::LimitExceeded);
                    }
                    s.brk = addr;
                    Ok(addr as u64)
                }
                Request::Sbrk { increment } => {
                    let old = s.brk;
                    let new = old
                        .checked_add_signed(increment)
                        .ok_or(VmError::InvalidSize)?;
                    if new < self.heap_start {
                        return Err(VmError::InvalidAddress);
                    }
                    if new > self.heap_limit {
                        return Err(VmError::LimitExceeded);
                    }
                    s.brk = new;
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
                        (first, count)
                    } else {
                        let (_, count) = self.pages(s, self.map_start, len)?;
                        let mut run = 0;
                        let last = s
                            .mapped
                            .iter()
                            .position(|&m| {
                                run = if m { 0 } else { run + 1 };
                                run == count
                            })
                            .ok_or(VmError::OutOfMemory)?;
                        (last + 1 - count, count)
                    };
                    s.mapped[first..first + count].fill(true);
                    Ok((self.map_start + first * PAGE) as u64)
                }
                Request::Munmap { addr, len } => {
                    let (first, count) = self.pages(s, addr, len)?;
                    s.mapped[first..first + count].fill(false);
                    Ok(0)
                }
                _ => Err(VmError::BadRequest),
            }
        }
    }

    impl Transport for FakeMemd {
        fn call(&self, request: &Sqe, _bulk: &mut [u8]) -> Cqe {
            let mut s = self.state.lock().unwrap();
            s.calls[usize::from(request.opcode) % 16] += 1;
            let result = Request::decode(request).and_then(|r| self.serve(&mut s, r));
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
