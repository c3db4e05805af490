//! Several threads driving one process at once, each checked against a reference model.
//!
//! Each of [`THREADS`] threads owns a window of the process's mmap area (apart from the
//! others, so their mappings never meet) and runs its own random sequence of `mmap`
//! (`MAP_FIXED` or `MAP_FIXED_NOREPLACE`, private or shared anonymous), `munmap`, `mprotect`,
//! `madvise(MADV_DONTNEED)`, `mremap` (in place, or to a fixed address of its window) and
//! accesses. What it sees of its window depends on nothing the other threads do, so every
//! answer, fault and byte is checked against the thread's own model, and after every mapping
//! call so are the regions memd lists for the window. The faults the model says an access
//! takes go to the process's fault handler, so the process lives on.
//!
//! Interleaved with that, every thread writes its own bytes into each page of a range mapped
//! before they start and touched by none (all first touch its first page together): no
//! write may be lost to two threads resolving the same page at once. At the end the
//! process's mapped and resident pages must be what the models say, and once it exits every
//! frame, page table and byte of bookkeeping must be back.

use libvm::fault::{SEGV_ACCERR, SEGV_MAPERR, SIGSEGV};
use libvm::proto::{MADV_DONTNEED, MREMAP_FIXED, MREMAP_MAYMOVE};
use libvm::{MmapFlags, ProtectionFlags as P, Vm, VmError};
use memd::layout::MMAP_BASE;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Barrier, Mutex, PoisonError};
use std::thread;
use testbed::system::{Config, Fault, FaultKind, ProcessTransport, System};

const PAGE: u64 = 4096;
const THREADS: usize = 4;
/// The pages of a thread's window its operations aim at.
const WINDOW_PAGES: u64 = 32;
/// From the start of one thread's window to the next. A thread maps fewer than 8 pages past
/// its window (an `mremap` growing in place) and accesses at most 1 page past it, so the rest
/// of the stride stays unmapped and no region of one window ever meets another's.
const STRIDE_PAGES: u64 = 64;
/// Operations of each thread in one case.
const OPS: usize = 400;
/// The range every thread writes into, past the last window's stride.
const CONTENTION: u64 = MMAP_BASE + THREADS as u64 * STRIDE_PAGES * PAGE;
const CONTENTION_PAGES: u64 = 16;
/// Where thread `t` writes its two bytes in each page of the contention range.
const CONTENTION_SLOT: u64 = 64;
/// The alternate stack of the fault handler, apart from the contention range.
const ALT_STACK: u64 = CONTENTION + 2 * CONTENTION_PAGES * PAGE;
const ALT_STACK_PAGES: u64 = 4;
/// The handler's entry: never run (the test is the handler), only registered.
const ENTRY: u64 = 0x40_1000;

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
    /// Touched since it was mapped or dropped: memd holds a frame for it in this process.
    resident: bool,
}

/// One thread's window in the model.
#[derive(Default)]
struct Model {
    pages: BTreeMap<u64, MPage>,
    objects: HashMap<(u32, u64), Vec<u8>>,
    next_object: u32,
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

    /// A simulated access in the model: the bytes read (none for a write), or the fault at
    /// the first byte refused; the pages before it were touched (and written) all the same.
    fn access(&mut self, addr: u64, len: usize, write: Option<u8>) -> Result<Vec<u8>, Fault> {
        let mut out = Vec::new();
        let mut at = addr;
        let end = addr + len as u64;
        while at < end {
            let page = at & !(PAGE - 1);
            let chunk_end = end.min(page + PAGE);
            let Some(mp) = self.pages.get(&page).cloned() else {
                return Err(Fault::unmapped(at));
            };
            let allowed = match write {
                Some(_) => mp.prot.contains(P::WRITE),
                None => mp.prot != P::NONE,
            };
            if !allowed {
                return Err(Fault::access(at));
            }
            let mut bytes = self.bytes(&mp);
            let range = (at - page) as usize..(chunk_end - page) as usize;
            let entry = self.pages.get_mut(&page).unwrap();
            entry.resident = true;
            match write {
                Some(v) => {
                    bytes[range].fill(v);
                    match mp.backing {
                        Backing::Private(_) => entry.backing = Backing::Private(Some(bytes)),
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

/// One operation of a thread; pages are counted from the start of its window.
#[derive(Clone, Debug)]
enum Op {
    /// An anonymous mapping of `pages` pages at page `page`, `MAP_FIXED` or (`noreplace`)
    /// `MAP_FIXED_NOREPLACE`.
    Mmap {
        page: u64,
        pages: u64,
        prot: u8,
        shared: bool,
        noreplace: bool,
    },
    Munmap {
        page: u64,
        pages: u64,
    },
    Mprotect {
        page: u64,
        pages: u64,
        prot: u8,
    },
    Dontneed {
        page: u64,
        pages: u64,
    },
    /// `mremap` of `pages` pages from the `page`th mapped page of the window to `new_pages`:
    /// in place, or (`MAYMOVE | FIXED`) to page `target` of the window.
    Mremap {
        page: u64,
        pages: u64,
        new_pages: u64,
        target: Option<u64>,
    },
    /// A write at `offset` into page `page` of the window, or (`aimed`) into its `page`th
    /// mapped page.
    Write {
        page: u64,
        aimed: bool,
        offset: u64,
        len: u64,
        byte: u8,
    },
    /// A read, as a write.
    Read {
        page: u64,
        aimed: bool,
        offset: u64,
        len: u64,
    },
    /// The thread's bytes into the next page of the contention range.
    Contend,
}

fn prot_of(bits: u8) -> P {
    P::from_bits_truncate(bits & 7)
}

/// `pages` pages (from `pages`) starting at a page that keeps them within the window.
fn span(pages: std::ops::Range<u64>) -> impl Strategy<Value = (u64, u64)> {
    (0..WINDOW_PAGES, pages).prop_map(|(page, pages)| (page.min(WINDOW_PAGES - pages), pages))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (span(0..8), 0..8u8, prop::bool::weighted(0.25), any::<bool>())
            .prop_map(|((page, pages), prot, shared, noreplace)| Op::Mmap { page, pages, prot, shared, noreplace }),
        2 => span(1..6).prop_map(|(page, pages)| Op::Munmap { page, pages }),
        4 => (span(1..6), 0..8u8).prop_map(|((page, pages), prot)| Op::Mprotect { page, pages, prot }),
        2 => span(1..4).prop_map(|(page, pages)| Op::Dontneed { page, pages }),
        3 => (0..WINDOW_PAGES, 1..6u64, span(1..8), any::<bool>())
            .prop_map(|(page, pages, (target, new_pages), fixed)| Op::Mremap {
                page,
                pages,
                new_pages,
                target: fixed.then_some(target),
            }),
        12 => (0..WINDOW_PAGES, any::<bool>(), 0..PAGE, 1..64u64, any::<u8>())
            .prop_map(|(page, aimed, offset, len, byte)| Op::Write { page, aimed, offset, len, byte }),
        10 => (0..WINDOW_PAGES, any::<bool>(), 0..PAGE, 1..64u64)
            .prop_map(|(page, aimed, offset, len)| Op::Read { page, aimed, offset, len }),
        2 => Just(Op::Contend),
    ]
}

/// One thread: its window of the process and the model of it.
struct Worker<'a> {
    sys: &'a System,
    pid: u64,
    vm: Vm<ProcessTransport>,
    t: usize,
    base: u64,
    model: Model,
    /// Held through every access the model says faults: the testbed keeps one stack pointer
    /// per process, so a fault taken while another thread runs the handler would count as
    /// one inside it (and kill).
    faults: &'a Mutex<()>,
    /// The next page of the contention range to write.
    contended: u64,
}

impl Worker<'_> {
    fn run(mut self, ops: &[Op], start: &Barrier) -> Model {
        start.wait();
        self.contend();
        for op in ops {
            self.step(op);
        }
        while self.contended < CONTENTION_PAGES {
            self.contend();
        }
        // Every resident readable page, whole.
        let resident: Vec<u64> = self
            .model
            .pages
            .iter()
            .filter(|(_, mp)| mp.resident && mp.prot != P::NONE)
            .map(|(&page, _)| page)
            .collect();
        for page in resident {
            self.access(&"the last read", page, PAGE as usize, None);
        }
        self.model
    }

    fn contend(&mut self) {
        let page = self.contended;
        let at = CONTENTION + page * PAGE + self.t as u64 * CONTENTION_SLOT;
        assert_eq!(
            self.sys
                .write(self.pid, at, &[0xC0 | self.t as u8, page as u8]),
            Ok(()),
            "contention page {page}"
        );
        self.contended += 1;
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Mmap {
                page,
                pages,
                prot,
                shared,
                noreplace,
            } => {
                let addr = self.base + page * PAGE;
                let prot = prot_of(prot);
                let flags = match (shared, noreplace) {
                    (false, false) => MmapFlags::anonymous_private().fixed(),
                    (false, true) => MmapFlags::anonymous_private().fixed_noreplace(),
                    (true, false) => MmapFlags::anonymous_shared().fixed(),
                    (true, true) => MmapFlags::anonymous_shared().fixed_noreplace(),
                };
                let got = self
                    .vm
                    .mmap(addr as usize, (pages * PAGE) as usize, prot, flags);
                let overlaps =
                    (0..pages).any(|i| self.model.pages.contains_key(&(addr + i * PAGE)));
                if pages == 0 {
                    assert_eq!(got, Err(VmError::InvalidSize), "{op:?}");
                } else if noreplace && overlaps {
                    assert_eq!(got, Err(VmError::AlreadyMapped), "{op:?}");
                } else {
                    assert_eq!(got, Ok(addr as usize), "{op:?}");
                    let object = shared.then(|| {
                        self.model.next_object += 1;
                        self.model.next_object
                    });
                    for i in 0..pages {
                        let backing = match object {
                            Some(o) => Backing::Shared(o, i),
                            None => Backing::Private(None),
                        };
                        let mp = MPage {
                            prot,
                            backing,
                            resident: false,
                        };
                        self.model.pages.insert(addr + i * PAGE, mp);
                    }
                }
                self.check_regions(op);
            }
            Op::Munmap { page, pages } => {
                let addr = self.base + page * PAGE;
                let got = self.vm.munmap(addr as usize, (pages * PAGE) as usize);
                assert_eq!(got, Ok(()), "{op:?}");
                for i in 0..pages {
                    self.model.pages.remove(&(addr + i * PAGE));
                }
                self.check_regions(op);
            }
            Op::Mprotect { page, pages, prot } => {
                let addr = self.base + page * PAGE;
                let prot = prot_of(prot);
                let got = self
                    .vm
                    .mprotect(addr as usize, (pages * PAGE) as usize, prot);
                if self.covered(addr, pages) {
                    assert_eq!(got, Ok(()), "{op:?}");
                    for i in 0..pages {
                        self.model.pages.get_mut(&(addr + i * PAGE)).unwrap().prot = prot;
                    }
                } else {
                    assert_eq!(got, Err(VmError::RegionNotFound), "{op:?}");
                }
                self.check_regions(op);
            }
            Op::Dontneed { page, pages } => {
                let addr = self.base + page * PAGE;
                let got = self
                    .vm
                    .madvise(addr as usize, (pages * PAGE) as usize, MADV_DONTNEED);
                if self.covered(addr, pages) {
                    assert_eq!(got, Ok(()), "{op:?}");
                    for i in 0..pages {
                        let mp = self.model.pages.get_mut(&(addr + i * PAGE)).unwrap();
                        mp.resident = false;
                        if let Backing::Private(_) = mp.backing {
                            mp.backing = Backing::Private(None);
                        }
                    }
                } else {
                    assert_eq!(got, Err(VmError::RegionNotFound), "{op:?}");
                }
            }
            Op::Mremap {
                page,
                pages,
                new_pages,
                target,
            } => {
                self.mremap(op, page, pages, new_pages, target);
                self.check_regions(op);
            }
            Op::Write {
                page,
                aimed,
                offset,
                len,
                byte,
            } => {
                let addr = self.page(page, aimed) + offset;
                self.access(op, addr, len as usize, Some(byte));
            }
            Op::Read {
                page,
                aimed,
                offset,
                len,
            } => {
                let addr = self.page(page, aimed) + offset;
                self.access(op, addr, len as usize, None);
            }
            Op::Contend => {
                if self.contended < CONTENTION_PAGES {
                    self.contend();
                }
            }
        }
    }

    /// Whether the model maps every page of `[addr, addr + pages pages)`.
    fn covered(&self, addr: u64, pages: u64) -> bool {
        (0..pages).all(|i| self.model.pages.contains_key(&(addr + i * PAGE)))
    }

    /// An access by this thread and what the model says of it. A fault goes to the handler,
    /// which returns at once: the process lives on.
    fn access(&mut self, op: &impl std::fmt::Debug, addr: u64, len: usize, write: Option<u8>) {
        let want = self.model.access(addr, len, write);
        let _alone = want
            .is_err()
            .then(|| self.faults.lock().unwrap_or_else(PoisonError::into_inner));
        let got = match write {
            Some(byte) => self
                .sys
                .write(self.pid, addr, &vec![byte; len])
                .map(|()| Vec::new()),
            None => self.sys.read(self.pid, addr, len),
        };
        let got = got.map_err(|fault| match fault.kind {
            FaultKind::Handled {
                signal: SIGSEGV,
                code,
                ..
            } => {
                assert!(self.sys.handler_return(self.pid));
                let kind = match code {
                    SEGV_MAPERR => FaultKind::Unmapped,
                    SEGV_ACCERR => FaultKind::Access,
                    _ => fault.kind,
                };
                Fault { kind, ..fault }
            }
            _ => fault,
        });
        assert_eq!(got, want, "{op:?} at {addr:#x}");
    }

    /// An `mremap` and what the model says of it (as the single-process model test): a range
    /// not within one mapping (memd merges every compatible neighbour) is EFAULT; a fixed
    /// target overlapping the range EINVAL; growing in place needs the pages after it free.
    fn mremap(&mut self, op: &Op, page: u64, pages: u64, new_pages: u64, target: Option<u64>) {
        let old = self.aim(page);
        let (flags, to) = match target {
            None => (0, 0),
            Some(t) => (MREMAP_MAYMOVE | MREMAP_FIXED, self.base + t * PAGE),
        };
        let got = self.vm.mremap(
            old as usize,
            (pages * PAGE) as usize,
            (new_pages * PAGE) as usize,
            flags,
            to as usize,
        );
        let (old_end, new_end) = (old + pages * PAGE, to + new_pages * PAGE);
        if target.is_some() && to < old_end && old < new_end {
            assert_eq!(got, Err(VmError::InvalidFlags), "{op:?}");
            return;
        }
        let range: Vec<Option<MPage>> = (0..pages)
            .map(|i| self.model.pages.get(&(old + i * PAGE)).cloned())
            .collect();
        let one_mapping = range.iter().all(Option::is_some)
            && range.windows(2).all(|w| {
                let (a, b) = (w[0].as_ref().unwrap(), w[1].as_ref().unwrap());
                a.prot == b.prot
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
        let to = match target {
            Some(_) => {
                assert_eq!(got, Ok(to as usize), "{op:?}");
                to
            }
            None => {
                let grows_in_place = (old_end..old + new_pages * PAGE)
                    .step_by(PAGE as usize)
                    .all(|p| !self.model.pages.contains_key(&p));
                if grows_in_place {
                    assert_eq!(got, Ok(old as usize), "{op:?}");
                    old
                } else {
                    assert_eq!(got, Err(VmError::OutOfMemory), "{op:?}");
                    return;
                }
            }
        };
        // The kept pages go with the mapping, frames and all; grown pages are new: zero, or
        // the next pages of the shared object.
        let first = range[0].clone().unwrap();
        let moved: Vec<MPage> = (0..new_pages)
            .map(|i| match range.get(i as usize) {
                Some(mp) => mp.clone().unwrap(),
                None => MPage {
                    prot: first.prot,
                    backing: match first.backing {
                        Backing::Private(_) => Backing::Private(None),
                        Backing::Shared(o, j) => Backing::Shared(o, j + i),
                    },
                    resident: false,
                },
            })
            .collect();
        for i in 0..pages {
            self.model.pages.remove(&(old + i * PAGE));
        }
        for (i, mp) in moved.into_iter().enumerate() {
            self.model.pages.insert(to + i as u64 * PAGE, mp);
        }
    }

    /// Page `page` of the window, or (`aimed`) its `page`th mapped one.
    fn page(&self, page: u64, aimed: bool) -> u64 {
        if aimed {
            self.aim(page)
        } else {
            self.base + page * PAGE
        }
    }

    /// A page of the window: the `page`th mapped one when it has one mapped there.
    fn aim(&self, page: u64) -> u64 {
        let window = self.base..self.base + WINDOW_PAGES * PAGE;
        let mapped: Vec<u64> = self.model.pages.range(window).map(|(&p, _)| p).collect();
        match mapped.len() {
            0 => self.base + page * PAGE,
            n => mapped[page as usize % n],
        }
    }

    /// The regions memd lists over this thread's stride: each page mapped as the model says.
    fn check_regions(&self, op: &Op) {
        let regions = self.vm.regions(0).unwrap();
        for i in 0..STRIDE_PAGES {
            let page = self.base + i * PAGE;
            let got = regions
                .iter()
                .find(|r| r.start <= page && page < r.end)
                .map(|r| P::from_bits_truncate(r.prot as u8));
            let want = self.model.pages.get(&page).map(|mp| mp.prot);
            assert_eq!(got, want, "page {i} of the window after {op:?}");
        }
    }
}

/// The message a thread panicked with.
fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_string(), |s| s.to_string()),
    }
}

/// One case: the threads' sequences run at once on one process, then everything is checked.
fn run_case(ops: &[Vec<Op>]) {
    let sys = System::new(Config::default());
    let baseline = sys.memd().global_stats();
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let anon = MmapFlags::anonymous_private().fixed();
    let stack_len = (ALT_STACK_PAGES * PAGE) as usize;
    assert_eq!(
        vm.mmap(ALT_STACK as usize, stack_len, P::READ_WRITE, anon),
        Ok(ALT_STACK as usize)
    );
    // Resident before the count starts, whatever frames the handler's deliveries write.
    for i in 0..ALT_STACK_PAGES {
        sys.write(p, ALT_STACK + i * PAGE, &[0]).unwrap();
    }
    assert_eq!(
        vm.set_fault_handler(ENTRY, ALT_STACK, stack_len as u64),
        Ok(0)
    );
    let contention_len = (CONTENTION_PAGES * PAGE) as usize;
    assert_eq!(
        vm.mmap(CONTENTION as usize, contention_len, P::READ_WRITE, anon),
        Ok(CONTENTION as usize)
    );
    let before = sys.memd().process_stats(p).unwrap();

    let faults = Mutex::new(());
    let start = Barrier::new(THREADS);
    let results: Vec<thread::Result<Model>> = thread::scope(|s| {
        let handles: Vec<_> = ops
            .iter()
            .enumerate()
            .map(|(t, ops)| {
                let worker = Worker {
                    sys: &sys,
                    pid: p,
                    vm: sys.client(p),
                    t,
                    base: MMAP_BASE + t as u64 * STRIDE_PAGES * PAGE,
                    model: Model::default(),
                    faults: &faults,
                    contended: 0,
                };
                let start = &start;
                s.spawn(move || worker.run(ops, start))
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut models = Vec::new();
    let mut failures = Vec::new();
    for (t, result) in results.into_iter().enumerate() {
        match result {
            Ok(model) => models.push(model),
            Err(payload) => failures.push(format!("thread {t}: {}", message(payload))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // No thread's bytes lost in the contention range.
    for i in 0..CONTENTION_PAGES {
        let mut want = vec![0u8; PAGE as usize];
        for t in 0..THREADS {
            let at = t * CONTENTION_SLOT as usize;
            want[at..at + 2].copy_from_slice(&[0xC0 | t as u8, i as u8]);
        }
        let got = sys.read(p, CONTENTION + i * PAGE, PAGE as usize);
        assert_eq!(got, Ok(want), "contention page {i}");
    }
    let stats = sys.memd().process_stats(p).unwrap();
    let mapped: u64 = models.iter().map(|m| m.pages.len() as u64).sum();
    let resident: u64 = models
        .iter()
        .map(|m| m.pages.values().filter(|mp| mp.resident).count() as u64)
        .sum();
    assert_eq!(
        stats.mapped_pages,
        before.mapped_pages + mapped,
        "mapped pages"
    );
    assert_eq!(
        stats.resident_pages,
        before.resident_pages + CONTENTION_PAGES + resident,
        "resident pages"
    );

    sys.exit(p, 0).unwrap();
    let end = sys.memd().global_stats();
    assert_eq!(end.frames_used, baseline.frames_used, "frames leaked");
    assert_eq!(
        end.page_table_frames, baseline.page_table_frames,
        "page tables leaked"
    );
    assert_eq!(end.processes, 0);
    assert_eq!(sys.memd().bookkeeping(), 0, "bookkeeping leaked");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 16,
        max_shrink_iters: 0,
        ..ProptestConfig::default()
    })]

    /// 16 cases of 4 threads of 400 operations.
    #[test]
    fn threads_of_one_process_agree_with_their_models(
        ops in prop::collection::vec(prop::collection::vec(op(), OPS), THREADS)
    ) {
        run_case(&ops);
    }
}
