//! libvm on the metal: the raw system calls of kernel-shim ([`raw`]) and the [`Transport`]
//! that reaches memd with its `ipc_call`.
//!
//! A request's 8 words go in registers ([`proto::sqe_to_words`]; the kernel overwrites word 7
//! with the caller's badge) to the pager's endpoint, with the bulk buffer lent for the call; the
//! 2 reply words are a [`proto::Cqe`]. A call the kernel refuses (no pager, a bad lent buffer)
//! comes back as an error reply with the kernel's errno. The numbers and registers are
//! kernel-shim's ABI ([`kernel_shim::abi`]).
//!
//! The kernel copies into and out of a lent buffer only through pages present with the access
//! needed, and does not fault them in: a page not touched yet (lazily backed) or copy-on-write
//! after a fork would make memd answer `BadBuffer`. So the transport touches one byte of every
//! page of the buffer before the call, through an ordinary fault memd resolves: it writes the
//! byte back unchanged when memd writes the buffer (statistics, listings, `ARGS`, `WAIT`), and
//! only reads it when memd only reads (`SPAWN`'s argument string). A buffer truly read-only
//! still gets `BadBuffer` from memd when lent through the raw call.
//!
//! [`fault_entry`] is libvm's entry for faults a process handles itself ([`crate::fault`]);
//! [`thread`] gives a process more threads, futexes, a mutex built on them and thread locals.
//!
//! The program runtime installs it once: `libvm::set_transport(&libvm::sys::SyscallTransport)`.
//! Only built for x86_64 on the metal: for `target_os = "none"` (memd, built for
//! `x86_64-unknown-none`) or with the feature `metal` (the ring-3 programs, built for
//! `x86_64-unknown-linux-musl`); on the host the module is empty.

#[cfg(all(target_arch = "x86_64", any(target_os = "none", feature = "metal")))]
pub use metal::SyscallTransport;

#[cfg(all(target_arch = "x86_64", any(target_os = "none", feature = "metal")))]
pub mod raw;

#[cfg(all(target_arch = "x86_64", any(target_os = "none", feature = "metal")))]
pub mod fault_entry;

#[cfg(all(target_arch = "x86_64", any(target_os = "none", feature = "metal")))]
pub mod thread;

#[cfg(all(target_arch = "x86_64", any(target_os = "none", feature = "metal")))]
mod metal {
    use crate::error::VmError;
    use crate::proto::{self, Cqe, Sqe};
    use crate::sys::raw;
    use crate::transport::Transport;
    use kernel_shim::abi::PAGER_ENDPOINT;

    /// Calls memd through kernel-shim's `ipc_call` on the pager's endpoint.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct SyscallTransport;

    /// Touches one byte of each page of `bulk`: a load, and a store of the same value when
    /// `write`, so that each page is present (and writable) before memd copies through it.
    fn touch(bulk: &mut [u8], write: bool) {
        const PAGE: usize = 4096;
        let base = bulk.as_ptr().addr();
        let mut i = 0;
        while i < bulk.len() {
            let p: *mut u8 = &mut bulk[i];
            // SAFETY: `p` points into `bulk`, a live `&mut` slice; the volatile accesses keep
            // the load and the store of the same value from being optimised away.
            unsafe {
                let v = core::ptr::read_volatile(p);
                if write {
                    core::ptr::write_volatile(p, v);
                }
            }
            i += PAGE - (base + i) % PAGE;
        }
    }

    impl Transport for SyscallTransport {
        fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe {
            let memd_writes = matches!(
                request.opcode,
                proto::GLOBAL_STATS
                    | proto::PROCESS_STATS
                    | proto::REGIONS
                    | proto::PROCESSES
                    | proto::ARGS
                    | proto::WAIT
            );
            touch(bulk, memd_writes);
            // Word 7 (the caller) is not sent: the kernel stamps the badge.
            let w = proto::sqe_to_words(request);
            let (status, r0, r1) = raw::ipc_call(PAGER_ENDPOINT, &w, bulk);
            if status != 0 {
                let errno = i32::try_from(status.unsigned_abs()).unwrap_or(i32::MAX);
                return proto::encode_reply(request.tag, Err(VmError::from_wire(errno, 0)));
            }
            proto::cqe_from_words([r0, r1])
        }
    }
}
