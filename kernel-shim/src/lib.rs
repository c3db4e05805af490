//! kernel-shim: the tiny kernel.
//!
//! It owns boot, page tables and the TLB, threads and scheduling, IPC endpoints, and turning
//! user page faults into messages to the pager. It never decides where anything is mapped and
//! keeps no regions, copy-on-write state or break: that is memd's.
//!
//! The [`abi`] module is the one definition of the system-call ABI (numbers, message layouts,
//! batch format), shared with user space. The [`paging`] module is host-testable and used as is by the kernel and by the hosted
//! testbed's emulated MMU.
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]
#![cfg_attr(not(test), no_std)]

pub mod abi;
pub mod paging;
