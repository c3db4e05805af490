//! `Vm`: the memory calls of one process, over one transport.
//!
//! Each method encodes a [`Request`], makes one call through the transport and decodes the
//! reply; an error memd raised comes back as the same [`VmError`]. Nothing memd checks is
//! checked here (alignment, lengths, flags, limits: all memd's); libvm only refuses what would
//! make it misbehave itself: a bulk answer shorter than the structure it should hold, or a
//! region listing that does not move forward, is [`VmError::BadBuffer`].
//!
//! | method | request | reply value |
//! |---|---|---|
//! | [`Vm::mmap`] | `MMAP` | address |
//! | [`Vm::munmap`], [`Vm::mprotect`], [`Vm::madvise`] | `MUNMAP`, `MPROTECT`, `MADVISE` | 0 |
//! | [`Vm::brk`] | `BRK` | new break |
//! | [`Vm::sbrk`] | `SBRK` | old break |
//! | [`Vm::fork`] | `FORK` | child pid |
//! | [`Vm::global_stats`], [`Vm::process_stats`] | `GLOBAL_STATS`, `PROCESS_STATS` | words written |
//! | [`Vm::regions`] | `REGIONS`, repeated | entries written per call |
//! | [`Vm::spawn`] | `SPAWN` | child pid |
//! | [`Vm::wait`] | `WAIT` | [`proto::wait_status`] word (and the fault address) |
//! | [`Vm::try_wait`] | `WAIT` with [`proto::WAIT_NOHANG`] | as `wait`, or `None` while the child lives |
//! | [`Vm::kill`] | `KILL` | 0 |
//! | [`Vm::spawn_with_args`] | `SPAWN`, the argument string lent | child pid |
//! | [`Vm::args`] | `ARGS` | the argument string's length |
//! | [`Vm::processes`] | `PROCESSES`, repeated | entries written per call |

use crate::error::{VmError, VmResult};
use crate::flags::{Caching, MmapFlags, ProtectionFlags};
use crate::proto::{self, GlobalStats, ProcessInfo, ProcessStats, RegionInfo, Request, Words};
use crate::transport::Transport;
use alloc::vec::Vec;
use syscall::error::EOVERFLOW;

/// Region entries asked for per `REGIONS` call (the lent buffer holds this many).
pub const REGIONS_PER_CALL: usize = 64;

/// Process entries asked for per `PROCESSES` call.
pub const PROCESSES_PER_CALL: usize = 32;

/// Bytes of one `RegionInfo` on the wire.
const REGION_BYTES: usize = RegionInfo::WORDS * 8;

/// Bytes of the buffer lent for a statistics call: room for the largest structure.
const STATS_BYTES: usize = 8 * if GlobalStats::WORDS > ProcessStats::WORDS {
    GlobalStats::WORDS
} else {
    ProcessStats::WORDS
};

/// A device range, as [`Vm::device`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its index, for [`Vm::map_device`] and [`Vm::grant_device`].
    pub index: u32,
    /// Its length in bytes.
    pub len: u64,
}

/// The seed's summary of the caller's memory, taken from its [`ProcessStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes of frames the process maps (resident pages times the page size).
    pub total_allocated: usize,
    /// Regions in its address space.
    pub region_count: usize,
    /// Pages covered by its regions, resident or not.
    pub mapped_pages: usize,
}

/// The memory calls of one process, bound to the transport that reaches memd.
#[derive(Clone, Debug)]
pub struct Vm<T: Transport> {
    transport: T,
}

/// A reply value as a `usize` (every value fits on x86_64; elsewhere `EOVERFLOW`).
fn to_usize(value: u64) -> VmResult<usize> {
    usize::try_from(value).map_err(|_| VmError::Other(EOVERFLOW))
}

impl<T: Transport> Vm<T> {
    /// A handle whose calls go through `transport`.
    pub const fn new(transport: T) -> Vm<T> {
        Vm { transport }
    }

    /// The transport the calls go through.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// One call: encode, send with `bulk` lent, decode the reply value.
    fn call(&self, request: Request, bulk: &mut [u8]) -> VmResult<u64> {
        proto::decode_reply(&self.transport.call(&request.encode(), bulk))
    }

    /// `mmap` with Linux's numeric `prot` and `flags` (`PROT_*`, `MAP_*`), read as Linux reads
    /// them for anonymous memory ([`ProtectionFlags::from_linux`], [`MmapFlags::from_linux`]):
    /// unknown bits ignored, a mapping type other than shared or private EINVAL.
    pub fn mmap_linux(&self, addr: usize, length: usize, prot: u64, flags: u64) -> VmResult<usize> {
        let flags = MmapFlags::from_linux(flags)?;
        self.mmap(addr, length, ProtectionFlags::from_linux(prot), flags)
    }

    /// Maps `length` bytes with protection `prot`, at `addr` if `flags` has `FIXED` or
    /// `FIXED_NOREPLACE`, else where memd places it (`addr` is then a hint, 0 for none).
    /// Returns the address of the mapping.
    pub fn mmap(
        &self,
        addr: usize,
        length: usize,
        prot: ProtectionFlags,
        flags: MmapFlags,
    ) -> VmResult<usize> {
        let request = Request::Mmap {
            addr,
            len: length,
            prot,
            flags,
        };
        to_usize(self.call(request, &mut [])?)
    }

    /// [`Vm::mmap`], returning the mapping as a pointer (with exposed provenance: the memory
    /// was not allocated by Rust).
    pub fn mmap_ptr(
        &self,
        addr: usize,
        length: usize,
        prot: ProtectionFlags,
        flags: MmapFlags,
    ) -> VmResult<*mut u8> {
        self.mmap(addr, length, prot, flags)
            .map(core::ptr::with_exposed_provenance_mut)
    }

    /// Unmaps every page of `[addr, addr + length)`; pages not mapped are skipped.
    pub fn munmap(&self, addr: usize, length: usize) -> VmResult<()> {
        self.call(Request::Munmap { addr, len: length }, &mut [])
            .map(|_| ())
    }

    /// Sets the protection of `[addr, addr + length)` to `prot`.
    pub fn mprotect(&self, addr: usize, length: usize, prot: ProtectionFlags) -> VmResult<()> {
        let request = Request::Mprotect {
            addr,
            len: length,
            prot,
        };
        self.call(request, &mut []).map(|_| ())
    }

    /// Sets the program break to `addr` (0 only asks for it). Returns the break now.
    pub fn brk(&self, addr: usize) -> VmResult<usize> {
        to_usize(self.call(Request::Brk { addr }, &mut [])?)
    }

    /// Moves the program break by `increment` bytes (negative releases). Returns the old
    /// break, which is the start of the new memory when growing.
    pub fn sbrk(&self, increment: isize) -> VmResult<usize> {
        to_usize(self.call(Request::Sbrk { increment }, &mut [])?)
    }

    /// Gives `advice` (one of [`proto::MADV_NORMAL`], [`proto::MADV_WILLNEED`],
    /// [`proto::MADV_DONTNEED`]) about `[addr, addr + length)`.
    pub fn madvise(&self, addr: usize, length: usize, advice: u64) -> VmResult<()> {
        let request = Request::Madvise {
            addr,
            len: length,
            advice,
        };
        self.call(request, &mut []).map(|_| ())
    }

    /// Copies the caller's address space into a new process (private memory copy-on-write,
    /// shared memory shared). Returns the child's pid.
    pub fn fork(&self) -> VmResult<u64> {
        // No other thread is inside the heap, or the graveyard of detached threads, while
        // they are copied (see `hold_for_fork`).
        #[cfg(all(target_arch = "x86_64", any(target_os = "none", feature = "metal")))]
        let _graves = crate::sys::thread::hold_for_fork();
        let _heap = crate::heap::hold_for_fork();
        self.call(Request::Fork, &mut [])
    }

    /// Starts the boot module `name` as a child process (on the metal; memd's core alone
    /// refuses it). Returns the child's pid.
    pub fn spawn(&self, name: &str) -> VmResult<u64> {
        let request = Request::spawn(name).ok_or(VmError::InvalidSize)?;
        self.call(request, &mut [])
    }

    /// Starts the boot module `name` as a child, with the argument string `args` (at most
    /// [`proto::MAX_ARGS`] bytes; the child reads it with [`Vm::args`]). Returns the child's pid.
    pub fn spawn_with_args(&self, name: &str, args: &str) -> VmResult<u64> {
        let request = Request::spawn(name).ok_or(VmError::InvalidSize)?;
        if args.len() > proto::MAX_ARGS {
            return Err(VmError::InvalidSize);
        }
        let mut bytes = [0u8; proto::MAX_ARGS];
        bytes[..args.len()].copy_from_slice(args.as_bytes());
        self.call(request, &mut bytes[..args.len()])
    }

    /// The argument string this process was spawned with (empty if none; a forked child has
    /// its parent's), as bytes.
    pub fn args(&self) -> VmResult<Vec<u8>> {
        let mut buf = [0u8; proto::MAX_ARGS];
        let n = self.call(Request::Args, &mut buf)?;
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= buf.len())
            .ok_or(VmError::BadBuffer)?;
        Ok(buf[..n].to_vec())
    }

    /// From now on no page of this process (nor of the processes it forks or spawns) is ever
    /// writable and executable at once, and none becomes executable that was not: `mmap` and
    /// `mprotect` asking for it get `PermissionDenied` (EACCES), as under Linux's
    /// `prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)`. It cannot be undone.
    pub fn deny_write_exec(&self) -> VmResult<()> {
        self.call(Request::DenyWriteExec, &mut []).map(drop)
    }

    /// Linux's `clear_refs` of the caller: [`proto::CLEAR_REFS_MM_HIWATER_RSS`] (5) starts its
    /// high-water mark of resident memory (`ProcessStats::hwm_pages`) again from what is
    /// resident now; any other value is `InvalidFlags`.
    pub fn clear_refs(&self, value: u64) -> VmResult<()> {
        self.call(Request::ClearRefs { value }, &mut []).map(drop)
    }

    /// Every live process, lowest pid first, asked for [`PROCESSES_PER_CALL`] at a time until a
    /// call returns fewer.
    pub fn processes(&self) -> VmResult<Vec<ProcessInfo>> {
        const BYTES: usize = ProcessInfo::WORDS * 8;
        let mut buf = [0u8; PROCESSES_PER_CALL * BYTES];
        let mut out: Vec<ProcessInfo> = Vec::new();
        let mut from = 0u64;
        loop {
            let written = self.call(Request::Processes { from }, &mut buf)?;
            let written = usize::try_from(written)
                .ok()
                .filter(|&n| n <= PROCESSES_PER_CALL)
                .ok_or(VmError::BadBuffer)?;
            for entry in buf.chunks_exact(BYTES).take(written) {
                out.push(ProcessInfo::read_from(entry).ok_or(VmError::BadBuffer)?);
            }
            if written < PROCESSES_PER_CALL {
                return Ok(out);
            }
            let next = out.last().map_or(0, |p| p.pid.saturating_add(1));
            if next <= from {
                return Err(VmError::BadBuffer);
            }
            from = next;
        }
    }

    /// Waits until child `pid` has died (on the metal). Returns its [`proto::wait_status`]
    /// word and, for a refused page fault, the faulting address (else 0).
    pub fn wait(&self, pid: u64) -> VmResult<(u64, u64)> {
        let mut addr = [0u8; 8];
        let status = self.call(Request::Wait { pid, nohang: false }, &mut addr)?;
        Ok((status, u64::from_le_bytes(addr)))
    }

    /// As [`Vm::wait`], without waiting: `None` while child `pid` lives (its status is then
    /// still to be had, by this or by [`Vm::wait`]).
    pub fn try_wait(&self, pid: u64) -> VmResult<Option<(u64, u64)>> {
        let mut addr = [0u8; 8];
        let status = self.call(Request::Wait { pid, nohang: true }, &mut addr)?;
        if status == proto::wait_status::RUNNING {
            return Ok(None);
        }
        Ok(Some((status, u64::from_le_bytes(addr))))
    }

    /// The device range named `name` (from the kernel command line's `device=NAME:BASE:LEN`):
    /// its index, for [`Vm::map_device`] and [`Vm::grant_device`], and its length. Anyone may
    /// look a device up; only a holder of its capability may map it. `NoSuchDevice` if there
    /// is none of that name (or the kernel refused its range).
    pub fn device(&self, name: &str) -> VmResult<Device> {
        let request = Request::device(name).ok_or(VmError::InvalidSize)?;
        let v = self.call(request, &mut [])?;
        Ok(Device {
            index: (v & 0xFF) as u32,
            len: v >> 8 << 12,
        })
    }

    /// Maps `len` bytes of device range `device` from byte `offset` (page aligned), at or near
    /// `addr` as `mmap` places (`flags`: `SHARED` or `PRIVATE`, and `FIXED` or
    /// `FIXED_NOREPLACE`), cached as `caching`. The pages are the device's own: never zeroed,
    /// never copied on write; `SHARED` decides only whether a fork's child keeps the mapping.
    /// Refused with `NotPermitted` unless this process holds the device's capability (the
    /// first program holds every device; a holder may [`Vm::grant_device`] one to a child),
    /// `NoSuchDevice` for an unknown index, `InvalidSize` for a range past the device's end.
    #[allow(clippy::too_many_arguments)]
    pub fn map_device(
        &self,
        addr: usize,
        len: usize,
        prot: ProtectionFlags,
        flags: MmapFlags,
        device: u32,
        offset: u64,
        caching: Caching,
    ) -> VmResult<usize> {
        let request = Request::MapDevice {
            addr,
            len,
            prot,
            flags,
            device,
            caching,
            offset,
        };
        self.call(request, &mut []).map(|a| a as usize)
    }

    /// Gives live child `pid` the capability of device range `device`, which this process
    /// holds (`NotPermitted` if it does not; `NoSuchProcess` unless `pid` is a live child).
    pub fn grant_device(&self, pid: u64, device: u32) -> VmResult<()> {
        self.call(Request::GrantDevice { pid, device }, &mut [])
            .map(drop)
    }

    /// Ends child `pid` of this process at once (its memory returned, as at an exit); its
    /// status, for [`Vm::wait`], is [`proto::wait_status::killed_by_parent`]. Not a live child
    /// of this process: `NoSuchProcess`.
    pub fn kill(&self, pid: u64) -> VmResult<()> {
        self.call(Request::Kill { pid }, &mut []).map(drop)
    }

    /// One statistics structure, read from a lent buffer of exactly its size.
    fn bulk<W: Words>(&self, request: Request) -> VmResult<W> {
        const { assert!(W::WORDS * 8 <= STATS_BYTES) };
        let mut buf = [0u8; STATS_BYTES];
        let lent = &mut buf[..W::WORDS * 8];
        let written = self.call(request, lent)?;
        if written < W::WORDS as u64 {
            return Err(VmError::BadBuffer);
        }
        W::read_from(lent).ok_or(VmError::BadBuffer)
    }

    /// System-wide statistics.
    pub fn global_stats(&self) -> VmResult<GlobalStats> {
        self.bulk(Request::GlobalStats)
    }

    /// Statistics of process `pid` (0: the caller).
    pub fn process_stats(&self, pid: u64) -> VmResult<ProcessStats> {
        self.bulk(Request::ProcessStats { pid })
    }

    /// Every region of process `pid` (0: the caller), lowest first, asked for
    /// [`REGIONS_PER_CALL`] at a time until a call returns fewer. Each call asks for the
    /// regions ending above the end of the last one received, so the listing is consistent per
    /// call but not a snapshot if the address space changes between calls.
    pub fn regions(&self, pid: u64) -> VmResult<Vec<RegionInfo>> {
        let mut buf = [0u8; REGIONS_PER_CALL * REGION_BYTES];
        let mut regions = Vec::new();
        let mut from = 0usize;
        loop {
            let written = self.call(Request::Regions { pid, from }, &mut buf)?;
            let written = usize::try_from(written)
                .ok()
                .filter(|&n| n <= REGIONS_PER_CALL)
                .ok_or(VmError::BadBuffer)?;
            for entry in buf.chunks_exact(REGION_BYTES).take(written) {
                regions.push(RegionInfo::read_from(entry).ok_or(VmError::BadBuffer)?);
            }
            if written < REGIONS_PER_CALL {
                return Ok(regions);
            }
            let next = regions
                .last()
                .and_then(|last| usize::try_from(last.end).ok())
                .ok_or(VmError::BadBuffer)?;
            if next <= from {
                // memd answered with regions that do not end above `from`: asking again
                // would never finish.
                return Err(VmError::BadBuffer);
            }
            from = next;
        }
    }

    /// Which pages of `[addr, addr + length)` are resident, as `mincore`: a byte a page into
    /// `vec` (bit 0 set when resident). Linux's answers: unaligned EINVAL; a range with a page
    /// not mapped ENOMEM; `vec` shorter than the pages `BadBuffer`.
    pub fn mincore(&self, addr: usize, length: usize, vec: &mut [u8]) -> VmResult<()> {
        self.call(Request::Mincore { addr, len: length }, vec)
            .map(drop)
    }

    /// Locks the pages of `[addr, addr + length)` in, as `mlock`: resident now and kept so
    /// (`MADV_DONTNEED` is refused on them). Linux's answers: a range with a page not mapped,
    /// or more locked pages than `RLIMIT_MEMLOCK` allows, ENOMEM.
    pub fn mlock(&self, addr: usize, length: usize) -> VmResult<()> {
        let request = Request::Mlock {
            addr,
            len: length,
            unlock: false,
        };
        self.call(request, &mut []).map(drop)
    }

    /// Unlocks the pages of `[addr, addr + length)`, as `munlock`.
    pub fn munlock(&self, addr: usize, length: usize) -> VmResult<()> {
        let request = Request::Mlock {
            addr,
            len: length,
            unlock: true,
        };
        self.call(request, &mut []).map(drop)
    }

    /// Shrinks, grows or moves the mapping at `old_addr`, as `mremap`, and answers where it is
    /// now (`proto::MREMAP_MAYMOVE`, `MREMAP_FIXED` with `new_addr`, `MREMAP_DONTUNMAP`).
    /// Its contents, protection and sharing go with it; a move carries the pages, not copies.
    /// Linux's answers: unknown or inconsistent flags, an unaligned address, a new length of
    /// 0, EINVAL; an old range not within one mapping EFAULT; no room ENOMEM.
    pub fn mremap(
        &self,
        old_addr: usize,
        old_len: usize,
        new_len: usize,
        flags: u64,
        new_addr: usize,
    ) -> VmResult<usize> {
        let request = Request::Mremap {
            old_addr,
            old_len,
            new_len,
            flags,
            new_addr,
        };
        self.call(request, &mut []).map(|addr| addr as usize)
    }

    /// Locks every page in, as `mlockall` (`proto::MCL_CURRENT`, `MCL_FUTURE`,
    /// `MCL_ONFAULT`): unknown flags, none, or `MCL_ONFAULT` alone EINVAL.
    pub fn mlockall(&self, flags: u64) -> VmResult<()> {
        let request = Request::Mlockall {
            flags,
            unlock: false,
        };
        self.call(request, &mut []).map(drop)
    }

    /// Unlocks every page, and those to come, as `munlockall`.
    pub fn munlockall(&self) -> VmResult<()> {
        let request = Request::Mlockall {
            flags: 0,
            unlock: true,
        };
        self.call(request, &mut []).map(drop)
    }

    /// `msync` of `[addr, addr + length)` with `flags` (`proto::MS_*`): Linux's checks
    /// (unknown flags, or `MS_ASYNC` with `MS_SYNC`, EINVAL; unaligned EINVAL; a range that
    /// overflows or has a page not mapped ENOMEM; an empty one nothing); anonymous memory has
    /// nothing to write back.
    pub fn msync(&self, addr: usize, length: usize, flags: u64) -> VmResult<()> {
        self.call(
            Request::Msync {
                addr,
                len: length,
                flags,
            },
            &mut [],
        )
        .map(drop)
    }

    /// The caller's limit of `resource` (`proto::RLIMIT_AS`, `RLIMIT_DATA`, `RLIMIT_STACK`,
    /// `RLIMIT_MEMLOCK`) and, with `new`, sets it (Linux's `prlimit` on itself): the soft
    /// limit at most the hard one (else `InvalidSize`, EINVAL), the hard one only lowered
    /// (else `NotPermitted`, EPERM); an unknown resource is `InvalidFlags`. Returns the limit
    /// as it was (soft, hard). A fork inherits the limits.
    pub fn prlimit(&self, resource: u64, new: Option<(u64, u64)>) -> VmResult<(u64, u64)> {
        let mut old = [0u8; 16];
        self.call(Request::Prlimit { resource, new }, &mut old)?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&old[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Ok((word(0), word(1)))
    }

    /// The caller's limit of `resource` (soft, hard), as `getrlimit`.
    pub fn getrlimit(&self, resource: u64) -> VmResult<(u64, u64)> {
        self.prlimit(resource, None)
    }

    /// Sets the caller's limit of `resource`, as `setrlimit` (see [`Vm::prlimit`]).
    pub fn setrlimit(&self, resource: u64, soft: u64, hard: u64) -> VmResult<()> {
        self.prlimit(resource, Some((soft, hard))).map(drop)
    }

    /// Registers `entry` as the process's fault handler, and `[stack, stack + stack_len)` as
    /// the calling thread's alternate stack, which the handler runs on when this thread
    /// faults (see [`crate::fault`]); stack and length 0 give the calling thread none (Linux's
    /// `SS_DISABLE`: the handler runs on its own stack), entry 0 removes the handler and every
    /// thread's stack. An entry or a stack outside the user half is `InvalidAddress` (EINVAL),
    /// a stack smaller than [`crate::fault::MIN_STACK`] `OutOfMemory` (ENOMEM, as
    /// `sigaltstack`), a stack for one thread more than
    /// [`kernel_shim::abi::MAX_THREADS_PER_SPACE`] have `LimitExceeded`. Returns the entry
    /// registered before (0: none).
    pub fn set_fault_handler(&self, entry: u64, stack: u64, stack_len: u64) -> VmResult<u64> {
        let request = Request::FaultHandler {
            entry,
            stack,
            stack_len,
        };
        self.call(request, &mut [])
    }

    /// The mappings of process `pid` (0: the caller) in the form of Linux's `/proc/self/maps`
    /// (see [`crate::maps`]).
    pub fn proc_maps(&self, pid: u64) -> VmResult<alloc::string::String> {
        Ok(crate::maps::maps(&self.regions(pid)?))
    }

    /// The seed's summary of the caller's memory.
    pub fn memory_stats(&self) -> VmResult<MemoryStats> {
        let stats = self.process_stats(0)?;
        Ok(MemoryStats {
            total_allocated: to_usize(stats.total_allocated)?,
            region_count: to_usize(stats.region_count)?,
            mapped_pages: to_usize(stats.mapped_pages)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::ALL_ERRORS;
    use crate::proto::{Cqe, MADV_DONTNEED, Sqe, encode_reply};
    use crate::transport::doubles::{Recorder, answering};

    fn same(a: &Sqe, b: &Sqe) -> bool {
        a[..] == b[..]
    }

    /// Every method once: the request it must send and the buffer length it must lend.
    fn every_call<T: Transport>(vm: &Vm<T>) -> [(VmResult<u64>, Request, usize); 9] {
        let prot = ProtectionFlags::READ_WRITE;
        let flags = MmapFlags::anonymous_private().fixed();
        [
            (
                vm.mmap(0x4000_0000, 8192, prot, flags).map(|v| v as u64),
                Request::Mmap {
                    addr: 0x4000_0000,
                    len: 8192,
                    prot,
                    flags,
                },
                0,
            ),
            (
                vm.munmap(0x4000_1000, 4096).map(|_| 0),
                Request::Munmap {
                    addr: 0x4000_1000,
                    len: 4096,
                },
                0,
            ),
            (
                vm.mprotect(0x4000_0000, 4096, ProtectionFlags::READ)
                    .map(|_| 0),
                Request::Mprotect {
                    addr: 0x4000_0000,
                    len: 4096,
                    prot: ProtectionFlags::READ,
                },
                0,
            ),
            (
                vm.brk(0x1000_2000).map(|v| v as u64),
                Request::Brk { addr: 0x1000_2000 },
                0,
            ),
            (
                vm.sbrk(-4096).map(|v| v as u64),
                Request::Sbrk { increment: -4096 },
                0,
            ),
            (
                vm.madvise(0x4000_0000, 4096, MADV_DONTNEED).map(|_| 0),
                Request::Madvise {
                    addr: 0x4000_0000,
                    len: 4096,
                    advice: MADV_DONTNEED,
                },
                0,
            ),
            (vm.fork(), Request::Fork, 0),
            (
                vm.global_stats().map(|s| s.frames_total),
                Request::GlobalStats,
                GlobalStats::WORDS * 8,
            ),
            (
                vm.process_stats(7).map(|s| s.pid),
                Request::ProcessStats { pid: 7 },
                ProcessStats::WORDS * 8,
            ),
        ]
    }

    #[test]
    fn each_method_sends_exactly_its_request() {
        let memd = answering(Ok(0x4000_0000));
        let vm = Vm::new(&memd);
        let calls = every_call(&vm);
        let sent = memd.sent();
        assert_eq!(sent.len(), calls.len());
        for ((_, request, lent), (sqe, len)) in calls.iter().zip(&sent) {
            assert!(same(sqe, &request.encode()), "{request:?}: sent {sqe:?}");
            assert_eq!(*len, *lent, "{request:?}");
            assert_eq!(Request::decode(sqe), Ok(*request));
        }
        // The mmap words as memd reads them.
        assert_eq!(sent[0].0.opcode, proto::MMAP);
        assert_eq!(sent[0].0.args[..2], [0x4000_0000, 8192]);
        assert_eq!(sent[0].0.args[3], proto::EXTRA_ANONYMOUS);
        assert_eq!(sent[4].0.args[0], (-4096i64) as u64);
    }

    #[test]
    fn reply_values_come_back() {
        let vm = Vm::new(answering(Ok(0x1000_3000)));
        assert_eq!(
            vm.mmap(0, 1, ProtectionFlags::READ, MmapFlags::anonymous_private()),
            Ok(0x1000_3000)
        );
        assert_eq!(
            vm.mmap_ptr(0, 1, ProtectionFlags::READ, MmapFlags::anonymous_private())
                .map(|p| p.addr()),
            Ok(0x1000_3000)
        );
        assert_eq!(vm.brk(0), Ok(0x1000_3000));
        assert_eq!(vm.sbrk(4096), Ok(0x1000_3000));
        assert_eq!(vm.fork(), Ok(0x1000_3000));
        assert_eq!(vm.munmap(0x1000, 1), Ok(()));
    }

    #[test]
    fn every_error_comes_back_from_every_method() {
        for error in ALL_ERRORS {
            let vm = Vm::new(answering(Err(error)));
            for (result, request, _) in every_call(&vm) {
                assert_eq!(result, Err(error), "{request:?}");
            }
            assert_eq!(vm.regions(0), Err(error));
            assert_eq!(vm.memory_stats(), Err(error));
        }
    }

    /// A memd double writing `stats` and claiming `words` were written.
    fn writing<W: Words + Copy>(stats: W, words: u64) -> impl Fn(&Sqe, &mut [u8]) -> Cqe {
        move |sqe: &Sqe, bulk: &mut [u8]| {
            let wrote = stats.write_to(bulk);
            encode_reply(
                sqe.tag,
                if wrote {
                    Ok(words)
                } else {
                    Err(VmError::BadBuffer)
                },
            )
        }
    }

    #[test]
    fn stats_are_decoded_and_short_answers_refused() {
        let stats = ProcessStats {
            pid: 4,
            region_count: 5,
            mapped_pages: 6,
            resident_pages: 3,
            shared_pages: 1,
            private_pages: 2,
            heap_bytes: 8192,
            total_allocated: 3 * 4096,
            page_table_frames: 4,
            huge_pages: 0,
            rss_pages: 3,
            hwm_pages: 7,
        };
        let full = Vm::new(Recorder::new(writing(stats, ProcessStats::WORDS as u64)));
        assert_eq!(full.process_stats(0), Ok(stats));
        assert_eq!(
            full.memory_stats(),
            Ok(MemoryStats {
                total_allocated: 3 * 4096,
                region_count: 5,
                mapped_pages: 6,
            })
        );
        let (sqe, _) = full.transport().sent()[1];
        assert!(same(&sqe, &Request::ProcessStats { pid: 0 }.encode()));

        let short = Vm::new(Recorder::new(writing(
            stats,
            ProcessStats::WORDS as u64 - 1,
        )));
        assert_eq!(short.process_stats(0), Err(VmError::BadBuffer));
        assert_eq!(short.memory_stats(), Err(VmError::BadBuffer));

        let global = GlobalStats {
            frames_total: 1000,
            total_allocated: 77,
            ..GlobalStats::default()
        };
        let full = Vm::new(Recorder::new(writing(global, GlobalStats::WORDS as u64)));
        assert_eq!(full.global_stats(), Ok(global));
        let short = Vm::new(Recorder::new(writing(global, 3)));
        assert_eq!(short.global_stats(), Err(VmError::BadBuffer));
    }

    /// A memd double holding `count` one-page regions, 2 pages apart, answering `REGIONS` as
    /// memd does: the regions ending above `from`, as many as the buffer holds.
    fn region_map(count: u64) -> impl Fn(&Sqe, &mut [u8]) -> Cqe {
        move |sqe: &Sqe, bulk: &mut [u8]| {
            let from = sqe.args[1];
            let mut written = 0;
            let above = (0..count)
                .map(|i| RegionInfo {
                    start: 0x4000_0000 + i * 0x2000,
                    end: 0x4000_1000 + i * 0x2000,
                    prot: 3,
                    kind: 2,
                    shared: i % 2,
                    resident_pages: i,
                })
                .filter(|r| r.end > from);
            for (region, chunk) in above.zip(bulk.chunks_exact_mut(REGION_BYTES)) {
                region.write_to(chunk);
                written += 1;
            }
            encode_reply(sqe.tag, Ok(written))
        }
    }

    #[test]
    fn regions_page_through_the_whole_map() {
        for (count, calls) in [(0u64, 1usize), (5, 1), (64, 2), (150, 3), (256, 5)] {
            let vm = Vm::new(Recorder::new(region_map(count)));
            let regions = vm.regions(3).unwrap();
            assert_eq!(regions.len() as u64, count);
            for (i, r) in regions.iter().enumerate() {
                assert_eq!(r.start, 0x4000_0000 + i as u64 * 0x2000);
                assert_eq!(r.resident_pages, i as u64);
            }
            let sent = vm.transport().sent();
            assert_eq!(sent.len(), calls, "{count} regions");
            for (k, (sqe, lent)) in sent.iter().enumerate() {
                let from = if k == 0 {
                    0
                } else {
                    regions[k * REGIONS_PER_CALL - 1].end as usize
                };
                assert!(same(sqe, &Request::Regions { pid: 3, from }.encode()));
                assert_eq!(*lent, REGIONS_PER_CALL * REGION_BYTES);
            }
        }
    }

    #[test]
    fn try_wait_tells_a_live_child_from_a_status_and_kill_names_the_child() {
        use crate::proto::wait_status;
        let memd = Recorder::new(
            |sqe: &Sqe, bulk: &mut [u8]| match (sqe.opcode, sqe.args[0]) {
                (proto::WAIT, 5) => encode_reply(sqe.tag, Ok(wait_status::RUNNING)),
                (proto::WAIT, _) => {
                    bulk.copy_from_slice(&0x1000u64.to_le_bytes());
                    encode_reply(sqe.tag, Ok(wait_status::fault(1, 2)))
                }
                (proto::KILL, 5) => encode_reply(sqe.tag, Ok(0)),
                _ => encode_reply(sqe.tag, Err(VmError::NoSuchProcess)),
            },
        );
        let vm = Vm::new(&memd);
        assert_eq!(vm.try_wait(5), Ok(None));
        assert_eq!(vm.try_wait(6), Ok(Some((wait_status::fault(1, 2), 0x1000))));
        assert_eq!(vm.kill(5), Ok(()));
        assert_eq!(vm.kill(6), Err(VmError::NoSuchProcess));
        let sent = memd.sent();
        assert!(same(
            &sent[0].0,
            &Request::Wait {
                pid: 5,
                nohang: true
            }
            .encode()
        ));
        assert_eq!(sent[0].1, 8);
        assert!(same(&sent[2].0, &Request::Kill { pid: 5 }.encode()));
    }

    #[test]
    fn regions_refuse_answers_that_would_misbehave() {
        // More entries than the buffer holds.
        let vm = Vm::new(answering(Ok(REGIONS_PER_CALL as u64 + 1)));
        assert_eq!(vm.regions(0), Err(VmError::BadBuffer));
        // A full buffer of regions that do not move past `from`: would ask forever.
        let vm = Vm::new(answering(Ok(REGIONS_PER_CALL as u64)));
        assert_eq!(vm.regions(0), Err(VmError::BadBuffer));
        assert_eq!(vm.transport().sent().len(), 1);
    }

    #[test]
    fn spawn_lends_its_arguments_and_args_and_processes_are_read_back() {
        let memd = Recorder::new(|sqe: &Sqe, bulk: &mut [u8]| match sqe.opcode {
            proto::ARGS => {
                bulk[..5].copy_from_slice(b"-p 42");
                encode_reply(sqe.tag, Ok(5))
            }
            proto::PROCESSES => {
                let mut p = ProcessInfo {
                    pid: 1,
                    parent: 0,
                    name: [0; 48],
                };
                p.name[..4].copy_from_slice(b"init");
                p.write_to(bulk);
                encode_reply(sqe.tag, Ok(1))
            }
            _ => encode_reply(sqe.tag, Ok(bulk.len() as u64)),
        });
        let vm = Vm::new(&memd);
        assert_eq!(vm.spawn_with_args("memstat", "--json"), Ok(6));
        assert_eq!(vm.args().as_deref(), Ok(&b"-p 42"[..]));
        let ps = vm.processes().unwrap();
        assert_eq!((ps.len(), ps[0].pid, ps[0].name()), (1, 1, "init"));
        let sent = memd.sent();
        assert_eq!(sent[0].0.opcode, proto::SPAWN);
        assert_eq!(sent[0].1, 6);
        let long = core::str::from_utf8(&[b'a'; proto::MAX_ARGS + 1]).unwrap();
        assert_eq!(vm.spawn_with_args("x", long), Err(VmError::InvalidSize));
    }
}
