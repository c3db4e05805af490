//! The wire format between libvm and memd: one definition for both sides.
//!
//! A request is a redox_syscall [`Sqe`]: `opcode` names the operation, `args` carry its
//! operands, `caller` is stamped by the transport with the sender's badge (a client's own value
//! is overwritten, never trusted). A reply is a [`Cqe`]: `result` holds the value, or `-errno`;
//! `extra_raw[0]` holds the [`VmError`] detail byte. Both fit in registers (8 and 2 words).
//! Bulk answers (statistics, region listings) are written as little-endian `u64` words into a
//! buffer the client lends for the call.
//!
//! | opcode | request | args | reply value |
//! |---|---|---|---|
//! | 1 `MMAP` | map memory | addr, len, `MapFlags` (prot and map bits), extra (`EXTRA_*`) | address |
//! | 2 `MUNMAP` | unmap | addr, len | 0 |
//! | 3 `MPROTECT` | change protection | addr, len, `MapFlags` (prot bits) | 0 |
//! | 4 `BRK` | set or query the break | addr (0 queries) | new break |
//! | 5 `SBRK` | move the break | increment (two's complement) | old break |
//! | 6 `MADVISE` | advice | addr, len, advice (`MADV_*`) | 0 |
//! | 7 `FORK` | copy this address space | - | child pid |
//! | 8 `GLOBAL_STATS` | system statistics | - (bulk: [`GlobalStats`]) | words written |
//! | 9 `PROCESS_STATS` | one process | pid (0: self) (bulk: [`ProcessStats`]) | words written |
//! | 10 `REGIONS` | region map | pid (0: self), from address (bulk: [`RegionInfo`]s) | regions written |
//! | 11 `SPAWN` | start a boot module as a child | its name, NUL padded, in the six args (≤ 47 bytes) (bulk, optional: its argument string, ≤ [`MAX_ARGS`] bytes) | child pid |
//! | 12 `WAIT` | wait for a child to die | child pid, flags ([`WAIT_NOHANG`]: answer at once) (bulk: the fault address — for a kill by another exception, its RIP — if 8 bytes lent) | [`wait_status`] word ([`wait_status::RUNNING`] with `WAIT_NOHANG` while the child lives) |
//! | 13 `ARGS` | the caller's argument string | - (bulk: the bytes, cut to the buffer) | bytes written |
//! | 14 `PROCESSES` | which processes exist | from pid (bulk: [`ProcessInfo`]s of pids ≥ from) | entries written |
//! | 17 `PRLIMIT` | the caller's limit of a resource, and set it | `RLIMIT_*`, 1 to set (else 0), soft, hard (bulk: the old soft and hard, if 16 bytes lent) | 0 |
//! | 18 `MINCORE` | which pages are resident | addr, len (bulk: a byte a page, bit 0 when resident) | pages written |
//! | 19 `MSYNC` | write a range back (checks only: anonymous memory) | addr, len, `MS_*` flags | 0 |
//! | 20 `MLOCK` | lock a range's pages in, or unlock them | addr, len, 1 to unlock | 0 |
//! | 21 `MLOCKALL` | lock every page in (`MCL_*`), or unlock all | flags, 1 to unlock | 0 |
//! | 22 `MREMAP` | shrink, grow or move a mapping | old addr, old len, new len, `MREMAP_*` flags, new addr | the mapping's address |
//! | 23 `FAULT_HANDLER` | register the caller's fault handler (entry 0: none) and its alternate stack (see [`crate::fault`]) | entry, stack, stack length | the entry registered before (0: none) |
//! | 24 `CLEAR_REFS` | Linux's `clear_refs` of the caller: 5 starts its high-water mark of resident memory (`hwm_pages`) again from what is resident now; any other value is `InvalidFlags` | value | 0 |
//! | 15 `DENY_WRITE_EXEC` | the caller's memory is never writable and executable at once, nor made executable (Linux's `PR_SET_MDWE`); for good, and for its forks and spawns | - | 0 |
//! | 16 `KILL` | end a child of the caller (its `WAIT` then says [`wait_status::PARENT`]) | child pid | 0 |
//!
//! On the metal the 8 words of an `Sqe` travel in registers ([`sqe_to_words`]): word 0 holds
//! opcode, flags and tag, words 1..7 the args, word 7 the caller (the kernel's badge). A reply
//! is the 2 words of a `Cqe` ([`cqe_to_words`]).

use crate::error::VmError;
use crate::flags::{Caching, MmapFlags, ProtectionFlags};
use syscall::flag::MapFlags;
pub use syscall::schemev2::{Cqe, Sqe};

/// `MMAP`: map memory.
pub const MMAP: u8 = 1;
/// `MUNMAP`: unmap memory.
pub const MUNMAP: u8 = 2;
/// `MPROTECT`: change protection.
pub const MPROTECT: u8 = 3;
/// `BRK`: set or query the program break.
pub const BRK: u8 = 4;
/// `SBRK`: move the program break by an increment.
pub const SBRK: u8 = 5;
/// `MADVISE`: advice about a range.
pub const MADVISE: u8 = 6;
/// `FORK`: copy the caller's address space into a new process.
pub const FORK: u8 = 7;
/// `GLOBAL_STATS`: system-wide statistics.
pub const GLOBAL_STATS: u8 = 8;
/// `PROCESS_STATS`: one process's statistics.
pub const PROCESS_STATS: u8 = 9;
/// `REGIONS`: a process's region map.
pub const REGIONS: u8 = 10;
/// `SPAWN`: start a boot module as a child of the caller.
pub const SPAWN: u8 = 11;
/// `WAIT`: wait until a child has died; its status.
pub const WAIT: u8 = 12;
/// `ARGS`: the argument string the caller was spawned with.
pub const ARGS: u8 = 13;
/// `PROCESSES`: the live processes, with their parents and names.
pub const PROCESSES: u8 = 14;
/// `DENY_WRITE_EXEC`: W^X for the caller from now on (Linux's `PR_SET_MDWE`).
pub const DENY_WRITE_EXEC: u8 = 15;
/// `KILL`: end a live child of the caller, as if it had exited, but with the status of a kill.
pub const KILL: u8 = 16;
/// `PRLIMIT`: read, and set, one of the caller's resource limits.
pub const PRLIMIT: u8 = 17;
/// `MINCORE`: which pages of a range are resident.
pub const MINCORE: u8 = 18;
/// `MSYNC`: write a range back to what backs it (argument checks: anonymous memory has
/// nothing to write to).
pub const MSYNC: u8 = 19;

/// `MLOCK`: lock a range's pages in (or unlock them).
pub const MLOCK: u8 = 20;
/// `MLOCKALL`: lock every page in, now and to come (or unlock them all).
pub const MLOCKALL: u8 = 21;
/// `MREMAP`: shrink, grow or move a mapping.
pub const MREMAP: u8 = 22;
/// `FAULT_HANDLER`: register the caller's fault handler and alternate stack.
pub const FAULT_HANDLER: u8 = 23;
/// `CLEAR_REFS`: Linux's `clear_refs` of the caller (5: reset its high-water mark).
pub const CLEAR_REFS: u8 = 24;
/// `DEVICE`: a device range by name (the caller need not hold it): its index and length.
pub const DEVICE: u8 = 25;
/// `MAP_DEVICE`: map pages of a device range the caller holds the capability of.
pub const MAP_DEVICE: u8 = 26;
/// `GRANT_DEVICE`: give a live child the capability of a device range the caller holds.
pub const GRANT_DEVICE: u8 = 27;
/// The `CLEAR_REFS` value that resets the high-water mark of resident memory (Linux's 5).
pub const CLEAR_REFS_MM_HIWATER_RSS: u64 = 5;

/// `mremap` flag: the mapping may move when it cannot grow in place.
pub const MREMAP_MAYMOVE: u64 = 1;
/// `mremap` flag: move to the new address given, replacing what is there (with `MAYMOVE`).
pub const MREMAP_FIXED: u64 = 2;
/// `mremap` flag: leave the old range mapped, and empty (with `MAYMOVE`, same length).
pub const MREMAP_DONTUNMAP: u64 = 4;

/// `mlockall` flag: every page mapped now.
pub const MCL_CURRENT: u64 = 1;
/// `mlockall` flag: every page mapped from now on.
pub const MCL_FUTURE: u64 = 2;
/// `mlockall` flag: lock pages as they fault in (with `MCL_CURRENT` or `MCL_FUTURE`).
pub const MCL_ONFAULT: u64 = 4;

/// `msync` flag: start the write-back, do not wait.
pub const MS_ASYNC: u64 = 1;
/// `msync` flag: drop other copies.
pub const MS_INVALIDATE: u64 = 2;
/// `msync` flag: write back and wait.
pub const MS_SYNC: u64 = 4;

/// A resource limit: the data segment, the heap (Linux's number).
pub const RLIMIT_DATA: u64 = 2;
/// A resource limit: the stack.
pub const RLIMIT_STACK: u64 = 3;
/// A resource limit: memory locked in.
pub const RLIMIT_MEMLOCK: u64 = 8;
/// A resource limit: the address space.
pub const RLIMIT_AS: u64 = 9;
/// No limit.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// `WAIT` flag: answer at once, with [`wait_status::RUNNING`] if the child still lives (as
/// `waitpid`'s `WNOHANG`), so a parent can do other things (read its console) meanwhile.
pub const WAIT_NOHANG: u64 = 1;

/// Longest argument string a `SPAWN` carries (longer ones are cut).
pub const MAX_ARGS: usize = 256;

/// Longest module name a `SPAWN` carries (six words, NUL padded, one NUL at least).
pub const MAX_NAME: usize = 47;

/// The status word a `WAIT` answers with.
///
/// | bits | meaning |
/// |---|---|
/// | 0..32 | exit code (a program's `exit` code is 32 bits: the kernel drops the upper half), or the exception vector that killed it (14: page fault; 0 for a `KILL`) |
/// | 32 | [`KILLED`](wait_status::KILLED): killed, not exited |
/// | 40..48 | memd's reason for a kill ([`MAPERR`](wait_status::MAPERR), [`ACCERR`](wait_status::ACCERR), [`OOM`](wait_status::OOM) for a refused page fault, [`PARENT`](wait_status::PARENT) for a `KILL`); 0 otherwise |
/// | 48..56 | the access that faulted ([`READ`](wait_status::READ), [`WRITE`](wait_status::WRITE), [`EXEC`](wait_status::EXEC)) |
/// | 63 | [`RUNNING`](wait_status::RUNNING): no status yet (a `WAIT_NOHANG` of a live child) |
pub mod wait_status {
    /// Killed rather than exited.
    pub const KILLED: u64 = 1 << 32;
    /// Shift of the fault reason.
    pub const REASON_SHIFT: u32 = 40;
    /// Shift of the fault access.
    pub const ACCESS_SHIFT: u32 = 48;
    /// Reason: nothing mapped at the address (`SEGV_MAPERR`).
    pub const MAPERR: u64 = 1;
    /// Reason: the protection forbids the access (`SEGV_ACCERR`).
    pub const ACCERR: u64 = 2;
    /// Reason: no frame could be had.
    pub const OOM: u64 = 3;
    /// Reason: its parent ended it with a `KILL` request.
    pub const PARENT: u64 = 4;
    /// Not a status: the child of a `WAIT_NOHANG` still lives.
    pub const RUNNING: u64 = 1 << 63;
    /// Access: a load.
    pub const READ: u64 = 1;
    /// Access: a store.
    pub const WRITE: u64 = 2;
    /// Access: an instruction fetch.
    pub const EXEC: u64 = 3;

    /// The status of an exit with `code`.
    pub const fn exited(code: u32) -> u64 {
        code as u64
    }

    /// The status of a kill for a page fault memd refused.
    pub const fn fault(reason: u64, access: u64) -> u64 {
        KILLED | 14 | (reason & 0xFF) << REASON_SHIFT | (access & 0xFF) << ACCESS_SHIFT
    }

    /// The status of a child its parent ended with a `KILL` request.
    pub const fn killed_by_parent() -> u64 {
        KILLED | PARENT << REASON_SHIFT
    }

    /// The exit code, if it exited.
    pub const fn code(status: u64) -> Option<u32> {
        if status & (KILLED | RUNNING) == 0 {
            Some(status as u32)
        } else {
            None
        }
    }

    /// The fault reason of a kill (0 if none).
    pub const fn reason(status: u64) -> u64 {
        (status >> REASON_SHIFT) & 0xFF
    }

    /// The faulting access of a kill (0 if none).
    pub const fn access(status: u64) -> u64 {
        (status >> ACCESS_SHIFT) & 0xFF
    }

    /// The exception that killed it, for a kill by the kernel for an exception other than a
    /// page fault memd refused (`KILLED | vector`; the `WAIT` word is then the RIP).
    pub const fn vector(status: u64) -> Option<u64> {
        if status & KILLED != 0 && reason(status) == 0 && status & RUNNING == 0 {
            Some(status & 0xFF)
        } else {
            None
        }
    }

    pub use kernel_shim::abi::vector_name;
}

// The kernel builds these requests itself for redox_syscall's routed memory calls.
const _: () = {
    use kernel_shim::abi::routed;
    assert!(MMAP == routed::MMAP);
    assert!(MUNMAP == routed::MUNMAP);
    assert!(MPROTECT == routed::MPROTECT);
    assert!(EXTRA_ANONYMOUS == routed::EXTRA_ANONYMOUS);
};

/// Extra mmap bit: anonymous memory (the only kind a client may ask for).
pub const EXTRA_ANONYMOUS: u64 = 1;
/// Extra mmap bit: back every page now.
pub const EXTRA_POPULATE: u64 = 2;
/// Extra mmap bit: a thread's stack (`MAP_STACK`).
pub const EXTRA_STACK: u64 = 0x10;
/// Extra mmap bit: no swap reserved (`MAP_NORESERVE`).
pub const EXTRA_NORESERVE: u64 = 0x20;
/// Extra mmap bit: locked in (`MAP_LOCKED`).
pub const EXTRA_LOCKED: u64 = 0x40;
/// Extra mmap bit: below 2 GiB (`MAP_32BIT`).
pub const EXTRA_BELOW_2G: u64 = 0x80;
/// Extra mmap bit: grows down (`MAP_GROWSDOWN`).
pub const EXTRA_GROWSDOWN: u64 = 0x100;

/// The extra mmap bits and the flag each stands for.
const EXTRA_FLAGS: [(u64, MmapFlags); 7] = [
    (EXTRA_ANONYMOUS, MmapFlags::ANONYMOUS),
    (EXTRA_POPULATE, MmapFlags::POPULATE),
    (EXTRA_STACK, MmapFlags::STACK),
    (EXTRA_NORESERVE, MmapFlags::NORESERVE),
    (EXTRA_LOCKED, MmapFlags::LOCKED),
    (EXTRA_BELOW_2G, MmapFlags::BELOW_2G),
    (EXTRA_GROWSDOWN, MmapFlags::GROWSDOWN),
];

/// `madvise`: no special treatment.
pub const MADV_NORMAL: u64 = 0;
/// `madvise`: the range will be needed soon: back it now.
pub const MADV_WILLNEED: u64 = 3;
/// `madvise`: drop the contents; private anonymous memory reads as zero afterwards.
pub const MADV_DONTNEED: u64 = 4;
/// `madvise`: accesses will be random (accepted; nothing changes).
pub const MADV_RANDOM: u64 = 1;
/// `madvise`: accesses will be sequential (accepted; nothing changes).
pub const MADV_SEQUENTIAL: u64 = 2;
/// `madvise`: the contents may be freed lazily (private anonymous memory only): here they are
/// freed at once, and the range reads as zero afterwards, one of the outcomes Linux allows.
pub const MADV_FREE: u64 = 8;
/// `madvise`: free the shared memory behind the range (Linux's hole punch): every mapping of
/// it, in every process, reads zero afterwards (shared and writable memory only).
pub const MADV_REMOVE: u64 = 9;
/// `madvise`: a fork's child does not get the range.
pub const MADV_DONTFORK: u64 = 10;
/// `madvise`: undoes `MADV_DONTFORK`.
pub const MADV_DOFORK: u64 = 11;
/// `madvise`: a fork's child gets the range empty, reading zero (private anonymous memory
/// only).
pub const MADV_WIPEONFORK: u64 = 18;
/// `madvise`: undoes `MADV_WIPEONFORK`.
pub const MADV_KEEPONFORK: u64 = 19;
/// `madvise`: the range is cold (accepted; meaningful once memory is reclaimed).
pub const MADV_COLD: u64 = 20;
/// `madvise`: page the range out (accepted; meaningful once memory is reclaimed).
pub const MADV_PAGEOUT: u64 = 21;
/// `madvise`: back the range now for reading; EFAULT where a read would fault.
pub const MADV_POPULATE_READ: u64 = 22;
/// `madvise`: back the range now for writing; EFAULT where a write would fault.
pub const MADV_POPULATE_WRITE: u64 = 23;

/// `madvise`: back the range with huge pages where it can (private anonymous memory, whole
/// aligned 2 MiB blocks, on their first write).
pub const MADV_HUGEPAGE: u64 = 14;
/// `madvise`: undoes `MADV_HUGEPAGE` (the default).
pub const MADV_NOHUGEPAGE: u64 = 15;
/// Every advice memd takes.
pub const KNOWN_ADVICE: [u64; 17] = [
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MADV_DONTNEED,
    MADV_FREE,
    MADV_REMOVE,
    MADV_DONTFORK,
    MADV_DOFORK,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_WIPEONFORK,
    MADV_KEEPONFORK,
    MADV_COLD,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
];

/// A decoded, validated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Map `len` bytes at or near `addr`.
    Mmap {
        /// Hint or fixed address (0: anywhere).
        addr: usize,
        /// Length in bytes (rounded up to pages).
        len: usize,
        /// Protection.
        prot: ProtectionFlags,
        /// Placement and backing.
        flags: MmapFlags,
    },
    /// Unmap `[addr, addr + len)`.
    Munmap {
        /// Page-aligned start.
        addr: usize,
        /// Length in bytes.
        len: usize,
    },
    /// Change the protection of `[addr, addr + len)`.
    Mprotect {
        /// Page-aligned start.
        addr: usize,
        /// Length in bytes.
        len: usize,
        /// New protection.
        prot: ProtectionFlags,
    },
    /// Set the break (0 queries it).
    Brk {
        /// The new break.
        addr: usize,
    },
    /// Move the break.
    Sbrk {
        /// Bytes to add (negative: release).
        increment: isize,
    },
    /// Advice about `[addr, addr + len)`.
    Madvise {
        /// Page-aligned start.
        addr: usize,
        /// Length in bytes.
        len: usize,
        /// One of the `MADV_*` values.
        advice: u64,
    },
    /// Fork the caller's address space.
    Fork,
    /// System statistics into the lent buffer.
    GlobalStats,
    /// A process's statistics into the lent buffer.
    ProcessStats {
        /// The process (0: the caller).
        pid: u64,
    },
    /// A process's regions that end above `from`, into the lent buffer.
    Regions {
        /// The process (0: the caller).
        pid: u64,
        /// Lowest address of interest.
        from: usize,
    },
    /// Start the boot module `name` as a child of the caller.
    Spawn {
        /// The module's name, NUL padded (at most [`MAX_NAME`] bytes before the first NUL).
        name: [u8; 48],
    },
    /// The index and length of the device range named `name`.
    Device {
        /// The name, NUL padded (at most [`MAX_NAME`] bytes before the first NUL).
        name: [u8; 48],
    },
    /// Map `len` bytes of device range `device` from byte `offset`, at or near `addr`.
    MapDevice {
        /// Hint or fixed address (0: anywhere).
        addr: usize,
        /// Length in bytes (rounded up to pages).
        len: usize,
        /// Protection.
        prot: ProtectionFlags,
        /// `SHARED` or `PRIVATE` (whether a fork's child keeps the mapping), and `FIXED` or
        /// `FIXED_NOREPLACE`; nothing else.
        flags: MmapFlags,
        /// The device's index ([`Request::Device`]).
        device: u32,
        /// How the pages are cached.
        caching: Caching,
        /// Byte offset in the device range (page aligned).
        offset: u64,
    },
    /// Give live child `pid` the capability of device range `device`.
    GrantDevice {
        /// The child.
        pid: u64,
        /// The device's index.
        device: u32,
    },
    /// Wait until child `pid` has died.
    Wait {
        /// The child.
        pid: u64,
        /// Answer at once, [`wait_status::RUNNING`] while the child lives ([`WAIT_NOHANG`]).
        nohang: bool,
    },
    /// The caller's argument string into the lent buffer.
    Args,
    /// The live processes with a pid of at least `from`, into the lent buffer.
    Processes {
        /// Lowest pid of interest.
        from: u64,
    },
    /// From now on no page of the caller (and of the processes it forks or spawns) is ever
    /// writable and executable at once, and none becomes executable that was not.
    DenyWriteExec,
    /// End the caller's live child `pid`.
    Kill {
        /// The child.
        pid: u64,
    },
    /// The caller's limit of `resource` (`RLIMIT_*`) into the lent buffer (soft, hard; when 16
    /// bytes are lent), and, with `new`, the limit set to it (soft, hard).
    Prlimit {
        /// Which limit.
        resource: u64,
        /// The new soft and hard limits, if any.
        new: Option<(u64, u64)>,
    },
    /// Which pages of `[addr, addr + len)` are resident: a byte a page into the lent buffer
    /// (bit 0 set when resident).
    Mincore {
        /// First byte (page aligned).
        addr: usize,
        /// Bytes.
        len: usize,
    },
    /// Lock the pages of `[addr, addr + len)` in (resident, and kept so), or unlock them.
    Mlock {
        /// First byte (rounded down to its page).
        addr: usize,
        /// Bytes.
        len: usize,
        /// Unlock instead (`munlock`).
        unlock: bool,
    },
    /// Lock every page in (`MCL_*` flags), or (`unlock`) unlock them all.
    Mlockall {
        /// `MCL_CURRENT`, `MCL_FUTURE`, `MCL_ONFAULT` (0 with `unlock`).
        flags: u64,
        /// Unlock everything instead (`munlockall`).
        unlock: bool,
    },
    /// Shrink, grow or move the mapping at `old_addr` (`MREMAP_*` flags).
    Mremap {
        /// Start of the old range (page aligned).
        old_addr: usize,
        /// Bytes of the old range (0: a second mapping of shared memory).
        old_len: usize,
        /// Bytes wanted.
        new_len: usize,
        /// `MREMAP_MAYMOVE`, `MREMAP_FIXED`, `MREMAP_DONTUNMAP`.
        flags: u64,
        /// Where to move to, with `MREMAP_FIXED`.
        new_addr: usize,
    },
    /// Faults of the caller that would kill it go to `entry` on the stack `[stack, stack +
    /// stack_len)` from now on (entry 0: to none, and the stack is ignored).
    FaultHandler {
        /// The handler's entry point (0: no handler).
        entry: u64,
        /// The lowest byte of the alternate stack.
        stack: u64,
        /// Bytes of the alternate stack.
        stack_len: u64,
    },
    /// Linux's `clear_refs` of the caller: [`CLEAR_REFS_MM_HIWATER_RSS`] starts its
    /// high-water mark of resident memory again.
    ClearRefs {
        /// What to clear.
        value: u64,
    },
    /// Write `[addr, addr + len)` back (`MS_*` flags).
    Msync {
        /// First byte (page aligned).
        addr: usize,
        /// Bytes.
        len: usize,
        /// `MS_ASYNC`, `MS_SYNC`, `MS_INVALIDATE`.
        flags: u64,
    },
}

impl Request {
    /// A `Spawn` of the module `name`; `None` if it is longer than [`MAX_NAME`] or holds a NUL.
    pub fn spawn(name: &str) -> Option<Request> {
        Some(Request::Spawn {
            name: padded_name(name)?,
        })
    }

    /// A `Device` lookup of `name`; `None` if it is longer than [`MAX_NAME`] or holds a NUL.
    pub fn device(name: &str) -> Option<Request> {
        Some(Request::Device {
            name: padded_name(name)?,
        })
    }

    /// The name of a `Spawn` or a `Device` (up to its first NUL); `None` for other requests
    /// or bad UTF-8.
    pub fn name(&self) -> Option<&str> {
        match self {
            Request::Spawn { name } | Request::Device { name } => {
                let n = name.iter().position(|&c| c == 0).unwrap_or(name.len());
                core::str::from_utf8(&name[..n]).ok()
            }
            _ => None,
        }
    }
}

/// `name` NUL padded to a request's 48 bytes; `None` if it is longer than [`MAX_NAME`] or
/// holds a NUL.
fn padded_name(name: &str) -> Option<[u8; 48]> {
    if name.len() > MAX_NAME || name.as_bytes().contains(&0) {
        return None;
    }
    let mut n = [0u8; 48];
    n[..name.len()].copy_from_slice(name.as_bytes());
    Some(n)
}

/// A padded name as six message words.
fn name_words(name: &[u8; 48]) -> [u64; 6] {
    let mut args = [0u64; 6];
    for (w, c) in args.iter_mut().zip(name.chunks_exact(8)) {
        *w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    }
    args
}

/// A padded name from six message words: not empty, ended by a NUL, only NULs after it.
fn words_name(a: &[u64; 6]) -> Result<[u8; 48], VmError> {
    let mut name = [0u8; 48];
    for (c, w) in name.chunks_exact_mut(8).zip(a) {
        c.copy_from_slice(&w.to_le_bytes());
    }
    let n = name
        .iter()
        .position(|&c| c == 0)
        .ok_or(VmError::BadRequest)?;
    if n == 0 || name[n..].iter().any(|&c| c != 0) {
        return Err(VmError::BadRequest);
    }
    Ok(name)
}

fn sqe(opcode: u8, args: [u64; 6]) -> Sqe {
    Sqe {
        opcode,
        args,
        ..Sqe::default()
    }
}

const PROT_BITS: usize = 0x0007_0000;
const MAP_BITS: usize = 0x000F;

impl Request {
    /// Encodes the request (the `caller` field is left for the transport to stamp).
    pub fn encode(&self) -> Sqe {
        match *self {
            Request::Mmap {
                addr,
                len,
                prot,
                flags,
            } => {
                let mut m = prot.to_map_flags();
                if flags.contains(MmapFlags::SHARED) {
                    m |= MapFlags::MAP_SHARED;
                }
                if flags.contains(MmapFlags::PRIVATE) {
                    m |= MapFlags::MAP_PRIVATE;
                }
                if flags.contains(MmapFlags::FIXED_NOREPLACE) {
                    m |= MapFlags::MAP_FIXED_NOREPLACE;
                } else if flags.contains(MmapFlags::FIXED) {
                    m |= MapFlags::MAP_FIXED;
                }
                let extra = EXTRA_FLAGS
                    .iter()
                    .filter(|(_, f)| flags.contains(*f))
                    .fold(0, |e, (bit, _)| e | bit);
                sqe(
                    MMAP,
                    [addr as u64, len as u64, m.bits() as u64, extra, 0, 0],
                )
            }
            Request::Munmap { addr, len } => sqe(MUNMAP, [addr as u64, len as u64, 0, 0, 0, 0]),
            Request::Mprotect { addr, len, prot } => sqe(
                MPROTECT,
                [
                    addr as u64,
                    len as u64,
                    prot.to_map_flags().bits() as u64,
                    0,
                    0,
                    0,
                ],
            ),
            Request::Brk { addr } => sqe(BRK, [addr as u64, 0, 0, 0, 0, 0]),
            Request::Sbrk { increment } => sqe(SBRK, [increment as i64 as u64, 0, 0, 0, 0, 0]),
            Request::Madvise { addr, len, advice } => {
                sqe(MADVISE, [addr as u64, len as u64, advice, 0, 0, 0])
            }
            Request::Fork => sqe(FORK, [0; 6]),
            Request::GlobalStats => sqe(GLOBAL_STATS, [0; 6]),
            Request::ProcessStats { pid } => sqe(PROCESS_STATS, [pid, 0, 0, 0, 0, 0]),
            Request::Regions { pid, from } => sqe(REGIONS, [pid, from as u64, 0, 0, 0, 0]),
            Request::Spawn { name } => sqe(SPAWN, name_words(&name)),
            Request::Device { name } => sqe(DEVICE, name_words(&name)),
            Request::MapDevice {
                addr,
                len,
                prot,
                flags,
                device,
                caching,
                offset,
            } => sqe(
                MAP_DEVICE,
                [
                    addr as u64,
                    len as u64,
                    u64::from(prot.bits()),
                    u64::from(flags.bits()),
                    u64::from(device) | (caching as u64) << 32,
                    offset,
                ],
            ),
            Request::GrantDevice { pid, device } => {
                sqe(GRANT_DEVICE, [pid, u64::from(device), 0, 0, 0, 0])
            }
            Request::Wait { pid, nohang } => sqe(
                WAIT,
                [pid, if nohang { WAIT_NOHANG } else { 0 }, 0, 0, 0, 0],
            ),
            Request::Args => sqe(ARGS, [0; 6]),
            Request::Processes { from } => sqe(PROCESSES, [from, 0, 0, 0, 0, 0]),
            Request::DenyWriteExec => sqe(DENY_WRITE_EXEC, [0; 6]),
            Request::Kill { pid } => sqe(KILL, [pid, 0, 0, 0, 0, 0]),
            Request::Prlimit { resource, new } => match new {
                Some((soft, hard)) => sqe(PRLIMIT, [resource, 1, soft, hard, 0, 0]),
                None => sqe(PRLIMIT, [resource, 0, 0, 0, 0, 0]),
            },
            Request::Mincore { addr, len } => sqe(MINCORE, [addr as u64, len as u64, 0, 0, 0, 0]),
            Request::FaultHandler {
                entry,
                stack,
                stack_len,
            } => sqe(FAULT_HANDLER, [entry, stack, stack_len, 0, 0, 0]),
            Request::ClearRefs { value } => sqe(CLEAR_REFS, [value, 0, 0, 0, 0, 0]),
            Request::Msync { addr, len, flags } => {
                sqe(MSYNC, [addr as u64, len as u64, flags, 0, 0, 0])
            }
            Request::Mlock { addr, len, unlock } => {
                sqe(MLOCK, [addr as u64, len as u64, unlock as u64, 0, 0, 0])
            }
            Request::Mlockall { flags, unlock } => {
                sqe(MLOCKALL, [flags, unlock as u64, 0, 0, 0, 0])
            }
            Request::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => sqe(
                MREMAP,
                [
                    old_addr as u64,
                    old_len as u64,
                    new_len as u64,
                    flags,
                    new_addr as u64,
                    0,
                ],
            ),
        }
    }

    /// Decodes and checks the shape of a request: the opcode, flag bits, and that unused
    /// arguments are zero. Addresses and lengths are checked by memd against the address
    /// space. Never panics, whatever the bytes.
    pub fn decode(sqe: &Sqe) -> Result<Request, VmError> {
        let a = sqe.args;
        let unused = |from: usize| -> Result<(), VmError> {
            if a[from..].iter().all(|&w| w == 0) {
                Ok(())
            } else {
                Err(VmError::BadRequest)
            }
        };
        let word = |w: u64| usize::try_from(w).map_err(|_| VmError::InvalidAddress);
        match sqe.opcode {
            MMAP => {
                unused(4)?;
                let bits = usize::try_from(a[2]).map_err(|_| VmError::InvalidFlags)?;
                if bits & !(PROT_BITS | MAP_BITS) != 0
                    || a[3] & !EXTRA_FLAGS.iter().fold(0, |e, (bit, _)| e | bit) != 0
                {
                    return Err(VmError::InvalidFlags);
                }
                let m = MapFlags::from_bits_retain(bits);
                let mut flags = MmapFlags::empty();
                if m.contains(MapFlags::MAP_SHARED) {
                    flags |= MmapFlags::SHARED;
                }
                if m.contains(MapFlags::MAP_PRIVATE) {
                    flags |= MmapFlags::PRIVATE;
                }
                match bits & MapFlags::MAP_FIXED_NOREPLACE.bits() {
                    0 => {}
                    0x4 => flags |= MmapFlags::FIXED,
                    0xC => flags |= MmapFlags::FIXED_NOREPLACE,
                    _ => return Err(VmError::InvalidFlags),
                }
                for (bit, flag) in EXTRA_FLAGS {
                    if a[3] & bit != 0 {
                        flags |= flag;
                    }
                }
                Ok(Request::Mmap {
                    addr: word(a[0])?,
                    len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                    prot: ProtectionFlags::from_map_flags(m),
                    flags,
                })
            }
            MUNMAP => {
                unused(2)?;
                Ok(Request::Munmap {
                    addr: word(a[0])?,
                    len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                })
            }
            MPROTECT => {
                unused(3)?;
                let bits = usize::try_from(a[2]).map_err(|_| VmError::InvalidFlags)?;
                if bits & !PROT_BITS != 0 {
                    return Err(VmError::InvalidFlags);
                }
                Ok(Request::Mprotect {
                    addr: word(a[0])?,
                    len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                    prot: ProtectionFlags::from_map_flags(MapFlags::from_bits_retain(bits)),
                })
            }
            BRK => {
                unused(1)?;
                Ok(Request::Brk { addr: word(a[0])? })
            }
            SBRK => {
                unused(1)?;
                let increment = isize::try_from(a[0] as i64).map_err(|_| VmError::InvalidSize)?;
                Ok(Request::Sbrk { increment })
            }
            MADVISE => {
                unused(3)?;
                if !KNOWN_ADVICE.contains(&a[2]) {
                    return Err(VmError::InvalidFlags);
                }
                Ok(Request::Madvise {
                    addr: word(a[0])?,
                    len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                    advice: a[2],
                })
            }
            FORK => {
                unused(0)?;
                Ok(Request::Fork)
            }
            GLOBAL_STATS => {
                unused(0)?;
                Ok(Request::GlobalStats)
            }
            PROCESS_STATS => {
                unused(1)?;
                Ok(Request::ProcessStats { pid: a[0] })
            }
            REGIONS => {
                unused(2)?;
                Ok(Request::Regions {
                    pid: a[0],
                    from: word(a[1])?,
                })
            }
            SPAWN => Ok(Request::Spawn {
                name: words_name(&a)?,
            }),
            DEVICE => Ok(Request::Device {
                name: words_name(&a)?,
            }),
            MAP_DEVICE => {
                let prot = u8::try_from(a[2])
                    .ok()
                    .and_then(ProtectionFlags::from_bits)
                    .ok_or(VmError::InvalidFlags)?;
                let flags = u32::try_from(a[3])
                    .ok()
                    .and_then(MmapFlags::from_bits)
                    .ok_or(VmError::InvalidFlags)?;
                let caching = Caching::from_wire(a[4] >> 32).ok_or(VmError::InvalidFlags)?;
                Ok(Request::MapDevice {
                    addr: word(a[0])?,
                    len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                    prot,
                    flags,
                    device: a[4] as u32,
                    caching,
                    offset: a[5],
                })
            }
            GRANT_DEVICE => {
                unused(2)?;
                Ok(Request::GrantDevice {
                    pid: a[0],
                    device: u32::try_from(a[1]).map_err(|_| VmError::NoSuchDevice)?,
                })
            }
            WAIT => {
                unused(2)?;
                if a[1] & !WAIT_NOHANG != 0 {
                    return Err(VmError::InvalidFlags);
                }
                Ok(Request::Wait {
                    pid: a[0],
                    nohang: a[1] & WAIT_NOHANG != 0,
                })
            }
            ARGS => {
                unused(0)?;
                Ok(Request::Args)
            }
            PROCESSES => {
                unused(1)?;
                Ok(Request::Processes { from: a[0] })
            }
            DENY_WRITE_EXEC => {
                unused(0)?;
                Ok(Request::DenyWriteExec)
            }
            KILL => {
                unused(1)?;
                Ok(Request::Kill { pid: a[0] })
            }
            PRLIMIT => match a[1] {
                0 => {
                    unused(1)?;
                    Ok(Request::Prlimit {
                        resource: a[0],
                        new: None,
                    })
                }
                1 => {
                    unused(4)?;
                    Ok(Request::Prlimit {
                        resource: a[0],
                        new: Some((a[2], a[3])),
                    })
                }
                _ => Err(VmError::InvalidFlags),
            },
            MINCORE => {
                unused(2)?;
                Ok(Request::Mincore {
                    addr: word(a[0])?,
                    len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                })
            }
            MLOCK => {
                unused(3)?;
                Ok(Request::Mlock {
                    addr: word(a[0])?,
                    len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                    unlock: match a[2] {
                        0 => false,
                        1 => true,
                        _ => return Err(VmError::InvalidFlags),
                    },
                })
            }
            MLOCKALL => {
                unused(2)?;
                Ok(Request::Mlockall {
                    flags: a[0],
                    unlock: match a[1] {
                        0 => false,
                        1 => true,
                        _ => return Err(VmError::InvalidFlags),
                    },
                })
            }
            MREMAP => {
                unused(5)?;
                Ok(Request::Mremap {
                    old_addr: word(a[0])?,
                    old_len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                    new_len: word(a[2]).map_err(|_| VmError::InvalidSize)?,
                    flags: a[3],
                    new_addr: word(a[4])?,
                })
            }
            CLEAR_REFS => {
                unused(1)?;
                Ok(Request::ClearRefs { value: a[0] })
            }
            FAULT_HANDLER => {
                unused(3)?;
                Ok(Request::FaultHandler {
                    entry: a[0],
                    stack: a[1],
                    stack_len: a[2],
                })
            }
            MSYNC => {
                unused(3)?;
                Ok(Request::Msync {
                    addr: word(a[0])?,
                    len: word(a[1]).map_err(|_| VmError::InvalidSize)?,
                    flags: a[2],
                })
            }
            _ => Err(VmError::BadRequest),
        }
    }
}

/// The 8 register words of a request: word 0 = opcode | flags << 8 | reserved << 16 |
/// tag << 32 (redox_syscall's `Sqe` layout, little endian), words 1..7 = args, word 7 = caller.
pub fn sqe_to_words(s: &Sqe) -> [u64; 8] {
    let a = s.args;
    let w0 = s.opcode as u64
        | (s.sqe_flags.bits() as u64) << 8
        | (s._rsvd as u64) << 16
        | (s.tag as u64) << 32;
    [w0, a[0], a[1], a[2], a[3], a[4], a[5], s.caller]
}

/// The request of 8 register words (see [`sqe_to_words`]).
pub fn sqe_from_words(w: &[u64; 8]) -> Sqe {
    Sqe {
        opcode: w[0] as u8,
        sqe_flags: syscall::schemev2::SqeFlags::from_bits_retain((w[0] >> 8) as u8),
        _rsvd: (w[0] >> 16) as u16,
        tag: (w[0] >> 32) as u32,
        args: [w[1], w[2], w[3], w[4], w[5], w[6]],
        caller: w[7],
    }
}

/// The 2 register words of a reply: flags | extra << 8 | tag << 32, then the result.
pub fn cqe_to_words(c: &Cqe) -> [u64; 2] {
    let e = c.extra_raw;
    let w0 = c.flags as u64
        | (e[0] as u64) << 8
        | (e[1] as u64) << 16
        | (e[2] as u64) << 24
        | (c.tag as u64) << 32;
    [w0, c.result]
}

/// The reply of 2 register words (see [`cqe_to_words`]).
pub fn cqe_from_words(w: [u64; 2]) -> Cqe {
    Cqe {
        flags: w[0] as u8,
        extra_raw: [(w[0] >> 8) as u8, (w[0] >> 16) as u8, (w[0] >> 24) as u8],
        tag: (w[0] >> 32) as u32,
        result: w[1],
    }
}

/// Largest errno a reply may carry; results above `usize::MAX - MAX_ERRNO` are errors.
const MAX_ERRNO: u64 = 4095;

/// Encodes a reply to the request whose tag is `tag`.
pub fn encode_reply(tag: u32, result: Result<u64, VmError>) -> Cqe {
    let (value, detail) = match result {
        Ok(v) => (v, 0),
        Err(e) => ((e.errno() as i64).wrapping_neg() as u64, e.detail()),
    };
    Cqe {
        flags: 0,
        extra_raw: [detail, 0, 0],
        tag,
        result: value,
    }
}

/// Decodes a reply: the value, or the error memd raised.
pub fn decode_reply(cqe: &Cqe) -> Result<u64, VmError> {
    if cqe.result > u64::MAX - MAX_ERRNO {
        let errno = cqe.result.wrapping_neg() as i32;
        Err(VmError::from_wire(errno, cqe.extra_raw[0]))
    } else {
        Ok(cqe.result)
    }
}

/// A structure sent as little-endian `u64` words in a lent buffer.
pub trait Words: Sized {
    /// Number of words.
    const WORDS: usize;
    /// Writes the words into `buf`; `false` if it is too small.
    fn write_to(&self, buf: &mut [u8]) -> bool;
    /// Reads the words from `buf`; `None` if it is too small.
    fn read_from(buf: &[u8]) -> Option<Self>;
}

macro_rules! wire_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: u64,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $field: u64,)* }

        impl Words for $name {
            const WORDS: usize = [$(stringify!($field)),*].len();
            fn write_to(&self, buf: &mut [u8]) -> bool {
                if buf.len() < Self::WORDS * 8 {
                    return false;
                }
                let mut chunks = buf.chunks_exact_mut(8);
                $(
                    if let Some(c) = chunks.next() {
                        c.copy_from_slice(&self.$field.to_le_bytes());
                    }
                )*
                true
            }
            fn read_from(buf: &[u8]) -> Option<Self> {
                if buf.len() < Self::WORDS * 8 {
                    return None;
                }
                let mut chunks = buf.chunks_exact(8);
                let mut next = || {
                    let mut w = [0u8; 8];
                    if let Some(c) = chunks.next() {
                        w.copy_from_slice(c);
                    }
                    u64::from_le_bytes(w)
                };
                Some($name { $($field: next(),)* })
            }
        }
    };
}

wire_struct! {
    /// System-wide statistics (like `free` and `vmstat`).
    pub struct GlobalStats {
        /// Frames memd was given.
        pub frames_total: u64,
        /// Frames free now.
        pub frames_free: u64,
        /// Frames in use now.
        pub frames_used: u64,
        /// Frames memd donated to the kernel as the page tables of all processes (part of
        /// `frames_used`).
        pub page_table_frames: u64,
        /// Faults resolved by a zero-filled frame.
        pub faults_zero_fill: u64,
        /// Faults resolved by copy-on-write (a copy or a regained write access).
        pub faults_cow: u64,
        /// Faults resolved by mapping an existing shared frame.
        pub faults_shared: u64,
        /// Faults refused, the process killed: no mapping (MAPERR).
        pub faults_maperr: u64,
        /// Faults refused, the process killed: protection (ACCERR).
        pub faults_accerr: u64,
        /// Frames copied for copy-on-write.
        pub cow_copies: u64,
        /// mmap calls served.
        pub ops_mmap: u64,
        /// munmap calls served.
        pub ops_munmap: u64,
        /// mprotect calls served.
        pub ops_mprotect: u64,
        /// brk and sbrk calls served.
        pub ops_brk: u64,
        /// madvise calls served.
        pub ops_madvise: u64,
        /// forks performed.
        pub ops_fork: u64,
        /// Requests refused with an error.
        pub ops_failed: u64,
        /// Processes alive.
        pub processes: u64,
        /// Bytes of frames in use (the seed's `total_allocated`).
        pub total_allocated: u64,
        /// Processes the out-of-memory policy killed.
        pub oom_kills: u64,
        /// Frames kept out of use for good because the kernel refused to destroy a space
        /// that might still map them (0 unless the kernel misbehaves).
        pub frames_quarantined: u64,
        /// Bytes of memd's own heap in use (its region maps, page maps, process records).
        pub memd_heap_used: u64,
        /// Bytes of memd's own heap (fixed at start).
        pub memd_heap_total: u64,
        /// Bytes of memd's memory the bookkeeping of all processes is counted for now
        /// (regions, resident pages, page tables).
        pub bookkeeping_used: u64,
        /// The most bytes that bookkeeping may take (past it requests get ENOMEM, faults kill).
        pub bookkeeping_total: u64,
        /// Processes killed for an exception other than a page fault (#GP, #UD, #DE, ...).
        pub kills_exception: u64,
        /// Processes their parent ended with a `KILL` request.
        pub kills_parent: u64,
        /// Faults delivered to the process's own handler instead of killing it.
        pub faults_handled: u64,
        /// Faults that backed a whole 2 MiB with one huge page.
        pub faults_huge: u64,
        /// The most frames in use at once since memd started (the system's high-water mark).
        pub frames_peak: u64,
        /// The most regions a process may have (`max_map_count`).
        pub limit_regions: u64,
        /// The most children, alive or not waited for, a process may have (0: no limit).
        pub limit_children: u64,
        /// The most processes at once (0: no limit): memd's records and the kernel's slots.
        pub limit_processes: u64,
    }
}

impl GlobalStats {
    /// Frames in use for data (the pages of processes and shared objects): `frames_used`
    /// without the page tables.
    pub fn data_frames(&self) -> u64 {
        self.frames_used.saturating_sub(self.page_table_frames)
    }
}

wire_struct! {
    /// One process's statistics (like `ps`).
    pub struct ProcessStats {
        /// The process.
        pub pid: u64,
        /// Regions in its address space (the seed's `region_count`).
        pub region_count: u64,
        /// Pages covered by its regions (VSZ; the seed's `mapped_pages`).
        pub mapped_pages: u64,
        /// Pages backed by a frame (RSS).
        pub resident_pages: u64,
        /// Resident pages whose frame is shared with another mapping.
        pub shared_pages: u64,
        /// Resident pages whose frame only this process maps.
        pub private_pages: u64,
        /// Bytes between the heap start and the break.
        pub heap_bytes: u64,
        /// Bytes of frames it maps (resident pages times the page size).
        pub total_allocated: u64,
        /// Frames memd donated as its page tables (spare ones included): charged to it.
        pub page_table_frames: u64,
        /// Huge pages (2 MiB each) among its resident pages.
        pub huge_pages: u64,
        /// Resident pages as Linux counts RSS: backed by a frame, not by memd's shared zero
        /// frame (which `resident_pages` counts).
        pub rss_pages: u64,
        /// The most `rss_pages` since the process started or last asked `CLEAR_REFS` 5
        /// (Linux's `VmHWM`).
        pub hwm_pages: u64,
    }
}

wire_struct! {
    /// One region of a process's address space (like a line of `pmap`).
    pub struct RegionInfo {
        /// First byte.
        pub start: u64,
        /// One past the last byte.
        pub end: u64,
        /// `ProtectionFlags` bits.
        pub prot: u64,
        /// Kind code (memd's `RegionKind` as a number).
        pub kind: u64,
        /// 1 when shared, 0 when private.
        pub shared: u64,
        /// Pages backed by a frame.
        pub resident_pages: u64,
    }
}

/// One live process (like a line of `ps`): its pid, its parent's pid (0: none) and the name of
/// the boot module it runs (NUL padded; empty if memd does not know it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process.
    pub pid: u64,
    /// Its parent (0: none, or memd does not know).
    pub parent: u64,
    /// Its program's name, NUL padded.
    pub name: [u8; 48],
}

impl Default for ProcessInfo {
    fn default() -> ProcessInfo {
        ProcessInfo {
            pid: 0,
            parent: 0,
            name: [0; 48],
        }
    }
}

impl ProcessInfo {
    /// The name up to its first NUL (empty if unknown or not UTF-8).
    pub fn name(&self) -> &str {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(48);
        core::str::from_utf8(&self.name[..n]).unwrap_or("")
    }
}

impl Words for ProcessInfo {
    const WORDS: usize = 8;
    fn write_to(&self, buf: &mut [u8]) -> bool {
        if buf.len() < Self::WORDS * 8 {
            return false;
        }
        buf[..8].copy_from_slice(&self.pid.to_le_bytes());
        buf[8..16].copy_from_slice(&self.parent.to_le_bytes());
        buf[16..64].copy_from_slice(&self.name);
        true
    }
    fn read_from(buf: &[u8]) -> Option<Self> {
        let buf = buf.get(..Self::WORDS * 8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[..8]);
        let pid = u64::from_le_bytes(w);
        w.copy_from_slice(&buf[8..16]);
        let mut name = [0u8; 48];
        name.copy_from_slice(&buf[16..64]);
        Some(ProcessInfo {
            pid,
            parent: u64::from_le_bytes(w),
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let all = [
            Request::Mmap {
                addr: 0x4000_0000,
                len: 8192,
                prot: ProtectionFlags::READ_WRITE,
                flags: MmapFlags::anonymous_private().fixed_noreplace().populate(),
            },
            Request::Mmap {
                addr: 0,
                len: 1,
                prot: ProtectionFlags::READ_EXEC,
                flags: MmapFlags::anonymous_shared().fixed(),
            },
            Request::Munmap {
                addr: 4096,
                len: 4096,
            },
            Request::Mprotect {
                addr: 4096,
                len: 4096,
                prot: ProtectionFlags::NONE,
            },
            Request::Brk { addr: 0 },
            Request::Sbrk { increment: -4096 },
            Request::Mremap {
                old_addr: 0x4000_0000,
                old_len: 8192,
                new_len: 1 << 20,
                flags: MREMAP_MAYMOVE | MREMAP_FIXED,
                new_addr: 0x5000_0000,
            },
            Request::Madvise {
                addr: 4096,
                len: 4096,
                advice: MADV_DONTNEED,
            },
            Request::Fork,
            Request::ClearRefs { value: 5 },
            Request::FaultHandler {
                entry: 0x40_1000,
                stack: 0x7000_0000,
                stack_len: 8192,
            },
            Request::GlobalStats,
            Request::ProcessStats { pid: 3 },
            Request::Regions {
                pid: 0,
                from: 0x1000,
            },
            Request::spawn("hello").unwrap(),
            Request::spawn(core::str::from_utf8(&[b'x'; MAX_NAME]).unwrap()).unwrap(),
            Request::Wait {
                pid: 9,
                nohang: false,
            },
            Request::Wait {
                pid: 9,
                nohang: true,
            },
            Request::Args,
            Request::Processes { from: 2 },
            Request::DenyWriteExec,
            Request::Kill { pid: 4 },
            Request::device("vga").unwrap(),
            Request::MapDevice {
                addr: 0x1000_0000,
                len: 8192,
                prot: ProtectionFlags::READ_WRITE,
                flags: MmapFlags::SHARED | MmapFlags::FIXED_NOREPLACE,
                device: 2,
                caching: Caching::WriteCombining,
                offset: 4096,
            },
            Request::GrantDevice { pid: 3, device: 1 },
        ];
        for r in all {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn garbage_is_refused() {
        let mut s = Request::Munmap { addr: 0, len: 1 }.encode();
        s.args[5] = 1;
        assert_eq!(Request::decode(&s), Err(VmError::BadRequest));
        s.opcode = 200;
        assert_eq!(Request::decode(&s), Err(VmError::BadRequest));
        let mut m = Request::Mmap {
            addr: 0,
            len: 4096,
            prot: ProtectionFlags::READ,
            flags: MmapFlags::anonymous_private(),
        }
        .encode();
        m.args[2] |= 0x100;
        assert_eq!(Request::decode(&m), Err(VmError::InvalidFlags));
        m.args[2] &= !0x100;
        m.args[3] = 0x8;
        assert_eq!(Request::decode(&m), Err(VmError::InvalidFlags));
        m.args[3] = 0x200;
        assert_eq!(Request::decode(&m), Err(VmError::InvalidFlags));
        let mut a = Request::Madvise {
            addr: 0,
            len: 1,
            advice: MADV_NORMAL,
        }
        .encode();
        a.args[2] = 77;
        assert_eq!(Request::decode(&a), Err(VmError::InvalidFlags));
    }

    #[test]
    fn spawn_names_are_checked() {
        assert!(Request::spawn(core::str::from_utf8(&[b'x'; 48]).unwrap()).is_none());
        assert!(Request::spawn("a\0b").is_none());
        assert_eq!(Request::spawn("memtest").unwrap().name(), Some("memtest"));
        let mut s = Request::spawn("ab").unwrap().encode();
        s.args[5] = 0x41 << 56;
        assert_eq!(Request::decode(&s), Err(VmError::BadRequest));
        s.args = [0; 6];
        assert_eq!(Request::decode(&s), Err(VmError::BadRequest));
        s.args = [u64::MAX; 6];
        assert_eq!(Request::decode(&s), Err(VmError::BadRequest));
    }

    #[test]
    fn words_round_trip() {
        let mut s = Request::Mmap {
            addr: 0x4000_0000,
            len: 8192,
            prot: ProtectionFlags::READ_WRITE,
            flags: MmapFlags::anonymous_private(),
        }
        .encode();
        s.tag = 0xDEAD_BEEF;
        s.caller = 0x10001;
        let w = sqe_to_words(&s);
        assert_eq!(w[0], kernel_shim::abi::sqe_word0(MMAP, 0, 0xDEAD_BEEF));
        assert_eq!(sqe_to_words(&sqe_from_words(&w)), w);
        let c = encode_reply(7, Err(VmError::AlreadyMapped));
        let back = cqe_from_words(cqe_to_words(&c));
        assert_eq!(decode_reply(&back), Err(VmError::AlreadyMapped));
        assert_eq!(back.tag, 7);
    }

    #[test]
    fn wait_statuses_decode() {
        assert_eq!(wait_status::code(wait_status::exited(7)), Some(7));
        let k = wait_status::fault(wait_status::ACCERR, wait_status::WRITE);
        assert_eq!(wait_status::code(k), None);
        assert_eq!(wait_status::reason(k), wait_status::ACCERR);
        assert_eq!(wait_status::access(k), wait_status::WRITE);
        assert_eq!(k as u32, 14);
        let p = wait_status::killed_by_parent();
        assert_eq!(wait_status::code(p), None);
        assert_eq!(wait_status::reason(p), wait_status::PARENT);
        assert_eq!(wait_status::code(wait_status::RUNNING), None);
        // The largest exit code is an exit, never a kill.
        assert_eq!(
            wait_status::code(wait_status::exited(u32::MAX)),
            Some(u32::MAX)
        );
    }

    #[test]
    fn wait_flags_and_kill_are_checked() {
        let mut w = Request::Wait {
            pid: 3,
            nohang: true,
        }
        .encode();
        assert_eq!(w.args[1], WAIT_NOHANG);
        w.args[1] = 2;
        assert_eq!(Request::decode(&w), Err(VmError::InvalidFlags));
        w.args[1] = 0;
        w.args[2] = 1;
        assert_eq!(Request::decode(&w), Err(VmError::BadRequest));
        let mut k = Request::Kill { pid: 3 }.encode();
        assert_eq!(k.opcode, KILL);
        k.args[1] = 1;
        assert_eq!(Request::decode(&k), Err(VmError::BadRequest));
    }

    #[test]
    fn replies_round_trip() {
        for r in [
            Ok(0),
            Ok(0x7fff_ffff_f000),
            Ok(0x1_ffff_fff4),
            Err(VmError::AlreadyMapped),
            Err(VmError::NotAligned),
            Err(VmError::Other(200)),
        ] {
            assert_eq!(decode_reply(&encode_reply(7, r)), r);
        }
    }

    #[test]
    fn stats_round_trip_and_short_buffers_are_refused() {
        let s = ProcessStats {
            pid: 1,
            region_count: 2,
            mapped_pages: 3,
            resident_pages: 4,
            shared_pages: 5,
            private_pages: 6,
            heap_bytes: 7,
            total_allocated: 8,
            page_table_frames: 9,
            huge_pages: 10,
            rss_pages: 11,
            hwm_pages: 12,
        };
        let mut buf = [0u8; 96];
        assert!(s.write_to(&mut buf));
        assert_eq!(ProcessStats::read_from(&buf), Some(s));
        assert!(!s.write_to(&mut buf[..95]));
        assert_eq!(ProcessStats::read_from(&buf[..10]), None);
        assert_eq!(GlobalStats::WORDS, 33);
        // The fields added last stay last: older readers see the same first 21 words.
        let g = GlobalStats {
            frames_quarantined: 21,
            kills_parent: 27,
            faults_handled: 28,
            faults_huge: 29,
            frames_peak: 30,
            ..GlobalStats::default()
        };
        let mut buf = [0u8; 33 * 8];
        assert!(g.write_to(&mut buf));
        assert_eq!(buf[20 * 8], 21);
        assert_eq!(buf[26 * 8], 27);
        assert_eq!(buf[27 * 8], 28);
        assert_eq!(buf[28 * 8], 29);
        assert_eq!(buf[29 * 8], 30);
    }

    #[test]
    fn process_infos_round_trip() {
        let mut p = ProcessInfo {
            pid: 3,
            parent: 1,
            name: [0; 48],
        };
        p.name[..4].copy_from_slice(b"init");
        let mut buf = [0u8; 64];
        assert!(p.write_to(&mut buf));
        assert_eq!(ProcessInfo::read_from(&buf), Some(p));
        assert_eq!(
            ProcessInfo::read_from(&buf).map(|p| p.name().len()),
            Some(4)
        );
        assert!(!p.write_to(&mut buf[..63]));
        assert_eq!(ProcessInfo::read_from(&buf[..63]), None);
        let mut s = Request::Processes { from: 0 }.encode();
        s.args[1] = 1;
        assert_eq!(Request::decode(&s), Err(VmError::BadRequest));
    }
}
