//! The layout of a process's address space, and where new mappings go.
//!
//! ```text
//!  0xFFFF_8000_0000_0000 ┌──────────────────────────────────────────┐
//!                        │ kernel: physical memory window,          │
//!                        │ never user-accessible                    │
//!                        ├──────────────────────────────────────────┤
//!                        │ non-canonical hole                       │
//!  USER_END              ├──────────────────────────────────────────┤ 0x0000_8000_0000_0000
//!  (exclusive)           │ mmap overflow: used when the window      │
//!                        │ below is full (first fit, bottom up)     │
//!  STACK_TOP             ├──────────────────────────────────────────┤ 0x0000_0000_8000_0000
//!                        │ stack, grows down, STACK_MAX = 8 MiB     │
//!  STACK_TOP - STACK_MAX ├──────────────────────────────────────────┤ 0x0000_0000_7F80_0000
//!                        │ guard page (STACK_GUARD)                 │
//!  MMAP_END              ├──────────────────────────────────────────┤ 0x0000_0000_7F7F_F000
//!                        │ mmap area, ~1 GiB window                 │
//!                        │ (first fit, bottom up)                   │
//!  MMAP_BASE = HEAP_END  ├──────────────────────────────────────────┤ 0x0000_0000_4000_0000
//!                        │ heap (brk/sbrk), grows up, 768 MiB max   │
//!  HEAP_START            ├──────────────────────────────────────────┤ 0x0000_0000_1000_0000
//!                        │ program image (code, data)               │
//!  MIN_ADDR              ├──────────────────────────────────────────┤ 0x0000_0000_0001_0000
//!                        │ null guard: never mapped                 │
//!                      0 └──────────────────────────────────────────┘
//! ```
//!
//! That is the fixed layout ([`Placement::FIXED`], with `aslr=off`). With address-space layout
//! randomization each process gets its own [`Placement`] (see [`crate::aslr`]): the mmap area
//! begins at a random page of `[16 TiB, 17 TiB)`, the stack's top is a random page of the 16
//! GiB below `0x7F00_0000_0000`, and the heap begins up to 32 MiB above where it would.
//!
//! Placement ([`place`]) honours a usable hint, else takes the lowest free gap of the mmap
//! area, else the lowest free gap above the stack, else (randomized layouts) the lowest free
//! gap between the fixed mmap base and the random one. The stack reserve and the heap are
//! never chosen for a mapping that did not name them.

use libvm::VmError;

use crate::kernel::PAGE_SIZE;
use crate::region::RegionMap;

/// Lowest address a mapping may use: nothing is mapped below 64 KiB, so a null pointer (plus
/// a small offset) always faults, as with Linux's `mmap_min_addr`.
pub const MIN_ADDR: u64 = 0x1_0000;

/// Start of the heap (the initial break), right above the program image area.
pub const HEAP_START: u64 = 0x1000_0000;

/// Start of the mmap area, and the limit of the heap (768 MiB above [`HEAP_START`]).
pub const MMAP_BASE: u64 = 0x4000_0000;

/// End (exclusive) of what `MAP_32BIT` places into: `[MMAP_BASE, 2 GiB)`.
pub const BELOW_2G_END: u64 = 0x8000_0000;

/// Highest address (exclusive) the heap may reach: the start of the mmap area.
pub const HEAP_END: u64 = MMAP_BASE;

/// One past the top of the stack, which grows down from here.
pub const STACK_TOP: u64 = 0x8000_0000;

/// Room reserved for the stack below [`STACK_TOP`]: 8 MiB.
pub const STACK_MAX: u64 = 8 << 20;

/// Size of the guard below the stack reserve.
pub const STACK_GUARD: u64 = PAGE_SIZE;

/// End (exclusive) of the default mmap window: the bottom of the stack reserve and its guard.
pub const MMAP_END: u64 = STACK_TOP - STACK_MAX - STACK_GUARD;

/// End (exclusive) of what a process may map: the lower canonical half of x86_64 without its
/// top page, as Linux's `TASK_SIZE`, so no instruction can end at the edge of the
/// non-canonical hole (the kernel refuses to map that page too).
pub const USER_END: u64 = kernel_shim::abi::USER_TOP;

/// Where one process's areas begin: the fixed layout, or one drawn at random for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Start of the mmap area.
    pub mmap_base: u64,
    /// One past the top of the stack.
    pub stack_top: u64,
    /// How far above its usual start the heap begins.
    pub heap_offset: u64,
}

impl Placement {
    /// The fixed layout drawn above.
    pub const FIXED: Placement = Placement {
        mmap_base: MMAP_BASE,
        stack_top: STACK_TOP,
        heap_offset: 0,
    };

    /// End (exclusive) of the mmap area: the bottom of the stack reserve and its guard.
    pub fn mmap_end(&self) -> u64 {
        self.stack_top - STACK_MAX - STACK_GUARD
    }
}

/// `len` rounded up to whole pages, or `None` when that overflows.
pub fn page_round_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|l| l & !(PAGE_SIZE - 1))
}

/// Whether `addr` is on a page boundary.
pub fn is_page_aligned(addr: u64) -> bool {
    addr.is_multiple_of(PAGE_SIZE)
}

/// Checks a user range given as `addr` and `len` (in bytes, rounded up to pages) and returns
/// its page-aligned end.
///
/// Errors: `len == 0` or an end past `u64::MAX` → [`VmError::InvalidSize`]; `addr` not page
/// aligned → [`VmError::NotAligned`]; an end above [`USER_END`] → [`VmError::InvalidAddress`].
pub fn check_user_range(addr: u64, len: u64) -> Result<u64, VmError> {
    if len == 0 {
        return Err(VmError::InvalidSize);
    }
    if !is_page_aligned(addr) {
        return Err(VmError::NotAligned);
    }
    let end = page_round_up(len)
        .and_then(|size| addr.checked_add(size))
        .ok_or(VmError::InvalidSize)?;
    if end > USER_END {
        return Err(VmError::InvalidAddress);
    }
    Ok(end)
}

/// Where to put a new mapping of `len` bytes (rounded up to pages) in the space whose regions
/// are `map`, or `None` when no gap is large enough.
///
/// 1. `hint`, if it is page aligned, at or above [`MIN_ADDR`], the whole range lies below
///    [`USER_END`], does not touch the stack reserve and its guard (`[mmap_end, stack_top)`
///    of `at`), and is free. A hint of 0 means none.
/// 2. The lowest free gap of the mmap area `[mmap_base, mmap_end)` (for 2 MiB or more: the
///    lowest with room for it at a 2 MiB boundary first, so its blocks may be huge pages).
/// 3. When that area is full: the lowest free gap of `[stack_top, USER_END)`.
/// 4. Then (a randomized layout): the lowest free gap of `[MMAP_BASE, mmap_base)`.
///
/// Cost: that of [`RegionMap::find_free`], O(log n) in the common case.
pub fn place(map: &RegionMap, len: u64, hint: u64, at: &Placement) -> Option<u64> {
    let size = page_round_up(len).filter(|&s| s > 0)?;
    if hint != 0
        && is_page_aligned(hint)
        && hint >= MIN_ADDR
        && let Some(end) = hint.checked_add(size)
        && end <= USER_END
        && (end <= at.mmap_end() || hint >= at.stack_top)
        && map.is_free(hint, end)
    {
        return Some(hint);
    }
    // A mapping of 2 MiB or more starts on a 2 MiB boundary where it can, so its blocks may
    // be huge pages (see `crate::huge`).
    let huge = kernel_shim::paging::HUGE_PAGE_SIZE;
    let aligned = |lo: u64, hi: u64| {
        let padded = size.checked_add(huge - PAGE_SIZE)?;
        (size >= huge)
            .then(|| map.find_free(padded, lo, hi))
            .flatten()
            .map(|s| s.next_multiple_of(huge))
    };
    aligned(at.mmap_base, at.mmap_end())
        .or_else(|| map.find_free(size, at.mmap_base, at.mmap_end()))
        .or_else(|| aligned(at.stack_top, USER_END))
        .or_else(|| map.find_free(size, at.stack_top, USER_END))
        .or_else(|| map.find_free(size, MMAP_BASE, at.mmap_base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::{Region, RegionKind};
    use libvm::ProtectionFlags;

    const P: u64 = PAGE_SIZE;

    fn place_fixed(map: &RegionMap, len: u64, hint: u64) -> Option<u64> {
        place(map, len, hint, &Placement::FIXED)
    }

    fn region(start: u64, end: u64) -> Region {
        Region::new(
            start,
            end,
            ProtectionFlags::READ_WRITE,
            RegionKind::Anonymous,
        )
    }

    #[test]
    fn layout_is_consistent() {
        assert_eq!(MMAP_END, 0x7F7F_F000);
        const {
            assert!(MIN_ADDR < HEAP_START);
            assert!(HEAP_START < HEAP_END && HEAP_END <= MMAP_BASE);
            assert!(MMAP_BASE < MMAP_END && MMAP_END < STACK_TOP);
            assert!(STACK_TOP < USER_END);
        }
        for a in [
            MIN_ADDR, HEAP_START, MMAP_BASE, MMAP_END, STACK_TOP, USER_END,
        ] {
            assert!(is_page_aligned(a));
        }
    }

    #[test]
    fn round_up() {
        assert_eq!(page_round_up(0), Some(0));
        assert_eq!(page_round_up(1), Some(P));
        assert_eq!(page_round_up(P), Some(P));
        assert_eq!(page_round_up(P + 1), Some(2 * P));
        assert_eq!(page_round_up(u64::MAX - P + 1), Some(u64::MAX - P + 1));
        assert_eq!(page_round_up(u64::MAX - P + 2), None);
        assert_eq!(page_round_up(u64::MAX), None);
    }

    #[test]
    fn user_range_edges() {
        assert_eq!(check_user_range(0x1000, 0), Err(VmError::InvalidSize));
        assert_eq!(check_user_range(0x1001, P), Err(VmError::NotAligned));
        assert_eq!(check_user_range(0x1000, 1), Ok(0x2000));
        assert_eq!(check_user_range(0, P), Ok(P));
        // Wraparound.
        assert_eq!(
            check_user_range(u64::MAX - P + 1, P),
            Err(VmError::InvalidSize)
        );
        assert_eq!(check_user_range(P, u64::MAX), Err(VmError::InvalidSize));
        assert_eq!(check_user_range(P, u64::MAX - P), Err(VmError::InvalidSize));
        // Kernel half and the top of user space.
        assert_eq!(
            check_user_range(0xFFFF_8000_0000_0000, P),
            Err(VmError::InvalidAddress)
        );
        assert_eq!(check_user_range(USER_END - P, P), Ok(USER_END));
        assert_eq!(
            check_user_range(USER_END - P, P + 1),
            Err(VmError::InvalidAddress)
        );
        assert_eq!(check_user_range(USER_END, P), Err(VmError::InvalidAddress));
        assert_eq!(check_user_range(0, USER_END), Ok(USER_END));
    }

    #[test]
    fn hint_honoured_when_usable() {
        let mut map = RegionMap::new();
        assert_eq!(place_fixed(&map, P, 0x5000_0000), Some(0x5000_0000));
        assert_eq!(place_fixed(&map, 1, 0x2_0000_0000), Some(0x2_0000_0000));
        assert_eq!(place_fixed(&map, P, MIN_ADDR), Some(MIN_ADDR));
        // Unusable hints: unaligned, too low, past the end, in the stack reserve.
        assert_eq!(place_fixed(&map, P, 0x5000_0001), Some(MMAP_BASE));
        assert_eq!(place_fixed(&map, P, MIN_ADDR - P), Some(MMAP_BASE));
        assert_eq!(place_fixed(&map, P, USER_END), Some(MMAP_BASE));
        assert_eq!(place_fixed(&map, 2 * P, USER_END - P), Some(MMAP_BASE));
        assert_eq!(place_fixed(&map, P, STACK_TOP - P), Some(MMAP_BASE));
        assert_eq!(place_fixed(&map, 2 * P, MMAP_END - P), Some(MMAP_BASE));
        assert_eq!(place_fixed(&map, P, u64::MAX - P + 1), Some(MMAP_BASE));
        // A hint that is taken goes to the first gap.
        map.insert(region(0x5000_0000, 0x5000_0000 + P)).unwrap();
        assert_eq!(place_fixed(&map, P, 0x5000_0000), Some(MMAP_BASE));
        map.insert(region(MMAP_BASE, MMAP_BASE + P)).unwrap();
        assert_eq!(place_fixed(&map, P, 0x5000_0000), Some(MMAP_BASE + P));
        assert_eq!(place_fixed(&map, 0, 0x5000_0000), None);
    }

    #[test]
    fn fills_mmap_area_in_order() {
        let mut map = RegionMap::new();
        let mut expected = MMAP_BASE;
        for i in 1..=50u64 {
            let len = (i % 3 + 1) * P;
            let at = place_fixed(&map, len, 0).unwrap();
            assert_eq!(at, expected);
            map.insert_merged(region(at, at + len)).unwrap();
            expected += len;
        }
        // A hole left by an unmap is reused first.
        map.remove_range(MMAP_BASE + 4 * P, MMAP_BASE + 6 * P);
        assert_eq!(place_fixed(&map, 3 * P, 0), Some(expected));
        assert_eq!(place_fixed(&map, 2 * P, 0), Some(MMAP_BASE + 4 * P));
    }

    #[test]
    fn overflows_above_the_stack_when_full() {
        let mut map = RegionMap::new();
        map.insert(region(MMAP_BASE, MMAP_END - P)).unwrap();
        assert_eq!(place_fixed(&map, P, 0), Some(MMAP_END - P));
        assert_eq!(place_fixed(&map, 2 * P, 0), Some(STACK_TOP));
        map.insert(region(MMAP_END - P, MMAP_END)).unwrap();
        assert_eq!(place_fixed(&map, P, 0), Some(STACK_TOP));
        // The stack itself does not matter for the overflow area.
        map.insert(region(STACK_TOP - STACK_MAX, STACK_TOP))
            .unwrap();
        assert_eq!(place_fixed(&map, P, 0), Some(STACK_TOP));
        map.insert(region(STACK_TOP, STACK_TOP + P)).unwrap();
        assert_eq!(place_fixed(&map, P, 0), Some(STACK_TOP + P));
        // Nothing larger than user space fits anywhere.
        assert_eq!(place_fixed(&map, USER_END, 0), None);
        map.insert(region(STACK_TOP + P, USER_END)).unwrap();
        assert_eq!(place_fixed(&map, P, 0), None);
    }
}
