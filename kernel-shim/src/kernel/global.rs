//! A cell for the kernel's global state.
//!
//! The kernel runs on one CPU and always with interrupts disabled (they are enabled only in
//! ring 3 and in the idle loop, which holds no reference into kernel state). So at most one
//! flow of control is inside the kernel at a time: each entry takes its `&mut` once and passes
//! it down.

use core::cell::UnsafeCell;

/// Global state shared by the kernel's entry points, one at a time.
pub struct Global<T>(UnsafeCell<T>);

// SAFETY: see the module comment: a single CPU with interrupts off in the kernel means no two
// accesses are ever concurrent.
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
