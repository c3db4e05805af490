//! `Memd`: the daemon's state, shared by every thread that serves requests.
//!
//! Locks, always taken in this order: one process (`Process`), then the shared-memory objects,
//! then the frame allocator. The process table itself is a read-mostly `RwLock` held only long
//! enough to find a process, so clients of different processes never queue behind each other.

use crate::frames::FrameAllocator;
use crate::kernel::{Kernel, SpaceId};
use crate::shared::SharedObjects;
use crate::space::{AddressSpace, Limits};
use crate::stats::Counters;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use hashbrown::HashMap;
use libvm::VmError;
use spin::{Mutex, RwLock};

/// A process as memd knows it: identified by the badge the kernel stamps on its messages.
pub type Pid = u64;

/// How memd is set up.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Limits given to every new process (a fork inherits its parent's).
    pub limits: Limits,
    /// Most regions of all processes together: what memd's own memory can hold.
    pub max_regions: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            limits: Limits::default(),
            max_regions: 1 << 20,
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
    pub(crate) frames: Mutex<FrameAllocator>,
    pub(crate) objects: Mutex<SharedObjects>,
    pub(crate) processes: RwLock<HashMap<Pid, Arc<Mutex<AddressSpace>>>>,
    pub(crate) dead: Mutex<HashMap<Pid, Death>>,
    pub(crate) counters: Counters,
    pub(crate) config: Config,
    /// Regions of all processes together.
    regions: AtomicUsize,
    next_pid: AtomicU64,
}

impl<K: Kernel> Memd<K> {
    /// Starts memd with the kernel capability and the free physical ranges it was given.
    pub fn new(kernel: K, ranges: &[(u64, u64)], config: Config) -> Memd<K> {
        Memd {
            kernel,
            frames: Mutex::new(FrameAllocator::new(ranges)),
            objects: Mutex::new(SharedObjects::default()),
            processes: RwLock::new(HashMap::new()),
            dead: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            config,
            regions: AtomicUsize::new(0),
            next_pid: AtomicU64::new(1),
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

    /// The kernel's address space of process `pid`.
    pub fn space_of(&self, pid: Pid) -> Result<SpaceId, VmError> {
        Ok(self.process(pid)?.lock().space)
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

    /// Sets the limits of a live process.
    pub fn set_limits(&self, pid: Pid, limits: Limits) -> Result<(), VmError> {
        self.process(pid)?.lock().limits = limits;
        Ok(())
    }

    /// Runs `f` on the address space of process `pid` under its lock, and keeps the count of
    /// all processes' regions in step with what `f` did.
    pub(crate) fn with_space<T>(
        &self,
        pid: Pid,
        f: impl FnOnce(&mut AddressSpace) -> Result<T, VmError>,
    ) -> Result<T, VmError> {
        let process = self.process(pid)?;
        let mut space = process.lock();
        let before = space.regions.len();
        let result = f(&mut space);
        self.regions_changed(before, space.regions.len());
        result
    }

    /// Refuses an operation that could add `extra` regions to `space` beyond its limit
    /// (`LimitExceeded`) or beyond what memd holds for all processes (`OutOfMemory`).
    pub(crate) fn region_room(&self, space: &AddressSpace, extra: usize) -> Result<(), VmError> {
        if space.regions.len() + extra > space.limits.regions {
            return Err(VmError::LimitExceeded);
        }
        self.total_room(extra)
    }

    /// Refuses to add `extra` regions beyond what memd holds for all processes.
    pub(crate) fn total_room(&self, extra: usize) -> Result<(), VmError> {
        if self.regions.load(Ordering::Relaxed) + extra > self.config.max_regions {
            return Err(VmError::OutOfMemory);
        }
        Ok(())
    }

    /// Records that a process went from `before` to `after` regions.
    pub(crate) fn regions_changed(&self, before: usize, after: usize) {
        if after >= before {
            self.regions.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.regions.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    pub(crate) fn new_pid(&self) -> Pid {
        self.next_pid.fetch_add(1, Ordering::Relaxed)
    }
}
