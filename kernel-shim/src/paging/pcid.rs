//! Process-context identifiers: which space's translations the TLB may hold under each PCID.
//!
//! Each space's translations are tagged in the TLB with a PCID derived from its PML4's frame,
//! so a switch back to a space can keep what the TLB holds of it (CR3 bit 63 set) instead of
//! flushing everything. The rule that keeps this exact: the TLB may hold translations of a
//! space under a PCID only while [`PcidTags`] says that PCID belongs to that space's PML4. A
//! change to a space that is not active, or its end, forgets the tag ([`PcidTags::forget`]);
//! a switch to a space whose PCID is not tagged with it (never run, changed meanwhile, or
//! another space's with the same PCID) must load CR3 with bit 63 clear, which drops every
//! translation of that PCID.

/// PCIDs: 1..4096 (0 is the kernel's at boot, before any space runs).
const PCIDS: usize = 4096;

/// CR3's bit 63 on a write: keep the translations of the PCID loaded.
pub const CR3_NOFLUSH: u64 = 1 << 63;

/// For each PCID, the PML4 whose translations the TLB may hold under it.
pub struct PcidTags {
    tagged: [u64; PCIDS],
}

impl Default for PcidTags {
    fn default() -> Self {
        Self::new()
    }
}

impl PcidTags {
    /// No PCID tagged: the TLB holds nothing of any space.
    pub const fn new() -> PcidTags {
        PcidTags { tagged: [0; PCIDS] }
    }

    /// The PCID of the space whose PML4 is the frame `root`.
    pub fn pcid_of(root: u64) -> u64 {
        (root >> 12) % (PCIDS as u64 - 1) + 1
    }

    /// The CR3 value that switches to `root`: its PCID, with [`CR3_NOFLUSH`] only if the
    /// TLB's entries under that PCID are `root`'s and current. The PCID is `root`'s from now.
    pub fn switch_to(&mut self, root: u64) -> u64 {
        let p = Self::pcid_of(root);
        let tag = &mut self.tagged[p as usize];
        let keep = *tag == root;
        *tag = root;
        root | p | if keep { CR3_NOFLUSH } else { 0 }
    }

    /// Forgets what the TLB may hold of `root` (a change made while it was not active, or its
    /// end): its next [`PcidTags::switch_to`] flushes its PCID.
    pub fn forget(&mut self, root: u64) {
        let tag = &mut self.tagged[Self::pcid_of(root) as usize];
        if *tag == root {
            *tag = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 0x10_0000;
    const B: u64 = 0x20_3000;
    /// A frame whose PCID is A's.
    const A_TWIN: u64 = A + 4095 * 4096;

    #[test]
    fn a_space_keeps_its_entries_until_changed_elsewhere_or_ended() {
        let mut t = PcidTags::new();
        assert_eq!(t.switch_to(A) & CR3_NOFLUSH, 0, "first run: flush");
        assert_eq!(t.switch_to(B) & CR3_NOFLUSH, 0);
        let v = t.switch_to(A);
        assert_eq!(v & CR3_NOFLUSH, CR3_NOFLUSH, "back to A: kept");
        assert_eq!(v & !CR3_NOFLUSH, A | PcidTags::pcid_of(A));
        t.forget(A);
        assert_eq!(t.switch_to(A) & CR3_NOFLUSH, 0, "changed while away: flush");
        assert_eq!(t.switch_to(B) & CR3_NOFLUSH, CR3_NOFLUSH, "B untouched");
    }

    #[test]
    fn two_spaces_with_one_pcid_never_see_each_others_entries() {
        assert_eq!(PcidTags::pcid_of(A), PcidTags::pcid_of(A_TWIN));
        let mut t = PcidTags::new();
        t.switch_to(A);
        assert_eq!(t.switch_to(A_TWIN) & CR3_NOFLUSH, 0);
        assert_eq!(t.switch_to(A) & CR3_NOFLUSH, 0);
        // Forgetting the twin (not the PCID's owner now) leaves A's tag.
        t.forget(A_TWIN);
        assert_eq!(t.switch_to(A) & CR3_NOFLUSH, CR3_NOFLUSH);
    }

    #[test]
    fn pcids_are_never_zero_and_fit_twelve_bits() {
        for root in (0..10_000u64).map(|i| i * 4096) {
            let p = PcidTags::pcid_of(root);
            assert!((1..4096).contains(&p), "{root:#x} -> {p}");
        }
    }
}
