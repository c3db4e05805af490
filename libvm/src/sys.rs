//! libvm on the metal: the [`Transport`] that reaches memd with kernel-shim's `ipc_call`.
//!
//! A request's 8 words go in registers ([`proto::sqe_to_words`]; the kernel overwrites word 7
//! with the caller's badge) to the pager's endpoint, with the bulk buffer lent for the call; the
//! 2 reply words are a [`proto::Cqe`]. A call the kernel refuses (no pager, a bad lent buffer)
//! comes back as an error reply with the kernel's errno. The numbers and registers are
//! kernel-shim's ABI ([`kernel_shim::abi`]).
//!
//! The program runtime installs it once: `libvm::set_transport(&libvm::sys::SyscallTransport)`.
//! Only built for bare-metal x86_64 (`target_os = "none"`); on the host the module is empty.

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use metal::SyscallTransport;

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod metal {
    use crate::error::VmError;
    use crate::proto::{self, Cqe, Sqe};
    use crate::transport::Transport;
    use core::arch::asm;
    use kernel_shim::abi::{IPC_CALL, PAGER_ENDPOINT};

    /// Calls memd through kernel-shim's `ipc_call` on the pager's endpoint.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct SyscallTransport;

    impl Transport for SyscallTransport {
        fn call(&self, request: &Sqe, bulk: &mut [u8]) -> Cqe {
            let w = proto::sqe_to_words(request);
            let (status, r0, r1): (i64, u64, u64);
            // SAFETY: kernel-shim's `ipc_call`: it reads rdi (endpoint), rsi..r13 (words 0..6),
            // r14/r15 (the lent buffer, which memd may write while we wait: it is our `&mut`
            // slice, lent for the call only), returns status in rax and the reply in rdi/rsi,
            // and clobbers rcx and r11. Every other register named is an in/out here.
            unsafe {
                asm!("syscall", inlateout("rax") IPC_CALL as i64 => status,
                     inlateout("rdi") PAGER_ENDPOINT => r0, inlateout("rsi") w[0] => r1,
                     inlateout("rdx") w[1] => _, inlateout("r10") w[2] => _,
                     inlateout("r8") w[3] => _, inlateout("r9") w[4] => _,
                     inlateout("r12") w[5] => _, inlateout("r13") w[6] => _,
                     inlateout("r14") bulk.as_mut_ptr() as u64 => _,
                     inlateout("r15") bulk.len() as u64 => _,
                     lateout("rcx") _, lateout("r11") _, options(nostack));
            }
            if status != 0 {
                let errno = i32::try_from(status.unsigned_abs()).unwrap_or(i32::MAX);
                return proto::encode_reply(request.tag, Err(VmError::from_wire(errno, 0)));
            }
            proto::cqe_from_words([r0, r1])
        }
    }
}
