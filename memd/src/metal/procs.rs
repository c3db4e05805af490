//! Parents, children and deferred `WAIT` replies.
//!
//! The kernel names a process by the badge of its space; memd's core by its pid. This table
//! maps one to the other, remembers each process's parent and children, keeps the status of a
//! dead child until its parent waits for it (or dies), and holds the token of a parent blocked
//! in `WAIT` until the child dies: the reply is deferred, the kernel keeps the caller waiting
//! meanwhile.
//!
//! Every record here is one a client made memd keep, so every one is bounded: a process may
//! have [`MAX_CHILDREN`] children, alive or dead and not yet waited for (Linux's
//! `RLIMIT_NPROC`, counted per parent), and memd keeps at most [`MAX_RECORDS`] processes in
//! all; past either, `FORK` and `SPAWN` get [`VmError::ProcessLimit`] (`EAGAIN`). A dead
//! process keeps only its status (a few dozen bytes) until it is waited for, and is dropped at
//! once when its parent dies. Each process lists its children, so a death touches only its own
//! children and its parent (lookups in the table, no scan of it), whatever the number of
//! processes.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use libvm::VmError;
use memd::Pid;

/// The children a process may have, alive or dead and not yet waited for.
pub const MAX_CHILDREN: usize = 256;

/// The processes memd keeps records of, alive or dead and not yet waited for. A dead one
/// holds its status (some 50 bytes with its share of the table), so 4,096 of them stay well
/// under a megabyte; a live one also its name, argument string and children's pids, but the
/// kernel runs at most a few dozen address spaces.
pub const MAX_RECORDS: usize = 4096;

/// A parent waiting for a child: the token of its `WAIT` call, its tag, and its lent length.
#[derive(Clone, Copy, Debug)]
pub struct Waiter {
    /// The token to reply to.
    pub token: u64,
    /// The request's tag.
    pub tag: u32,
    /// Bytes lent with the call (the fault address is written when there are 8).
    pub lend: u64,
}

/// One process, alive or a zombie awaiting its parent's `WAIT`.
#[derive(Debug)]
struct Entry {
    parent: Option<Pid>,
    state: State,
}

#[derive(Debug)]
enum State {
    Alive(Box<Live>),
    /// Status word and fault address.
    Dead(u64, u64),
}

/// What memd keeps of a live process.
#[derive(Debug)]
struct Live {
    badge: u64,
    program: Program,
    /// Children alive or dead and not yet waited for (at most [`MAX_CHILDREN`]).
    children: Vec<Pid>,
    /// The parent's `WAIT` for this process, while it blocks.
    waiter: Option<Waiter>,
}

/// A `WAIT` that can be answered now: to whom, for which child, with what. The child stays a
/// zombie until the answer is delivered ([`Procs::reap`]).
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    /// The waiting parent.
    pub waiter: Waiter,
    /// The dead child.
    pub child: Pid,
    /// The child's status word.
    pub status: u64,
    /// The faulting address, for a refused fault.
    pub addr: u64,
}

/// What a process runs: the boot module's name and the argument string it was spawned with
/// (a forked child has its parent's).
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// The boot module's name.
    pub name: String,
    /// The argument string.
    pub args: Vec<u8>,
}

/// Every process memd started and that is alive or not yet waited for, by pid, and the
/// badge-to-pid map of the live ones.
#[derive(Default)]
pub struct Procs {
    by_badge: BTreeMap<u64, Pid>,
    entries: BTreeMap<Pid, Entry>,
}

impl Procs {
    fn live(&self, pid: Pid) -> Option<&Live> {
        match &self.entries.get(&pid)?.state {
            State::Alive(live) => Some(live),
            State::Dead(..) => None,
        }
    }

    fn live_mut(&mut self, pid: Pid) -> Option<&mut Live> {
        match &mut self.entries.get_mut(&pid)?.state {
            State::Alive(live) => Some(live),
            State::Dead(..) => None,
        }
    }

    /// Whether a new process, child of `parent`, may be recorded: `ProcessLimit` when memd
    /// keeps [`MAX_RECORDS`] already or `parent` has [`MAX_CHILDREN`] children. Asked before
    /// the process is made, so a refused `FORK` or `SPAWN` changes nothing.
    pub fn room(&self, parent: Option<Pid>) -> Result<(), VmError> {
        let children = parent
            .and_then(|p| self.live(p))
            .map_or(0, |p| p.children.len());
        if self.entries.len() >= MAX_RECORDS || children >= MAX_CHILDREN {
            return Err(VmError::ProcessLimit);
        }
        Ok(())
    }

    /// Records a new process `pid` in the kernel space `badge`, child of `parent` (which
    /// [`Procs::room`] allowed), running `program`.
    pub fn add(&mut self, pid: Pid, badge: u64, parent: Option<Pid>, program: Program) {
        let parent = parent.filter(|&p| self.live(p).is_some());
        if let Some(p) = parent.and_then(|p| self.live_mut(p)) {
            p.children.push(pid);
        }
        self.by_badge.insert(badge, pid);
        let live = Live {
            badge,
            program,
            children: Vec::new(),
            waiter: None,
        };
        let state = State::Alive(Box::new(live));
        self.entries.insert(pid, Entry { parent, state });
    }

    /// What process `pid` runs, if it is alive and memd knows.
    pub fn program(&self, pid: Pid) -> Option<&Program> {
        self.live(pid).map(|l| &l.program)
    }

    /// The parent of process `pid` (alive or a zombie), if it has one.
    pub fn parent(&self, pid: Pid) -> Option<Pid> {
        self.entries.get(&pid).and_then(|e| e.parent)
    }

    /// The live process of a badge.
    pub fn pid_of(&self, badge: u64) -> Option<Pid> {
        self.by_badge.get(&badge).copied()
    }

    /// Live processes.
    pub fn alive(&self) -> usize {
        self.by_badge.len()
    }

    /// Process `pid` died with `status` (fault address `addr`): it stops being reachable by
    /// its badge, its children become orphans (its zombies are dropped), and it stays a zombie
    /// for its parent to wait for (or is dropped at once without a parent). If the parent
    /// waits for it already, the answer to deliver.
    pub fn died(&mut self, pid: Pid, status: u64, addr: u64) -> Option<Answer> {
        let entry = self.entries.get_mut(&pid)?;
        let parent = entry.parent;
        let State::Alive(live) = core::mem::replace(&mut entry.state, State::Dead(status, addr))
        else {
            return None;
        };
        self.by_badge.remove(&live.badge);
        for child in &live.children {
            let zombie = match self.entries.get_mut(child) {
                Some(Entry {
                    parent,
                    state: State::Alive(l),
                }) => {
                    *parent = None;
                    l.waiter = None;
                    false
                }
                Some(_) => true,
                None => false,
            };
            if zombie {
                self.entries.remove(child);
            }
        }
        if parent.is_none() {
            self.entries.remove(&pid);
            return None;
        }
        live.waiter.map(|waiter| Answer {
            waiter,
            child: pid,
            status,
            addr,
        })
    }

    /// `caller` waits for child `pid`: the answer now if it is dead (the child stays a zombie
    /// until [`Procs::reap`]), else the wait is recorded (`Ok(None)`). Not a child of the
    /// caller, or waited for already: `NoSuchProcess`.
    pub fn wait(
        &mut self,
        caller: Pid,
        pid: Pid,
        waiter: Waiter,
    ) -> Result<Option<Answer>, VmError> {
        let entry = self
            .entries
            .get_mut(&pid)
            .filter(|e| e.parent == Some(caller))
            .ok_or(VmError::NoSuchProcess)?;
        match &mut entry.state {
            State::Dead(status, addr) => Ok(Some(Answer {
                waiter,
                child: pid,
                status: *status,
                addr: *addr,
            })),
            State::Alive(live) if live.waiter.is_none() => {
                live.waiter = Some(waiter);
                Ok(None)
            }
            State::Alive(_) => Err(VmError::NoSuchProcess),
        }
    }

    /// The answer about zombie `pid` was delivered to its parent: the zombie goes.
    pub fn reap(&mut self, pid: Pid) {
        let Some(entry) = self.entries.get(&pid) else {
            return;
        };
        if !matches!(entry.state, State::Dead(..)) {
            return;
        }
        let parent = entry.parent;
        self.entries.remove(&pid);
        if let Some(p) = parent.and_then(|p| self.live_mut(p))
            && let Some(i) = p.children.iter().position(|&c| c == pid)
        {
            p.children.swap_remove(i);
        }
    }
}
