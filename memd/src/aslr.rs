//! Address-space layout randomization: where each new process's mmap area, stack and heap
//! begin, drawn from a ChaCha20 generator seeded once when memd starts (on the metal from
//! RDRAND where the CPU has it, mixed with RDTSC jitter). Off (`Config::aslr_seed` `None`,
//! the `aslr=off` boot option), every process gets [`Placement::FIXED`], for reproducible
//! tests and benchmarks.
//!
//! | area | randomized | entropy | range |
//! |---|---|---|---|
//! | mmap base | page within [`MMAP_RANDOM_BASE`], up | 28 bits | 1 TiB |
//! | stack top | page below [`STACK_RANDOM_TOP`], down | 22 bits | 16 GiB |
//! | heap start | page after the image (or `HEAP_START`), up | 13 bits | 32 MiB |
//!
//! The same bits as Linux on x86_64 (`mmap_rnd_bits` 28, stack 22 bits of pages, brk 32 MiB).
//! A fork keeps its parent's layout, as on Linux.

use crate::kernel::PAGE_SIZE;
use crate::layout::Placement;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Lowest randomized mmap base: 16 TiB, far above any heap and below any stack.
pub const MMAP_RANDOM_BASE: u64 = 0x0000_1000_0000_0000;
/// Bits of randomness of the mmap base, in pages.
pub const MMAP_RANDOM_BITS: u32 = 28;
/// Highest randomized stack top: 1 TiB below the end of the user half.
pub const STACK_RANDOM_TOP: u64 = 0x0000_7F00_0000_0000;
/// Bits of randomness of the stack top, in pages.
pub const STACK_RANDOM_BITS: u32 = 22;
/// Bits of randomness of the heap start, in pages.
pub const HEAP_RANDOM_BITS: u32 = 13;

/// The generator of layouts.
pub struct Aslr(Option<ChaCha20Rng>);

impl Aslr {
    /// A generator seeded with `seed`, or none (every layout [`Placement::FIXED`]).
    pub fn new(seed: Option<[u8; 32]>) -> Aslr {
        Aslr(seed.map(ChaCha20Rng::from_seed))
    }

    /// The layout of a new process.
    pub fn draw(&mut self) -> Placement {
        let Some(rng) = self.0.as_mut() else {
            return Placement::FIXED;
        };
        let mut pages = |bits: u32| (rng.next_u64() & ((1 << bits) - 1)) * PAGE_SIZE;
        Placement {
            mmap_base: MMAP_RANDOM_BASE + pages(MMAP_RANDOM_BITS),
            stack_top: STACK_RANDOM_TOP - pages(STACK_RANDOM_BITS),
            heap_offset: pages(HEAP_RANDOM_BITS),
        }
    }
}
