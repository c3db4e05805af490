//! `VmError`: what went wrong, in Rust, and its errno on the wire.
//!
//! memd answers with Linux's errno values where Linux defines the case (so several errors share
//! `EINVAL`); the reply also carries the precise variant as a one-byte detail, so a client gets
//! back exactly the `VmError` memd raised.

use syscall::error::{
    EACCES, EAGAIN, EEXIST, EFAULT, EINVAL, ENODEV, ENOMEM, ENOSYS, EPERM, ESRCH,
};

/// Result of a memory operation.
pub type VmResult<T> = Result<T, VmError>;

/// Why a memory operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmError {
    /// An address outside the user half, or a range that wraps around (`EINVAL`).
    InvalidAddress,
    /// A zero or overflowing length (`EINVAL`).
    InvalidSize,
    /// An address that must be page aligned is not (`EINVAL`).
    NotAligned,
    /// Unknown or contradictory flag bits (`EINVAL`).
    InvalidFlags,
    /// No free frames or no free address range (`ENOMEM`).
    OutOfMemory,
    /// A per-process limit (address space or data size) would be exceeded (`ENOMEM`).
    LimitExceeded,
    /// The protection asked for is not allowed for this memory (`EACCES`).
    PermissionDenied,
    /// Part of the range is not mapped (`ENOMEM`, as Linux's mprotect).
    RegionNotFound,
    /// `MAP_FIXED_NOREPLACE` over an existing mapping (`EEXIST`).
    AlreadyMapped,
    /// The process named does not exist (`ESRCH`).
    NoSuchProcess,
    /// A message memd does not understand (`ENOSYS`).
    BadRequest,
    /// A lent buffer too small or not usable (`EFAULT`).
    BadBuffer,
    /// A `FORK` or `SPAWN` over the limit of children a process may have (alive, or dead and
    /// not yet waited for), or over the processes memd keeps records of (`EAGAIN`, Linux's
    /// answer to a fork over `RLIMIT_NPROC`).
    ProcessLimit,
    /// Not permitted (`EPERM`): `MAP_FIXED` below the lowest address a process may map, 64 KiB
    /// (as Linux answers below `vm.mmap_min_addr`), or raising a hard resource limit.
    NotPermitted,
    /// No device range of that name or index (`ENODEV`).
    NoSuchDevice,
    /// Any other errno, as received.
    Other(i32),
}

impl VmError {
    /// The errno value memd puts on the wire for this error.
    pub fn errno(self) -> i32 {
        match self {
            VmError::InvalidAddress
            | VmError::InvalidSize
            | VmError::NotAligned
            | VmError::InvalidFlags => EINVAL,
            VmError::OutOfMemory | VmError::LimitExceeded | VmError::RegionNotFound => ENOMEM,
            VmError::PermissionDenied => EACCES,
            VmError::AlreadyMapped => EEXIST,
            VmError::NoSuchProcess => ESRCH,
            VmError::BadRequest => ENOSYS,
            VmError::BadBuffer => EFAULT,
            VmError::ProcessLimit => EAGAIN,
            VmError::NotPermitted => EPERM,
            VmError::NoSuchDevice => ENODEV,
            VmError::Other(errno) => errno,
        }
    }

    /// The one-byte detail that names the variant on the wire (0 for `Other`).
    pub fn detail(self) -> u8 {
        match self {
            VmError::InvalidAddress => 1,
            VmError::InvalidSize => 2,
            VmError::NotAligned => 3,
            VmError::InvalidFlags => 4,
            VmError::OutOfMemory => 5,
            VmError::LimitExceeded => 6,
            VmError::PermissionDenied => 7,
            VmError::RegionNotFound => 8,
            VmError::AlreadyMapped => 9,
            VmError::NoSuchProcess => 10,
            VmError::BadRequest => 11,
            VmError::BadBuffer => 12,
            VmError::ProcessLimit => 13,
            VmError::NotPermitted => 14,
            VmError::NoSuchDevice => 15,
            VmError::Other(_) => 0,
        }
    }

    /// Rebuilds the error from an errno and the detail byte; a detail that does not agree with
    /// the errno is ignored, so a plain errno (detail 0) gives the most likely variant.
    pub fn from_wire(errno: i32, detail: u8) -> VmError {
        let precise = match detail {
            1 => VmError::InvalidAddress,
            2 => VmError::InvalidSize,
            3 => VmError::NotAligned,
            4 => VmError::InvalidFlags,
            5 => VmError::OutOfMemory,
            6 => VmError::LimitExceeded,
            7 => VmError::PermissionDenied,
            8 => VmError::RegionNotFound,
            9 => VmError::AlreadyMapped,
            10 => VmError::NoSuchProcess,
            11 => VmError::BadRequest,
            12 => VmError::BadBuffer,
            13 => VmError::ProcessLimit,
            14 => VmError::NotPermitted,
            15 => VmError::NoSuchDevice,
            _ => return VmError::from(syscall::error::Error::new(errno)),
        };
        if precise.errno() == errno {
            precise
        } else {
            VmError::from(syscall::error::Error::new(errno))
        }
    }
}

impl From<syscall::error::Error> for VmError {
    fn from(error: syscall::error::Error) -> VmError {
        match error.errno {
            EINVAL => VmError::InvalidFlags,
            ENOMEM => VmError::OutOfMemory,
            EACCES => VmError::PermissionDenied,
            EEXIST => VmError::AlreadyMapped,
            ESRCH => VmError::NoSuchProcess,
            ENOSYS => VmError::BadRequest,
            EFAULT => VmError::BadBuffer,
            EAGAIN => VmError::ProcessLimit,
            EPERM => VmError::NotPermitted,
            ENODEV => VmError::NoSuchDevice,
            errno => VmError::Other(errno),
        }
    }
}

impl From<VmError> for syscall::error::Error {
    fn from(error: VmError) -> syscall::error::Error {
        syscall::error::Error::new(error.errno())
    }
}

impl core::fmt::Display for VmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            VmError::InvalidAddress => "invalid address",
            VmError::InvalidSize => "invalid size",
            VmError::NotAligned => "address not page aligned",
            VmError::InvalidFlags => "invalid flags",
            VmError::OutOfMemory => "out of memory",
            VmError::LimitExceeded => "memory limit exceeded",
            VmError::PermissionDenied => "permission denied",
            VmError::RegionNotFound => "range not mapped",
            VmError::AlreadyMapped => "range already mapped",
            VmError::NoSuchProcess => "no such process",
            VmError::BadRequest => "request not understood",
            VmError::BadBuffer => "bad buffer",
            VmError::ProcessLimit => "too many processes",
            VmError::NotPermitted => "not permitted",
            VmError::NoSuchDevice => "no such device",
            VmError::Other(errno) => return write!(f, "errno {errno}"),
        };
        f.write_str(text)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every variant once (`Other` with an errno no other variant uses).
    pub(crate) const ALL_ERRORS: [VmError; 16] = [
        VmError::InvalidAddress,
        VmError::InvalidSize,
        VmError::NotAligned,
        VmError::InvalidFlags,
        VmError::OutOfMemory,
        VmError::LimitExceeded,
        VmError::PermissionDenied,
        VmError::RegionNotFound,
        VmError::AlreadyMapped,
        VmError::NoSuchProcess,
        VmError::BadRequest,
        VmError::BadBuffer,
        VmError::ProcessLimit,
        VmError::NotPermitted,
        VmError::NoSuchDevice,
        VmError::Other(123),
    ];

    #[test]
    fn every_variant_survives_the_wire() {
        let all = ALL_ERRORS;
        for e in all {
            assert_eq!(VmError::from_wire(e.errno(), e.detail()), e);
        }
    }

    #[test]
    fn plain_errno_maps_to_a_variant() {
        assert_eq!(VmError::from_wire(ENOMEM, 0), VmError::OutOfMemory);
        assert_eq!(VmError::from_wire(EEXIST, 0), VmError::AlreadyMapped);
        assert_eq!(VmError::from_wire(EAGAIN, 0), VmError::ProcessLimit);
        // A detail that contradicts the errno is not trusted.
        assert_eq!(VmError::from_wire(EEXIST, 5), VmError::AlreadyMapped);
        assert_eq!(
            syscall::error::Error::from(VmError::NotAligned).errno,
            EINVAL
        );
    }
}
