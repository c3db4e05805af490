//! Long random sequences of operations (mremap and fork advice among them) and accesses,
//! checked step by step against a simple reference model of memory: contents, faults and
//! errors must agree at every step.

use libvm::{MmapFlags, ProtectionFlags as P, VmError};
use memd::layout::{HEAP_START, MMAP_BASE, STACK_TOP};
use memd::process::STACK_SIZE;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use testbed::system::{Config, Fault, FaultKind, System};

const PAGE: u64 = 4096;
/// The window most operations aim at: the start of the mmap area, where placement also puts
/// mappings, so fixed and placed mappings collide.
const WINDOW: u64 = MMAP_BASE;
const WINDOW_PAGES: u64 = 96;

/// What backs a page in the model.
#[derive(Clone, Debug)]
enum Backing {
    /// Private: its own bytes (`None`: still all zero).
    Private(Option<Vec<u8>>),
    /// Page `index` of shared object `object`.
    Shared(u32, u64),
}

#[derive(Clone, Debug)]
struct MPage {
    prot: P,
    backing: Backing,
    /// What a fork's child gets: [`DONTFORK`] (nothing), [`WIPEONFORK`] (zero); and
    /// [`HUGE`]: given `MADV_HUGEPAGE` (its region is apart from those without).
    fork: u8,
}

/// `MADV_DONTFORK` set on a page of the model.
const DONTFORK: u8 = 1;
/// `MADV_WIPEONFORK` set on a page of the model.
const WIPEONFORK: u8 = 2;
/// `MADV_HUGEPAGE` set on a page of the model.
const HUGE: u8 = 4;

#[derive(Clone, Debug, Default)]
struct MProcess {
    pages: BTreeMap<u64, MPage>,
    brk: u64,
}

#[derive(Default)]
struct Model {
    procs: BTreeMap<u64, MProcess>,
    objects: HashMap<(u32, u64), Vec<u8>>,
    next_object: u32,
}

impl MProcess {
    fn fresh() -> MProcess {
        let mut p = MProcess {
            pages: BTreeMap::new(),
            brk: HEAP_START,
        };
        let mut page = STACK_TOP - STACK_SIZE;
        while page < STACK_TOP {
            p.pages.insert(
                page,
                MPage {
                    prot: P::READ_WRITE,
                    backing: Backing::Private(None),
                    fork: 0,
                },
            );
            page += PAGE;
        }
        p
    }
}

impl Model {
    fn bytes(&self, page: &MPage) -> Vec<u8> {
        match &page.backing {
            Backing::Private(Some(b)) => b.clone(),
            Backing::Private(None) => vec![0; PAGE as usize],
            Backing::Shared(o, i) => self
                .objects
                .get(&(*o, *i))
                .cloned()
                .unwrap_or_else(|| vec![0; PAGE as usize]),
        }
    }

    /// A simulated access in the model: the fault, if any, at the first byte refused.
    fn access(
        &mut self,
        pid: u64,
        addr: u64,
        len: usize,
        write: Option<u8>,
    ) -> Result<Vec<u8>, Fault> {
        let mut out = Vec::new();
        let mut at = addr;
        let end = addr + len as u64;
        while at < end {
            let page = at & !(PAGE - 1);
            let chunk_end = end.min(page + PAGE);
            let Some(mp) = self.procs[&pid].pages.get(&page).cloned() else {
                self.procs.remove(&pid);
                return Err(Fault::unmapped(at));
            };
            let allowed = match write {
                Some(_) => mp.prot.contains(P::WRITE),
                None => mp.prot != P::NONE,
            };
            if !allowed {
                self.procs.remove(&pid);
                return Err(Fault::access(at));
            }
            let mut bytes = self.bytes(&mp);
            let range = (at - page) as usize..(chunk_end - page) as usize;
            match write {
                Some(v) => {
                    bytes[range].fill(v);
                    match mp.backing {
                        Backing::Private(_) => {
                            self.procs
                                .get_mut(&pid)
                                .unwrap()
                                .pages
                                .get_mut(&page)
                                .unwrap()
                                .backing = Backing::Private(Some(bytes));
                        }
                        Backing::Shared(o, i) => {
                            self.objects.insert((o, i), bytes);
                        }
                    }
                }
                None => out.extend_from_slice(&bytes[range]),
            }
            at = chunk_end;
        }
        Ok(out)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Spawn,
    Mmap {
        who: u8,
        page: u64,
        pages: u64,
        prot: u8,
        shared: bool,
        mode: u8,
    },
    Munmap {
        who: u8,
        page: u64,
        pages: u64,
    },
    Mprotect {
        who: u8,
        page: u64,
        pages: u64,
        prot: u8,
    },
    Sbrk {
        who: u8,
        delta: i64,
    },
    Dontneed {
        who: u8,
        page: u64,
        pages: u64,
    },
    Write {
        who: u8,
        area: u8,
        page: u64,
        offset: u64,
        len: u64,
        byte: u8,
    },
    Read {
        who: u8,
        area: u8,
        page: u64,
        offset: u64,
        len: u64,
    },
    Fork {
        who: u8,
    },
    /// `mremap` of `[page, page + pages)` to `new_pages`: mode 0 in place, 1 `MAYMOVE`, 2
    /// `MAYMOVE | FIXED` to `target`, 3 `MAYMOVE | DONTUNMAP` (same length).
    Mremap {
        who: u8,
        page: u64,
        pages: u64,
        new_pages: u64,
        mode: u8,
        target: u64,
    },
    /// `MADV_DONTFORK`, `DOFORK`, `WIPEONFORK` or `KEEPONFORK` (advice 0 to 3).
    ForkAdvice {
        who: u8,
        page: u64,
        pages: u64,
        advice: u8,
    },
    /// A read/write mapping (private, or shared) of the whole 2 MiB block `block` of the window
    /// (`MAP_FIXED`, replacing what was there) given `MADV_HUGEPAGE`: its first write (any
    /// first touch, if shared) maps it as one huge page, and the other operations of the window
    /// split it.
    HugeMap {
        who: u8,
        block: u8,
        shared: bool,
    },
    Exit {
        who: u8,
    },
}

fn prot_of(bits: u8) -> P {
    P::from_bits_truncate(bits & 7)
}

fn op() -> impl Strategy<Value = Op> {
    let who = any::<u8>();
    let page = 0..WINDOW_PAGES;
    prop_oneof![
        1 => Just(Op::Spawn),
        6 => (who, page.clone(), 0..6u64, 0..8u8, prop::bool::weighted(0.25), 0..4u8)
            .prop_map(|(who, page, pages, prot, shared, mode)| Op::Mmap { who, page, pages, prot, shared, mode }),
        3 => (who, page.clone(), 1..8u64).prop_map(|(who, page, pages)| Op::Munmap { who, page, pages }),
        4 => (who, page.clone(), 1..6u64, 0..8u8)
            .prop_map(|(who, page, pages, prot)| Op::Mprotect { who, page, pages, prot }),
        3 => (who, -3..5i64).prop_map(|(who, delta)| Op::Sbrk { who, delta }),
        1 => (who, page.clone(), 1..4u64).prop_map(|(who, page, pages)| Op::Dontneed { who, page, pages }),
        12 => (who, 0..3u8, page.clone(), 0..PAGE, 1..64u64, any::<u8>())
            .prop_map(|(who, area, page, offset, len, byte)| Op::Write { who, area, page, offset, len, byte }),
        10 => (who, 0..3u8, page.clone(), 0..PAGE, 1..64u64)
            .prop_map(|(who, area, page, offset, len)| Op::Read { who, area, page, offset, len }),
        2 => who.prop_map(|who| Op::Fork { who }),
        3 => (who, page.clone(), 1..6u64, 1..8u64, 0..4u8, page.clone())
            .prop_map(|(who, page, pages, new_pages, mode, target)| Op::Mremap { who, page, pages, new_pages, mode, target }),
        2 => (who, page.clone(), 1..6u64, 0..4u8)
            .prop_map(|(who, page, pages, advice)| Op::ForkAdvice { who, page, pages, advice }),
        1 => (who, 0..2u8, any::<bool>()).prop_map(|(who, block, shared)| Op::HugeMap { who, block, shared }),
        1 => who.prop_map(|who| Op::Exit { who }),
    ]
}

fn area_base(area: u8) -> u64 {
    match area {
        0 => WINDOW,
        1 => HEAP_START,
        _ => STACK_TOP - WINDOW_PAGES * PAGE,
    }
}

struct Run {
    sys: System,
    model: Model,
    baseline_used: u64,
}

impl Run {
    fn new() -> Run {
        let sys = System::new(Config::default());
        let baseline_used = sys.memd().global_stats().frames_used;
        Run {
            sys,
            model: Model::default(),
            baseline_used,
        }
    }

    fn pick(&self, who: u8) -> Option<u64> {
        let pids: Vec<u64> = self.model.procs.keys().copied().collect();
        if pids.is_empty() {
            None
        } else {
            Some(pids[who as usize % pids.len()])
        }
    }

    fn spawn(&mut self) {
        let pid = self.sys.spawn().unwrap();
        self.model.procs.insert(pid, MProcess::fresh());
    }

    fn step(&mut self, op: &Op) {
        if self.model.procs.is_empty() || matches!(op, Op::Spawn) {
            if self.model.procs.len() < 6 {
                self.spawn();
            }
            return;
        }
        match *op {
            Op::Spawn => {}
            Op::Mmap {
                who,
                page,
                pages,
                prot,
                shared,
                mode,
            } => {
                let pid = self.pick(who).unwrap();
                let addr = WINDOW + page * PAGE;
                let len = pages * PAGE;
                let prot = prot_of(prot);
                let mut flags = if shared {
                    MmapFlags::anonymous_shared()
                } else {
                    MmapFlags::anonymous_private()
                };
                flags = match mode {
                    1 => flags.fixed(),
                    2 => flags.fixed_noreplace(),
                    _ => flags,
                };
                let got = self.sys.client(pid).mmap(
                    if mode == 0 { 0 } else { addr as usize },
                    len as usize,
                    prot,
                    flags,
                );
                let proc_ = self.model.procs.get_mut(&pid).unwrap();
                let overlaps = (0..pages).any(|i| proc_.pages.contains_key(&(addr + i * PAGE)));
                let expected_err = if len == 0 {
                    Some(VmError::InvalidSize)
                } else if mode == 2 && overlaps {
                    Some(VmError::AlreadyMapped)
                } else {
                    None
                };
                match (expected_err, got) {
                    (Some(e), got) => assert_eq!(got, Err(e), "{op:?}"),
                    (None, Ok(start)) => {
                        let start = start as u64;
                        if mode == 1 || mode == 2 || (mode == 3 && !overlaps) {
                            assert_eq!(start, addr, "{op:?}");
                        } else {
                            assert_eq!(start % PAGE, 0);
                            for i in 0..pages {
                                assert!(
                                    !proc_.pages.contains_key(&(start + i * PAGE)),
                                    "placed over a mapping: {op:?}"
                                );
                            }
                        }
                        let object = if shared {
                            self.model.next_object += 1;
                            Some(self.model.next_object)
                        } else {
                            None
                        };
                        for i in 0..pages {
                            proc_.pages.insert(
                                start + i * PAGE,
                                MPage {
                                    prot,
                                    backing: match object {
                                        Some(o) => Backing::Shared(o, i),
                                        None => Backing::Private(None),
                                    },
                                    fork: 0,
                                },
                            );
                        }
                    }
                    (None, Err(e)) => panic!("{op:?} failed: {e:?}"),
                }
            }
            Op::Munmap { who, page, pages } => {
                let pid = self.pick(who).unwrap();
                let addr = WINDOW + page * PAGE;
                self.sys
                    .client(pid)
                    .munmap(addr as usize, (pages * PAGE) as usize)
                    .unwrap();
                let proc_ = self.model.procs.get_mut(&pid).unwrap();
                for i in 0..pages {
                    proc_.pages.remove(&(addr + i * PAGE));
                }
            }
            Op::Mprotect {
                who,
                page,
                pages,
                prot,
            } => {
                let pid = self.pick(who).unwrap();
                let addr = WINDOW + page * PAGE;
                let prot = prot_of(prot);
                let got =
                    self.sys
                        .client(pid)
                        .mprotect(addr as usize, (pages * PAGE) as usize, prot);
                let proc_ = self.model.procs.get_mut(&pid).unwrap();
                let covered = (0..pages).all(|i| proc_.pages.contains_key(&(addr + i * PAGE)));
                if covered {
                    assert_eq!(got, Ok(()), "{op:?}");
                    for i in 0..pages {
                        proc_.pages.get_mut(&(addr + i * PAGE)).unwrap().prot = prot;
                    }
                } else {
                    assert_eq!(got, Err(VmError::RegionNotFound), "{op:?}");
                }
            }
            Op::Sbrk { who, delta } => {
                let pid = self.pick(who).unwrap();
                let increment = delta * PAGE as i64 + if delta % 2 == 0 { 0 } else { 100 };
                let got = self.sys.client(pid).sbrk(increment as isize);
                let proc_ = self.model.procs.get_mut(&pid).unwrap();
                let old = proc_.brk;
                let new = old as i64 + increment;
                let round = |x: u64| x.div_ceil(PAGE) * PAGE;
                if new < HEAP_START as i64 {
                    assert_eq!(got, Err(VmError::InvalidAddress), "{op:?}");
                    return;
                }
                let new = new as u64;
                let (old_end, new_end) = (round(old), round(new));
                if new_end > old_end {
                    let busy = (old_end..new_end)
                        .step_by(PAGE as usize)
                        .any(|p| proc_.pages.contains_key(&p));
                    if busy {
                        assert_eq!(got, Err(VmError::OutOfMemory), "{op:?}");
                        return;
                    }
                    for p in (old_end..new_end).step_by(PAGE as usize) {
                        proc_.pages.insert(
                            p,
                            MPage {
                                prot: P::READ_WRITE,
                                backing: Backing::Private(None),
                                fork: 0,
                            },
                        );
                    }
                } else {
                    for p in (new_end..old_end).step_by(PAGE as usize) {
                        proc_.pages.remove(&p);
                    }
                }
                assert_eq!(got, Ok(old as usize), "{op:?}");
                proc_.brk = new;
            }
            Op::Dontneed { who, page, pages } => {
                let pid = self.pick(who).unwrap();
                let addr = WINDOW + page * PAGE;
                let got = self.sys.client(pid).madvise(
                    addr as usize,
                    (pages * PAGE) as usize,
                    libvm::proto::MADV_DONTNEED,
                );
                let proc_ = self.model.procs.get_mut(&pid).unwrap();
                let covered = (0..pages).all(|i| proc_.pages.contains_key(&(addr + i * PAGE)));
                if covered {
                    assert_eq!(got, Ok(()), "{op:?}");
                    for i in 0..pages {
                        let mp = proc_.pages.get_mut(&(addr + i * PAGE)).unwrap();
                        if let Backing::Private(_) = mp.backing {
                            mp.backing = Backing::Private(None);
                        }
                    }
                } else {
                    assert_eq!(got, Err(VmError::RegionNotFound), "{op:?}");
                }
            }
            Op::Write {
                who,
                area,
                page,
                offset,
                len,
                byte,
            } => {
                let pid = self.pick(who).unwrap();
                let addr = area_base(area) + page * PAGE + offset;
                let got = self.sys.write(pid, addr, &vec![byte; len as usize]);
                let want = self
                    .model
                    .access(pid, addr, len as usize, Some(byte))
                    .map(|_| ());
                assert_eq!(got, want, "{op:?}");
                self.check_killed(pid, got.is_err());
            }
            Op::Read {
                who,
                area,
                page,
                offset,
                len,
            } => {
                let pid = self.pick(who).unwrap();
                let addr = area_base(area) + page * PAGE + offset;
                let got = self.sys.read(pid, addr, len as usize);
                let want = self.model.access(pid, addr, len as usize, None);
                assert_eq!(got, want, "{op:?}");
                self.check_killed(pid, got.is_err());
            }
            Op::Fork { who } => {
                if self.model.procs.len() >= 6 {
                    return;
                }
                let pid = self.pick(who).unwrap();
                let child = self.sys.fork(pid).unwrap_or_else(|e| {
                    panic!(
                        "fork: {e:?} {:?} {:?}",
                        self.sys.memd().global_stats(),
                        self.sys.memd().kernel().stats()
                    )
                });
                // The child's copy: nothing of DONTFORK pages, WIPEONFORK pages zero again.
                let mut copy = self.model.procs[&pid].clone();
                copy.pages.retain(|_, mp| mp.fork & DONTFORK == 0);
                for mp in copy.pages.values_mut() {
                    if mp.fork & WIPEONFORK != 0 {
                        mp.backing = Backing::Private(None);
                    }
                }
                self.model.procs.insert(child, copy);
            }
            Op::Mremap {
                who,
                page,
                pages,
                new_pages,
                mode,
                target,
            } => self.mremap(op, who, page, pages, new_pages, mode, target),
            Op::HugeMap { who, block, shared } => {
                let pid = self.pick(who).unwrap();
                let huge = kernel_shim::paging::HUGE_PAGE_SIZE;
                let addr = WINDOW + u64::from(block) * huge;
                let vm = self.sys.client(pid);
                let flags = if shared {
                    MmapFlags::anonymous_shared().fixed()
                } else {
                    MmapFlags::anonymous_private().fixed()
                };
                let object = shared.then(|| {
                    self.model.next_object += 1;
                    self.model.next_object
                });
                assert_eq!(
                    vm.mmap(addr as usize, huge as usize, P::READ_WRITE, flags),
                    Ok(addr as usize),
                    "{op:?}"
                );
                vm.madvise(addr as usize, huge as usize, libvm::proto::MADV_HUGEPAGE)
                    .unwrap();
                let proc_ = self.model.procs.get_mut(&pid).unwrap();
                for i in 0..huge / PAGE {
                    proc_.pages.insert(
                        addr + i * PAGE,
                        MPage {
                            prot: P::READ_WRITE,
                            backing: match object {
                                Some(o) => Backing::Shared(o, i),
                                None => Backing::Private(None),
                            },
                            fork: HUGE,
                        },
                    );
                }
            }
            Op::ForkAdvice {
                who,
                page,
                pages,
                advice,
            } => {
                use libvm::proto::{MADV_DOFORK, MADV_DONTFORK, MADV_KEEPONFORK, MADV_WIPEONFORK};
                let pid = self.pick(who).unwrap();
                let addr = self.aim(pid, page);
                let (code, bit, set) = match advice {
                    0 => (MADV_DONTFORK, DONTFORK, true),
                    1 => (MADV_DOFORK, DONTFORK, false),
                    2 => (MADV_WIPEONFORK, WIPEONFORK, true),
                    _ => (MADV_KEEPONFORK, WIPEONFORK, false),
                };
                let got =
                    self.sys
                        .client(pid)
                        .madvise(addr as usize, (pages * PAGE) as usize, code);
                let proc_ = self.model.procs.get_mut(&pid).unwrap();
                let range: Vec<Option<&MPage>> = (0..pages)
                    .map(|i| proc_.pages.get(&(addr + i * PAGE)))
                    .collect();
                if range.iter().any(Option::is_none) {
                    assert_eq!(got, Err(VmError::RegionNotFound), "{op:?}");
                } else if code == MADV_WIPEONFORK
                    && range
                        .iter()
                        .any(|mp| matches!(mp.unwrap().backing, Backing::Shared(..)))
                {
                    // Wiping is for private memory only.
                    assert_eq!(got, Err(VmError::InvalidFlags), "{op:?}");
                } else {
                    assert_eq!(got, Ok(()), "{op:?}");
                    for i in 0..pages {
                        let mp = proc_.pages.get_mut(&(addr + i * PAGE)).unwrap();
                        if set {
                            mp.fork |= bit;
                        } else {
                            mp.fork &= !bit;
                        }
                    }
                }
            }
            Op::Exit { who } => {
                let pid = self.pick(who).unwrap();
                self.sys.exit(pid, 0).unwrap();
                self.model.procs.remove(&pid);
            }
        }
        if let Some(pid) = self.pick(0) {
            let stats = self.sys.memd().process_stats(pid).unwrap();
            assert_eq!(
                stats.mapped_pages,
                self.model.procs[&pid].pages.len() as u64
            );
        }
    }

    /// An `mremap` and what the model says of it: a range with a page not mapped, or of pages
    /// no one mapping can hold (different protection or backing), is EFAULT; any other range is
    /// one mapping (memd merges every compatible neighbour) and is shrunk, grown or moved.
    #[allow(clippy::too_many_arguments)]
    fn mremap(
        &mut self,
        op: &Op,
        who: u8,
        page: u64,
        pages: u64,
        new_pages: u64,
        mode: u8,
        target: u64,
    ) {
        use libvm::proto::{MREMAP_DONTUNMAP, MREMAP_FIXED, MREMAP_MAYMOVE};
        let pid = self.pick(who).unwrap();
        let old = self.aim(pid, page);
        let new_pages = if mode == 3 { pages } else { new_pages };
        let (flags, to) = match mode {
            0 => (0, 0),
            1 => (MREMAP_MAYMOVE, 0),
            2 => (MREMAP_MAYMOVE | MREMAP_FIXED, WINDOW + target * PAGE),
            _ => (MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0),
        };
        let got = self.sys.client(pid).mremap(
            old as usize,
            (pages * PAGE) as usize,
            (new_pages * PAGE) as usize,
            flags,
            to as usize,
        );
        let proc_ = self.model.procs.get_mut(&pid).unwrap();
        let (old_end, new_end) = (old + pages * PAGE, to + new_pages * PAGE);
        if mode == 2 && to < old_end && old < new_end {
            assert_eq!(got, Err(VmError::InvalidFlags), "{op:?}");
            return;
        }
        let range: Vec<Option<MPage>> = (0..pages)
            .map(|i| proc_.pages.get(&(old + i * PAGE)).cloned())
            .collect();
        let one_mapping = range.iter().all(Option::is_some)
            && range.windows(2).all(|w| {
                let (a, b) = (w[0].as_ref().unwrap(), w[1].as_ref().unwrap());
                a.prot == b.prot
                    && a.fork == b.fork
                    && match (&a.backing, &b.backing) {
                        (Backing::Private(_), Backing::Private(_)) => true,
                        (Backing::Shared(o, i), Backing::Shared(p, j)) => o == p && i + 1 == *j,
                        _ => false,
                    }
            });
        if !one_mapping {
            assert_eq!(got, Err(VmError::BadBuffer), "{op:?}");
            return;
        }
        let first = range[0].clone().unwrap();
        let grows_in_place = new_pages <= pages
            || (old_end..old + new_pages * PAGE)
                .step_by(PAGE as usize)
                .all(|p| !proc_.pages.contains_key(&p));
        let to = match (mode, got) {
            (0, got) if !grows_in_place => {
                assert_eq!(got, Err(VmError::OutOfMemory), "{op:?}");
                return;
            }
            (0, got) => {
                assert_eq!(got, Ok(old as usize), "{op:?}");
                old
            }
            (1, Ok(at)) if grows_in_place => {
                assert_eq!(at, old as usize, "{op:?}");
                old
            }
            (2, Ok(at)) => {
                assert_eq!(at, to as usize, "{op:?}");
                to
            }
            (_, Ok(at)) => at as u64,
            (_, Err(e)) => panic!("{op:?} failed: {e:?}"),
        };
        // The kept pages go with the mapping; grown pages are new: zero, or the next pages
        // of the shared object.
        let moved: Vec<MPage> = (0..new_pages)
            .map(|i| match range.get(i as usize) {
                Some(mp) => mp.clone().unwrap(),
                None => MPage {
                    prot: first.prot,
                    backing: match first.backing {
                        Backing::Private(_) => Backing::Private(None),
                        Backing::Shared(o, j) => Backing::Shared(o, j + i),
                    },
                    fork: first.fork,
                },
            })
            .collect();
        for i in 0..pages {
            let mp = proc_.pages.remove(&(old + i * PAGE)).unwrap();
            if mode == 3 {
                // DONTUNMAP: the old range stays, empty (shared memory refaults as it was).
                let backing = match mp.backing {
                    Backing::Private(_) => Backing::Private(None),
                    shared => shared,
                };
                proc_.pages.insert(old + i * PAGE, MPage { backing, ..mp });
            }
        }
        for (i, mp) in moved.into_iter().enumerate() {
            let at = to + i as u64 * PAGE;
            if to != old {
                assert!(
                    mode == 2 || !proc_.pages.contains_key(&at),
                    "moved over a mapping: {op:?}"
                );
            }
            proc_.pages.insert(at, mp);
        }
    }

    /// A page of the window: the `page`th mapped one of `pid` when it has one mapped there.
    fn aim(&self, pid: u64, page: u64) -> u64 {
        let window = WINDOW..WINDOW + WINDOW_PAGES * PAGE;
        let procs = &self.model.procs[&pid];
        let mapped: Vec<u64> = procs.pages.range(window).map(|(&p, _)| p).collect();
        match mapped.len() {
            0 => WINDOW + page * PAGE,
            n => mapped[page as usize % n],
        }
    }

    fn check_killed(&mut self, pid: u64, killed: bool) {
        if killed {
            assert!(self.sys.reap(pid).is_some());
            assert_eq!(
                self.sys.read(pid, WINDOW, 1).map_err(|f| f.kind),
                Err(FaultKind::NoProcess)
            );
        }
    }

    /// Ends every process and checks nothing is left; the huge pages made on the way.
    fn finish(self) -> u64 {
        for pid in self.model.procs.keys() {
            self.sys.exit(*pid, 0).unwrap();
        }
        let stats = self.sys.memd().global_stats();
        assert_eq!(stats.frames_used, self.baseline_used, "frames leaked");
        assert_eq!(stats.page_table_frames, 0, "page tables leaked");
        assert_eq!(stats.processes, 0);
        assert_eq!(self.sys.memd().bookkeeping(), 0, "bookkeeping leaked");
        stats.faults_huge
    }
}

/// Huge pages made over every case of the model test, for the check that they were.
static HUGE_MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 100,
        max_shrink_iters: 0,
        ..ProptestConfig::default()
    })]

    /// 100 cases of 1,000 steps: 100,000 steps checked on every run.
    #[test]
    fn random_operations_agree_with_the_model(ops in prop::collection::vec(op(), 1000)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op);
        }
        let huge = run.finish();
        HUGE_MADE.fetch_add(huge, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn the_model_test_makes_huge_pages() {
    // The cases are random but the seed fixed: some huge pages must have been made (and
    // split by what came after), or the model test would not cover them.
    random_operations_agree_with_the_model();
    assert!(HUGE_MADE.load(std::sync::atomic::Ordering::Relaxed) > 0);
}
