//! Statistics: event counters for the whole system, memd's own memory, and the figures of each
//! process, computed from its address space when asked.

use crate::daemon::{Memd, Pid};
use crate::kernel::{Kernel, PAGE_SIZE};
use crate::space::AddressSpace;
use core::sync::atomic::{AtomicU64, Ordering};
use libvm::VmError;
use libvm::proto::{CLEAR_REFS_MM_HIWATER_RSS, GlobalStats, ProcessStats, RegionInfo};

/// Event counters, bumped without a lock, and the figures of memd's own heap its host reports
/// ([`Memd::set_own_memory`]).
#[derive(Default)]
pub struct Counters {
    /// Faults resolved with a zero-filled frame.
    pub zero_fill: AtomicU64,
    /// Faults resolved by copy-on-write.
    pub cow: AtomicU64,
    /// Faults resolved by mapping an existing shared-object frame.
    pub shared: AtomicU64,
    /// Faults refused, the process killed: nothing mapped there.
    pub maperr: AtomicU64,
    /// Faults refused, the process killed: protection.
    pub accerr: AtomicU64,
    /// Faults delivered to the process's own handler.
    pub handled: AtomicU64,
    /// Faults that backed a whole 2 MiB with one huge page.
    pub huge: AtomicU64,
    /// Frames copied for copy-on-write.
    pub cow_copies: AtomicU64,
    /// mmap calls.
    pub mmap: AtomicU64,
    /// munmap calls.
    pub munmap: AtomicU64,
    /// mprotect calls.
    pub mprotect: AtomicU64,
    /// brk and sbrk calls.
    pub brk: AtomicU64,
    /// madvise calls.
    pub madvise: AtomicU64,
    /// forks.
    pub fork: AtomicU64,
    /// Requests refused.
    pub failed: AtomicU64,
    /// Processes killed by the out-of-memory policy.
    pub oom_kills: AtomicU64,
    /// Processes killed for an exception other than a page fault.
    pub kills_exception: AtomicU64,
    /// Processes their parent ended with a `KILL` request.
    pub kills_parent: AtomicU64,
    /// Bytes of memd's own heap in use, as last reported.
    pub heap_used: AtomicU64,
    /// Bytes of memd's own heap, as last reported.
    pub heap_total: AtomicU64,
    /// Children a process may have, as its host keeps them (0: no limit).
    pub limit_children: AtomicU64,
    /// Processes at once, as its host keeps them (0: no limit).
    pub limit_processes: AtomicU64,
}

/// A kill the core does not see: the server's, counted with [`Memd::count_kill`] (the core
/// counts the kills for refused page faults and out of memory itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// The process raised an exception other than a page fault (the kernel ends it).
    Exception,
    /// Its parent asked, with a `KILL` request.
    Parent,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl<K: Kernel> Memd<K> {
    /// Records the figures of memd's own heap, which only its host knows (the allocator on
    /// the metal): `used` bytes of `total`. [`Memd::global_stats`] reports the last ones.
    pub fn set_own_memory(&self, used: u64, total: u64) {
        self.counters.heap_used.store(used, Ordering::Relaxed);
        self.counters.heap_total.store(total, Ordering::Relaxed);
    }

    /// The limits memd's host keeps (on the metal: the children a process may have, and the
    /// processes at once that memd's records and the kernel's slots allow), for
    /// `GLOBAL_STATS`; 0: none.
    pub fn set_host_limits(&self, children: u64, processes: u64) {
        self.counters
            .limit_children
            .store(children, Ordering::Relaxed);
        self.counters
            .limit_processes
            .store(processes, Ordering::Relaxed);
    }

    /// Counts a kill of the server's (see [`Kill`]).
    pub fn count_kill(&self, kill: Kill) {
        bump(match kill {
            Kill::Exception => &self.counters.kills_exception,
            Kill::Parent => &self.counters.kills_parent,
        });
    }

    /// System-wide statistics.
    pub fn global_stats(&self) -> GlobalStats {
        let (total, free, peak) = {
            let frames = self.frames.lock();
            (frames.total(), frames.free(), frames.peak_used())
        };
        let c = &self.counters;
        GlobalStats {
            frames_total: total,
            frames_free: free,
            frames_used: total - free,
            page_table_frames: self.table_frames.load(Ordering::Relaxed),
            faults_zero_fill: get(&c.zero_fill),
            faults_cow: get(&c.cow),
            faults_shared: get(&c.shared),
            faults_maperr: get(&c.maperr),
            faults_accerr: get(&c.accerr),
            cow_copies: get(&c.cow_copies),
            ops_mmap: get(&c.mmap),
            ops_munmap: get(&c.munmap),
            ops_mprotect: get(&c.mprotect),
            ops_brk: get(&c.brk),
            ops_madvise: get(&c.madvise),
            ops_fork: get(&c.fork),
            ops_failed: get(&c.failed),
            processes: self.processes.read().len() as u64,
            total_allocated: (total - free) * PAGE_SIZE,
            oom_kills: get(&c.oom_kills),
            frames_quarantined: self.quarantined.load(Ordering::Relaxed),
            memd_heap_used: get(&c.heap_used),
            memd_heap_total: get(&c.heap_total),
            bookkeeping_used: self.bookkeeping() as u64,
            bookkeeping_total: self.budget() as u64,
            kills_exception: get(&c.kills_exception),
            kills_parent: get(&c.kills_parent),
            faults_handled: get(&c.handled),
            faults_huge: get(&c.huge),
            frames_peak: peak,
            limit_regions: self.config.limits.regions as u64,
            limit_children: get(&c.limit_children),
            limit_processes: get(&c.limit_processes),
        }
    }

    /// The figures of process `pid`.
    pub fn process_stats(&self, pid: Pid) -> Result<ProcessStats, VmError> {
        let process = self.process(pid)?;
        let space = Self::lock_live(&process)?;
        let frames = &self.frames;
        let shared = space
            .pages
            .iter()
            .filter(|&(_, f)| frames.refcount(f) > 1)
            .count() as u64;
        let resident = space.pages.len() as u64;
        Ok(ProcessStats {
            pid,
            region_count: space.regions.len() as u64,
            mapped_pages: space.mapped_bytes / PAGE_SIZE,
            resident_pages: resident,
            shared_pages: shared,
            private_pages: resident - shared,
            heap_bytes: space.brk - space.heap_start,
            total_allocated: resident * PAGE_SIZE,
            page_table_frames: space.tables.len() as u64,
            huge_pages: space.huge.len() as u64,
            rss_pages: space.pages.rss() as u64,
            hwm_pages: space.pages.peak() as u64,
        })
    }

    /// Linux's `clear_refs` of process `pid`: [`CLEAR_REFS_MM_HIWATER_RSS`] starts its
    /// high-water mark of resident memory again from what is resident now. The values that
    /// clear page-table bits on Linux (1 to 4) have nothing to clear here: `InvalidFlags`.
    pub fn clear_refs(&self, pid: Pid, value: u64) -> Result<(), VmError> {
        if value != CLEAR_REFS_MM_HIWATER_RSS {
            return Err(VmError::InvalidFlags);
        }
        self.with_space(pid, |s| {
            s.pages.reset_peak();
            Ok(())
        })
    }

    /// The regions of process `pid` that end above `from`, as many as `out` holds; returns how
    /// many were written.
    pub fn regions(&self, pid: Pid, from: u64, out: &mut [RegionInfo]) -> Result<usize, VmError> {
        let process = self.process(pid)?;
        let space = Self::lock_live(&process)?;
        let mut n = 0;
        for (slot, region) in out.iter_mut().zip(regions_from(&space, from)) {
            *slot = RegionInfo {
                start: region.start,
                end: region.end,
                prot: region.prot.bits() as u64,
                kind: region.kind.code(),
                shared: region.shared as u64,
                resident_pages: space.resident(region.start, region.end).count() as u64,
            };
            n += 1;
        }
        Ok(n)
    }
}

fn regions_from(space: &AddressSpace, from: u64) -> impl Iterator<Item = &crate::region::Region> {
    space.regions.overlapping(from, u64::MAX)
}
