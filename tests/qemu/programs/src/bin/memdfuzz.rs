//! memdfuzz: a request fuzzer for memd (module 1 of a memd boot; `exit7` in the pack).
//!
//! Arguments: `SEED [COUNT]` (its argument string when spawned, e.g. `run memdfuzz 7 10000000`
//! at init's prompt), else the kernel command-line word `memdfuzz=SEED[:COUNT]`, else seed 1
//! and 20,000 requests. The same seed gives the worker the same requests (what its children
//! do and when depends on the scheduler too).
//!
//! This process (the coordinator) measures memd's statistics, forks the worker (or
//! `memdfuzz.workers=N` of them, from the kernel command line, each with its own seed: on
//! several processors they run at once, against memd's workers) and waits for them and for
//! every process they left behind; then the frames and page-table frames in use must
//! be back to the baseline, and memd must still serve. The worker sends `COUNT` requests
//! through the raw IPC call, each checked against what memd must answer:
//!
//! - every opcode and random ones (Linux's later calls, `PRLIMIT` to `CLEAR_REFS`, with
//!   hostile operands kept off the worker itself; the device calls, every map and grant
//!   refused: no fuzzing process holds a device); random flag and reserved bytes, tags (each reply must carry
//!   its request's tag, a known errno and the matching detail byte), words in unused
//!   arguments;
//! - hostile addresses and lengths: 0, unaligned, overflowing, the kernel half, the top of the
//!   user half, 5 GiB, 2^47 and more; the worker aims them only where they cannot harm itself
//!   (the null guard, the upper quarter of the user half where nothing lives, or requests memd
//!   must refuse) and knows the exact answer of most;
//! - lent buffers: none, tiny, read-only, not accessible, mapped and never touched, unmapped,
//!   its own code, the kernel half, overflowing, over the kernel's 64 MiB;
//! - model-checked requests on an arena of 64 pages (mmap fixed, fixed-noreplace, hinted,
//!   shared or private, populated; munmap; mprotect; madvise; and their malformed forms),
//!   interleaved with loads and stores that must read back what was written, region listings
//!   that must match the model, and forked children that check the arena (copy-on-write and
//!   shared memory) and that touch what is unmapped or protected and must be killed for it
//!   with the right reason, access and address;
//! - chaos children (forked, and forking in turn): random requests aimed anywhere in their
//!   own address space, where they may well kill themselves; only the reply's form is checked.
//!   A chaos child of the worker unmaps the arena first: its shared pages are the worker's.
//!   It runs [`CHAOS_THREADS`] more threads, each sending its own chaos (forks included: the
//!   child has the forking thread only) beside its first thread's, on other processors where
//!   there are any; their stacks are kept off like the rest of what the child runs on.
//!
//! Requests over more than 4 GiB that would unmap or drop resident memory are aimed only
//! where nothing is resident: memd does not handle the kernel refusing such a range yet.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use libvm::proto::{
    self, GlobalStats, ProcessInfo, ProcessStats, RegionInfo, Words, wait_status as ws,
};
use libvm::sys::thread;
use libvm::{ProtectionFlags as P, VmError};
use user_rt::*;

entry!(main);

const PAGE: u64 = 4096;
/// memd's lowest address for a mapping (below: the null guard).
const MIN_ADDR: u64 = 0x1_0000;
/// Where the heap starts.
const HEAP_START: u64 = 0x1000_0000;
/// Where the mmap area starts (the heap's limit).
const MMAP_BASE: u64 = 0x4000_0000;
/// The end of the mmap area: the stack's guard page and the stack follow.
const MMAP_END: u64 = 0x7F7F_F000;
/// The top of the stack.
const STACK_TOP: u64 = 0x8000_0000;
/// The end of the user half (where the kernel's checks of lent buffers stop).
const USER_END: u64 = 0x8000_0000_0000;
/// The end of what memd maps: the user half without its top page.
const MAP_END: u64 = kernel_shim::abi::USER_TOP;
/// The upper quarter of the user half, where nothing of the worker lives: hostile ranges that
/// memd may accept are aimed here.
const VOID: u64 = 0x4000_0000_0000;
/// The model-checked arena.
const ARENA: u64 = 0x10_0000_0000;
const ARENA_PAGES: usize = 64;
const FOUR_GIB: u64 = 1 << 32;
/// The largest buffer the kernel lets a call lend.
const MAX_LEND: u64 = 64 << 20;
const DEFAULT_COUNT: u64 = 20_000;
/// Requests of a chaos child (a quarter of it for a grandchild).
const CHAOS_BUDGET: u64 = 200;
/// Children of the worker not yet waited for, at most.
const MAX_PENDING: usize = 4;
/// Threads a chaos child of the worker runs beside its first.
const CHAOS_THREADS: usize = 2;

/// The stacks of a chaos child's threads (lowest address and bytes of each, guard page
/// included): [`vital`]. Written before the threads start ([`GO`]), read only after.
static STACKS: [[AtomicU64; 2]; CHAOS_THREADS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; CHAOS_THREADS];
/// Set once [`STACKS`] holds every thread's stack: the threads wait for it (futex).
static GO: AtomicU32 = AtomicU32::new(0);

// The wire's flag bits (redox_syscall's `MapFlags`).
const PROT_EXEC: u64 = 0x1_0000;
const PROT_WRITE: u64 = 0x2_0000;
const PROT_READ: u64 = 0x4_0000;
const PROT_BITS: u64 = 0x7_0000;
const MAP_SHARED: u64 = 0x1;
const MAP_PRIVATE: u64 = 0x2;
const MAP_FIXED: u64 = 0x4;
const MAP_FIXED_NOREPLACE: u64 = 0xC;
const MAP_BITS: u64 = 0xF;
const ANON: u64 = proto::EXTRA_ANONYMOUS;
const POPULATE: u64 = proto::EXTRA_POPULATE;

/// splitmix64: small, fast, and the same sequence for the same seed.
#[derive(Clone, Copy)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 if `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// memd's check of a user range: its page-rounded end, or the error memd must answer.
fn user_range(addr: u64, len: u64) -> Result<u64, VmError> {
    if len == 0 {
        return Err(VmError::InvalidSize);
    }
    if !addr.is_multiple_of(PAGE) {
        return Err(VmError::NotAligned);
    }
    let end = len
        .checked_add(PAGE - 1)
        .map(|l| l & !(PAGE - 1))
        .and_then(|size| addr.checked_add(size))
        .ok_or(VmError::InvalidSize)?;
    if end > MAP_END {
        return Err(VmError::InvalidAddress);
    }
    Ok(end)
}

/// memd's answer to an `MPROTECT` of a mapped range, in Linux's order: unaligned EINVAL, an
/// empty range nothing (`Ok(None)`), an overflowing one ENOMEM, past the user half ENOMEM
/// (nothing mapped there); else the end.
fn mprotect_range(addr: u64, len: u64) -> Result<Option<u64>, VmError> {
    if !addr.is_multiple_of(PAGE) {
        return Err(VmError::NotAligned);
    }
    if len == 0 {
        return Ok(None);
    }
    let end = len
        .checked_add(PAGE - 1)
        .map(|l| l & !(PAGE - 1))
        .and_then(|size| addr.checked_add(size))
        .ok_or(VmError::OutOfMemory)?;
    if end > MAP_END {
        return Err(VmError::RegionNotFound);
    }
    Ok(Some(end))
}

/// memd's answer to an `MADVISE` with a known advice, in Linux's order: unaligned EINVAL, an
/// overflowing range EINVAL, an empty range nothing (`Ok(None)`), past the user half ENOMEM;
/// else the end.
fn madvise_range(addr: u64, len: u64) -> Result<Option<u64>, VmError> {
    if !addr.is_multiple_of(PAGE) {
        return Err(VmError::NotAligned);
    }
    let end = len
        .checked_add(PAGE - 1)
        .map(|l| l & !(PAGE - 1))
        .and_then(|size| addr.checked_add(size))
        .ok_or(VmError::InvalidSize)?;
    if end == addr {
        return Ok(None);
    }
    if end > MAP_END {
        return Err(VmError::RegionNotFound);
    }
    Ok(Some(end))
}

/// Whether a range request is harmless to the worker: refused, in the null guard, or in the
/// void.
fn harmless(addr: u64, len: u64) -> bool {
    match user_range(addr, len) {
        Err(_) => true,
        Ok(end) => end <= MIN_ADDR || addr >= VOID,
    }
}

/// Whether a chaos child may send a range request: anything but more than 4 GiB over memory
/// that may be resident (memd does not handle the kernel refusing such a range yet).
fn chaos_allowed(addr: u64, len: u64) -> bool {
    match user_range(addr, len) {
        Err(_) => true,
        Ok(end) => end - addr <= FOUR_GIB || addr >= VOID,
    }
}

/// Whether a valid range reaches what a chaos child runs on (its image, static data and heap
/// below the mmap area, its stacks): zeroing or replacing that would corrupt it rather than
/// kill it, and it could print nonsense.
fn vital(addr: u64, len: u64) -> bool {
    match user_range(addr, len) {
        Err(_) => false,
        Ok(end) => {
            addr < MMAP_BASE
                || (addr < STACK_TOP && end > MMAP_END)
                || STACKS.iter().any(|[at, n]| {
                    let at = at.load(Ordering::Acquire);
                    addr < at + n.load(Ordering::Acquire) && end > at
                })
        }
    }
}

/// Where a lent buffer points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Buf {
    None,
    Good,
    Tiny,
    ReadOnly,
    NoAccess,
    Lazy,
    Unmapped,
    Code,
    Kernel,
    Overflow,
    Huge,
}

/// A lent buffer.
#[derive(Clone, Copy, Debug)]
struct Lend {
    buf: Buf,
    ptr: u64,
    len: u64,
}

impl Lend {
    const NONE: Lend = Lend {
        buf: Buf::None,
        ptr: 0,
        len: 0,
    };

    /// Whether the kernel refuses the call for this buffer (out of the user half, too long).
    fn refused(&self) -> bool {
        self.len > MAX_LEND || self.ptr.checked_add(self.len).is_none_or(|e| e > USER_END)
    }

    /// Whether memd can read what it reads of it (`len` bytes, at most 16 KiB).
    fn readable(&self) -> bool {
        self.len == 0
            || !matches!(
                self.buf,
                Buf::NoAccess | Buf::Lazy | Buf::Unmapped | Buf::Overflow | Buf::Kernel | Buf::Huge
            )
    }

    /// Whether memd can write it.
    fn writable(&self) -> bool {
        self.len == 0 || matches!(self.buf, Buf::Good | Buf::Tiny)
    }
}

/// A reply: the kernel refused the call (its errno), or memd answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Kernel(i64),
    Memd(Result<u64, VmError>),
}

/// One page of the arena, as the model has it.
#[derive(Clone, Copy, Debug)]
struct Page {
    mapped: bool,
    prot: P,
    shared: bool,
    /// The value of its first and last word.
    value: u64,
}

const UNMAPPED: Page = Page {
    mapped: false,
    prot: P::NONE,
    shared: false,
    value: 0,
};

/// A child of the worker not waited for yet.
#[derive(Clone, Copy, Debug)]
enum Child {
    /// A chaos child: it exits with its request count, or is killed.
    Chaos(u64),
    /// `exit7`, spawned: it exits with 7.
    Exit7(u64),
}

impl Child {
    fn pid(self) -> u64 {
        match self {
            Child::Chaos(p) | Child::Exit7(p) => p,
        }
    }
}

struct Fuzz {
    rng: Rng,
    /// A chaos child (or grandchild): only the form of replies is checked.
    chaos: bool,
    depth: u32,
    /// Requests to send, and sent.
    count: u64,
    requests: u64,
    arena: [Page; ARENA_PAGES],
    /// Two pages read/write (the good buffer), one read-only (filled with 0x5A), one with no
    /// access, one never touched, and a page of this program's code.
    good: u64,
    ro: u64,
    noaccess: u64,
    lazy: u64,
    code: u64,
    me: u64,
    parent: u64,
    args: Vec<u8>,
    pending: Vec<Child>,
    reaped: Vec<u64>,
    /// Requests of children that exited (their exit codes), children made, kills checked.
    child_requests: u64,
    children: u64,
    kills: u64,
}

fn load(addr: u64) -> u64 {
    // SAFETY: the worker loads only what its model says is mapped and readable (or, in a
    // child forked for it, what must kill it).
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

fn store(addr: u64, v: u64) {
    // SAFETY: as `load`, for stores to writable pages.
    unsafe { core::ptr::write_volatile(addr as *mut u64, v) }
}

/// Maps `pages` private pages with `prot` through libvm (the worker's own buffers).
fn own_pages(pages: u64, prot: P) -> u64 {
    let a = vm()
        .mmap(
            0,
            (pages * PAGE) as usize,
            P::READ_WRITE,
            libvm::MmapFlags::anonymous_private(),
        )
        .unwrap_or(0) as u64;
    check!(a != 0, "mmap of the worker's buffers");
    if prot != P::READ_WRITE {
        check!(
            vm().mprotect(a as usize, (pages * PAGE) as usize, prot)
                .is_ok(),
            "mprotect"
        );
    }
    a
}

impl Fuzz {
    fn new(seed: u64, count: u64, parent: u64) -> Fuzz {
        let good = own_pages(2, P::READ_WRITE);
        let ro = own_pages(1, P::READ_WRITE);
        for i in 0..PAGE / 8 {
            store(ro + i * 8, 0x5A5A_5A5A_5A5A_5A5A);
        }
        check!(
            vm().mprotect(ro as usize, PAGE as usize, P::READ).is_ok(),
            "mprotect"
        );
        let noaccess = own_pages(1, P::NONE);
        let lazy = own_pages(1, P::READ_WRITE);
        let me = vm().process_stats(0).map(|s| s.pid).unwrap_or(0);
        check!(me != 0, "own pid");
        Fuzz {
            rng: Rng(seed),
            chaos: false,
            depth: 0,
            count,
            requests: 0,
            arena: [UNMAPPED; ARENA_PAGES],
            good,
            ro,
            noaccess,
            lazy,
            code: (main as *const () as u64) & !(PAGE - 1),
            me,
            parent,
            args: arg_bytes(),
            pending: Vec::new(),
            reaped: Vec::new(),
            child_requests: 0,
            children: 0,
            kills: 0,
        }
    }

    // ---- Calls and their universal checks ----

    /// Sends one request (words 0..7) with a lent buffer; checks the form of the reply.
    fn call(&mut self, w: [u64; 8], lend: Lend) -> Reply {
        self.requests += 1;
        if matches!(lend.buf, Buf::Good | Buf::Tiny) {
            // As libvm's transport does: resolve a copy-on-write good buffer first.
            store(self.good, load(self.good));
            store(self.good + PAGE, load(self.good + PAGE));
        }
        let (status, r0, r1) = ipc_call_raw(PAGER_ENDPOINT, &w, lend.ptr, lend.len);
        if lend.refused() {
            check!(status < 0, "the kernel took a call lending {:?}", lend);
            return Reply::Kernel(status);
        }
        check!(
            status == 0,
            "the kernel refused a call ({}) lending {:?}: {:#x?}",
            status,
            lend,
            w
        );
        check!(
            r0 >> 32 == w[0] >> 32,
            "reply tag {:#x} to a request tagged {:#x}",
            r0 >> 32,
            w[0] >> 32
        );
        let cqe = proto::cqe_from_words([r0, r1]);
        let value = proto::decode_reply(&cqe);
        check!(
            cqe.flags == 0 && cqe.extra_raw[1] == 0 && cqe.extra_raw[2] == 0,
            "reply flags {:#x} to {:#x?}",
            r0,
            w
        );
        match value {
            Ok(_) => check!(cqe.extra_raw[0] == 0, "a detail byte on success: {:#x?}", w),
            Err(e) => check!(
                !matches!(e, VmError::Other(_)) && cqe.extra_raw[0] == e.detail(),
                "errno {} detail {} to {:#x?}",
                r1 as i64,
                cqe.extra_raw[0],
                w
            ),
        }
        if lend.buf == Buf::ReadOnly && !self.chaos {
            for i in 0..PAGE / 8 {
                check!(
                    load(self.ro + i * 8) == 0x5A5A_5A5A_5A5A_5A5A,
                    "memd wrote a read-only lent buffer ({:#x?})",
                    w
                );
            }
        }
        Reply::Memd(value)
    }

    /// Word 0: opcode, maybe random flag and reserved bytes, a random tag.
    fn word0(&mut self, opcode: u8) -> u64 {
        let mut w = u64::from(opcode) | (self.rng.next() & 0xFFFF_FFFF) << 32;
        if self.rng.one_in(8) {
            w |= self.rng.below(256) << 8;
        }
        if self.rng.one_in(16) {
            w |= self.rng.below(1 << 16) << 16;
        }
        w
    }

    /// A well-formed request through the raw call (for the worker's own steps).
    fn request(&mut self, opcode: u8, args: [u64; 6], lend: Lend) -> Reply {
        let w0 = u64::from(opcode) | (self.rng.next() & 0xFFFF_FFFF) << 32;
        let [a, b, c, d, e, f] = args;
        self.call([w0, a, b, c, d, e, f, 0], lend)
    }

    /// What memd answered; a kernel refusal where none is expected fails.
    fn memd(&self, r: Reply, what: &str) -> Result<u64, VmError> {
        match r {
            Reply::Memd(v) => v,
            Reply::Kernel(e) => {
                println!(
                    "FAIL memdfuzz: {}: the kernel refused the call ({})",
                    what, e
                );
                exit(1)
            }
        }
    }

    /// Checks memd's answer against `want` (unless the kernel refused the call, or in chaos).
    fn expect(&self, got: Reply, want: Result<u64, VmError>, w: &[u64; 8], lend: Lend) {
        if self.chaos {
            return;
        }
        if let Reply::Memd(v) = got {
            check!(
                v == want,
                "{:#x?} lending {:?}: memd answered {:?}, must be {:?}",
                w,
                lend,
                v,
                want
            );
        }
    }

    /// A random lent buffer.
    fn lend(&mut self) -> Lend {
        let r = &mut self.rng;
        let page_len = 1 + r.below(PAGE);
        let (buf, ptr, len) = match r.below(20) {
            0 | 1 => (Buf::None, 0, 0),
            2..=6 => {
                let any = 1 + r.below(2 * PAGE);
                let len = r.pick(&[8, 48, 64, 152, 192, PAGE, 2 * PAGE, any]);
                (Buf::Good, self.good, len)
            }
            7 => (Buf::Tiny, self.good, 1 + r.below(7)),
            8 | 9 => (Buf::ReadOnly, self.ro, page_len),
            10 => (Buf::NoAccess, self.noaccess, page_len),
            11 => (Buf::Lazy, self.lazy, page_len),
            12 => (Buf::Unmapped, VOID + r.below(1 << 20) * PAGE, page_len),
            13 => (Buf::Code, self.code, page_len),
            14 => (
                Buf::Kernel,
                0xFFFF_8000_0000_0000 + r.below(1 << 30) * PAGE,
                r.below(2 * PAGE),
            ),
            15 => {
                let top = u64::MAX - r.below(64);
                let ptr = r.pick(&[top, USER_END - 8, USER_END]);
                (Buf::Overflow, ptr, 1 + r.below(PAGE))
            }
            16 => (Buf::Huge, self.good, MAX_LEND + 1 + r.below(1 << 30)),
            _ => {
                let len = r.pick(&[
                    GlobalStats::WORDS as u64 * 8,
                    ProcessStats::WORDS as u64 * 8,
                    RegionInfo::WORDS as u64 * 8,
                    ProcessInfo::WORDS as u64 * 8,
                ]);
                (Buf::Good, self.good, len)
            }
        };
        Lend { buf, ptr, len }
    }

    /// A hostile address.
    fn addr(&mut self) -> u64 {
        let r = &mut self.rng;
        match r.below(18) {
            0 => 0,
            1 => r.below(MIN_ADDR / PAGE) * PAGE,
            2 | 3 => VOID + r.below(1 << 20) * PAGE,
            4 => VOID + r.below(1 << 20) * PAGE + 1 + r.below(PAGE - 1),
            5 => USER_END - (1 + r.below(16)) * PAGE,
            6 => USER_END - r.pick(&[5 << 30, 1 << 46, FOUR_GIB]),
            7 => USER_END,
            8 => 0xFFFF_8000_0000_0000 + r.below(1 << 30) * PAGE,
            9 => r.pick(&[u64::MAX, !(PAGE - 1), 1 << 63, 0x0000_8000_0000_1000]),
            10 => r.next(),
            11 => r.next() & (USER_END - 1) & !(PAGE - 1),
            // Where the program lives: its image, heap, buffers, stack and arena.
            12 => 0x40_0000 + r.below(64) * PAGE,
            13 => HEAP_START + r.below(256) * PAGE,
            14 => MMAP_BASE + r.below(1024) * PAGE,
            15 => 0x7F80_0000 - PAGE + r.below(2049) * PAGE,
            16 => ARENA + r.below(ARENA_PAGES as u64 + 8) * PAGE,
            _ => self.good + r.below(4) * PAGE,
        }
    }

    /// A hostile length.
    fn len(&mut self) -> u64 {
        let r = &mut self.rng;
        match r.below(18) {
            0 => 0,
            1 => 1 + r.below(PAGE - 1),
            2 => PAGE,
            3 => PAGE + 1,
            4 | 5 => (1 + r.below(64)) * PAGE,
            6 => 1 << 20,
            7 => 5 << 30,
            8 => 1 << 47,
            9 => 1 << 46,
            10 => u64::MAX,
            11 => u64::MAX - PAGE + 2,
            12 => FOUR_GIB + PAGE,
            13 => FOUR_GIB,
            14 => 1 << 63,
            15 => r.next(),
            16 => (1 + r.below(16)) * PAGE - r.below(PAGE),
            _ => (1 + r.below(1 << 20)) * PAGE,
        }
    }

    /// A hostile range the current mode may send: `(addr, len)`; `changes`: for a request
    /// that may zero or replace memory.
    fn range(&mut self, changes: bool) -> (u64, u64) {
        for _ in 0..16 {
            let (a, l) = (self.addr(), self.len());
            let fits = if self.chaos {
                chaos_allowed(a, l) && !(changes && vital(a, l))
            } else {
                harmless(a, l)
            };
            if fits {
                return (a, l);
            }
        }
        (VOID + self.rng.below(1 << 20) * PAGE, PAGE)
    }

    // ---- Random requests ----

    /// One random request of any kind, checked.
    fn hostile(&mut self) {
        let opcode = self.rng.pick(&[
            proto::MMAP,
            proto::MMAP,
            proto::MMAP,
            proto::MUNMAP,
            proto::MUNMAP,
            proto::MPROTECT,
            proto::MPROTECT,
            proto::BRK,
            proto::SBRK,
            proto::MADVISE,
            proto::MADVISE,
            proto::FORK,
            proto::GLOBAL_STATS,
            proto::PROCESS_STATS,
            proto::REGIONS,
            proto::SPAWN,
            proto::WAIT,
            proto::ARGS,
            proto::PROCESSES,
            proto::PRLIMIT,
            proto::MINCORE,
            proto::MSYNC,
            proto::MLOCK,
            proto::MLOCKALL,
            proto::MREMAP,
            proto::FAULT_HANDLER,
            proto::CLEAR_REFS,
            proto::DEVICE,
            proto::MAP_DEVICE,
            proto::GRANT_DEVICE,
            0,
        ]);
        let opcode = if opcode == 0 && self.rng.one_in(2) {
            // Anything memd does not know (`DENY_WRITE_EXEC` and `KILL`, which would change the
            // worker's rules or end its children under the model, are left out).
            proto::GRANT_DEVICE + 1 + self.rng.below(u64::from(255 - proto::GRANT_DEVICE)) as u8
        } else {
            opcode
        };
        if matches!(
            opcode,
            proto::PRLIMIT
                | proto::MINCORE
                | proto::MSYNC
                | proto::MLOCK
                | proto::MLOCKALL
                | proto::MREMAP
                | proto::FAULT_HANDLER
                | proto::CLEAR_REFS
        ) {
            return self.linux_call(opcode);
        }
        if matches!(
            opcode,
            proto::DEVICE | proto::MAP_DEVICE | proto::GRANT_DEVICE
        ) {
            return self.device_call(opcode);
        }
        let w0 = self.word0(opcode);
        let lend = self.lend();
        // How many arguments the opcode uses; a word in an unused one is refused.
        let used = match opcode {
            proto::MMAP => 4,
            proto::MUNMAP | proto::REGIONS => 2,
            proto::MPROTECT | proto::MADVISE => 3,
            proto::BRK | proto::SBRK | proto::PROCESS_STATS | proto::PROCESSES => 1,
            proto::WAIT => 2,
            proto::SPAWN => 6,
            _ => 0,
        };
        let garbage = used < 6 && self.rng.one_in(12);
        let mut a = [0u64; 6];
        let want: Option<Result<u64, VmError>> = match opcode {
            proto::MMAP => return self.mmap(w0, lend, garbage),
            proto::MUNMAP => {
                // With other threads, an unmap of what they run on is a change too: a mapping
                // made in its place before they touch it again would corrupt them.
                let threads = self.chaos && GO.load(Ordering::Acquire) != 0;
                let (addr, len) = self.any_range(garbage, threads);
                a[..2].copy_from_slice(&[addr, len]);
                Some(user_range(addr, len).map(|_| 0))
            }
            proto::MPROTECT => {
                let (addr, len) = self.any_range(garbage, false);
                let bits = self.prot_bits();
                a[..3].copy_from_slice(&[addr, len, bits]);
                Some(if bits & !PROT_BITS != 0 {
                    Err(VmError::InvalidFlags)
                } else {
                    match mprotect_range(addr, len) {
                        Ok(None) => Ok(0),
                        Ok(Some(_)) => Err(VmError::RegionNotFound),
                        Err(e) => Err(e),
                    }
                })
            }
            proto::MADVISE => {
                let (addr, len) = self.any_range(garbage, true);
                // Known advice that changes no page (normal, random, sequential, willneed, huge
                // pages or not) or drops pages (dontneed), and unknown values; the advice that
                // changes what a fork copies or backs pages with a check is left to the other
                // tests.
                let any = self.rng.next() | 0x100;
                let mut advice = self.rng.pick(&[
                    0,
                    3,
                    4,
                    1,
                    2,
                    5,
                    100,
                    any,
                    proto::MADV_HUGEPAGE,
                    proto::MADV_NOHUGEPAGE,
                ]);
                if self.chaos && advice == proto::MADV_WILLNEED && len > 16 * PAGE {
                    // Populating much would starve the other processes of frames.
                    advice = proto::MADV_NORMAL;
                }
                a[..3].copy_from_slice(&[addr, len, advice]);
                Some(if !matches!(advice, 0..=4 | 14 | 15) {
                    Err(VmError::InvalidFlags)
                } else {
                    match madvise_range(addr, len) {
                        Ok(None) => Ok(0),
                        Ok(Some(_)) => Err(VmError::RegionNotFound),
                        Err(e) => Err(e),
                    }
                })
            }
            proto::BRK | proto::SBRK => return self.brk(opcode, w0, lend, garbage),
            proto::FORK => return self.fork_request(w0, lend, garbage),
            proto::GLOBAL_STATS => None,
            proto::PROCESS_STATS => {
                a[0] = self.some_pid();
                None
            }
            proto::REGIONS => {
                a[0] = self.some_pid();
                a[1] = self.addr();
                None
            }
            proto::PROCESSES => {
                let any = self.rng.next();
                a[0] = self.rng.pick(&[0, 1, self.me, self.me + 1, any]);
                None
            }
            proto::SPAWN => return self.spawn(w0, lend),
            proto::WAIT => return self.wait_request(w0, lend, garbage),
            proto::ARGS => None,
            _ => {
                for x in a.iter_mut() {
                    let any = self.rng.next();
                    *x = self.rng.pick(&[0, 1, any]);
                }
                Some(Err(VmError::BadRequest))
            }
        };
        if garbage {
            let i = used + self.rng.below(6 - used as u64) as usize;
            a[i] = 1 + self.rng.below(u64::MAX - 1);
        }
        let w = [w0, a[0], a[1], a[2], a[3], a[4], a[5], 0];
        let reply = self.call(w, lend);
        if opcode > proto::GRANT_DEVICE || opcode == 0 {
            // Refused whatever the mode.
            check!(
                matches!(
                    reply,
                    Reply::Kernel(_) | Reply::Memd(Err(VmError::BadRequest))
                ),
                "opcode {}: {:?}",
                opcode,
                reply
            );
        }
        let bulk = matches!(
            opcode,
            proto::GLOBAL_STATS | proto::PROCESS_STATS | proto::REGIONS | proto::PROCESSES
        );
        if bulk && !lend.readable() {
            // memd copies the buffer in first: refused before anything else.
            return self.expect(reply, Err(VmError::BadBuffer), &w, lend);
        }
        if garbage {
            return self.expect(reply, Err(VmError::BadRequest), &w, lend);
        }
        match want {
            Some(want) => self.expect(reply, want, &w, lend),
            None => self.bulk_reply(opcode, &w, lend, reply),
        }
    }

    /// One of Linux's later calls with hostile operands: `PRLIMIT`, `MINCORE`, `MSYNC`, `MLOCK`,
    /// `MLOCKALL`, `MREMAP`, `FAULT_HANDLER`, `CLEAR_REFS` (whose exact answer is checked). The worker keeps them off itself: ranges where
    /// they cannot harm it, limits only read or set in ways memd must refuse, locks only
    /// undone (`MLOCK`) or asked with bad flags (`MLOCKALL`), and no fault handler it could run (only refused ones, or none);
    /// a chaos child may lower its limits and lock its memory. The form of every reply is
    /// checked, the exact answer of the fault-handler registrations.
    fn linux_call(&mut self, opcode: u8) {
        let w0 = self.word0(opcode);
        let lend = self.lend();
        let mut a = [0u64; 6];
        let mut want = None;
        match opcode {
            proto::PRLIMIT => {
                let any = self.rng.next();
                a[0] = self.rng.pick(&[
                    proto::RLIMIT_AS,
                    proto::RLIMIT_DATA,
                    proto::RLIMIT_STACK,
                    proto::RLIMIT_MEMLOCK,
                    0,
                    any,
                ]);
                if self.rng.one_in(2) {
                    // Set: a soft limit above the hard one (EINVAL) or a raised hard one
                    // (EPERM); in chaos, any.
                    let (soft, hard) = if self.chaos {
                        (self.len(), self.len())
                    } else {
                        self.rng.pick(&[(2, 1), (u64::MAX, 1 << 20)])
                    };
                    a[1..4].copy_from_slice(&[1, soft, hard]);
                    if !self.chaos && a[0] == proto::RLIMIT_MEMLOCK && soft == u64::MAX {
                        // Linux's default hard limit of locked memory is not infinite: make
                        // sure the set is refused.
                        a[2] = 2;
                        a[3] = 1;
                    }
                }
            }
            proto::MINCORE | proto::MLOCK => {
                let (addr, len) = self.range(opcode == proto::MLOCK);
                // The worker only unlocks: a locked page in the void would turn the
                // `MADV_DONTNEED` the model expects to succeed there into EINVAL.
                let unlock = !self.chaos || self.rng.one_in(2);
                a[..3].copy_from_slice(&[addr, len, u64::from(unlock)]);
                if opcode == proto::MINCORE {
                    a[2] = 0;
                }
            }
            proto::MSYNC => {
                let (addr, len) = self.range(false);
                let any = self.rng.next();
                a[..3].copy_from_slice(&[addr, len, self.rng.pick(&[0, 1, 4, 6, 7, any])]);
            }
            proto::MLOCKALL => {
                let unlock = self.rng.one_in(2);
                let any = self.rng.next();
                a[0] = if unlock {
                    0
                } else if self.chaos {
                    self.rng.pick(&[1, 2, 3, 5, 7, 4, any])
                } else {
                    self.rng.pick(&[0, 4, 8, any | 8])
                };
                a[1] = u64::from(unlock);
            }
            proto::MREMAP => {
                let (mut old, old_len) = self.range(true);
                let (new_addr, new_len) = self.range(true);
                // An old length that rounds up past the top wraps to 0 (Linux's `PAGE_ALIGN`),
                // and an old length of 0 on shared memory asks for a second mapping of it: an
                // overflowing range is not harmless there. The worker aims such a request at
                // the void, where nothing stays mapped.
                if !self.chaos && old_len.wrapping_add(PAGE - 1) < PAGE {
                    old = VOID + self.rng.below(1 << 20) * PAGE;
                }
                let any = self.rng.next();
                let flags = self.rng.pick(&[
                    0,
                    proto::MREMAP_MAYMOVE,
                    proto::MREMAP_MAYMOVE | proto::MREMAP_FIXED,
                    proto::MREMAP_MAYMOVE | proto::MREMAP_DONTUNMAP,
                    proto::MREMAP_FIXED,
                    any,
                ]);
                a[..5].copy_from_slice(&[old, old_len, new_len, flags, new_addr]);
            }
            proto::CLEAR_REFS => {
                let any = self.rng.next();
                a[0] = self.rng.pick(&[5, 0, 1, 4, 6, any]);
                want = Some(if a[0] == proto::CLEAR_REFS_MM_HIWATER_RSS {
                    Ok(0)
                } else {
                    Err(VmError::InvalidFlags)
                });
            }
            _ => {
                // FAULT_HANDLER: none, or one memd must refuse.
                let any = self.rng.next();
                let entry = self.rng.pick(&[0, 0x40_1000, USER_END, any]);
                let stack = self.addr();
                // A valid entry gets a stack too small, never empty (a stack and a length of
                // 0 register the handler with no alternate stack: `SS_DISABLE`): never a
                // handler the worker could run.
                let len = if entry == 0 || entry >= MAP_END {
                    self.len()
                } else {
                    1 + self.rng.below(libvm::fault::MIN_STACK - 1)
                };
                let bad_stack = stack.checked_add(len).is_none_or(|e| e > MAP_END);
                a[..3].copy_from_slice(&[entry, stack, len]);
                want = Some(if entry == 0 {
                    Ok(0)
                } else if entry >= MAP_END || bad_stack {
                    Err(VmError::InvalidAddress)
                } else {
                    Err(VmError::OutOfMemory)
                });
            }
        }
        let w = [w0, a[0], a[1], a[2], a[3], a[4], a[5], 0];
        let reply = self.call(w, lend);
        if let Some(want) = want {
            self.expect(reply, want, &w, lend);
        }
    }

    /// A device call with hostile operands: `DEVICE` (a lookup by name, any name), `MAP_DEVICE`
    /// and `GRANT_DEVICE`. Neither the worker nor a chaos child holds a device's capability
    /// (a fork's child holds none), so memd must refuse every map and every grant, and a
    /// lookup finds only a device the kernel accepted (index below 8, a length of pages).
    fn device_call(&mut self, opcode: u8) {
        let w0 = self.word0(opcode);
        let lend = self.lend();
        let mut a = [0u64; 6];
        for x in a.iter_mut() {
            let any = self.rng.next();
            *x = self.rng.pick(&[0, 1, 7, any]);
        }
        match opcode {
            proto::DEVICE => {
                let name =
                    self.rng
                        .pick(&[b"fb\0\0\0\0\0\0", b"vga\0\0\0\0\0", b"\0\0\0\0\0\0\0\0"]);
                if self.rng.one_in(2) {
                    a = [u64::from_le_bytes(*name), 0, 0, 0, 0, 0];
                }
            }
            proto::MAP_DEVICE => {
                let (addr, len) = self.range(true);
                let any = self.rng.next();
                let flags = self.rng.pick(&[1, 2, 0x11, 0x12, 3, any]);
                a[..4].copy_from_slice(&[addr, len, self.rng.below(8), flags]);
            }
            _ => {
                a[0] = self.some_pid();
                if self.rng.one_in(2) {
                    a[2..].fill(0);
                }
            }
        }
        let w = [w0, a[0], a[1], a[2], a[3], a[4], a[5], 0];
        let reply = self.call(w, lend);
        if let Reply::Memd(v) = reply {
            let fine = match (opcode, v) {
                (proto::DEVICE, Ok(v)) => v & 0xFF < 8 && v >> 8 != 0,
                (proto::DEVICE, Err(e)) => matches!(e, VmError::NoSuchDevice | VmError::BadRequest),
                (_, v) => v.is_err(),
            };
            check!(fine, "{:#x?}: memd answered {:?}", w, v);
        }
    }

    /// A range for a range request (anything, when it is to be refused for a word in an
    /// unused argument).
    fn any_range(&mut self, garbage: bool, changes: bool) -> (u64, u64) {
        if garbage {
            (self.addr(), self.len())
        } else {
            self.range(changes)
        }
    }

    fn prot_bits(&mut self) -> u64 {
        match self.rng.below(10) {
            0 => self.rng.next() & 0xFF_FFFF,
            1 => PROT_BITS | 0x8_0000,
            _ => self.rng.below(8) << 16,
        }
    }

    fn some_pid(&mut self) -> u64 {
        let child = self.pending.first().map_or(0, |c| c.pid());
        let any = self.rng.next();
        self.rng
            .pick(&[0, self.me, self.parent, child, 1 << 40, any])
    }

    /// Checks the answer of a statistics or listing call (the buffer was readable).
    fn bulk_reply(&mut self, opcode: u8, w: &[u64; 8], lend: Lend, reply: Reply) {
        let Reply::Memd(v) = reply else {
            return;
        };
        if self.chaos {
            return;
        }
        let n = lend.len.min(16 * 1024);
        let exists = |pid: u64| pid == 0 || pid == self.me || pid == self.parent;
        let child = self.pending.iter().any(|c| c.pid() == w[1]);
        let want = match opcode {
            proto::GLOBAL_STATS if n < GlobalStats::WORDS as u64 * 8 => Err(VmError::BadBuffer),
            proto::GLOBAL_STATS => Ok(GlobalStats::WORDS as u64),
            proto::PROCESS_STATS if child => {
                // A chaos child may be alive or not.
                check!(
                    matches!(v, Ok(_) | Err(VmError::NoSuchProcess | VmError::BadBuffer)),
                    "stats of a child: {:?}",
                    v
                );
                return;
            }
            proto::PROCESS_STATS if !exists(w[1]) => Err(VmError::NoSuchProcess),
            proto::PROCESS_STATS if n < ProcessStats::WORDS as u64 * 8 => Err(VmError::BadBuffer),
            proto::PROCESS_STATS => Ok(ProcessStats::WORDS as u64),
            proto::REGIONS if n < RegionInfo::WORDS as u64 * 8 => Err(VmError::BadBuffer),
            proto::REGIONS if child => {
                check!(
                    matches!(v, Ok(_) | Err(VmError::NoSuchProcess | VmError::BadBuffer)),
                    "regions of a child: {:?}",
                    v
                );
                return;
            }
            proto::REGIONS if !exists(w[1]) => Err(VmError::NoSuchProcess),
            proto::REGIONS => {
                let room = (n / (RegionInfo::WORDS as u64 * 8)).min(256);
                check!(
                    if lend.writable() {
                        v.is_ok_and(|k| k <= room)
                    } else {
                        v == Err(VmError::BadBuffer)
                    },
                    "regions: {:?} lending {:?}",
                    v,
                    lend
                );
                if let Ok(k) = v {
                    self.check_region_list(k, w[2]);
                }
                return;
            }
            proto::PROCESSES if n < ProcessInfo::WORDS as u64 * 8 => Err(VmError::BadBuffer),
            proto::PROCESSES => {
                let room = n / (ProcessInfo::WORDS as u64 * 8);
                check!(
                    if lend.writable() {
                        v.is_ok_and(|k| k <= room)
                    } else {
                        v == Err(VmError::BadBuffer)
                    },
                    "processes: {:?} lending {:?}",
                    v,
                    lend
                );
                if let Ok(k) = v {
                    self.check_process_list(k, w[1], room);
                }
                return;
            }
            proto::ARGS => {
                let k = (self.args.len() as u64).min(lend.len);
                let want = if k > 0 && !lend.writable() {
                    Err(VmError::BadBuffer)
                } else {
                    Ok(k)
                };
                self.expect(reply, want, w, lend);
                if want.is_ok() && k > 0 {
                    for (i, &b) in self.args.iter().take(k as usize).enumerate() {
                        // SAFETY: the good buffer, `k` bytes of which memd wrote.
                        let got =
                            unsafe { core::ptr::read_volatile((lend.ptr + i as u64) as *const u8) };
                        check!(got == b, "ARGS byte {}: {:#x}", i, got);
                    }
                }
                return;
            }
            _ => return,
        };
        let want = match want {
            Ok(_) if !lend.writable() => Err(VmError::BadBuffer),
            w => w,
        };
        self.expect(reply, want, w, lend);
        if v.is_ok() && opcode == proto::GLOBAL_STATS {
            let s = self.read_good::<GlobalStats>();
            check!(
                s.frames_used + s.frames_free == s.frames_total && s.processes >= 2,
                "global stats: {:?}",
                s
            );
        }
        if v.is_ok() && opcode == proto::PROCESS_STATS {
            let s = self.read_good::<ProcessStats>();
            let pid = if w[1] == 0 { self.me } else { w[1] };
            check!(
                s.pid == pid && s.region_count > 0 && s.resident_pages <= s.mapped_pages,
                "process stats of {}: {:?}",
                pid,
                s
            );
        }
    }

    /// The structure memd wrote at the start of the good buffer.
    fn read_good<W: Words + Default>(&self) -> W {
        // SAFETY: the good buffer: two pages mapped read/write for the worker's life.
        let bytes =
            unsafe { core::slice::from_raw_parts(self.good as *const u8, 2 * PAGE as usize) };
        W::read_from(bytes).unwrap_or_default()
    }

    fn check_region_list(&self, k: u64, from: u64) {
        let mut last_end = 0;
        for i in 0..k {
            // SAFETY: as `read_good`; `k` entries were written.
            let bytes = unsafe {
                core::slice::from_raw_parts(
                    (self.good + i * RegionInfo::WORDS as u64 * 8) as *const u8,
                    RegionInfo::WORDS * 8,
                )
            };
            let r = RegionInfo::read_from(bytes).unwrap_or_default();
            check!(
                r.start < r.end
                    && r.start.is_multiple_of(PAGE)
                    && r.end.is_multiple_of(PAGE)
                    && r.end <= MAP_END
                    && r.start >= last_end
                    && r.end > from
                    && r.resident_pages <= (r.end - r.start) / PAGE,
                "region {} of {} from {:#x}: {:?}",
                i,
                k,
                from,
                r
            );
            last_end = r.end;
        }
    }

    fn check_process_list(&self, k: u64, from: u64, room: u64) {
        let mut last = 0;
        let mut me = false;
        for i in 0..k {
            // SAFETY: as `read_good`; `k` entries were written.
            let bytes = unsafe {
                core::slice::from_raw_parts(
                    (self.good + i * ProcessInfo::WORDS as u64 * 8) as *const u8,
                    ProcessInfo::WORDS * 8,
                )
            };
            let p = ProcessInfo::read_from(bytes).unwrap_or_default();
            check!(
                p.pid >= from && p.pid > last,
                "process {} of {} from {}: {:?}",
                i,
                k,
                from,
                p
            );
            if p.pid == self.me {
                me = true;
                check!(
                    p.parent == self.parent && p.name() == "memdfuzz",
                    "this process listed as {:?}",
                    p
                );
            }
            last = p.pid;
        }
        check!(
            me || from > self.me || k == room,
            "this process ({}) not listed from {} ({} entries)",
            self.me,
            from,
            k
        );
    }

    fn mmap(&mut self, w0: u64, lend: Lend, garbage: bool) {
        let (addr, len) = (self.addr(), self.len());
        let prot = self.prot_bits();
        let map = match self.rng.below(12) {
            0 => self.rng.next() & 0xFF,
            1 => 0,
            2 => MAP_SHARED | MAP_PRIVATE,
            3 => 0x8 | MAP_PRIVATE,
            4 | 5 => MAP_SHARED,
            6 | 7 => MAP_PRIVATE | MAP_FIXED,
            8 => MAP_SHARED | MAP_FIXED,
            9 => MAP_PRIVATE | MAP_FIXED_NOREPLACE,
            _ => MAP_PRIVATE,
        };
        let mut extra = self.rng.pick(&[ANON, ANON, ANON, ANON | POPULATE, 0, 8]);
        let bits = prot | map;
        let fixed = map & MAP_FIXED != 0;
        let size = len.checked_add(PAGE - 1).map(|l| l & !(PAGE - 1));
        // Populate only little: memd would fill memory, and other processes would starve.
        let most = if self.chaos { 16 * PAGE } else { 256 * PAGE };
        if extra & POPULATE != 0 && size.is_none_or(|s| s > most) {
            extra &= !POPULATE;
        }
        let allowed = !fixed
            || garbage
            || if self.chaos {
                chaos_allowed(addr, len) && !vital(addr, len)
            } else {
                harmless(addr, len)
            };
        let (addr, len) = if allowed {
            // A chaos child's hint never points at what it runs on.
            let hint_vital = self.chaos && !fixed && vital(addr, len);
            (if hint_vital { 0 } else { addr }, len)
        } else {
            (
                VOID + self.rng.below(1 << 20) * PAGE,
                (1 + self.rng.below(16)) * PAGE,
            )
        };
        let mut a = [addr, len, bits, extra, 0, 0];
        if garbage {
            a[4 + self.rng.below(2) as usize] = 1 + self.rng.below(u64::MAX - 1);
        }
        let w = [w0, a[0], a[1], a[2], a[3], a[4], a[5], 0];
        let reply = self.call(w, lend);
        let size = len.checked_add(PAGE - 1).map(|l| l & !(PAGE - 1));
        // The answer memd must give, when it is sure.
        let sure: Option<VmError> = if garbage {
            Some(VmError::BadRequest)
        } else if bits & !(PROT_BITS | MAP_BITS) != 0
            || extra & !(ANON | POPULATE) != 0
            || bits & MAP_FIXED_NOREPLACE == 0x8
        {
            Some(VmError::InvalidFlags)
        } else if len == 0 {
            Some(VmError::InvalidSize)
        } else if size.is_none() {
            // A length that overflows when rounded to pages: no room (Linux's ENOMEM).
            Some(VmError::OutOfMemory)
        } else if (bits & MAP_SHARED != 0) == (bits & MAP_PRIVATE != 0) || extra & ANON == 0 {
            Some(VmError::InvalidFlags)
        } else if fixed {
            // Linux's order: the range (ENOMEM), the alignment (EINVAL), the lowest address
            // (EPERM).
            let size = size.unwrap_or(0);
            if size > MAP_END || addr > MAP_END - size {
                Some(VmError::OutOfMemory)
            } else if !addr.is_multiple_of(PAGE) {
                Some(VmError::NotAligned)
            } else if addr < MIN_ADDR {
                Some(VmError::NotPermitted)
            } else {
                None
            }
        } else {
            None
        };
        let Reply::Memd(v) = reply else {
            return;
        };
        if let Some(e) = sure {
            return self.expect(reply, Err(e), &w, lend);
        }
        let Ok(r) = v else {
            if !self.chaos {
                check!(
                    matches!(v, Err(VmError::OutOfMemory | VmError::LimitExceeded)),
                    "mmap {:#x?}: {:?}",
                    w,
                    v
                );
            }
            return;
        };
        let size = size.unwrap_or(0);
        if self.chaos {
            if self.rng.one_in(2) && chaos_allowed(r, size) {
                let _ = self.request(proto::MUNMAP, [r, size, 0, 0, 0, 0], Lend::NONE);
            }
            return;
        }
        check!(
            r.is_multiple_of(PAGE)
                && r >= MIN_ADDR
                && r.checked_add(size).is_some_and(|e| e <= MAP_END),
            "mmap {:#x?} placed at {:#x}",
            w,
            r
        );
        check!(
            !fixed || r == addr,
            "mmap fixed {:#x?} placed at {:#x}",
            w,
            r
        );
        for (i, p) in self.arena.iter().enumerate() {
            let page = ARENA + i as u64 * PAGE;
            check!(
                !p.mapped || page < r || page >= r + size,
                "mmap {:#x?} at {:#x} over the arena's page {}",
                w,
                r,
                i
            );
        }
        // Lazily zero (a touch only below 4 GiB: a resident page would outlive the unmap).
        if size <= 256 * PAGE && bits & PROT_BITS != 0 {
            check!(
                load(r) == 0 && load(r + size - 8) == 0,
                "new memory at {:#x} is not zero",
                r
            );
            if bits & PROT_WRITE != 0 {
                store(r + size - 8, r);
                check!(load(r + size - 8) == r, "a store at {:#x} did not stick", r);
            }
        }
        if self.rng.one_in(4) && size <= FOUR_GIB {
            let p = self.rng.below(8) << 16;
            let got = self.request(proto::MPROTECT, [r, size, p, 0, 0, 0], Lend::NONE);
            check!(
                got == Reply::Memd(Ok(0)),
                "mprotect of a new mapping: {:?}",
                got
            );
        }
        let got = self.request(proto::MUNMAP, [r, size, 0, 0, 0, 0], Lend::NONE);
        check!(
            got == Reply::Memd(Ok(0)),
            "munmap of a new mapping: {:?}",
            got
        );
    }

    fn brk(&mut self, opcode: u8, w0: u64, lend: Lend, garbage: bool) {
        let cur = match self.request(proto::BRK, [0; 6], Lend::NONE) {
            Reply::Memd(Ok(b)) => b,
            r => {
                check!(self.chaos, "brk(0): {:?}", r);
                return;
            }
        };
        let (arg, want) = if self.chaos {
            // Never below the break: the heap holds what this process runs on.
            let (up, any) = (1 + self.rng.below(1 << 20), self.rng.next());
            let v = if opcode == proto::BRK {
                let v = self
                    .rng
                    .pick(&[0, cur, cur + up, any, HEAP_START - PAGE, u64::MAX]);
                if (HEAP_START..cur).contains(&v) {
                    cur + up
                } else {
                    v
                }
            } else {
                let v = self.rng.pick(&[0, up, i64::MIN as u64, any]);
                match cur.checked_add_signed(v as i64) {
                    Some(n) if (HEAP_START..cur).contains(&n) => up,
                    _ => v,
                }
            };
            (v, None)
        } else if opcode == proto::BRK {
            // Values memd must refuse (or a query): the heap of this process is live.
            let above = MMAP_BASE + 1 + self.rng.below(u64::MAX - MMAP_BASE - 1);
            let v = self.rng.pick(&[
                0,
                1,
                MIN_ADDR,
                HEAP_START - PAGE,
                MMAP_BASE + 1,
                MMAP_BASE + PAGE,
                USER_END,
                0xFFFF_8000_0000_0000,
                u64::MAX,
                above,
            ]);
            let want = match v {
                0 => Ok(cur),
                v if v < HEAP_START => Err(VmError::InvalidAddress),
                _ => Err(VmError::LimitExceeded),
            };
            (v, Some(want))
        } else {
            let v: i64 = self.rng.pick(&[
                0,
                i64::MIN,
                i64::MAX,
                -(cur as i64),
                -((cur - HEAP_START) as i64) - 1,
                5 << 30,
                (MMAP_BASE - cur) as i64 + 1,
            ]);
            let want = match cur.checked_add_signed(v) {
                None => Err(VmError::InvalidSize),
                Some(n) if n == cur => Ok(cur),
                Some(n) if n < HEAP_START => Err(VmError::InvalidAddress),
                Some(_) => Err(VmError::LimitExceeded),
            };
            (v as u64, Some(want))
        };
        let mut a = [arg, 0, 0, 0, 0, 0];
        if garbage {
            a[1 + self.rng.below(5) as usize] = 1 + self.rng.below(u64::MAX - 1);
        }
        let w = [w0, a[0], a[1], a[2], a[3], a[4], a[5], 0];
        let reply = self.call(w, lend);
        if garbage {
            return self.expect(reply, Err(VmError::BadRequest), &w, lend);
        }
        if let Some(want) = want {
            self.expect(reply, want, &w, lend);
        }
        if self.chaos {
            return;
        }
        // A grow and a shrink back, by a random amount (no allocation in between).
        let k = self.rng.below(1 << 20);
        let (grow, back) = if opcode == proto::BRK {
            (
                self.request(proto::BRK, [cur + k, 0, 0, 0, 0, 0], Lend::NONE),
                self.request(proto::BRK, [cur, 0, 0, 0, 0, 0], Lend::NONE),
            )
        } else {
            (
                self.request(proto::SBRK, [k, 0, 0, 0, 0, 0], Lend::NONE),
                self.request(proto::SBRK, [k.wrapping_neg(), 0, 0, 0, 0, 0], Lend::NONE),
            )
        };
        let (g, b) = if opcode == proto::BRK {
            (cur + k, cur)
        } else {
            (cur, cur + k)
        };
        check!(
            grow == Reply::Memd(Ok(g)) && back == Reply::Memd(Ok(b)),
            "heap grow by {} and back: {:?}, {:?}",
            k,
            grow,
            back
        );
        let now = self.request(proto::BRK, [0; 6], Lend::NONE);
        check!(now == Reply::Memd(Ok(cur)), "the break moved: {:?}", now);
    }

    /// `FORK` with maybe a word in an unused argument; a child becomes a chaos child.
    fn fork_request(&mut self, w0: u64, lend: Lend, garbage: bool) {
        let room = if self.chaos {
            self.depth < 2 && self.pending.len() < 2
        } else {
            self.pending.len() < MAX_PENDING
        };
        let mut a = [0u64; 6];
        if garbage || !room {
            a[self.rng.below(6) as usize] = 1 + self.rng.below(u64::MAX - 1);
        }
        let w = [w0, a[0], a[1], a[2], a[3], a[4], a[5], 0];
        // As `Vm::fork`: no other thread is inside the heap the child gets a copy of.
        let heap = libvm::heap::hold_for_fork();
        let reply = self.call(w, lend);
        drop(heap);
        if a != [0; 6] {
            return self.expect(reply, Err(VmError::BadRequest), &w, lend);
        }
        self.forked(reply);
    }

    /// After a real `FORK`: the child runs chaos and exits; the parent records it.
    fn forked(&mut self, reply: Reply) {
        match reply {
            Reply::Memd(Ok(0)) => self.become_chaos(),
            Reply::Memd(Ok(pid)) => {
                self.children += 1;
                self.pending.push(Child::Chaos(pid));
            }
            Reply::Memd(Err(e)) => check!(
                self.chaos || matches!(e, VmError::ProcessLimit | VmError::OutOfMemory),
                "fork: {:?}",
                e
            ),
            Reply::Kernel(_) => {}
        }
    }

    fn spawn(&mut self, w0: u64, lend: Lend) {
        let mut name = [0u8; 48];
        let (text, want): (&[u8], Option<VmError>) = match self.rng.below(10) {
            0 => (b"exit7", None),
            1 => (b"memd", Some(VmError::NoSuchProcess)),
            2 => (b"no-such-module", Some(VmError::NoSuchProcess)),
            3 => (b"", Some(VmError::BadRequest)),
            4 => (&[0xFF, 0xFE, b'x'], Some(VmError::NoSuchProcess)),
            5 => (
                b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                Some(VmError::NoSuchProcess),
            ),
            _ => (&[], None),
        };
        let want = if text.is_empty() && want.is_none() {
            // Random bytes: a name with no NUL, or something after its NUL, is malformed.
            for b in name.iter_mut() {
                *b = self.rng.below(256) as u8;
            }
            if self.rng.one_in(2) {
                let at = self.rng.below(48) as usize;
                name[at] = 0;
            }
            let n = name.iter().position(|&c| c == 0);
            match n {
                Some(n) if n > 0 && name[n..].iter().all(|&c| c == 0) => {
                    Some(VmError::NoSuchProcess)
                }
                _ => Some(VmError::BadRequest),
            }
        } else {
            name[..text.len()].copy_from_slice(text);
            if text == b"exit7" && self.rng.one_in(4) {
                // Something after the name's NUL.
                name[40] = 1;
                Some(VmError::BadRequest)
            } else {
                want
            }
        };
        let mut a = [0u64; 6];
        for (w, c) in a.iter_mut().zip(name.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            *w = u64::from_le_bytes(b);
        }
        let w = [w0, a[0], a[1], a[2], a[3], a[4], a[5], 0];
        let reply = self.call(w, lend);
        let want = match want {
            Some(VmError::BadRequest) => Err(VmError::BadRequest),
            _ if !lend.readable() => Err(VmError::BadBuffer),
            Some(e) => Err(e),
            None => {
                // exit7 starts, unless this process has all the children it may have.
                match reply {
                    Reply::Memd(Ok(pid)) => {
                        self.children += 1;
                        self.pending.push(Child::Exit7(pid));
                        return;
                    }
                    Reply::Memd(Err(e)) => {
                        check!(
                            self.chaos || matches!(e, VmError::ProcessLimit | VmError::OutOfMemory),
                            "spawn exit7: {:?}",
                            e
                        );
                        return;
                    }
                    Reply::Kernel(_) => return,
                }
            }
        };
        self.expect(reply, want, &w, lend);
        if let Reply::Memd(Ok(pid)) = reply {
            // Only in chaos (where nothing is expected) can a spawn be unexpected.
            self.pending.push(Child::Exit7(pid));
        }
    }

    fn wait_request(&mut self, w0: u64, lend: Lend, garbage: bool) {
        let which = self.rng.below(8);
        let pending = self.pending.len();
        let (pid, child) = if which < 4 && pending > 0 {
            let i = self.rng.below(pending as u64) as usize;
            (self.pending[i].pid(), Some(i))
        } else if which == 4 && !self.reaped.is_empty() {
            (self.rng.pick(&self.reaped), None)
        } else {
            let any = self.rng.next();
            let p = self.rng.pick(&[0, self.me, self.parent, u64::MAX, any]);
            (p, self.pending.iter().position(|c| c.pid() == p))
        };
        let mut a = [pid, 0, 0, 0, 0, 0];
        // Argument 1 holds WAIT's flags: a word with an unknown flag there is refused as
        // flags; a word in an argument WAIT does not use, as a bad request.
        let flags = garbage && self.rng.one_in(3);
        if flags {
            a[1] = (1 + self.rng.below(u64::MAX - 1)) & !proto::WAIT_NOHANG | 2;
        } else if garbage {
            a[2 + self.rng.below(4) as usize] = 1 + self.rng.below(u64::MAX - 1);
        }
        let w = [w0, a[0], a[1], a[2], a[3], a[4], a[5], 0];
        let reply = self.call(w, lend);
        if flags {
            return self.expect(reply, Err(VmError::InvalidFlags), &w, lend);
        }
        if garbage {
            return self.expect(reply, Err(VmError::BadRequest), &w, lend);
        }
        let Some(i) = child else {
            return self.expect(reply, Err(VmError::NoSuchProcess), &w, lend);
        };
        let Reply::Memd(v) = reply else {
            return;
        };
        if lend.len >= 8 && !lend.writable() {
            // The status stays for the next WAIT.
            return self.expect(reply, Err(VmError::BadBuffer), &w, lend);
        }
        check!(self.chaos || v.is_ok(), "wait for child {}: {:?}", pid, v);
        if let Ok(status) = v {
            let c = self.pending.swap_remove(i);
            self.reaped(c, status);
        }
    }

    /// A child was waited for with `status`.
    fn reaped(&mut self, c: Child, status: u64) {
        match c {
            Child::Exit7(_) => check!(self.chaos || status == 7, "exit7 ended with {:#x}", status),
            Child::Chaos(_) => {
                if let Some(n) = ws::code(status) {
                    self.child_requests += u64::from(n);
                }
            }
        }
        if self.reaped.len() < 64 {
            self.reaped.push(c.pid());
        }
    }

    /// Waits for child `pid` with a good buffer: its status and fault address.
    fn wait_for(&mut self, pid: u64) -> (u64, u64) {
        store(self.good, 0);
        let lend = Lend {
            buf: Buf::Good,
            ptr: self.good,
            len: 8,
        };
        let r = self.request(proto::WAIT, [pid, 0, 0, 0, 0, 0], lend);
        let status = self.memd(r, "wait");
        check!(status.is_ok(), "wait for {}: {:?}", pid, status);
        (status.unwrap_or(0), load(self.good))
    }

    /// Forks (a well-formed `FORK`): `Some(0)` in the child, `Some(pid)` in the parent, `None`
    /// when refused.
    fn fork(&mut self) -> Option<u64> {
        match self.request(proto::FORK, [0; 6], Lend::NONE) {
            Reply::Memd(Ok(pid)) => Some(pid),
            Reply::Memd(Err(e)) => {
                check!(
                    matches!(e, VmError::ProcessLimit | VmError::OutOfMemory),
                    "fork: {:?}",
                    e
                );
                None
            }
            Reply::Kernel(e) => {
                println!("FAIL memdfuzz: the kernel refused a fork ({})", e);
                exit(1)
            }
        }
    }

    // ---- Chaos children ----

    /// This process is a new chaos child: random requests anywhere, then exit with their
    /// number.
    fn become_chaos(&mut self) -> ! {
        self.chaos = true;
        self.depth += 1;
        self.count = if self.depth == 1 {
            CHAOS_BUDGET
        } else {
            CHAOS_BUDGET / 4
        };
        self.requests = 0;
        self.pending.clear();
        self.reaped.clear();
        self.me = vm().process_stats(0).map(|s| s.pid).unwrap_or(0);
        if self.depth == 1 {
            // The arena's shared pages are the worker's too: a store of this child there, or a
            // reply memd writes into a buffer this child moved there (`MREMAP`), would change
            // what the worker's model holds. Without the arena it shares nothing with the
            // worker.
            let r = self.request(
                proto::MUNMAP,
                [ARENA, ARENA_PAGES as u64 * PAGE, 0, 0, 0, 0],
                Lend::NONE,
            );
            if r != Reply::Memd(Ok(0)) {
                println!("FAIL memdfuzz: a chaos child kept the arena: {:?}", r);
                exit(1)
            }
        }
        // A different stream from the parent's.
        self.rng.0 ^= self.me.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        let threads = if self.depth == 1 {
            self.chaos_threads()
        } else {
            Vec::new()
        };
        self.chaos_loop();
        let mut total = self.requests;
        for t in threads {
            match t.join() {
                Ok(Some(n)) => total += n,
                r => {
                    println!("FAIL memdfuzz: a chaos thread's join: {:?}", r.map(drop));
                    exit(1)
                }
            }
        }
        exit(total)
    }

    /// This chaos child's requests, and stores into its good buffer.
    fn chaos_loop(&mut self) {
        while self.requests < self.count {
            if self.rng.one_in(4) {
                // Its own good buffer (it may have unmapped it, and then dies).
                let v = self.rng.next();
                store(self.good + 8 * self.rng.below(2 * PAGE / 8), v);
            }
            self.hostile();
        }
    }

    /// Starts [`CHAOS_THREADS`] threads running chaos of their own (own stream, own buffers);
    /// each begins once every thread's stack is in [`STACKS`].
    fn chaos_threads(&mut self) -> Vec<thread::JoinHandle<u64>> {
        let mut handles = Vec::new();
        for (i, slot) in STACKS.iter().enumerate() {
            let mut twin = Fuzz::new(self.rng.next(), self.count, self.parent);
            twin.chaos = true;
            twin.depth = self.depth;
            twin.rng.0 ^= i as u64;
            let spawned = thread::spawn(move || {
                while GO.load(Ordering::Acquire) == 0 {
                    thread::futex_wait(&GO, 0);
                }
                twin.chaos_loop();
                twin.requests
            });
            match spawned {
                Ok(h) => {
                    let (at, n) = h.stack();
                    slot[0].store(at as u64, Ordering::Release);
                    slot[1].store(n as u64, Ordering::Release);
                    handles.push(h);
                }
                // Chaos may have used up what a thread needs: fewer threads, then.
                Err(_) => break,
            }
        }
        GO.store(1, Ordering::Release);
        thread::futex_wake(&GO, u32::MAX);
        handles
    }

    // ---- The arena ----

    fn page(i: usize) -> u64 {
        ARENA + i as u64 * PAGE
    }

    /// A structured request on the arena, checked against the model and applied to it.
    fn arena_op(&mut self) {
        let i = self.rng.below(ARENA_PAGES as u64) as usize;
        let n = 1 + self.rng.below((ARENA_PAGES - i).min(16) as u64) as usize;
        let addr = Self::page(i);
        // A length that is not a multiple of the page size covers the last page too.
        let len = n as u64 * PAGE - self.rng.pick(&[0, 0, 1, PAGE - 1]);
        let pages = i..i + n;
        match self.rng.below(12) {
            0..=3 => {
                let prot = P::from_bits_truncate(self.rng.below(8) as u8);
                let shared = self.rng.one_in(4);
                let kind = self.rng.below(8);
                let map = if shared { MAP_SHARED } else { MAP_PRIVATE }
                    | match kind {
                        0 | 1 => MAP_FIXED_NOREPLACE,
                        2 => 0,
                        _ => MAP_FIXED,
                    };
                let extra = if self.rng.one_in(6) {
                    ANON | POPULATE
                } else {
                    ANON
                };
                let bits = libvm_prot(prot) | map;
                let r = self.request(proto::MMAP, [addr, len, bits, extra, 0, 0], Lend::NONE);
                let got = self.memd(r, "arena mmap");
                let free = self.arena[pages.clone()].iter().all(|p| !p.mapped);
                let placed = match kind {
                    0 | 1 if !free => {
                        check!(
                            got == Err(VmError::AlreadyMapped),
                            "noreplace over mapped: {:?}",
                            got
                        );
                        return;
                    }
                    2 if !free => {
                        // A hint over a mapping: placed elsewhere, outside the arena.
                        let r = got.unwrap_or(0);
                        check!(
                            got.is_ok()
                                && (r + n as u64 * PAGE <= ARENA || r >= Self::page(ARENA_PAGES)),
                            "a hint over the arena's mapping: {:?}",
                            got
                        );
                        let u = self.request(proto::MUNMAP, [r, len, 0, 0, 0, 0], Lend::NONE);
                        check!(u == Reply::Memd(Ok(0)), "munmap: {:?}", u);
                        return;
                    }
                    _ => got,
                };
                check!(
                    placed == Ok(addr),
                    "arena mmap at {:#x}: {:?}",
                    addr,
                    placed
                );
                for p in &mut self.arena[pages] {
                    *p = Page {
                        mapped: true,
                        prot,
                        shared,
                        value: 0,
                    };
                }
            }
            4 | 5 => {
                let r = self.request(proto::MUNMAP, [addr, len, 0, 0, 0, 0], Lend::NONE);
                check!(r == Reply::Memd(Ok(0)), "arena munmap: {:?}", r);
                self.arena[pages].fill(UNMAPPED);
            }
            6..=8 => {
                let prot = P::from_bits_truncate(self.rng.below(8) as u8);
                let r = self.request(
                    proto::MPROTECT,
                    [addr, len, libvm_prot(prot), 0, 0, 0],
                    Lend::NONE,
                );
                let covered = self.arena[pages.clone()].iter().all(|p| p.mapped);
                let want = if covered {
                    Ok(0)
                } else {
                    Err(VmError::RegionNotFound)
                };
                check!(
                    r == Reply::Memd(want),
                    "arena mprotect: {:?}, must be {:?}",
                    r,
                    want
                );
                if covered {
                    for p in &mut self.arena[pages] {
                        p.prot = prot;
                    }
                }
            }
            9 | 10 => {
                let advice = self.rng.pick(&[
                    proto::MADV_DONTNEED,
                    proto::MADV_DONTNEED,
                    proto::MADV_WILLNEED,
                    proto::MADV_NORMAL,
                ]);
                let r = self.request(proto::MADVISE, [addr, len, advice, 0, 0, 0], Lend::NONE);
                let covered = self.arena[pages.clone()].iter().all(|p| p.mapped);
                let want = if covered {
                    Ok(0)
                } else {
                    Err(VmError::RegionNotFound)
                };
                check!(
                    r == Reply::Memd(want),
                    "arena madvise: {:?}, must be {:?}",
                    r,
                    want
                );
                if covered && advice == proto::MADV_DONTNEED {
                    for p in &mut self.arena[pages] {
                        if !p.shared {
                            p.value = 0;
                        }
                    }
                }
            }
            _ => self.arena_malformed(addr, len),
        }
    }

    /// A malformed request on the arena: refused with the exact error, nothing changed.
    fn arena_malformed(&mut self, addr: u64, len: u64) {
        let rw = libvm_prot(P::READ_WRITE);
        let (opcode, a, want) = match self.rng.below(9) {
            0 => (
                proto::MUNMAP,
                [addr + 1 + self.rng.below(PAGE - 1), len, 0, 0],
                VmError::NotAligned,
            ),
            1 => (proto::MUNMAP, [addr, 0, 0, 0], VmError::InvalidSize),
            2 => (proto::MPROTECT, [addr + 8, len, rw, 0], VmError::NotAligned),
            3 => (
                proto::MPROTECT,
                [addr, len, rw | 0x8_0000, 0],
                VmError::InvalidFlags,
            ),
            4 => (
                // 5, 6 and 7 are no advice (1 and 2, random and sequential, are).
                proto::MADVISE,
                [addr, len, 5 + self.rng.below(3), 0],
                VmError::InvalidFlags,
            ),
            5 => (
                proto::MADVISE,
                [addr + PAGE / 2, len, proto::MADV_DONTNEED, 0],
                VmError::NotAligned,
            ),
            6 => (
                proto::MMAP,
                [addr + 16, len, rw | MAP_PRIVATE | MAP_FIXED, ANON],
                VmError::NotAligned,
            ),
            7 => (
                proto::MMAP,
                [addr, len, rw | MAP_PRIVATE | MAP_SHARED | MAP_FIXED, ANON],
                VmError::InvalidFlags,
            ),
            _ => (
                proto::MMAP,
                [addr, len, rw | MAP_PRIVATE | MAP_FIXED, 0],
                VmError::InvalidFlags,
            ),
        };
        let args = [a[0], a[1], a[2], a[3], 0, 0];
        let r = self.request(opcode, args, Lend::NONE);
        check!(
            r == Reply::Memd(Err(want)),
            "malformed {:#x?}: {:?}, must be {:?}",
            args,
            r,
            want
        );
        self.verify_arena();
    }

    /// Loads (and stores to) a random page of the arena as the model allows.
    fn touch_arena(&mut self) {
        let i = self.rng.below(ARENA_PAGES as u64) as usize;
        let p = self.arena[i];
        if !p.mapped || p.prot == P::NONE {
            return;
        }
        let a = Self::page(i);
        check!(
            load(a) == p.value && load(a + PAGE - 8) == p.value,
            "arena page {} reads {:#x}/{:#x}, must be {:#x}",
            i,
            load(a),
            load(a + PAGE - 8),
            p.value
        );
        if p.prot.contains(P::WRITE) && self.rng.one_in(2) {
            let v = self.rng.next();
            store(a, v);
            store(a + PAGE - 8, v);
            self.arena[i].value = v;
        }
    }

    /// Every readable page of the arena holds what the model says.
    fn verify_arena(&self) {
        for (i, p) in self.arena.iter().enumerate() {
            if p.mapped && p.prot != P::NONE {
                let a = Self::page(i);
                check!(
                    load(a) == p.value && load(a + PAGE - 8) == p.value,
                    "arena page {} reads {:#x}/{:#x}, must be {:#x}",
                    i,
                    load(a),
                    load(a + PAGE - 8),
                    p.value
                );
            }
        }
    }

    /// memd's region listing of the arena matches the model, page by page.
    fn verify_regions(&mut self) {
        let regions = vm().regions(0);
        self.requests += 1;
        check!(regions.is_ok(), "regions: {:?}", regions);
        let regions = regions.unwrap_or_default();
        for (i, p) in self.arena.iter().enumerate() {
            let a = Self::page(i);
            let r = regions.iter().find(|r| r.start <= a && a < r.end);
            match r {
                None => check!(!p.mapped, "arena page {} is not listed", i),
                Some(r) => check!(
                    p.mapped && r.prot == u64::from(p.prot.bits()) && (r.shared != 0) == p.shared,
                    "arena page {} is listed as {:?}, must be {:?}",
                    i,
                    r,
                    p
                ),
            }
        }
    }

    /// A forked child checks the arena (its copy-on-write view), then writes every writable
    /// page; the parent keeps its private pages and sees the shared ones written.
    fn verify_child(&mut self) {
        let stamp = self.rng.next();
        match self.fork() {
            Some(0) => {
                self.verify_arena();
                for (i, p) in self.arena.iter().enumerate() {
                    if p.mapped && p.prot.contains(P::WRITE) {
                        store(Self::page(i), stamp ^ i as u64);
                        store(Self::page(i) + PAGE - 8, stamp ^ i as u64);
                    }
                }
                exit(0)
            }
            Some(pid) => {
                let (status, _) = self.wait_for(pid);
                check!(status == 0, "the checking child ended with {:#x}", status);
                for (i, p) in self.arena.iter_mut().enumerate() {
                    if p.mapped && p.shared && p.prot.contains(P::WRITE) {
                        p.value = stamp ^ i as u64;
                    }
                }
                self.verify_arena();
            }
            None => {}
        }
    }

    /// A forked child accesses an arena page in a way the model forbids, and must be killed
    /// for it with the right reason, access and address.
    fn kill_check(&mut self) {
        let i = self.rng.below(ARENA_PAGES as u64) as usize;
        let p = self.arena[i];
        let mut options: [Option<(u64, u64)>; 3] = [None; 3];
        if !p.mapped {
            options = [
                Some((ws::MAPERR, ws::READ)),
                Some((ws::MAPERR, ws::WRITE)),
                Some((ws::MAPERR, ws::EXEC)),
            ];
        } else {
            if p.prot == P::NONE {
                options[0] = Some((ws::ACCERR, ws::READ));
            }
            if !p.prot.contains(P::WRITE) {
                options[1] = Some((ws::ACCERR, ws::WRITE));
            }
            if !p.prot.contains(P::EXECUTE) {
                options[2] = Some((ws::ACCERR, ws::EXEC));
            }
        }
        let Some((reason, access)) = options[self.rng.below(3) as usize] else {
            return;
        };
        let addr = if access == ws::EXEC {
            Self::page(i)
        } else {
            Self::page(i) + 8 * self.rng.below(PAGE / 8)
        };
        match self.fork() {
            Some(0) => {
                match access {
                    ws::READ => {
                        let _ = load(addr);
                    }
                    ws::WRITE => store(addr, 1),
                    _ => {
                        // SAFETY: the page is not executable (or not mapped): the fetch
                        // faults and memd kills this process, which is the point.
                        let f: extern "C" fn() = unsafe {
                            core::mem::transmute(core::ptr::with_exposed_provenance::<u8>(
                                addr as usize,
                            ))
                        };
                        f();
                    }
                }
                exit(3)
            }
            Some(pid) => {
                let got = self.wait_for(pid);
                check!(
                    got == (ws::fault(reason, access), addr),
                    "arena page {} ({:?}): the child ended with {:#x} at {:#x}, must be killed with {:#x} at {:#x}",
                    i,
                    p,
                    got.0,
                    got.1,
                    ws::fault(reason, access),
                    addr
                );
                self.kills += 1;
            }
            None => {}
        }
    }

    // ---- The run ----

    fn run(&mut self) {
        let t0 = clock();
        let mut next_report = 1_000_000;
        while self.requests < self.count {
            match self.rng.below(100) {
                0..=34 => self.arena_op(),
                35..=79 => self.hostile(),
                80..=91 => self.touch_arena(),
                92 | 93 => self.verify_regions(),
                94 | 95 => self.verify_child(),
                96 | 97 => self.kill_check(),
                _ if self.pending.len() < MAX_PENDING => match self.fork() {
                    Some(0) => self.become_chaos(),
                    Some(pid) => {
                        self.children += 1;
                        self.pending.push(Child::Chaos(pid));
                    }
                    None => {}
                },
                _ => {
                    let c = self.pending.remove(0);
                    let (status, _) = self.wait_for(c.pid());
                    self.reaped(c, status);
                }
            }
            if self.rng.one_in(50) {
                self.verify_arena();
            }
            if self.requests >= next_report {
                println!(
                    "memdfuzz: {} requests, {} s",
                    self.requests,
                    (clock() - t0) / 1_000_000_000
                );
                next_report += 1_000_000;
            }
        }
    }
}

/// The wire's protection bits of `prot`.
fn libvm_prot(prot: P) -> u64 {
    let mut bits = 0;
    if prot.contains(P::READ) {
        bits |= PROT_READ;
    }
    if prot.contains(P::WRITE) {
        bits |= PROT_WRITE;
    }
    if prot.contains(P::EXECUTE) {
        bits |= PROT_EXEC;
    }
    bits
}

impl Fuzz {
    /// Waits for every child, unmaps the arena (children must find it gone) and reports.
    fn finish(&mut self, seed: &str, t0: u64) {
        while let Some(c) = self.pending.pop() {
            let (status, _) = self.wait_for(c.pid());
            self.reaped(c, status);
        }
        let len = ARENA_PAGES as u64 * PAGE;
        let r = self.request(proto::MUNMAP, [ARENA, len, 0, 0, 0, 0], Lend::NONE);
        check!(r == Reply::Memd(Ok(0)), "munmap of the arena: {:?}", r);
        self.arena.fill(UNMAPPED);
        for _ in 0..8 {
            self.kill_check();
        }
        println!(
            "memdfuzz: seed {}: {} requests, and {} by {} children that exited; {} kills checked; {} ms",
            seed,
            self.requests,
            self.child_requests,
            self.children,
            self.kills,
            (clock() - t0) / 1_000_000
        );
    }
}

/// The pids of the live processes (up to 64), without allocating.
fn live_pids() -> [u64; 64] {
    let mut bytes = [0u8; 64 * ProcessInfo::WORDS * 8];
    let request = proto::Request::Processes { from: 0 }.encode();
    let n = proto::decode_reply(&libvm::Transport::call(&TRANSPORT, &request, &mut bytes));
    check!(n.is_ok(), "processes: {:?}", n);
    let mut pids = [0u64; 64];
    for (pid, entry) in pids
        .iter_mut()
        .zip(bytes.chunks_exact(ProcessInfo::WORDS * 8))
    {
        *pid = ProcessInfo::read_from(entry).map_or(0, |p| p.pid);
    }
    pids
}

/// FNV-1a of the seed's text.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// The seed's text and the request count: `SEED [COUNT]` from the argument string, else
/// `memdfuzz=SEED[:COUNT]` from the kernel command line, else seed 1.
fn settings() -> (alloc::string::String, u64) {
    let args = args();
    let mut buf = [0u8; 256];
    let (seed, count) = match args.first() {
        Some(seed) => (seed.as_str(), args.get(1).map(|c| c.as_str())),
        None => {
            let word = cmdline(&mut buf)
                .split_ascii_whitespace()
                .find_map(|w| w.strip_prefix("memdfuzz="))
                .unwrap_or("1");
            match word.split_once(':') {
                Some((s, c)) => (s, Some(c)),
                None => (word, None),
            }
        }
    };
    let count = count.map_or(Some(DEFAULT_COUNT), |c| {
        c.bytes().filter(|&b| b != b'_').try_fold(0u64, |n, b| {
            n.checked_mul(10)?
                .checked_add(u64::from(b.checked_sub(b'0').filter(|&d| d < 10)?))
        })
    });
    check!(count.is_some(), "not a request count: {:?}", args);
    (seed.into(), count.unwrap_or(DEFAULT_COUNT))
}

/// The most workers at once.
const MAX_WORKERS: usize = 8;

/// The workers to run at once: `memdfuzz.workers=N` on the kernel command line (1 to
/// [`MAX_WORKERS`]), else 1.
fn workers() -> usize {
    let mut buf = [0u8; 256];
    cmdline(&mut buf)
        .split_ascii_whitespace()
        .find_map(|w| w.strip_prefix("memdfuzz.workers="))
        .and_then(|n| n.parse().ok())
        .filter(|n| (1..=MAX_WORKERS).contains(n))
        .unwrap_or(1)
}

fn main(_: Start) -> u64 {
    let (seed, count) = settings();
    // Nothing is allocated from here on, so only what memd holds for others can change
    // the figures.
    let before = live_pids();
    let baseline = Baseline::now();
    let me = vm().process_stats(0).map(|s| s.pid).unwrap_or(0);
    let workers = workers();
    println!(
        "memdfuzz: seed {}, {} requests, {} worker{}",
        seed,
        count,
        workers,
        if workers == 1 { "" } else { "s" }
    );
    let t0 = clock();
    let mut forked = [0u64; MAX_WORKERS];
    for (i, slot) in forked.iter_mut().enumerate().take(workers) {
        match vm().fork() {
            Ok(0) => {
                let mut fuzz = Fuzz::new(hash(&seed).wrapping_add(i as u64), count, me);
                fuzz.run();
                fuzz.finish(&seed, t0);
                exit(0)
            }
            Ok(worker) => *slot = worker,
            Err(e) => {
                println!("FAIL memdfuzz: fork of worker {}: {:?}", i, e);
                return 1;
            }
        }
    }
    for &worker in &forked[..workers] {
        let w = vm().wait(worker);
        check!(w == Ok((0, 0)), "worker {} ended with {:?}", worker, w);
    }
    // What chaos children left behind (orphans) finishes its requests and exits.
    let deadline = clock() + 60_000_000_000;
    loop {
        let left = live_pids();
        if left == before {
            break;
        }
        check!(
            clock() < deadline,
            "processes left: {:?} (before: {:?})",
            left,
            before
        );
        yield_now();
    }
    // A process memd's workers are still tearing down (its exit seen by one worker while
    // another answers here) is gone from the listing a moment before its frames are back.
    // This coordinator's own memory may have grown (its listings of processes): that much
    // more is expected, nothing else.
    let mut after = global_stats();
    let mut expected = baseline.expected();
    let deadline = clock() + 10_000_000_000;
    while !settled(&expected, &after) && clock() < deadline {
        yield_now();
        after = global_stats();
        expected = baseline.expected();
    }
    if !settled(&expected, &after) {
        println!(
            "memdfuzz: at the start {:?}, {:?}; now {:?}, {:?}",
            baseline.global,
            baseline.own(),
            after,
            process_stats(0)
        );
    }
    check!(
        settled(&expected, &after),
        "frames {} -> {}, page tables {} -> {}, processes {} -> {} (expected: the start's and this \
         coordinator's growth)",
        expected.frames_used,
        after.frames_used,
        expected.page_table_frames,
        after.page_table_frames,
        expected.processes,
        after.processes
    );
    // memd still serves.
    let pid = vm().spawn("exit7");
    check!(
        pid.and_then(|p| vm().wait(p)) == Ok((7, 0)),
        "exit7 after the fuzzing: {:?}",
        pid
    );
    println!(
        "PASS memdfuzz (seed {}, {} requests, {} ms)",
        seed,
        count,
        (clock() - t0) / 1_000_000
    );
    0
}
