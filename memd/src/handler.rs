//! The request handler: decode and validate a message, perform it, encode the reply.
//!
//! The caller's identity is the badge the kernel stamped (`caller`), never a field the client
//! wrote. A malformed or hostile message gets an error reply, never a panic.

use crate::daemon::{Memd, Pid};
use crate::kernel::Kernel;
use crate::stats::bump;
use libvm::VmError;
use libvm::proto::{self, Cqe, ProcessInfo, RegionInfo, Request, Sqe, Words};

/// Most regions one `REGIONS` reply carries, whatever the buffer size.
const MAX_REGIONS_PER_REPLY: usize = 256;

impl<K: Kernel> Memd<K> {
    /// Serves one request from thread `thread` (the kernel's id) of process `caller` (the
    /// kernel's badge); `bulk` is the buffer the client lent for the call.
    pub fn handle(&self, caller: Pid, thread: u64, request: &Sqe, bulk: &mut [u8]) -> Cqe {
        self.handle_decoded(caller, thread, request.tag, Request::decode(request), bulk)
    }

    /// [`Memd::handle`] of a request its server has decoded already: `decoded` is what
    /// [`Request::decode`] made of the message tagged `tag`.
    pub fn handle_decoded(
        &self,
        caller: Pid,
        thread: u64,
        tag: u32,
        decoded: Result<Request, VmError>,
        bulk: &mut [u8],
    ) -> Cqe {
        let result = decoded.and_then(|r| self.perform(caller, thread, r, bulk));
        if result.is_err() {
            bump(&self.counters.failed);
        }
        proto::encode_reply(tag, result)
    }

    fn perform(
        &self,
        caller: Pid,
        thread: u64,
        request: Request,
        bulk: &mut [u8],
    ) -> Result<u64, VmError> {
        let target = |pid: u64| if pid == 0 { caller } else { pid };
        match request {
            Request::Mmap {
                addr,
                len,
                prot,
                flags,
            } => self.mmap(caller, addr as u64, len as u64, prot, flags),
            Request::Munmap { addr, len } => {
                self.munmap(caller, addr as u64, len as u64).map(|_| 0)
            }
            Request::Mprotect { addr, len, prot } => self
                .mprotect(caller, addr as u64, len as u64, prot)
                .map(|_| 0),
            Request::Brk { addr } => self.brk(caller, addr as u64),
            Request::Sbrk { increment } => self.sbrk(caller, increment as i64),
            Request::Madvise { addr, len, advice } => self
                .madvise(caller, addr as u64, len as u64, advice)
                .map(|_| 0),
            Request::Fork => self.fork(caller, thread),
            Request::Device { .. } => {
                self.process(caller)?;
                let (index, len) = self.device(request.name().unwrap_or(""))?;
                Ok(u64::from(index) | (len / crate::kernel::PAGE_SIZE) << 8)
            }
            Request::MapDevice {
                addr,
                len,
                prot,
                flags,
                device,
                caching,
                offset,
            } => self.map_device(
                caller,
                addr as u64,
                len as u64,
                prot,
                flags,
                device,
                offset,
                caching,
            ),
            Request::DenyWriteExec => self.deny_write_exec(caller).map(|()| 0),
            Request::ClearRefs { value } => self.clear_refs(caller, value).map(|()| 0),
            Request::Mlock { addr, len, unlock } => self
                .mlock(caller, addr as u64, len as u64, unlock)
                .map(|()| 0),
            Request::Mlockall { flags, unlock } => self.mlockall(caller, flags, unlock).map(|()| 0),
            Request::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => self.mremap(
                caller,
                old_addr as u64,
                old_len as u64,
                new_len as u64,
                flags,
                new_addr as u64,
            ),
            Request::Mincore { addr, len } => self.mincore(caller, addr as u64, len as u64, bulk),
            Request::FaultHandler {
                entry,
                stack,
                stack_len,
            } => self.set_fault_handler(caller, thread, entry, stack, stack_len),
            Request::Msync { addr, len, flags } => self
                .msync(caller, addr as u64, len as u64, flags)
                .map(|()| 0),
            Request::Prlimit { resource, new } => {
                let new = new.map(|(soft, hard)| crate::rlimit::Rlimit { soft, hard });
                let old = self.prlimit(caller, resource, new)?;
                // The old limits go into the lent buffer, when it holds them.
                if let Some(out) = bulk.get_mut(..16) {
                    out[..8].copy_from_slice(&old.soft.to_le_bytes());
                    out[8..].copy_from_slice(&old.hard.to_le_bytes());
                }
                Ok(0)
            }
            // Boot modules and deferred replies are the metal side's (`metal/serve.rs`); the
            // core alone cannot start a program or block a caller.
            // Argument strings too: they come with a `SPAWN`; and `KILL` and `GRANT_DEVICE`,
            // which need to know who is whose parent.
            Request::Spawn { .. }
            | Request::Wait { .. }
            | Request::Args
            | Request::Kill { .. }
            | Request::GrantDevice { .. } => Err(VmError::BadRequest),
            Request::Processes { from } => {
                self.process(caller)?;
                // The core knows pids only; the metal side adds parents and names.
                let mut n = 0;
                let slots = bulk.chunks_exact_mut(ProcessInfo::WORDS * 8);
                for (pid, chunk) in self.pids().into_iter().filter(|&p| p >= from).zip(slots) {
                    let info = ProcessInfo {
                        pid,
                        ..ProcessInfo::default()
                    };
                    info.write_to(chunk);
                    n += 1;
                }
                if n == 0 && bulk.len() < ProcessInfo::WORDS * 8 {
                    return Err(VmError::BadBuffer);
                }
                Ok(n)
            }
            Request::GlobalStats => {
                self.process(caller)?;
                write_bulk(&self.global_stats(), bulk)
            }
            Request::ProcessStats { pid } => {
                self.process(caller)?;
                write_bulk(&self.process_stats(target(pid))?, bulk)
            }
            Request::Regions { pid, from } => {
                self.process(caller)?;
                let room = (bulk.len() / (RegionInfo::WORDS * 8)).min(MAX_REGIONS_PER_REPLY);
                if room == 0 {
                    return Err(VmError::BadBuffer);
                }
                let mut infos = alloc::vec![RegionInfo::default(); room];
                let n = self.regions(target(pid), from as u64, &mut infos)?;
                for (info, chunk) in infos[..n]
                    .iter()
                    .zip(bulk.chunks_exact_mut(RegionInfo::WORDS * 8))
                {
                    info.write_to(chunk);
                }
                Ok(n as u64)
            }
        }
    }
}

fn write_bulk<T: Words>(value: &T, bulk: &mut [u8]) -> Result<u64, VmError> {
    if value.write_to(bulk) {
        Ok(T::WORDS as u64)
    } else {
        Err(VmError::BadBuffer)
    }
}
