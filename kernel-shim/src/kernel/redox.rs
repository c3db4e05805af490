//! redox_syscall's memory calls, routed to the pager.
//!
//! A program that calls `syscall::fmap(!0, &Map { .. })`, `syscall::funmap` or
//! `syscall::mprotect` gets memory from the pager: the kernel checks the arguments it must read
//! itself (the `Map` in the caller's memory), builds the 8-word message the pager's protocol
//! uses for the same request (libvm's `MMAP`, `MUNMAP`, `MPROTECT`, in redox_syscall's `Sqe`
//! layout, word 7 the caller's badge) and sends it on the pager's endpoint as if the thread had
//! called. The reply's result word (an address, 0, or -errno) becomes the thread's rax.
//!
//! | number | call | message |
//! |---|---|---|
//! | `SYS_FMAP` | `fmap(!0, &Map { offset: 0, size, flags, address }, 32)` | `MMAP` address, size, flags, anonymous |
//! | `SYS_FUNMAP` | `funmap(addr, len)` | `MUNMAP` addr, len |
//! | `SYS_MPROTECT` | `mprotect(addr, len, flags)` | `MPROTECT` addr, len, flags |
//!
//! Only anonymous mappings exist (fd `!0`, offset 0); anything else is refused here. Every
//! other field goes to the pager unchecked: it validates them.

use super::errno::{EBADF, EINVAL, ENOSYS, Errno};
use super::ipc::{self, PAGER_ENDPOINT};
use super::state::Kernel;
use super::thread::MsgKind;
use super::usercopy;
use kernel_shim::abi::{
    ANONYMOUS_FD, REDOX_MAP_SIZE, SYS_FMAP, SYS_FUNMAP, SYS_MPROTECT, routed, sqe_word0,
};

/// Whether `nr` is a routed redox call.
pub fn is_routed(nr: u64) -> bool {
    matches!(nr, SYS_FMAP | SYS_FUNMAP | SYS_MPROTECT)
}

/// Decodes the routed call `nr` of thread `t` and sends it to the pager; the thread waits for
/// the reply.
pub fn route(k: &mut Kernel, t: usize, nr: u64) -> Result<(), Errno> {
    if k.pager.is_none() || !k.endpoints[PAGER_ENDPOINT].get_mut().live {
        return Err(ENOSYS);
    }
    let f = k.threads[t].frame;
    let (opcode, args) = match nr {
        SYS_FMAP => {
            if f.rdi != ANONYMOUS_FD {
                return Err(EBADF);
            }
            if f.rdx != REDOX_MAP_SIZE {
                return Err(EINVAL);
            }
            let mut bytes = [0u8; REDOX_MAP_SIZE as usize];
            let root = k.spaces[k.threads[t].space].root;
            usercopy::copy_in(root, f.rsi, &mut bytes)?;
            let mut w = [0u64; 4];
            for (w, b) in w.iter_mut().zip(bytes.chunks_exact(8)) {
                *w = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            }
            let [offset, size, flags, address] = w;
            if offset != 0 {
                return Err(EINVAL);
            }
            (
                routed::MMAP,
                [address, size, flags, routed::EXTRA_ANONYMOUS, 0, 0],
            )
        }
        SYS_FUNMAP => (routed::MUNMAP, [f.rdi, f.rsi, 0, 0, 0, 0]),
        SYS_MPROTECT => (routed::MPROTECT, [f.rdi, f.rsi, f.rdx, 0, 0, 0]),
        _ => return Err(ENOSYS),
    };
    let badge = k.badge(k.threads[t].space);
    let th = &mut k.threads[t];
    let a = args;
    th.msg = [
        sqe_word0(opcode, 0, 0),
        a[0],
        a[1],
        a[2],
        a[3],
        a[4],
        a[5],
        badge,
    ];
    th.kind = MsgKind::Call;
    th.routed = true;
    th.lend = (0, 0);
    ipc::send(k, t, PAGER_ENDPOINT);
    Ok(())
}
