//! `Memd`: the daemon's state, shared by every thread that serves requests.
//!
//! Locks, always taken in this order: one process (`Process`), then the shared-memory objects,
//! then the frame allocator. The process table itself is a read-mostly `RwLock` held only long
//! enough to find a process, so clients of different processes never queue behind each other.

use crate::aslr::Aslr;
use crate::frame_cache::Frames;
use crate::frames::FrameAllocator;
use crate::kernel::{FrameAddr, Kernel, SpaceId};
use crate::shared::SharedObjects;
use crate::space::{AddressSpace, Limits};
use crate::stats::Counters;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use hashbrown::HashMap;
use libvm::VmError;
use spin::{Mutex, MutexGuard, RwLock};

/// A process as memd knows it: identified by the badge the kernel stamps on its messages.
pub type Pid = u64;

/// How memd is set up.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Limits given to every new process (a fork inherits its parent's).
    pub limits: Limits,
    /// Bytes of memd's own memory that the bookkeeping of all processes together may take
    /// (regions at [`REGION_COST`], resident pages and page-table frames at [`PAGE_COST`]
    /// each): past it a
    /// request gets ENOMEM, or the faulting process is killed, and memd keeps running.
    pub bookkeeping: usize,
    /// The process the out-of-memory policy never picks (init), if any.
    pub oom_exempt: Option<Pid>,
    /// The seed of address-space layout randomization; `None`: every process gets the fixed
    /// layout (see [`crate::aslr`]).
    pub aslr_seed: Option<[u8; 32]>,
    /// Huge pages wherever they fit unless `MADV_NOHUGEPAGE` says otherwise (Linux's `always`
    /// mode); `false`, the default: only where `MADV_HUGEPAGE` asks (`madvise` mode).
    pub huge_always: bool,
}

/// Bytes of memd's memory one region is counted for (its share of a tree node, listing and
/// object entry, and its gap's node in the placement index).
pub const REGION_COST: usize = 192;
/// Bytes of memd's memory one resident page (or page-table frame) is counted for (its slot
/// in the page map).
pub const PAGE_COST: usize = 16;
/// Bytes of memd's memory one chunk of the page map is counted for (its array of
/// [`crate::pages::CHUNK_PAGES`] slots and its entry: a process whose pages lie far apart
/// pays for the chunks it makes).
pub const CHUNK_COST: usize = 576;
/// Bytes of memd's memory one thread's alternate stack is counted for (its entry in its
/// process's list).
pub const ALT_STACK_COST: usize = 32;

impl Default for Config {
    fn default() -> Config {
        Config {
            limits: Limits::default(),
            bookkeeping: 1 << 30,
            oom_exempt: None,
            aslr_seed: None,
            huge_always: false,
        }
    }
}

/// Why a process died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// It exited with this status.
    Exited(i32),
    /// It was killed for a fault memd refused.
    Killed(crate::fault::FaultKill),
}

/// The memory daemon: every address space, the frames, the shared objects, the statistics.
pub struct Memd<K: Kernel> {
    pub(crate) kernel: K,
    pub(crate) frames: Frames,
    pub(crate) objects: Mutex<SharedObjects>,
    pub(crate) processes: RwLock<HashMap<Pid, Arc<Mutex<AddressSpace>>>>,
    pub(crate) dead: Mutex<HashMap<Pid, Death>>,
    pub(crate) counters: Counters,
    pub(crate) config: Config,
    /// Bytes of bookkeeping of all processes together (see [`Config::bookkeeping`]).
    bookkeeping: AtomicUsize,
    /// The most bytes it may take: [`Config::bookkeeping`], raised as memd's own memory grows
    /// ([`Memd::take_own_memory`]).
    budget: AtomicUsize,
    next_pid: AtomicU64,
    /// Frames donated to the kernel as page tables of all spaces (see [`crate::tables`]).
    pub(crate) table_frames: AtomicU64,
    /// Frames kept out of use for good because the kernel refused to destroy a space that
    /// may still map them.
    pub(crate) quarantined: AtomicU64,
    /// Processes the out-of-memory policy killed that no fault reply names (not the faulting
    /// one), for the server to announce and report to their parents.
    pub(crate) oom_victims: Mutex<alloc::vec::Vec<Pid>>,
    /// Held while the out-of-memory policy picks and ends a victim: faults that run short at
    /// once (memd serves from several threads) do not each kill a process for one shortage.
    pub(crate) oom_lock: Mutex<()>,
    /// Out-of-memory kills so far: a fault that ran short and then waited for `oom_lock`
    /// tries again, instead of killing, when another fault's kill freed memory meanwhile.
    pub(crate) oom_epoch: core::sync::atomic::AtomicU64,
    /// The layouts of new processes.
    pub(crate) aslr: Mutex<Aslr>,
    /// The shared zero frame: the first read of a private anonymous page maps it read-only,
    /// the first write replaces it with a frame of its own (`None` only when memd had no
    /// frame to spare for it at start). memd holds one reference, so it is never freed.
    pub(crate) zero: Option<FrameAddr>,
    /// The device ranges processes may be given (see [`crate::device`]).
    pub(crate) devices: RwLock<alloc::vec::Vec<crate::device::DeviceRange>>,
}

impl<K: Kernel> Memd<K> {
    /// Starts memd with the kernel capability and the free physical ranges it was given.
    pub fn new(kernel: K, ranges: &[(u64, u64)], config: Config) -> Memd<K> {
        if let Some(seed) = config.aslr_seed {
            let mut word = [0u8; 8];
            word.copy_from_slice(&seed[24..]);
            crate::gaps::set_seed(u64::from_le_bytes(word));
        }
        let mut frames = FrameAllocator::new(ranges);
        let zero = frames.alloc();
        if let Some(frame) = zero {
            kernel.zero_frame(frame);
        }
        Memd {
            kernel,
            frames: Frames::new(frames),
            objects: Mutex::new(SharedObjects::default()),
            processes: RwLock::new(HashMap::new()),
            dead: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            config,
            bookkeeping: AtomicUsize::new(0),
            budget: AtomicUsize::new(config.bookkeeping),
            next_pid: AtomicU64::new(1),
            table_frames: AtomicU64::new(0),
            quarantined: AtomicU64::new(0),
            oom_victims: Mutex::new(alloc::vec::Vec::new()),
            oom_lock: Mutex::new(()),
            oom_epoch: core::sync::atomic::AtomicU64::new(0),
            aslr: Mutex::new(Aslr::new(config.aslr_seed)),
            zero,
            devices: RwLock::new(alloc::vec::Vec::new()),
        }
    }

    /// The kernel capability memd was started with.
    pub fn kernel(&self) -> &K {
        &self.kernel
    }

    /// The process `pid`, if it is alive.
    pub(crate) fn process(&self, pid: Pid) -> Result<Arc<Mutex<AddressSpace>>, VmError> {
        self.processes
            .read()
            .get(&pid)
            .cloned()
            .ok_or(VmError::NoSuchProcess)
    }

    /// Locks the image of a process found by [`Memd::process`]; `NoSuchProcess` if the
    /// process ended since. (Another thread may end it between the lookup and the lock: its
    /// image is then the empty one marked [`AddressSpace::ended`], and nothing done to that one
    /// would ever be undone: a region, a frame or a page table added there would be lost.)
    pub(crate) fn lock_live(
        process: &Mutex<AddressSpace>,
    ) -> Result<MutexGuard<'_, AddressSpace>, VmError> {
        let space = process.lock();
        if space.ended {
            return Err(VmError::NoSuchProcess);
        }
        Ok(space)
    }

    /// The kernel's address space of process `pid`.
    pub fn space_of(&self, pid: Pid) -> Result<SpaceId, VmError> {
        self.with_space(pid, |s| Ok(s.space))
    }

    /// Every live process, in pid order.
    pub fn pids(&self) -> alloc::vec::Vec<Pid> {
        let mut pids: alloc::vec::Vec<Pid> = self.processes.read().keys().copied().collect();
        pids.sort_unstable();
        pids
    }

    /// How process `pid` died, once it has (and forgets it: a second call gives `None`).
    pub fn reap(&self, pid: Pid) -> Option<Death> {
        self.dead.lock().remove(&pid)
    }

    /// The processes the out-of-memory policy killed since the last call, other than a
    /// faulting process (whose fault reply says it): their deaths are recorded ([`Memd::reap`]).
    pub fn take_oom_victims(&self) -> alloc::vec::Vec<Pid> {
        core::mem::take(&mut *self.oom_victims.lock())
    }

    /// Sets the limits of a live process.
    pub fn set_limits(&self, pid: Pid, limits: Limits) -> Result<(), VmError> {
        self.with_space(pid, |s| {
            s.limits = limits;
            Ok(())
        })
    }

    /// Runs `f` on the address space of process `pid` under its lock, and keeps the count of
    /// memd's bookkeeping in step with what `f` did.
    pub(crate) fn with_space<T>(
        &self,
        pid: Pid,
        f: impl FnOnce(&mut AddressSpace) -> Result<T, VmError>,
    ) -> Result<T, VmError> {
        let process = self.process(pid)?;
        let mut space = Self::lock_live(&process)?;
        let before = cost(&space);
        let result = f(&mut space);
        self.bookkeeping_changed(before, cost(&space));
        result
    }

    /// Bytes of memd's memory counted now for the bookkeeping of all processes (regions and
    /// resident pages; see [`Config::bookkeeping`]).
    pub fn bookkeeping(&self) -> usize {
        self.bookkeeping.load(Ordering::Relaxed)
    }

    /// Refuses an operation that could add `extra` regions to `space` beyond its limit
    /// (`LimitExceeded`) or beyond memd's bookkeeping budget less a sixteenth
    /// (`OutOfMemory`): that last sixteenth is kept for the resident pages and page tables of
    /// faults, so that splitting regions to the limit does not leave every process unable to
    /// touch a new page.
    pub(crate) fn region_room(&self, space: &AddressSpace, extra: usize) -> Result<(), VmError> {
        if space.regions.len() + extra > space.limits.regions {
            return Err(VmError::LimitExceeded);
        }
        let headroom = self.budget() / 16;
        self.room(extra * REGION_COST + headroom)
    }

    /// The most bytes the bookkeeping of all processes may take now.
    pub(crate) fn budget(&self) -> usize {
        self.budget.load(Ordering::Relaxed)
    }

    /// Bytes of bookkeeping left in the budget.
    pub(crate) fn byte_room(&self) -> usize {
        let used = self.bookkeeping.load(Ordering::Relaxed);
        self.budget().saturating_sub(used)
    }

    /// The bookkeeping of all processes: bytes counted now, and the most it may take.
    pub fn bookkeeping_use(&self) -> (usize, usize) {
        (self.bookkeeping.load(Ordering::Relaxed), self.budget())
    }

    /// Takes `bytes` of frames at consecutive addresses for memd's own memory (its host adds
    /// them to its heap), and raises the bookkeeping budget by `budget` bytes of them; the
    /// physical address of the first frame, or `None` (nothing changed) when no run of free
    /// frames is that long. The frames are counted in use, memd's own, for good.
    pub fn take_own_memory(&self, bytes: u64, budget: usize) -> Option<FrameAddr> {
        let start = self.frames.take_run(bytes / crate::kernel::PAGE_SIZE)?;
        self.budget.fetch_add(budget, Ordering::Relaxed);
        Some(start)
    }

    /// How many more resident pages memd's bookkeeping budget allows, at most `want`.
    pub(crate) fn page_room(&self, want: usize) -> usize {
        (self.byte_room() / PAGE_COST).min(want)
    }

    /// Refuses to add `bytes` of bookkeeping beyond the budget.
    pub(crate) fn room(&self, bytes: usize) -> Result<(), VmError> {
        if self.bookkeeping.load(Ordering::Relaxed) + bytes > self.budget() {
            return Err(VmError::OutOfMemory);
        }
        Ok(())
    }

    /// Records that a process's bookkeeping went from `before` to `after` bytes.
    pub(crate) fn bookkeeping_changed(&self, before: usize, after: usize) {
        if after >= before {
            self.bookkeeping
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.bookkeeping
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    pub(crate) fn new_pid(&self) -> Pid {
        self.next_pid.fetch_add(1, Ordering::Relaxed)
    }
}

/// Bytes of bookkeeping an address space is counted for.
pub(crate) fn cost(space: &AddressSpace) -> usize {
    space.regions.len() * REGION_COST
        + (space.pages.len() + space.tables.len()) * PAGE_COST
        + space.pages.chunks() * CHUNK_COST
        + space
            .fault_handler
            .as_ref()
            .map_or(0, |h| h.stacks() * ALT_STACK_COST)
}
