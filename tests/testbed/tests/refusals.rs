//! Decode, then perform: when the kernel refuses, memd changes nothing.
//!
//! The emulated kernel refuses one call in four at random (`HostKernel::refuse_randomly`), as
//! the real kernel refuses a batch whose page tables are not covered. Random requests run
//! against one process (mmap fixed and placed, private and shared, populate; munmap;
//! mprotect to and from `NONE`; madvise; brk; fork; mremap in place and moved) with stores in between; every request that
//! fails must leave everything as it was: the region map, the process's figures, the frames in
//! use (data and page tables) and every page-table entry of the area. Stores are checked
//! against a plain model of what the area holds, and at the end every frame comes back.

use libvm::proto::{MREMAP_FIXED, MREMAP_MAYMOVE, RegionInfo};
use libvm::{MmapFlags, ProtectionFlags as P, VmError};
use memd::Pid;
use memd::layout::HEAP_START;
use std::collections::HashMap;
use testbed::system::{Config, System};

const PAGE: u64 = 4096;
/// The area the requests work in: 1,024 pages over three page tables (it starts 1 MiB below
/// a 2 MiB boundary).
const AREA: u64 = 0x0000_0050_0010_0000;
const PAGES: u64 = 1024;
/// Heap pages whose page-table entries are compared too.
const HEAP_PAGES: u64 = 64;

/// Everything a refused request must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    regions: Vec<(u64, u64, u64, u64, u64, u64)>,
    resident: u64,
    mapped: u64,
    heap: u64,
    data_frames: u64,
    table_frames: u64,
    entries: Vec<Option<(u64, bool, bool)>>,
}

fn snapshot(sys: &System, p: Pid) -> Snapshot {
    let memd = sys.memd();
    let mut infos = vec![RegionInfo::default(); 512];
    let n = memd.regions(p, 0, &mut infos).unwrap();
    let stats = memd.process_stats(p).unwrap();
    let global = memd.global_stats();
    let space = memd.space_of(p).unwrap();
    let entry = |virt: u64| {
        memd.kernel()
            .translate(space, virt)
            .map(|t| (t.frame.as_u64(), t.writable, t.executable))
    };
    let entries = (0..PAGES)
        .map(|i| AREA + i * PAGE)
        .chain((0..HEAP_PAGES).map(|i| HEAP_START + i * PAGE))
        .map(entry)
        .collect();
    Snapshot {
        regions: infos[..n]
            .iter()
            .map(|r| (r.start, r.end, r.prot, r.kind, r.shared, r.resident_pages))
            .collect(),
        resident: stats.resident_pages,
        mapped: stats.mapped_pages,
        heap: stats.heap_bytes,
        data_frames: global.data_frames(),
        table_frames: global.page_table_frames,
        entries,
    }
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The protection of the region covering `addr`, if any.
fn prot_at(sys: &System, p: Pid, addr: u64) -> Option<P> {
    let mut infos = [RegionInfo::default(); 1];
    let n = sys.memd().regions(p, addr, &mut infos).unwrap();
    (n == 1 && infos[0].start <= addr).then(|| P::from_bits_truncate(infos[0].prot as u8))
}

const PROTS: [P; 4] = [P::NONE, P::READ, P::READ_WRITE, P::READ_EXEC];

fn run(seed: u64, steps: usize) -> u64 {
    let sys = System::new(Config::default());
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let baseline = sys.memd().global_stats();
    let kernel = sys.memd().kernel();
    kernel.refuse_randomly(seed, 4);
    let mut rng = Rng(seed | 1);
    // What each page of the area holds, where it was written (absent: zero).
    let mut model: HashMap<u64, u8> = HashMap::new();
    let mut refused_requests = 0;
    for step in 0..steps {
        let first = rng.below(PAGES);
        let len = 1 + rng.below(64.min(PAGES - first));
        let (addr, bytes) = (AREA + first * PAGE, len * PAGE);
        let before = snapshot(&sys, p);
        let refusals = kernel.stats().refused;
        let clears: bool;
        let result: Result<(), VmError> = match rng.below(10) {
            0 | 1 => {
                let prot = PROTS[rng.below(4) as usize];
                let mut flags = if rng.below(4) == 0 {
                    MmapFlags::anonymous_shared()
                } else {
                    MmapFlags::anonymous_private()
                };
                flags = flags.fixed();
                if rng.below(3) == 0 {
                    flags = flags.populate();
                }
                clears = true;
                vm.mmap(addr as usize, bytes as usize, prot, flags)
                    .map(|got| assert_eq!(got as u64, addr))
            }
            2 => {
                clears = true;
                vm.munmap(addr as usize, bytes as usize)
            }
            3 | 4 => {
                clears = false;
                let prot = PROTS[rng.below(4) as usize];
                vm.mprotect(addr as usize, bytes as usize, prot)
            }
            5 => {
                let advice = [libvm::proto::MADV_DONTNEED, libvm::proto::MADV_WILLNEED]
                    [rng.below(2) as usize];
                clears = advice == libvm::proto::MADV_DONTNEED;
                vm.madvise(addr as usize, bytes as usize, advice)
            }
            6 => {
                clears = false;
                let delta = (rng.below(9) as i64 - 4) * PAGE as i64;
                let brk = vm.sbrk(0).unwrap() as i64;
                if brk + delta < HEAP_START as i64
                    || brk + delta > (HEAP_START + HEAP_PAGES * PAGE) as i64
                {
                    continue;
                }
                vm.sbrk(delta as isize).map(drop)
            }
            7 => {
                clears = false;
                sys.fork(p).map(|child| sys.exit(child, 0).unwrap())
            }
            8 => {
                // Shrink or grow in place, or move to a fixed place in the area; on success
                // the kept pages' contents go with the mapping.
                clears = false;
                let new_pages = 1 + rng.below(64);
                let remapped = if rng.below(3) == 0 {
                    vm.mremap(
                        addr as usize,
                        bytes as usize,
                        (new_pages * PAGE) as usize,
                        0,
                        0,
                    )
                } else {
                    let to = AREA + rng.below(PAGES - new_pages) * PAGE;
                    let flags = MREMAP_MAYMOVE | MREMAP_FIXED;
                    let new_len = (new_pages * PAGE) as usize;
                    vm.mremap(addr as usize, bytes as usize, new_len, flags, to as usize)
                };
                remapped.map(|to| {
                    let to = to as u64;
                    let carried: Vec<(u64, u8)> = (0..len.min(new_pages))
                        .filter_map(|i| model.get(&(addr + i * PAGE)).map(|&v| (i, v)))
                        .collect();
                    let new_end = to + new_pages * PAGE;
                    model.retain(|&page, _| {
                        (page < addr || page >= addr + bytes) && (page < to || page >= new_end)
                    });
                    for (i, v) in carried {
                        model.insert(to + i * PAGE, v);
                    }
                })
            }
            _ => {
                // A store into a writable page of the area.
                clears = false;
                if prot_at(&sys, p, addr).is_some_and(|prot| prot.contains(P::WRITE)) {
                    let value = step as u8 | 1;
                    sys.write(p, addr, &[value]).unwrap();
                    model.insert(addr, value);
                }
                Ok(())
            }
        };
        match result {
            Ok(()) => {
                if clears {
                    model.retain(|&page, _| page < addr || page >= addr + bytes);
                }
            }
            Err(e) => {
                assert_eq!(
                    snapshot(&sys, p),
                    before,
                    "step {step}: a request refused with {e:?} changed something"
                );
                if kernel.stats().refused > refusals {
                    refused_requests += 1;
                }
            }
        }
        // Every readable page the model knows holds what was written there.
        if step % 16 == 0 {
            for (&page, &value) in &model {
                if prot_at(&sys, p, page).is_some_and(|prot| prot != P::NONE) {
                    assert_eq!(sys.read(p, page, 1).unwrap(), [value], "step {step}");
                }
            }
        }
    }
    kernel.refuse_randomly(0, 0);
    sys.exit(p, 0).unwrap();
    let end = sys.memd().global_stats();
    assert_eq!(
        end.frames_used,
        baseline.frames_used - 1,
        "only the root of p was left"
    );
    assert_eq!(end.page_table_frames, 0);
    assert_eq!(end.frames_quarantined, 0);
    assert_eq!(kernel.stats().page_table_frames, 0);
    refused_requests
}

#[test]
fn a_request_the_kernel_refuses_changes_nothing() {
    let mut refused = 0;
    for seed in [1, 2, 3, 0x5eed] {
        refused += run(seed, 1500);
    }
    assert!(refused > 200, "only {refused} requests were refused");
}
