//! testbed: the hosted home of memd.
//!
//! An emulated kernel ([`hostkernel`]) keeps real x86_64 page tables, built by kernel-shim's
//! own paging code, in simulated physical memory ([`physmem`]); an emulated MMU ([`mmu`])
//! walks them on every simulated load, store and fetch, caches translations in a software
//! TLB that only the kernel's flushes invalidate, and reports faults as the hardware would.
//! memd runs over it as the pager, unchanged.

pub mod hostkernel;
pub mod mmu;
pub mod physmem;
pub mod system;
