//! The kernel's object tables: address spaces, threads and endpoints, sized from RAM at boot
//! as Linux sizes `threads-max` (one thread per 128 KiB of RAM), and taken from RAM before the
//! pager gets the rest. Nothing a process does makes the kernel allocate: a space and its
//! thread are made by the pager, which charges them to the process that asked (its children
//! are bounded), and a space's endpoints are its own four slots of the endpoint table.
//!
//! There are two thread slots per space: the first half holds the first thread of each space
//! (a space's first thread always finds a slot, since there are as many as spaces), the second
//! the threads a process adds, at most [`MAX_THREADS_PER_SPACE`] a space; a process that fills
//! the second half denies other processes more threads, never a process of their own.

use super::boot::phys_to_virt;
use super::frames::PAGE;
use super::ipc::{Endpoint, MAX_ENDPOINTS_PER_SPACE};
use super::lock::SpinLock;
use super::space::Space;
use super::state::Kernel;
use super::thread::Thread;
use core::mem::{align_of, size_of};

/// RAM per object slot (Linux: `threads-max` = RAM / (8 × a 16 KiB kernel stack)).
const RAM_PER_SLOT: u64 = 128 << 10;
/// The fewest slots, whatever the RAM.
const MIN_SLOTS: usize = 64;
/// The most slots: badges and thread ids carry a slot in 16 bits, and the endpoint table
/// (4 per space) is indexed by a `u16`.
pub const MAX_SLOTS: usize = 1 << 14;

const _: () = assert!(align_of::<Thread>() <= 16 && align_of::<Space>() <= 16);
const _: () = assert!(align_of::<SpinLock<Endpoint>>() <= 16);
const _: () = assert!(MAX_SLOTS * MAX_ENDPOINTS_PER_SPACE <= 1 << 16);
const _: () = assert!(THREADS_PER_SLOT * MAX_SLOTS <= 1 << 16);

/// Thread slots per space slot (see the module doc).
pub const THREADS_PER_SLOT: usize = 2;
/// The most threads a space can have at once.
pub const MAX_THREADS_PER_SPACE: u32 = kernel_shim::abi::MAX_THREADS_PER_SPACE as u32;

/// How many spaces (and threads) `ram` bytes of RAM get.
pub fn slots_for(ram: u64) -> usize {
    ((ram / RAM_PER_SLOT) as usize).clamp(MIN_SLOTS, MAX_SLOTS)
}

fn offsets(slots: usize) -> (usize, usize, usize) {
    let threads = 0;
    let spaces = (threads + THREADS_PER_SLOT * slots * size_of::<Thread>()).next_multiple_of(16);
    let endpoints = (spaces + slots * size_of::<Space>()).next_multiple_of(16);
    let end = endpoints + slots * MAX_ENDPOINTS_PER_SPACE * size_of::<SpinLock<Endpoint>>();
    (spaces, endpoints, end)
}

/// Bytes (whole pages) the tables of `slots` slots take.
pub fn bytes(slots: usize) -> u64 {
    (offsets(slots).2 as u64).next_multiple_of(PAGE)
}

/// Builds the tables of `slots` slots in the RAM at physical `base` ([`bytes`] of it, page
/// aligned, inside the window, given to nothing else) and installs them in `k`.
pub fn install(k: &mut Kernel, base: u64, slots: usize) {
    let (spaces_at, endpoints_at, _) = offsets(slots);
    let at = phys_to_virt(base) as usize;
    // SAFETY: the caller gives `bytes(slots)` bytes at `base` to the tables for good, mapped
    // through the window; each table is placed at an offset aligned for its type (asserted
    // above, the base being page aligned), the three do not overlap, and every element is
    // written before the slice is made.
    unsafe {
        let threads = at as *mut Thread;
        let spaces = (at + spaces_at) as *mut Space;
        let endpoints = (at + endpoints_at) as *mut SpinLock<Endpoint>;
        for i in 0..slots {
            spaces.add(i).write(Space::free());
        }
        for i in 0..THREADS_PER_SLOT * slots {
            threads.add(i).write(Thread::free());
        }
        for i in 0..slots * MAX_ENDPOINTS_PER_SPACE {
            endpoints.add(i).write(SpinLock::new(Endpoint::FREE));
        }
        k.threads = Table::new(threads, THREADS_PER_SLOT * slots);
        k.spaces = Table::new(spaces, slots);
        k.endpoints = Table::new(endpoints, slots * MAX_ENDPOINTS_PER_SPACE);
    }
}

/// One of the object tables: slots in memory the kernel keeps for good.
///
/// Who may touch a slot is the kernel's locking rule ([`super::lock`]): an exclusive entry
/// any slot, through `&mut` (`IndexMut`) or `&`; a shared entry only the slots it owns (the
/// thread it runs, the threads on a queue whose lock it holds) through [`Table::slot`], and
/// the fields of other slots that only exclusive entries change (a space's root, an
/// endpoint's owner) or that are atomics or locks.
pub struct Table<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the slots are reached under the locking rule above; `T` itself moves between
// processors with its owner.
unsafe impl<T: Send> Sync for Table<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Table<T> {}

impl<T> Table<T> {
    /// No slots.
    pub const EMPTY: Table<T> = Table {
        ptr: core::ptr::NonNull::dangling().as_ptr(),
        len: 0,
    };

    /// The `len` slots at `ptr`.
    ///
    /// # Safety
    /// `ptr` points to `len` initialized `T`s that nothing else refers to, for good.
    unsafe fn new(ptr: *mut T, len: usize) -> Table<T> {
        Table { ptr, len }
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Slot `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&T> {
        (i < self.len).then(|| &self[i])
    }

    /// Every slot, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        (0..self.len).map(|i| &self[i])
    }

    /// A pointer to slot `i`, if there is one (to reach an atomic field of a slot another
    /// processor may own).
    pub fn get_ptr(&self, i: usize) -> Option<*mut T> {
        // SAFETY: in range, so inside the slots' memory.
        (i < self.len).then(|| unsafe { self.ptr.add(i) })
    }

    /// Slot `i`, to change as the locking rule allows a shared entry.
    ///
    /// # Safety
    /// `i` is a slot of the table (an index the kernel made or checked: a thread on a queue,
    /// the one running here, one [`Table::get_ptr`] found), the caller owns the slot under the
    /// locking rule, and keeps no other reference to it while the one returned lives.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub unsafe fn slot(&self, i: usize) -> &mut T {
        debug_assert!(i < self.len, "object slot out of range");
        // SAFETY: in range, initialized (`new`), and the caller's (contract).
        unsafe { &mut *self.ptr.add(i) }
    }
}

impl<T> core::ops::Index<usize> for Table<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        assert!(i < self.len, "object slot out of range");
        // SAFETY: in range and initialized (`new`); what may read it is the locking rule's.
        unsafe { &*self.ptr.add(i) }
    }
}

impl<T> core::ops::IndexMut<usize> for Table<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "object slot out of range");
        // SAFETY: in range and initialized (`new`); the table is borrowed mutably.
        unsafe { &mut *self.ptr.add(i) }
    }
}
