//! The trace every allocator of allocbench runs, and what is measured while it runs.
//!
//! The trace is deterministic (SplitMix64 from a fixed seed) and the same for every allocator:
//!
//! - sizes from 8 B to 256 KiB, most of them small ([`SIZES`]: 60% up to 128 B, 0.2% above
//!   128 KiB, piecewise log-uniform within each band); alignments 1, 8, 16 and 64;
//! - *build*: allocations until `steady` bytes are live, a tenth of them long-lived;
//! - *steady*: `ops` operations around `steady` live bytes (45% malloc, 45% free — most of
//!   them of one of the 16 most recent blocks, the rest of any —, 10% realloc growing like a
//!   vector or shrinking), a few long-lived blocks coming and going;
//! - *burst*: allocations until `peak` bytes are live (a transient structure, with the steady
//!   operations going on beside it): the peak;
//! - *drain*: the burst freed in random order, a twentieth of it kept for good, the steady
//!   operations going on;
//! - *steady* again, then the end; then every block freed.
//!
//! Each block is written as a program would use it: its first and last byte and one byte of
//! every page in between (so its pages are resident), and checked when freed or moved.
//!
//! Measured: the bytes requested and live, and the process's resident memory (memd's
//! `PROCESS_STATS`, minus what was resident before the trace) at the peak, at the end, and
//! after every block is freed; the guest instructions of each `alloc`, `dealloc` and `realloc`
//! (`lfence; rdtsc; lfence` around the call, under `-icount shift=0`, minus the brackets' own
//! count; memd's and the kernel's instructions for the calls it makes included): mean and
//! median; the guest instructions of the whole trace up to the end (the program's writes and
//! bookkeeping, the same for every allocator, and the page faults its writes take, which are
//! not); and the `mmap`, `munmap` and `brk` calls memd served meanwhile. One line:
//!
//! ```text
//! RESULT <allocator> peak_req=<bytes> peak_rss=<bytes> end_req=<bytes> end_rss=<bytes>
//!        freed_rss=<bytes> malloc_mean=<n> malloc_med=<n> free_mean=<n> free_med=<n>
//!        realloc_mean=<n> realloc_med=<n> mallocs=<n> frees=<n> reallocs=<n> mmap=<n>
//!        munmap=<n> brk=<n> brackets=<n> total=<n>
//! ```
//!
//! Since every page of every live block is written, the resident memory is never below the
//! bytes requested; what it has beyond them is the allocator's overhead and fragmentation.

use core::alloc::{GlobalAlloc, Layout};
use user_rt::*;

const PAGE: usize = 4096;

/// How big a run is.
pub struct Scale {
    /// Bytes requested and live in the steady phases.
    steady: usize,
    /// Bytes requested and live at the peak.
    peak: usize,
    /// Operations of each steady phase.
    ops: usize,
    /// Samples kept per operation kind (for the medians).
    samples: usize,
}

/// The full run: 16 MiB steady, a 48 MiB peak, 150,000 operations per steady phase.
pub const FULL: Scale = Scale {
    steady: 16 << 20,
    peak: 48 << 20,
    ops: 150_000,
    samples: 1 << 18,
};

/// A smoke run: the same phases, small.
pub const QUICK: Scale = Scale {
    steady: 1 << 20,
    peak: 3 << 20,
    ops: 4_000,
    samples: 1 << 15,
};

/// The size bands: per mille of the allocations, smallest and largest size.
const SIZES: [(u64, usize, usize); 8] = [
    (350, 8, 32),
    (250, 33, 128),
    (180, 129, 512),
    (120, 513, 2048),
    (60, 2049, 8192),
    (30, 8193, 64 << 10),
    (8, (64 << 10) + 1, 128 << 10),
    (2, (128 << 10) + 1, 256 << 10),
];

/// The largest size the trace asks for.
const MAX_SIZE: usize = 256 << 10;

/// Long-lived blocks, per cent of the allocations of the build phase.
const PINNED_BUILD: u64 = 10;
/// Blocks of the burst kept for good, per cent.
const BURST_KEPT: u64 = 5;
/// Most objects live at once in one pool.
const POOL: usize = 1 << 16;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (> 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number of `[lo, hi]`.
    fn within(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// A size of [`SIZES`]: a band by its weight, a power of two of the band, a size of it.
    fn size(&mut self) -> usize {
        let mut pick = self.below(1000);
        let &(_, lo, hi) = SIZES
            .iter()
            .find(|&&(weight, _, _)| {
                let found = pick < weight;
                pick = pick.saturating_sub(weight);
                found
            })
            .unwrap_or(&SIZES[0]);
        let (lo_bit, hi_bit) = (lo.ilog2(), hi.ilog2());
        let bit = lo_bit + self.below(u64::from(hi_bit - lo_bit + 1)) as u32;
        self.within(lo.max(1 << bit), hi.min((2 << bit) - 1))
    }

    fn align(&mut self) -> usize {
        match self.below(100) {
            0..30 => 1,
            30..85 => 8,
            85..98 => 16,
            _ => 64,
        }
    }
}

/// A live block of the trace.
#[derive(Clone, Copy)]
struct Obj {
    at: usize,
    size: u32,
    align: u32,
    tag: u8,
}

impl Obj {
    fn layout(&self) -> Layout {
        Layout::from_size_align(self.size as usize, self.align as usize)
            .unwrap_or_else(|_| fatal("layout"))
    }

    /// Writes the tag where a program would touch the block: first and last byte, and one byte
    /// of every page between.
    fn fill(&self) {
        let size = self.size as usize;
        let mut off = 0;
        while off < size {
            poke(self.at + off, self.tag);
            off = (off | (PAGE - 1)) + 1;
        }
        poke(self.at + size - 1, self.tag);
    }

    /// Checks the first byte and the byte at `len - 1` still hold the tag.
    fn check(&self, len: usize, what: &str) {
        if peek(self.at) != self.tag || peek(self.at + len - 1) != self.tag {
            println!(
                "FAIL allocbench: {} of {} bytes at {:#x} lost its contents",
                what, self.size, self.at
            );
            exit(1);
        }
    }
}

fn poke(addr: usize, v: u8) {
    // SAFETY: the trace writes only inside blocks an allocator handed it and it has not given
    // back.
    unsafe { core::ptr::with_exposed_provenance_mut::<u8>(addr).write_volatile(v) }
}

fn peek(addr: usize) -> u8 {
    // SAFETY: as in `poke`, reading.
    unsafe { core::ptr::with_exposed_provenance::<u8>(addr).read_volatile() }
}

fn fatal(what: &str) -> ! {
    println!("FATAL allocbench: {}", what);
    exit(1)
}

#[inline(always)]
fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence and rdtsc only read the time-stamp counter (CR4.TSD is clear).
    unsafe {
        core::arch::asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi,
                         options(nostack, preserves_flags));
    }
    (hi as u64) << 32 | lo as u64
}

/// `n` zeroed values of `T`, mapped and populated (resident before the trace starts).
fn buffer<T: Copy>(n: usize) -> &'static mut [T] {
    let flags = libvm::MmapFlags::anonymous_private().populate();
    let len = n * core::mem::size_of::<T>();
    let Ok(at) = vm().mmap(0, len, libvm::ProtectionFlags::READ_WRITE, flags) else {
        fatal("mmap of a buffer");
    };
    // SAFETY: a fresh read/write mapping of `len` bytes, zero filled (a valid `T` for the
    // plain integers and `Obj`s used here), page aligned, never unmapped: the process exits
    // after the trace.
    unsafe { core::slice::from_raw_parts_mut(core::ptr::with_exposed_provenance_mut(at), n) }
}

/// The samples of one kind of call.
struct Samples {
    kept: &'static mut [u32],
    n: usize,
    count: u64,
    sum: u64,
}

impl Samples {
    fn new(capacity: usize) -> Samples {
        Samples {
            kept: buffer(capacity),
            n: 0,
            count: 0,
            sum: 0,
        }
    }

    fn add(&mut self, ticks: u64) {
        self.count += 1;
        self.sum += ticks;
        if let Some(slot) = self.kept.get_mut(self.n) {
            *slot = ticks.min(u64::from(u32::MAX)) as u32;
            self.n += 1;
        }
    }

    fn mean(&self) -> u64 {
        self.sum.checked_div(self.count).unwrap_or(0)
    }

    fn median(&mut self) -> u64 {
        let kept = &mut self.kept[..self.n];
        kept.sort_unstable();
        kept.get(kept.len() / 2).map_or(0, |&m| u64::from(m))
    }
}

/// Live blocks, and the bytes they were asked for.
struct Pool {
    objs: &'static mut [Obj],
    len: usize,
    bytes: usize,
}

impl Pool {
    fn new() -> Pool {
        Pool {
            objs: buffer(POOL),
            len: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, obj: Obj) {
        let Some(slot) = self.objs.get_mut(self.len) else {
            fatal("too many live blocks");
        };
        *slot = obj;
        self.len += 1;
        self.bytes += obj.size as usize;
    }

    fn take(&mut self, i: usize) -> Obj {
        let obj = self.objs[i];
        self.len -= 1;
        self.objs[i] = self.objs[self.len];
        self.bytes -= obj.size as usize;
        obj
    }
}

#[derive(Clone, Copy)]
enum Which {
    Churn,
    Pinned,
    Burst,
}

/// What the process has resident, in bytes.
fn rss() -> usize {
    match vm().process_stats(0) {
        Ok(s) => s.resident_pages as usize * PAGE,
        Err(_) => fatal("process_stats"),
    }
}

/// memd's counts of mmap, munmap and brk calls (every process's).
fn calls() -> [u64; 3] {
    match vm().global_stats() {
        Ok(g) => [g.ops_mmap, g.ops_munmap, g.ops_brk],
        Err(_) => fatal("global_stats"),
    }
}

struct Run<'a, A: GlobalAlloc> {
    heap: &'a A,
    rng: Rng,
    churn: Pool,
    pinned: Pool,
    burst: Pool,
    serial: u32,
    /// The median instructions of the timing brackets alone.
    brackets: u64,
    malloc: Samples,
    free: Samples,
    realloc: Samples,
}

impl<A: GlobalAlloc> Run<'_, A> {
    fn pool(&mut self, which: Which) -> &mut Pool {
        match which {
            Which::Churn => &mut self.churn,
            Which::Pinned => &mut self.pinned,
            Which::Burst => &mut self.burst,
        }
    }

    fn malloc(&mut self, into: Which) {
        let (size, align) = (self.rng.size(), self.rng.align());
        let layout = Layout::from_size_align(size, align).unwrap_or_else(|_| fatal("layout"));
        let t0 = rdtsc();
        // SAFETY: `layout` has a non-zero size.
        let at = unsafe { self.heap.alloc(layout) };
        let t1 = rdtsc();
        self.malloc.add((t1 - t0).saturating_sub(self.brackets));
        if at.is_null() || !at.addr().is_multiple_of(align) {
            println!("FAIL allocbench: alloc({size}, {align}) gave {:p}", at);
            exit(1);
        }
        self.serial = self.serial.wrapping_add(1);
        let obj = Obj {
            at: at.expose_provenance(),
            size: size as u32,
            align: align as u32,
            tag: (self.serial as u8) | 1,
        };
        obj.fill();
        self.pool(into).push(obj);
    }

    fn free(&mut self, from: Which, i: usize) {
        let obj = self.pool(from).take(i);
        obj.check(obj.size as usize, "a block freed");
        let layout = obj.layout();
        let at = core::ptr::with_exposed_provenance_mut(obj.at);
        let t0 = rdtsc();
        // SAFETY: `at` was allocated by this allocator with `layout` and is not used again.
        unsafe { self.heap.dealloc(at, layout) };
        let t1 = rdtsc();
        self.free.add((t1 - t0).saturating_sub(self.brackets));
    }

    /// Frees a churn block: most often one of the 16 most recent, else any.
    fn free_churn(&mut self) {
        let n = self.churn.len as u64;
        if n == 0 {
            return;
        }
        let i = if self.rng.below(100) < 60 {
            n - 1 - self.rng.below(n.min(16))
        } else {
            self.rng.below(n)
        };
        self.free(Which::Churn, i as usize);
    }

    /// Resizes a churn block: grown 1.25 to 2.5 times (a vector filling up), or shrunk.
    fn realloc(&mut self) {
        let n = self.churn.len as u64;
        if n == 0 {
            return;
        }
        let i = self.rng.below(n) as usize;
        let obj = self.churn.objs[i];
        let old = obj.size as usize;
        let grow = self.rng.below(100) < 70 && old < MAX_SIZE;
        let new = if grow {
            (old * self.rng.within(5, 10) / 4).clamp(old + 1, MAX_SIZE)
        } else {
            (old * self.rng.within(3, 9) / 10).max(8)
        };
        let at = core::ptr::with_exposed_provenance_mut(obj.at);
        let t0 = rdtsc();
        // SAFETY: `at` was allocated by this allocator with `obj.layout()`; `new` is not zero
        // and a valid size with that alignment.
        let moved = unsafe { self.heap.realloc(at, obj.layout(), new) };
        let t1 = rdtsc();
        self.realloc.add((t1 - t0).saturating_sub(self.brackets));
        if moved.is_null() || !moved.addr().is_multiple_of(obj.align as usize) {
            println!("FAIL allocbench: realloc({old} -> {new}) gave {:p}", moved);
            exit(1);
        }
        let obj = Obj {
            at: moved.expose_provenance(),
            size: new as u32,
            ..obj
        };
        obj.check(if grow { old } else { 1 }, "a block reallocated");
        obj.fill();
        self.churn.objs[i] = obj;
        self.churn.bytes = self.churn.bytes - old + new;
    }

    /// Bytes requested and live.
    fn live(&self) -> usize {
        self.churn.bytes + self.pinned.bytes + self.burst.bytes
    }

    /// One operation of the steady state: churn and long-lived blocks around `target` bytes.
    fn steady_op(&mut self, target: usize) {
        let roll = self.rng.below(100);
        let live = self.churn.bytes + self.pinned.bytes;
        if live > target + target / 10 || (live >= target - target / 10 && (45..90).contains(&roll))
        {
            if self.rng.below(100) < 2 && self.pinned.len > 0 {
                let i = self.rng.below(self.pinned.len as u64) as usize;
                self.free(Which::Pinned, i);
            } else {
                self.free_churn();
            }
        } else if live < target - target / 10 || roll < 45 {
            let into = if self.rng.below(100) < 2 {
                Which::Pinned
            } else {
                Which::Churn
            };
            self.malloc(into);
        } else {
            self.realloc();
        }
    }

    fn free_all(&mut self) {
        for which in [Which::Churn, Which::Pinned, Which::Burst] {
            while self.pool(which).len > 0 {
                let last = self.pool(which).len - 1;
                self.free(which, last);
            }
        }
    }
}

/// The median instructions of `lfence; rdtsc; lfence` twice, with nothing between.
fn brackets() -> u64 {
    let mut s = [0u64; 101];
    for x in &mut s {
        let t0 = rdtsc();
        *x = rdtsc() - t0;
    }
    s.sort_unstable();
    s[s.len() / 2]
}

/// Runs the trace over `heap` and prints its figures as one `RESULT` line named `name`.
pub fn run<A: GlobalAlloc>(name: &str, heap: &A, scale: &Scale) {
    let mut r = Run {
        heap,
        rng: Rng(0xA110_C0DE),
        churn: Pool::new(),
        pinned: Pool::new(),
        burst: Pool::new(),
        serial: 0,
        brackets: brackets(),
        malloc: Samples::new(scale.samples),
        free: Samples::new(scale.samples),
        realloc: Samples::new(scale.samples),
    };
    let base_rss = rss();
    let base_calls = calls();
    let start = rdtsc();

    // Build.
    while r.live() < scale.steady {
        let into = if r.rng.below(100) < PINNED_BUILD {
            Which::Pinned
        } else {
            Which::Churn
        };
        r.malloc(into);
        if r.rng.below(4) == 0 {
            r.free_churn();
        }
    }
    for _ in 0..scale.ops {
        r.steady_op(scale.steady);
    }
    // Burst, to the peak.
    while r.burst.bytes < scale.peak - scale.steady {
        if r.rng.below(100) < 80 {
            r.malloc(Which::Burst);
        } else {
            r.steady_op(scale.steady);
        }
    }
    let (peak_req, peak_rss) = (r.live(), rss().saturating_sub(base_rss));
    // Drain.
    while r.burst.len > 0 {
        let i = r.rng.below(r.burst.len as u64) as usize;
        if r.rng.below(100) < BURST_KEPT {
            let obj = r.burst.take(i);
            r.pinned.push(obj);
        } else {
            r.free(Which::Burst, i);
        }
        if r.rng.below(4) == 0 {
            r.steady_op(scale.steady);
        }
    }
    for _ in 0..scale.ops {
        r.steady_op(scale.steady);
    }
    let total = rdtsc() - start;
    let (end_req, end_rss) = (r.live(), rss().saturating_sub(base_rss));
    r.free_all();
    let freed_rss = rss().saturating_sub(base_rss);
    let done = calls();
    println!(
        "RESULT {} peak_req={} peak_rss={} end_req={} end_rss={} freed_rss={} \
         malloc_mean={} malloc_med={} free_mean={} free_med={} realloc_mean={} realloc_med={} \
         mallocs={} frees={} reallocs={} mmap={} munmap={} brk={} brackets={} total={}",
        name,
        peak_req,
        peak_rss,
        end_req,
        end_rss,
        freed_rss,
        r.malloc.mean(),
        r.malloc.median(),
        r.free.mean(),
        r.free.median(),
        r.realloc.mean(),
        r.realloc.median(),
        r.malloc.count,
        r.free.count,
        r.realloc.count,
        done[0] - base_calls[0],
        done[1] - base_calls[1],
        done[2] - base_calls[2],
        r.brackets,
        total,
    );
}
