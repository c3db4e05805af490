//! A cell for the kernel's global state.
//!
//! The kernel always runs with interrupts disabled (they are enabled only in ring 3 and in the
//! idle loop, which holds no reference into kernel state), so nothing interrupts a flow of
//! control inside the kernel. What several processors may reach at once is each cell's own
//! rule, said where it is declared: written at boot only (one processor runs then), one slot
//! per processor written by that processor, or the kernel state under the mode lock
//! ([`super::lock`]).

use core::cell::UnsafeCell;

/// Global state shared by the kernel's entry points, under each cell's rule.
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: see the module comment: every cell is reached under its own rule, which keeps
// accesses from different processors apart (or atomic).
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Global(UnsafeCell::new(value))
    }

    /// The raw pointer to the value; dereferencing it is the caller's promise that no other
    /// reference to it is live.
    pub const fn as_ptr(&self) -> *mut T {
        self.0.get()
    }
}
