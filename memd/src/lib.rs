//! memd: the memory daemon, pager of every other process.
//!
//! It owns the address spaces of all clients as region databases, the physical frames given
//! to it at boot (with reference counts), placement policy, lazy zero fill, copy-on-write,
//! shared-memory objects, the break, fork and exit of process images, and statistics.
//!
//! It never touches hardware: page tables change only through the [`kernel::Kernel`] trait
//! (system calls into kernel-shim on the metal, the emulated kernel of the hosted testbed), and
//! it never trusts a pid or address a client claims — identity is the kernel's badge on each
//! message, and every field is validated before anything is changed.
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), no_std)]
extern crate alloc;

pub mod aslr;
pub mod brk;
pub mod daemon;
pub mod device;
pub mod fault;
pub mod fault_handler;
pub mod frame_cache;
pub mod frames;
pub mod gaps;
pub mod handler;
pub mod hole;
pub mod huge;
pub mod image;
pub mod kernel;
pub mod layout;
pub mod mlock;
pub mod mmap;
pub mod mremap;
pub mod pages;
pub mod process;
pub mod region;
pub mod residency;
pub mod rlimit;
pub mod shared;
pub mod space;
pub mod stats;
pub mod tables;

pub use daemon::{Config, Death, Memd, Pid};
pub use fault::{Access, FaultKill, FaultOutcome, FaultReason};
pub use fault_handler::Delivery;
pub use space::Limits;
