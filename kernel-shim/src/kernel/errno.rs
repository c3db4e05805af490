//! Error numbers returned to processes (negated in rax): redox_syscall's values.

/// An error number.
pub type Errno = u64;

/// Operation not permitted (a capability the caller lacks).
pub const EPERM: Errno = 1;
/// No such thread or space.
pub const ESRCH: Errno = 3;
/// Bad file descriptor (a routed `fmap` that is not anonymous).
pub const EBADF: Errno = 9;
/// Try again: the futex word did not hold the value expected, or a limit is reached for now.
pub const EAGAIN: Errno = 11;
/// Out of kernel memory.
pub const ENOMEM: Errno = 12;
/// Bad user address.
pub const EFAULT: Errno = 14;
/// No such device.
pub const ENODEV: Errno = 19;
/// Invalid argument.
pub const EINVAL: Errno = 22;
/// The endpoint's owner is gone.
pub const EPIPE: Errno = 32;
/// No such system call.
pub const ENOSYS: Errno = 38;
/// A length over the limit.
pub const E2BIG: Errno = 7;

/// Never returned to a process: a call made in a shared entry that must run in an exclusive
/// one ([`super::lock`]), having changed nothing; the entry runs it again, exclusive.
pub const EXCLUSIVE: Errno = 0x1_0000;

/// The value of rax for a failed call.
pub fn to_rax(e: Errno) -> u64 {
    e.wrapping_neg()
}
