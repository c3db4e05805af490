//! The emulated MMU: every simulated load, store and fetch walks the real page tables, as
//! the hardware does, through a software TLB.
//!
//! Each space has a small direct-mapped TLB of successful user translations. Only the
//! kernel's flushes (the `Flush` of each batch, and destroying the space) invalidate it, so a
//! flush that memd or the kernel forgets shows up in tests as a stale access: a store that
//! still goes through after a protection downgrade, a load that still reaches a frame after
//! an unmap. That is the point of it.
//!
//! A TLB entry that does not allow an access is not trusted to refuse it: the tables are
//! walked again first (hardware re-walks or drops the entry on a page fault), so only stale
//! *permissive* entries, the harmful kind, survive a missing flush.
//!
//! The MMU does not set `ACCESSED` or `DIRTY`; nothing reads them.

use crate::hostkernel::{Machine, Space};
use kernel_shim::paging::{
    HUGE_PAGE_SIZE, PAGE_SIZE, PageTableFlags, Translation, page_table_translate,
};
pub use memd::Access;
use memd::kernel::SpaceId;
use std::ops::Range;
use std::sync::Arc;
use x86_64::{PhysAddr, VirtAddr};

/// A simulated access that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultInfo {
    /// The address of the first byte that faulted.
    pub addr: u64,
    /// The access that faulted.
    pub access: Access,
    /// Whether the page was present: `false` is the `SEGV_MAPERR` kind (nothing mapped, a
    /// non-canonical address or a space that is gone), `true` the `SEGV_ACCERR` kind (a store
    /// to a read-only page, a fetch from a no-execute page, any access to a kernel page).
    pub present: bool,
}

/// The MMU of the emulated machine, shared by the threads that simulate processes.
#[derive(Clone)]
pub struct Mmu {
    machine: Arc<Machine>,
}

impl Mmu {
    /// The MMU over the kernel state in `machine`.
    pub(crate) fn new(machine: Arc<Machine>) -> Mmu {
        Mmu { machine }
    }

    /// Translates one `kind` access to the byte at `virt` in `space`.
    pub fn access(&self, space: SpaceId, virt: u64, kind: Access) -> Result<PhysAddr, FaultInfo> {
        let mut phys = None;
        self.run(space, virt, 1, kind, |at, _| phys = Some(at))?;
        Ok(phys.expect("a one-byte access translates one byte"))
    }

    /// Loads `buf.len()` bytes from `virt`. On a fault the bytes before the faulting one
    /// have been loaded.
    pub fn read(&self, space: SpaceId, virt: u64, buf: &mut [u8]) -> Result<(), FaultInfo> {
        let window = self.machine.phys.window();
        self.run(space, virt, buf.len(), Access::Read, |phys, range| {
            window.read(phys, &mut buf[range]).expect(MAPPED_IN_RAM);
        })
    }

    /// Stores `bytes` at `virt`. On a fault the bytes before the faulting one have been
    /// stored.
    pub fn write(&self, space: SpaceId, virt: u64, bytes: &[u8]) -> Result<(), FaultInfo> {
        let window = self.machine.phys.window();
        self.run(space, virt, bytes.len(), Access::Write, |phys, range| {
            window.write(phys, &bytes[range]).expect(MAPPED_IN_RAM);
        })
    }

    /// Fetches `buf.len()` bytes of instructions from `virt`. On a fault the bytes before
    /// the faulting one have been fetched.
    pub fn fetch(&self, space: SpaceId, virt: u64, buf: &mut [u8]) -> Result<(), FaultInfo> {
        let window = self.machine.phys.window();
        self.run(space, virt, buf.len(), Access::Execute, |phys, range| {
            window.read(phys, &mut buf[range]).expect(MAPPED_IN_RAM);
        })
    }

    /// Translates the `len` bytes at `virt` page by page, calling `each` with the physical
    /// address of each piece and its range within the access, and stops at the first fault.
    fn run(
        &self,
        space: SpaceId,
        virt: u64,
        len: usize,
        kind: Access,
        mut each: impl FnMut(PhysAddr, Range<usize>),
    ) -> Result<(), FaultInfo> {
        if len == 0 {
            return Ok(());
        }
        let gone = FaultInfo {
            addr: virt,
            access: kind,
            present: false,
        };
        let slot = self.machine.space(space).ok_or(gone)?;
        let mut space = slot.lock();
        let mut done = 0;
        while done < len {
            let at = virt.wrapping_add(done as u64);
            let piece = (len - done).min((PAGE_SIZE - at % PAGE_SIZE) as usize);
            let phys = self.translate(&mut space, at, kind)?;
            each(phys, done..done + piece);
            done += piece;
        }
        Ok(())
    }

    /// Translates one access through the TLB, walking the tables on a miss.
    #[inline]
    fn translate(&self, space: &mut Space, virt: u64, kind: Access) -> Result<PhysAddr, FaultInfo> {
        let page = virt & !(PAGE_SIZE - 1);
        let offset = virt % PAGE_SIZE;
        if let Some(frame) = space.tlb.lookup(page, kind) {
            return Ok(frame + offset);
        }
        let fault = |present| FaultInfo {
            addr: virt,
            access: kind,
            present,
        };
        let root = space.root.ok_or(fault(false))?;
        let translation = page_table_translate(self.machine.phys.window(), root, virt);
        match translation {
            None => {
                space.tlb.drop_page(page);
                Err(fault(false))
            }
            Some(t) if !allows(&t, kind) => {
                space.tlb.drop_page(page);
                Err(fault(true))
            }
            Some(t) => {
                space.tlb.insert(page, &t);
                Ok(t.phys)
            }
        }
    }
}

/// Why a translated frame is always inside RAM: the paging code only maps frames inside the
/// window, and non-user (kernel) pages fault before any byte is moved.
const MAPPED_IN_RAM: &str = "user pages map frames inside RAM";

/// Whether a ring-3 `kind` access is allowed by `t`.
fn allows(t: &Translation, kind: Access) -> bool {
    t.user
        && match kind {
            Access::Read => true,
            Access::Write => t.writable,
            Access::Execute => t.executable,
        }
}

/// Entries of a space's TLB.
const TLB_ENTRIES: usize = 64;

/// Marks a used TLB entry (page addresses have their low 12 bits clear).
const VALID: u64 = 1;

/// One cached user translation.
#[derive(Clone, Copy)]
struct TlbEntry {
    /// The page's address with [`VALID`] set, or 0.
    tag: u64,
    frame: PhysAddr,
    writable: bool,
    executable: bool,
    /// Cached from a huge page: an `invlpg` anywhere in its 2 MiB forgets it, as the CPU's
    /// one entry for the whole page would be.
    huge: bool,
}

impl TlbEntry {
    /// An unused entry.
    const EMPTY: TlbEntry = TlbEntry {
        tag: 0,
        frame: PhysAddr::zero(),
        writable: false,
        executable: false,
        huge: false,
    };
}

/// A space's TLB: direct mapped on the page number.
pub(crate) struct Tlb {
    entries: [TlbEntry; TLB_ENTRIES],
}

impl Tlb {
    /// An empty TLB.
    pub(crate) fn new() -> Tlb {
        Tlb {
            entries: [TlbEntry::EMPTY; TLB_ENTRIES],
        }
    }

    /// `invlpg`: forgets the translation of `page`, and every one cached from the huge page
    /// holding it.
    pub(crate) fn invalidate(&mut self, page: VirtAddr) {
        let page = page.as_u64();
        self.drop_page(page);
        let block = page / HUGE_PAGE_SIZE;
        for entry in self.entries.iter_mut() {
            if entry.huge
                && entry.tag & VALID != 0
                && (entry.tag & !VALID) / HUGE_PAGE_SIZE == block
            {
                *entry = TlbEntry::EMPTY;
            }
        }
    }

    /// A full flush.
    pub(crate) fn invalidate_all(&mut self) {
        self.entries = [TlbEntry::EMPTY; TLB_ENTRIES];
    }

    /// The cached frame of `page` if the entry allows a `kind` access.
    #[inline]
    fn lookup(&self, page: u64, kind: Access) -> Option<PhysAddr> {
        let entry = &self.entries[slot(page)];
        let allowed = match kind {
            Access::Read => true,
            Access::Write => entry.writable,
            Access::Execute => entry.executable,
        };
        (entry.tag == page | VALID && allowed).then_some(entry.frame)
    }

    /// Caches the translation `t` of `page`, which allowed a user access.
    fn insert(&mut self, page: u64, t: &Translation) {
        self.entries[slot(page)] = TlbEntry {
            tag: page | VALID,
            frame: t.frame,
            writable: t.writable,
            executable: t.executable,
            huge: t.flags.contains(PageTableFlags::HUGE_PAGE),
        };
    }

    /// Forgets the translation of `page`, if cached.
    fn drop_page(&mut self, page: u64) {
        let entry = &mut self.entries[slot(page)];
        if entry.tag == page | VALID {
            *entry = TlbEntry::EMPTY;
        }
    }
}

/// The TLB slot of `page`.
#[inline]
fn slot(page: u64) -> usize {
    (page / PAGE_SIZE) as usize % TLB_ENTRIES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostkernel::HostKernel;
    use crate::hostkernel::tests::{kernel, map};
    use kernel_shim::paging::{PHYSMAP_BASE, PageTableFlags, page_table_protect};
    use libvm::ProtectionFlags;
    use memd::kernel::{Kernel, PageOp};

    const RW: ProtectionFlags = ProtectionFlags::READ_WRITE;
    const R: ProtectionFlags = ProtectionFlags::READ;

    /// A kernel, its MMU, one space (its tables donated from the last frames of RAM), and
    /// memd's first frame.
    fn machine() -> (HostKernel, Mmu, SpaceId, u64) {
        let (k, f) = kernel();
        let mmu = k.mmu();
        let top = mmu.machine.phys.ram_bytes() - PAGE_SIZE;
        let s = k.create_space(top).unwrap();
        let tables: Vec<_> = (1..=32)
            .map(|i| PageOp::Donate {
                frame: top - i * PAGE_SIZE,
            })
            .collect();
        k.apply(s, &tables).unwrap();
        (k, mmu, s, f)
    }

    fn fault(addr: u64, access: Access, present: bool) -> FaultInfo {
        FaultInfo {
            addr,
            access,
            present,
        }
    }

    #[test]
    fn write_then_read_back_across_a_page_boundary() {
        let (k, mmu, s, f) = machine();
        // Two neighbouring pages on frames in the other order.
        k.apply(
            s,
            &[map(0x10_0000, f + PAGE_SIZE, RW), map(0x10_1000, f, RW)],
        )
        .unwrap();
        assert_eq!(
            mmu.access(s, 0x10_0ffe, Access::Write),
            Ok(PhysAddr::new(f + PAGE_SIZE + 0xffe))
        );
        mmu.write(s, 0x10_0ffc, b"abcdefgh").unwrap();
        let mut back = [0u8; 8];
        mmu.read(s, 0x10_0ffc, &mut back).unwrap();
        assert_eq!(&back, b"abcdefgh");

        let window = k.mmu().machine.phys.window();
        let mut head = [0u8; 4];
        window
            .read(PhysAddr::new(f + PAGE_SIZE + 0xffc), &mut head)
            .unwrap();
        let mut tail = [0u8; 4];
        window.read(PhysAddr::new(f), &mut tail).unwrap();
        assert_eq!((&head, &tail), (b"abcd", b"efgh"));
    }

    #[test]
    fn faults_say_what_and_where() {
        let (k, mmu, s, f) = machine();
        k.apply(
            s,
            &[
                map(0x1000, f, R),
                map(0x2000, f, ProtectionFlags::READ_EXEC),
            ],
        )
        .unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            mmu.read(s, 0x5000, &mut buf),
            Err(fault(0x5000, Access::Read, false))
        );
        assert_eq!(
            mmu.write(s, 0x1010, &buf),
            Err(fault(0x1010, Access::Write, true))
        );
        assert_eq!(
            mmu.fetch(s, 0x1000, &mut buf),
            Err(fault(0x1000, Access::Execute, true))
        );
        assert_eq!(mmu.fetch(s, 0x2000, &mut buf), Ok(()));
        assert_eq!(mmu.read(s, 0x1000, &mut buf), Ok(()));
        // The kernel half is present but not for ring 3.
        assert_eq!(
            mmu.read(s, PHYSMAP_BASE, &mut buf),
            Err(fault(PHYSMAP_BASE, Access::Read, true))
        );
        let odd = 0x0000_8000_0000_0000;
        assert_eq!(
            mmu.read(s, odd, &mut buf),
            Err(fault(odd, Access::Read, false))
        );
        assert_eq!(
            mmu.read(s + 1, 0x1000, &mut buf),
            Err(fault(0x1000, Access::Read, false))
        );
        assert_eq!(
            mmu.read(s, 0x5000, &mut []),
            Ok(()),
            "an empty access cannot fault"
        );
    }

    #[test]
    fn an_access_stops_at_the_first_faulting_byte() {
        let (k, mmu, s, f) = machine();
        k.apply(s, &[map(0x1000, f, RW)]).unwrap();
        mmu.write(s, 0x1ff8, &[0; 8]).unwrap();
        assert_eq!(
            mmu.write(s, 0x1ffc, b"abcdefgh"),
            Err(fault(0x2000, Access::Write, false))
        );
        let mut back = [0u8; 8];
        mmu.read(s, 0x1ff8, &mut back).unwrap();
        assert_eq!(
            &back, b"\0\0\0\0abcd",
            "the bytes before the fault are stored"
        );
    }

    #[test]
    fn a_protect_batch_stops_writes_the_tlb_had_allowed() {
        let (k, mmu, s, f) = machine();
        k.apply(s, &[map(0x1000, f, RW)]).unwrap();
        mmu.write(s, 0x1000, b"x").unwrap();
        k.apply(
            s,
            &[PageOp::Protect {
                page: 0x1000,
                pages: 1,
                prot: R,
            }],
        )
        .unwrap();
        assert_eq!(
            mmu.write(s, 0x1000, b"y"),
            Err(fault(0x1000, Access::Write, true))
        );
        let mut back = [0u8];
        mmu.read(s, 0x1000, &mut back).unwrap();
        assert_eq!(&back, b"x");
    }

    #[test]
    fn an_unmapped_page_faults_even_after_being_cached() {
        let (k, mmu, s, f) = machine();
        k.apply(s, &[map(0x1000, f, RW)]).unwrap();
        let mut buf = [0u8];
        mmu.read(s, 0x1000, &mut buf).unwrap();
        k.apply(
            s,
            &[PageOp::Unmap {
                page: 0x1000,
                pages: 1,
            }],
        )
        .unwrap();
        assert_eq!(
            mmu.read(s, 0x1000, &mut buf),
            Err(fault(0x1000, Access::Read, false))
        );
    }

    #[test]
    fn a_missing_flush_shows_as_a_stale_access() {
        let (k, mmu, s, f) = machine();
        k.apply(s, &[map(0x1000, f, RW)]).unwrap();
        mmu.write(s, 0x1000, b"x").unwrap();
        // Downgrade the page behind the kernel's back and drop the flush it owes.
        let window = k.mmu().machine.phys.window();
        let read_only = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
        let (_, flush) = page_table_protect(window, k.root(s).unwrap(), 0x1000, read_only).unwrap();
        flush.ignore();
        assert_eq!(
            mmu.write(s, 0x1000, b"y"),
            Ok(()),
            "the stale entry lets it through"
        );
        // The kernel's next batch touching the page flushes it.
        k.apply(
            s,
            &[PageOp::Protect {
                page: 0x1000,
                pages: 1,
                prot: R,
            }],
        )
        .unwrap();
        assert_eq!(
            mmu.write(s, 0x1000, b"z"),
            Err(fault(0x1000, Access::Write, true))
        );
    }

    #[test]
    fn a_denying_entry_is_checked_against_the_tables() {
        let (k, mmu, s, f) = machine();
        k.apply(s, &[map(0x1000, f, R)]).unwrap();
        let mut buf = [0u8];
        mmu.read(s, 0x1000, &mut buf).unwrap();
        // An upgrade without a flush: the cached read-only entry is walked past.
        let window = k.mmu().machine.phys.window();
        let writable =
            PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE | PageTableFlags::WRITABLE;
        let (_, flush) = page_table_protect(window, k.root(s).unwrap(), 0x1000, writable).unwrap();
        flush.ignore();
        assert_eq!(mmu.write(s, 0x1000, b"w"), Ok(()));
    }

    #[test]
    fn pages_sharing_a_tlb_slot_translate_apart() {
        let (k, mmu, s, f) = machine();
        let far = 0x1000 + TLB_ENTRIES as u64 * PAGE_SIZE;
        k.apply(s, &[map(0x1000, f, RW), map(far, f + PAGE_SIZE, RW)])
            .unwrap();
        for _ in 0..3 {
            assert_eq!(mmu.access(s, 0x1000, Access::Read), Ok(PhysAddr::new(f)));
            assert_eq!(
                mmu.access(s, far + 1, Access::Read),
                Ok(PhysAddr::new(f + PAGE_SIZE + 1))
            );
        }
    }

    #[test]
    fn a_destroyed_space_faults() {
        let (k, mmu, s, f) = machine();
        k.apply(s, &[map(0x1000, f, RW)]).unwrap();
        mmu.access(s, 0x1000, Access::Read).unwrap();
        k.destroy_space(s).unwrap();
        assert_eq!(
            mmu.access(s, 0x1000, Access::Read),
            Err(fault(0x1000, Access::Read, false))
        );
    }
}
