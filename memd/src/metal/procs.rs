//! Parents, children and deferred `WAIT` replies.
//!
//! The kernel names a process by the badge of its space; memd's core by its pid. This table
//! maps one to the other, remembers each process's parent, keeps the status of a dead child
//! until its parent waits for it (or dies), and holds the token of a parent blocked in `WAIT`
//! until the child dies: the reply is deferred, the kernel keeps the caller waiting meanwhile.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use libvm::VmError;
use memd::Pid;

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
#[derive(Clone, Copy, Debug)]
struct Entry {
    badge: u64,
    parent: Option<Pid>,
    /// Status word and fault address, once dead.
    death: Option<(u64, u64)>,
    waiter: Option<Waiter>,
}

/// A `WAIT` that can be answered now: to whom, with what.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    /// The waiting parent.
    pub waiter: Waiter,
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

/// Every process memd started, by pid, and the badge-to-pid map.
#[derive(Default)]
pub struct Procs {
    by_badge: BTreeMap<u64, Pid>,
    entries: BTreeMap<Pid, Entry>,
    programs: BTreeMap<Pid, Program>,
}

impl Procs {
    /// Records a new process `pid` in the kernel space `badge`, child of `parent`.
    pub fn add(&mut self, pid: Pid, badge: u64, parent: Option<Pid>) {
        self.by_badge.insert(badge, pid);
        self.entries.insert(
            pid,
            Entry {
                badge,
                parent,
                death: None,
                waiter: None,
            },
        );
    }

    /// Records what process `pid` runs.
    pub fn set_program(&mut self, pid: Pid, program: Program) {
        self.programs.insert(pid, program);
    }

    /// What process `pid` runs, if memd knows.
    pub fn program(&self, pid: Pid) -> Option<&Program> {
        self.programs.get(&pid)
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
    /// its badge, its children become orphans (their zombies are dropped), and its own record
    /// stays for its parent to wait for — the answer comes back when the parent waits already.
    pub fn died(&mut self, pid: Pid, status: u64, addr: u64) -> Option<Answer> {
        let entry = self.entries.get(&pid).copied()?;
        if entry.death.is_some() {
            return None;
        }
        self.by_badge.remove(&entry.badge);
        self.programs.remove(&pid);
        let orphans: alloc::vec::Vec<Pid> = self
            .entries
            .iter()
            .filter(|(_, e)| e.parent == Some(pid))
            .map(|(&p, _)| p)
            .collect();
        for child in orphans {
            let dead = self.entries.get(&child).is_some_and(|e| e.death.is_some());
            if dead {
                self.entries.remove(&child);
            } else if let Some(e) = self.entries.get_mut(&child) {
                e.parent = None;
            }
        }
        let parent_alive = entry
            .parent
            .and_then(|p| self.entries.get(&p))
            .is_some_and(|p| p.death.is_none());
        if !parent_alive {
            self.entries.remove(&pid);
            return None;
        }
        if let Some(waiter) = entry.waiter {
            self.entries.remove(&pid);
            return Some(Answer {
                waiter,
                status,
                addr,
            });
        }
        if let Some(e) = self.entries.get_mut(&pid) {
            e.death = Some((status, addr));
        }
        None
    }

    /// `caller` waits for child `pid`: the answer now if it is dead, else the wait is recorded
    /// (`Ok(None)`). Not a child of the caller, or already waited for: `NoSuchProcess`.
    pub fn wait(
        &mut self,
        caller: Pid,
        pid: Pid,
        waiter: Waiter,
    ) -> Result<Option<Answer>, VmError> {
        let entry = self
            .entries
            .get_mut(&pid)
            .filter(|e| e.parent == Some(caller) && e.waiter.is_none())
            .ok_or(VmError::NoSuchProcess)?;
        match entry.death {
            Some((status, addr)) => {
                self.entries.remove(&pid);
                Ok(Some(Answer {
                    waiter,
                    status,
                    addr,
                }))
            }
            None => {
                entry.waiter = Some(waiter);
                Ok(None)
            }
        }
    }
}
