//! libvm: what a process links to get memory.
//!
//! It owns the seed API (`vm_mmap`, `vm_munmap`, `vm_mprotect`, `vm_brk`, `vm_sbrk`,
//! `get_memory_stats`), the wire protocol to memd ([`proto`], the one definition both sides
//! use), the [`Transport`] trait that carries it, and a `GlobalAlloc` over brk and mmap
//! ([`VmAllocator`]). It holds no policy: every decision is memd's, and every argument goes to
//! memd unchecked.
//!
//! - [`vm::Vm`]: the memory calls of one process over a transport it holds.
//! - [`global`]: the same calls as free functions, over the process's transport (installed
//!   once with [`set_transport`]; with feature `std`, a thread may bind its own, as the hosted
//!   testbed's simulated processes do).
//! - [`heap::VmAllocator`]: small blocks from a heap grown with `vm_sbrk`, large ones mapped.
//! - [`fault`]: faults a process handles itself (the frame a handler gets, signal codes).
//!
//! `no_std` (with `alloc`) unless feature `std` is on; `std` adds the per-thread transport.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

extern crate alloc;

pub mod error;
pub mod fault;
pub mod flags;
pub mod global;
pub mod heap;
pub mod large;
pub mod maps;
pub mod proto;
pub mod sys;
pub mod transport;
pub mod vm;

pub use error::{VmError, VmResult};
pub use flags::{Caching, MmapFlags, ProtectionFlags};
pub use global::{
    NO_TRANSPORT, get_memory_stats, set_transport, vm_brk, vm_mmap, vm_mprotect, vm_munmap, vm_sbrk,
};
#[cfg(any(feature = "std", test))]
pub use global::{bind_thread, unbind_thread};
pub use heap::VmAllocator;
pub use transport::Transport;
pub use vm::{Device, MemoryStats, Vm};
