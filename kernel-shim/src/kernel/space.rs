//! Address spaces: a PML4 sharing the kernel half, a generation for unforgeable badges, a
//! count of threads, where its page tables come from, and (for the boot programs the kernel
//! loaded itself) the frames of the image.

use super::lock::SpinLock;
use super::objects::Table;
use super::tables::Reserve;

/// One address space. Only exclusive entries change its fields but `tables`, whose lock
/// guards the space's page tables and reserve ([`super::lock`]).
pub struct Space {
    /// Whether the slot is in use.
    pub live: bool,
    /// Bumped when the slot is freed, so an old badge never names a new space.
    pub generation: u16,
    /// Physical address of the PML4.
    pub root: u64,
    /// Threads living in it.
    pub threads: u32,
    /// Kernel-pool frames of a boot program's image and stack: (first, count). The kernel
    /// frees them and the space itself when its last thread ends.
    pub image: Option<(u64, usize)>,
    /// The lock of the space's page tables, over the spare table frames the pager donated,
    /// for a space the pager created (its tables are all donated frames); `None` for a space
    /// whose tables come from the kernel pool.
    pub tables: SpinLock<Option<Reserve>>,
}

impl Space {
    /// An unused slot.
    pub const fn free() -> Space {
        Space {
            live: false,
            generation: 1,
            root: 0,
            threads: 0,
            image: None,
            tables: SpinLock::new(None),
        }
    }
}

/// The badge of a space, stamped by the kernel on every message its threads send, and the id
/// the pager names it by: generation and slot (never 0).
pub fn badge(index: usize, generation: u16) -> u64 {
    ((generation as u64) << 16) | index as u64
}

/// The slot a badge names, if that space is alive with that generation.
pub fn lookup(spaces: &Table<Space>, id: u64) -> Option<usize> {
    let index = (id & 0xFFFF) as usize;
    let s = spaces.get(index)?;
    (id >> 32 == 0 && s.live && s.generation == ((id >> 16) & 0xFFFF) as u16).then_some(index)
}
