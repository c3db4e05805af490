//! libvm: what a process links to get memory.
//!
//! It owns the seed API (`vm_mmap`, `vm_munmap`, `vm_mprotect`, `vm_brk`, `vm_sbrk`,
//! `get_memory_stats`), the wire protocol to memd ([`proto`], the one definition both sides
//! use), the transports that carry it, and a `GlobalAlloc` over brk and mmap. It holds no policy:
//! every decision is memd's.
#![cfg_attr(not(any(feature = "std", test)), no_std)]

pub mod error;
pub mod flags;
pub mod proto;

pub use error::{VmError, VmResult};
pub use flags::{MmapFlags, ProtectionFlags};
