//! Resource limits a process sets on itself: `getrlimit`, `setrlimit` and `prlimit` on its
//! own limits of address space (`RLIMIT_AS`), data (`RLIMIT_DATA`, the heap), stack
//! (`RLIMIT_STACK`) and locked memory (`RLIMIT_MEMLOCK`), with Linux's rules: a soft limit at
//! most its hard one, a hard limit only lowered (no process here is privileged), inherited by
//! fork. The address-space and data limits are enforced ([`crate::Limits`]: mmap and brk past
//! them are ENOMEM); the stack's and locked memory's are recorded (the stack region is its
//! fixed 8 MiB, nothing is locked yet).

use crate::daemon::{Memd, Pid};
use crate::kernel::Kernel;
use crate::layout;
use crate::space::{AddressSpace, Limits};
use libvm::VmError;
use libvm::proto::{RLIM_INFINITY, RLIMIT_AS, RLIMIT_DATA, RLIMIT_MEMLOCK, RLIMIT_STACK};

/// One limit: soft (enforced) and hard (the most the soft one may be raised to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// The limit in force.
    pub soft: u64,
    /// The most `soft` may be set to.
    pub hard: u64,
}

impl Rlimit {
    /// Soft and hard both `value`.
    pub const fn both(value: u64) -> Rlimit {
        Rlimit {
            soft: value,
            hard: value,
        }
    }
}

/// A process's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimits {
    /// `RLIMIT_AS`.
    pub address_space: Rlimit,
    /// `RLIMIT_DATA`.
    pub data: Rlimit,
    /// `RLIMIT_STACK`.
    pub stack: Rlimit,
    /// `RLIMIT_MEMLOCK`.
    pub memlock: Rlimit,
}

impl Rlimits {
    /// The limits a process with memd's `limits` starts with (Linux's defaults where memd
    /// sets none: no limit of address space or data, 8 MiB of stack and of locked memory).
    pub fn new(limits: &Limits) -> Rlimits {
        let or_infinity = |value: u64, none: u64| {
            if value >= none { RLIM_INFINITY } else { value }
        };
        Rlimits {
            address_space: Rlimit::both(or_infinity(limits.address_space, layout::USER_END)),
            data: Rlimit::both(or_infinity(
                limits.data,
                layout::MMAP_BASE - layout::HEAP_START,
            )),
            stack: Rlimit {
                soft: layout::STACK_MAX,
                hard: RLIM_INFINITY,
            },
            memlock: Rlimit::both(8 << 20),
        }
    }
}

impl<K: Kernel> Memd<K> {
    /// Process `pid`'s limit of `resource` (`RLIMIT_*`), set to `new` if given; the limit as
    /// it was. Refused, with nothing changed: an unknown resource (`InvalidFlags`), a soft
    /// limit above its hard one (`InvalidSize`), a hard limit raised (`NotPermitted`).
    pub fn prlimit(&self, pid: Pid, resource: u64, new: Option<Rlimit>) -> Result<Rlimit, VmError> {
        self.with_space(pid, |space| {
            let slot = match resource {
                RLIMIT_AS => &mut space.rlimits.address_space,
                RLIMIT_DATA => &mut space.rlimits.data,
                RLIMIT_STACK => &mut space.rlimits.stack,
                RLIMIT_MEMLOCK => &mut space.rlimits.memlock,
                _ => return Err(VmError::InvalidFlags),
            };
            let old = *slot;
            if let Some(new) = new {
                if new.soft > new.hard {
                    return Err(VmError::InvalidSize);
                }
                if new.hard > old.hard {
                    return Err(VmError::NotPermitted);
                }
                *slot = new;
                enforce(space);
            }
            Ok(old)
        })
    }
}

/// Brings memd's enforced limits of `space` in line with its soft limits.
fn enforce(space: &mut AddressSpace) {
    space.limits.address_space = space.rlimits.address_space.soft.min(layout::USER_END);
    space.limits.data = space
        .rlimits
        .data
        .soft
        .min(layout::MMAP_BASE - layout::HEAP_START);
}
