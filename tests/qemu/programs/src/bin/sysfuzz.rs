//! sysfuzz: a system-call fuzzer. With a deterministic seed it makes many system calls (100,000
//! by default) with random numbers — every number of the kernel's ABI, redox's routed `fmap`,
//! `funmap` and `mprotect`, numbers no call has, and random 64-bit ones — and hostile arguments
//! in all ten argument registers: kernel addresses, non-canonical and unaligned pointers,
//! pointers at the top of the user half, its own read-only, `PROT_NONE` and unmapped pages,
//! huge and wrapping lengths, random endpoints, tokens, space ids and flags, and random
//! RFLAGS (NT, AC, DF, ID and the arithmetic flags) set with `popfq` for each call. Requests to
//! the pager's endpoint (memd, or the test pager) are well-formed with hostile operands half of
//! the time, raw random words otherwise.
//!
//! After every call it checks what the kernel guarantees: rbx, rbp and rsp kept; RFLAGS with IF
//! set and NT and IOPL clear, and the AC, DF and ID it set still set; rax a value or -errno;
//! EPERM for every pager-only call (this program is never the pager), ENOSYS for every
//! unknown number. With memd as the pager it asks memd for its statistics every 4,096 calls
//! (memd still serves), and at the end it unmaps everything the fuzzing mapped, restores its
//! break, maps, fills and unmaps four pages, and checks that memd's frames in use are back to
//! the figure measured before the first call.
//!
//! Calls it never makes, because they would end or block this single-threaded program for
//! good rather than test anything: `exit`; `fault_return` (it replaces every register of the
//! caller with a frame from its memory; the `faulthandler` program tests it); `ipc_call` to an endpoint that might be live with
//! nobody receiving (its own, or any number below 65,536, the largest endpoint table, but the
//! pager's 0: calls go to 0 or to numbers no endpoint can have); `ipc_receive` on its own endpoints (no sender will come);
//! memd's `FORK` (the child would fuzz too) and `WAIT` opcodes. And it keeps the fuzzing off
//! its own memory (nothing else is skipped): a memory request (memd's `MMAP`, `MUNMAP`,
//! `MPROTECT`, `MADVISE`, the routed calls) that would touch its image, heap, stack or
//! fixtures is moved to the playground above 4 GiB; a buffer the kernel or a server may write
//! (`cmdline`, `debug_read`, lent buffers) that starts in its writable memory is moved into
//! its scratch buffer; a `debug_write` the kernel would not refuse writes 0 bytes (no garbage
//! on the console).
//!
//! With memd, `sysfuzz.threads=T` (up to 8) makes T threads fuzz at once, each its own stream
//! of `N` calls (seed S + its index), on as many processors as there are: the kernel's calls
//! meet each other's. Their stacks are kept off like the rest of its memory; then no thread
//! joins another by a random id (the first thread never takes a sibling's), none receives on
//! an endpoint of its process (only on the pager's and numbers no endpoint has), and each puts
//! its TLS base back before it ends.
//!
//! Seed and count come from the kernel command line: `sysfuzz.seed=S sysfuzz.calls=N`. With
//! memd it requires afterwards, once everything it mapped is unmapped, memd's data frames
//! back to their figure before the fuzzing and the page-table frames back within the few spare
//! ones a process may keep (every mapping gone from the page tables, not only from memd's
//! books).
#![no_std]
#![no_main]

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel_shim::abi::{
    ANONYMOUS_FD, BOOTPACK_BASE, PAGER_LOADS_FLAG, REDOX_MAP_SIZE, SYS_FMAP, SYS_FUNMAP,
    SYS_MPROTECT, WINDOW_BASE,
};
use libvm::proto;
use libvm::sys::thread;
use libvm::{MmapFlags, ProtectionFlags};
use user_rt::*;

entry!(main);

const PAGE: u64 = 4096;
/// The end of the user half.
const USER_TOP: u64 = 0x0000_8000_0000_0000;
/// The largest `debug_write` (the kernel's limit).
const MAX_DEBUG_WRITE: u64 = 1 << 20;

/// With memd: the fixtures, far from everything else: the scratch buffer (read/write), a
/// gap, a read-only page and a `PROT_NONE` page. Memory requests never aim at
/// `[FIX, FIX_END)`, but memd may place a new mapping above the fixtures.
const FIX: u64 = 0x5000_0000_0000;
const SCRATCH_PAGES: u64 = 16;
const FIX_RO: u64 = FIX + (SCRATCH_PAGES + 1) * PAGE;
const FIX_NONE: u64 = FIX_RO + PAGE;
const FIX_END: u64 = FIX + (1 << 20);
/// This program's own memory, which the fuzzing never changes: image and heap, the fixtures,
/// and its stack (where the kernel or memd's layout randomization put it: found at start,
/// [`STACK`]).
const HOME: [(u64, u64); 2] = [(0, 0x4000_0000), (FIX, FIX_END)];
/// The stack region with the guard page below it, `[start, end)`: set once at start.
static STACK: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// The most threads that fuzz at once.
const MAX_THREADS: usize = 8;
/// The stacks of the other threads, `[start, end)` (their guard page included): set before
/// they start.
static THREAD_STACKS: [[AtomicU64; 2]; MAX_THREADS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_THREADS];
/// The other threads' ids (the kernel's), for the first thread's joins to avoid.
static SIBLINGS: [AtomicU64; MAX_THREADS] = [const { AtomicU64::new(u64::MAX) }; MAX_THREADS];
/// Whether other threads fuzz too.
static THREADED: AtomicBool = AtomicBool::new(false);
/// With other threads: the heap region `[start, end)`, where their control blocks are (the
/// heap is not used while they fuzz, nor moved: no `BRK` or `SBRK` then).
static HEAP: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Every range of this program's own memory: image and heap, fixtures, the first thread's
/// stack, and with other threads the heap and their stacks.
fn home() -> [(u64, u64); 4 + MAX_THREADS] {
    let range = |r: &[AtomicU64; 2]| (r[0].load(Ordering::Relaxed), r[1].load(Ordering::Relaxed));
    let mut all = [(0, 0); 4 + MAX_THREADS];
    all[..4].copy_from_slice(&[HOME[0], HOME[1], range(&STACK), range(&HEAP)]);
    for (slot, stack) in all[4..].iter_mut().zip(&THREAD_STACKS) {
        *slot = range(stack);
    }
    all
}
/// Where memory requests aimed at its own memory are moved.
const PLAYGROUND: u64 = 0x1_0000_0000;

/// Without memd (the test pager): the scratch buffer is in the bss.
#[repr(C, align(4096))]
struct Scratch([u8; (SCRATCH_PAGES * PAGE) as usize]);
static mut SCRATCH: Scratch = Scratch([0; (SCRATCH_PAGES * PAGE) as usize]);
/// A read-only page of the image.
#[repr(C, align(4096))]
struct RoPage([u8; PAGE as usize]);
static RO_PAGE: RoPage = RoPage([0x5A; PAGE as usize]);

const NT: u64 = 1 << 14;
const AC: u64 = 1 << 18;
const DF: u64 = 1 << 10;
const ID: u64 = 1 << 21;
const IF: u64 = 1 << 9;
const IOPL: u64 = 3 << 12;
/// The RFLAGS bits set at random for a call: NT, AC, DF, ID and CF PF AF ZF SF OF.
const RANDOM_FLAGS: u64 = NT | AC | DF | ID | 0x8D5;
/// What `and` keeps of RFLAGS after the call (the compiled code expects DF clear).
const KEEP_FLAGS: i32 = !((NT | AC | DF | ID) as i32);
/// The value rbx and rbp hold across each call.
const CANARY: u64 = 0x5AFE_CA11_DEAD_BEEF;

/// Every number of the kernel's ABI but `exit`, `thread_exit`, `thread_create` (a thread at a
/// random address would fault, and a fault kills the whole process) and `fault_return`, and
/// the routed redox calls.
const KNOWN: [u64; 32] = [
    nr::DEBUG_WRITE,
    nr::DEBUG_READ,
    nr::CLOCK,
    nr::YIELD,
    nr::THREAD_JOIN,
    nr::FUTEX_WAIT,
    nr::FUTEX_WAKE,
    nr::SET_TLS,
    nr::CPU_INFO,
    nr::IPC_CALL,
    nr::IPC_RECEIVE,
    nr::IPC_REPLY,
    nr::IPC_READ,
    nr::IPC_WRITE,
    nr::ENDPOINT_CREATE,
    nr::IPC_REPLY_RECEIVE,
    nr::SPACE_CREATE,
    nr::SPACE_DESTROY,
    nr::SPACE_APPLY,
    nr::THREAD_START,
    nr::THREAD_CLONE,
    nr::PAGER_INFO,
    nr::BOOTPACK_INFO,
    nr::PAGE_TABLE_FRAMES,
    nr::CMDLINE,
    nr::SPACE_APPLY1,
    nr::SPACE_RECLAIM,
    nr::FAULT_DELIVER,
    nr::DEVICE_INFO,
    SYS_FMAP,
    SYS_FUNMAP,
    SYS_MPROTECT,
];

fn pager_only(n: u64) -> bool {
    (nr::SPACE_CREATE..=nr::PAGE_TABLE_FRAMES).contains(&n)
        || n == nr::SPACE_APPLY1
        || n == nr::SPACE_RECLAIM
        || n == nr::FAULT_DELIVER
        || n == nr::DEVICE_INFO
}

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

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick(&mut self, from: &[u64]) -> u64 {
        from[self.below(from.len() as u64) as usize]
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// Makes system call `n` with the argument registers `a` (rdi, rsi, rdx, r10, r8, r9, r12,
/// r13, r14, r15) and the RFLAGS bits `flags` set; returns rax, RFLAGS right after the call,
/// and zero if rbx and rbp came back unchanged.
fn raw_call(n: u64, a: &[u64; 10], flags: u64) -> (i64, u64, u64) {
    let (ret, after, changed): (i64, u64, u64);
    // SAFETY: rbx and rbp are saved and restored around the call; RFLAGS is changed only
    // inside the block and DF, AC, NT and ID are cleared again before it ends. The kernel
    // writes only through pointers this program lets it write (see `dest`): the scratch
    // buffer, fuzzing mappings, or memory it must refuse. Every argument register is declared
    // clobbered (IPC calls return words in them), as are rcx and r11.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "movabs rbx, {canary}",
            "mov rbp, rbx",
            "pushfq",
            "or qword ptr [rsp], rcx",
            "popfq",
            "syscall",
            "pushfq",
            "pop rcx",
            "pushfq",
            "and qword ptr [rsp], {keep}",
            "popfq",
            "movabs r11, {canary}",
            "xor rbx, r11",
            "xor rbp, r11",
            "or rbx, rbp",
            "mov r11, rbx",
            "pop rbp",
            "pop rbx",
            canary = const CANARY,
            keep = const KEEP_FLAGS,
            inlateout("rax") n as i64 => ret,
            inlateout("rcx") flags => after,
            lateout("r11") changed,
            inlateout("rdi") a[0] => _,
            inlateout("rsi") a[1] => _,
            inlateout("rdx") a[2] => _,
            inlateout("r10") a[3] => _,
            inlateout("r8") a[4] => _,
            inlateout("r9") a[5] => _,
            inlateout("r12") a[6] => _,
            inlateout("r13") a[7] => _,
            inlateout("r14") a[8] => _,
            inlateout("r15") a[9] => _,
        );
    }
    (ret, after, changed)
}

struct Fuzz {
    rng: Rng,
    memd: bool,
    badge: u64,
    /// The scratch buffer `[start, end)`.
    scratch: (u64, u64),
    /// Pages known read-only: a code page, the read-only data page, the read-only fixture.
    read_only: [u64; 3],
    /// Pages known never accessible: with memd the `PROT_NONE` fixture and the guard page
    /// under the stack; with the test pager a page under the image and the top of the user
    /// half.
    inaccessible: [u64; 2],
    /// A page of this program's stack.
    stack: u64,
    /// Whether this thread may call `thread_join` (only the first, when others fuzz too).
    joins: bool,
    /// Endpoints this program created.
    own_eps: [u64; 64],
    n_eps: usize,
    /// Results: successes, and failures by errno.
    ok: u64,
    errors: [u64; 134],
    memd_requests: u64,
    /// The most page-table frames seen (with memd).
    tables_peak: u64,
}

impl Fuzz {
    fn own(addr: u64) -> bool {
        home().iter().any(|&(s, e)| (s..e).contains(&addr))
    }

    /// Whether `ep` may be an endpoint another thread of this process made (with other
    /// threads, any number an endpoint can have but the pager's): a receive there would wait
    /// for good.
    fn sibling_ep(ep: u64) -> bool {
        THREADED.load(Ordering::Relaxed) && ep != 0 && ep < 1 << 16
    }

    /// A pointer: into its own memory of every kind, the kernel, non-canonical, the top of
    /// the user half, the pager's window, the playground, random.
    fn ptr(&mut self) -> u64 {
        let r = &mut self.rng;
        let any = r.below(PAGE);
        let in_page = [0, 1, 7, 8, PAGE - 8, PAGE - 1, any];
        let (s, e) = self.scratch;
        let in_scratch = [
            0,
            1,
            7,
            PAGE - 1,
            PAGE,
            e - s - 8,
            e - s - 1,
            r.below(e - s),
        ];
        match r.below(16) {
            0 => r.pick(&[0, 1, 8, 0xFFF, 0x1000, 0xFFFF]),
            1..=3 => s + r.pick(&in_scratch),
            4 => r.pick(&self.read_only) + r.pick(&in_page),
            5 => r.pick(&self.inaccessible) + r.pick(&in_page),
            6 => self.stack + r.pick(&in_page),
            7 => r
                .pick(&[
                    0xFFFF_8000_0000_0000,
                    0xFFFF_8000_0010_0000,
                    0xFFFF_FFFF_8010_8000,
                    0xFFFF_FFFF_FFFF_F000,
                    0xFFFF_9000_0000_0000,
                    u64::MAX - 7,
                    u64::MAX,
                ])
                .wrapping_add(r.pick(&[0, 0, 1, 8, 0x1000])),
            8 => r.pick(&[
                USER_TOP,
                USER_TOP + 8,
                0x8000_0000_0000_0000,
                0x1234_5678_9ABC_DEF0,
                0xFFFF_7FFF_FFFF_F000,
            ]),
            9 => USER_TOP - r.pick(&[1, 7, 8, 16, 255, PAGE - 1, PAGE, 2 * PAGE]),
            10 => r.pick(&[WINDOW_BASE, BOOTPACK_BASE]) + r.below(1 << 20) * PAGE,
            11 | 12 => PLAYGROUND + r.below(1 << 32) * PAGE + r.pick(&[0, 0, 1, 8]),
            13 => 0x4000_0000 + r.below(1 << 16) * PAGE,
            _ => r.next(),
        }
    }

    /// A length for a range at `ptr`.
    fn len(&mut self, ptr: u64) -> u64 {
        let r = &mut self.rng;
        match r.below(8) {
            0 => r.pick(&[0, 1, 7, 8, 32, 255, 256, 257]),
            1 => r.pick(&[PAGE - 1, PAGE, PAGE + 1, 16 * PAGE, 64 << 10]),
            2 => r.pick(&[
                MAX_DEBUG_WRITE,
                MAX_DEBUG_WRITE + 1,
                64 << 20,
                (64 << 20) + 1,
                1 << 40,
            ]),
            3 => r.pick(&[
                u64::MAX,
                u64::MAX - 7,
                0u64.wrapping_sub(ptr),
                0u64.wrapping_sub(ptr).wrapping_add(1),
                USER_TOP.wrapping_sub(ptr),
                USER_TOP.wrapping_sub(ptr).wrapping_add(1),
            ]),
            4 => r.next(),
            _ => r.below(3 * PAGE),
        }
    }

    /// An endpoint number: the pager's, its own, numbers below 64, beyond, random.
    fn ep(&mut self) -> u64 {
        let r = &mut self.rng;
        match r.below(6) {
            0 => 0,
            1 if self.n_eps > 0 => self.own_eps[r.below(self.n_eps as u64) as usize],
            2 => r.below(64),
            3 => r.pick(&[64, 0xFFFF, 1 << 16, 1 << 32, i64::MIN as u64, u64::MAX]),
            _ => r.next(),
        }
    }

    /// A token or thread or space id: random, shaped like the kernel's (generation and slot),
    /// with the fault and exit bits.
    fn token(&mut self) -> u64 {
        let r = &mut self.rng;
        let id = (r.below(4) << 16) | r.below(70);
        match r.below(5) {
            0 => id,
            1 => id | r.pick(&[TOKEN_FAULT, TOKEN_EXIT, TOKEN_FAULT | TOKEN_EXIT]),
            2 => r.pick(&[0, u64::MAX, self.badge, 0x10000, 1 << 32]),
            3 => id | (r.next() << 32),
            _ => r.next(),
        }
    }

    /// A word of any kind.
    fn word(&mut self) -> u64 {
        match self.rng.below(6) {
            0 => self.ptr(),
            1 => {
                let p = self.ptr();
                self.len(p)
            }
            2 => self.rng.below(17),
            3 => self.token(),
            4 => 1 << self.rng.below(64),
            _ => self.rng.next(),
        }
    }

    /// `MapFlags` bits: prot and map bits, sometimes with garbage.
    fn map_flags(&mut self) -> u64 {
        let r = &mut self.rng;
        let prot = r.below(8) << 16;
        let map = r.pick(&[
            0x1,
            0x2,
            0x2,
            0x3,
            0x4 | 0x2,
            0xC | 0x2,
            0x8,
            0x0,
            0x4 | 0x1,
        ]);
        if r.chance(8) {
            prot | map | (1 << r.below(64))
        } else {
            prot | map
        }
    }

    /// Moves a memory request's range `[*addr, *addr + *len)` off this program's own memory
    /// (into the playground) if it would touch it. A range that wraps is left for the server
    /// to refuse.
    fn memory_op(addr: &mut u64, len: &mut u64) {
        let Some(end) = addr.checked_add(*len) else {
            return;
        };
        let hits = |a: u64, e: u64| {
            home()
                .iter()
                .any(|&(s, he)| a < he && e.max(a.saturating_add(1)) > s)
        };
        if hits(*addr, end) {
            *addr = PLAYGROUND + *addr % (1 << 40);
            // Up to its own memory above (with layout randomization, thread stacks may lie in
            // the playground), and nothing where it starts inside it.
            let mut room = FIX - *addr;
            for (s, e) in home() {
                if s > *addr {
                    room = room.min(s - *addr);
                } else if e > *addr {
                    room = 0;
                }
            }
            *len = (*len).min(room);
        }
    }

    /// Makes a buffer the kernel or a server may write, `[*ptr, *ptr + *len)`, safe: inside
    /// the scratch buffer it is cut to it; starting in its other writable memory it is moved
    /// into it. A buffer that starts in read-only or unmapped memory is refused at its first
    /// page before anything is written: left as it is.
    fn dest(&self, ptr: &mut u64, len: &mut u64) {
        let (s, e) = self.scratch;
        if (s..e).contains(ptr) {
            *len = (*len).min(e - *ptr);
        } else if Self::own(*ptr)
            && !self.read_only.contains(&(*ptr & !(PAGE - 1)))
            && !self.inaccessible.contains(&(*ptr & !(PAGE - 1)))
        {
            *ptr = s;
            *len = (*len).min(e - s);
        }
    }

    /// A request to the pager's endpoint, words 0..7 in `m`: well-formed with hostile operands
    /// half of the time, random words otherwise; never `FORK` or `WAIT`.
    fn pager_request(&mut self, m: &mut [u64]) {
        if self.rng.chance(2) {
            let op = self.rng.pick(&[
                proto::MMAP as u64,
                proto::MMAP as u64,
                proto::MUNMAP as u64,
                proto::MPROTECT as u64,
                proto::BRK as u64,
                proto::SBRK as u64,
                proto::MADVISE as u64,
                proto::GLOBAL_STATS as u64,
                proto::PROCESS_STATS as u64,
                proto::REGIONS as u64,
                proto::SPAWN as u64,
                proto::ARGS as u64,
                proto::PROCESSES as u64,
                0,
                15,
                255,
            ]);
            m.fill(0);
            m[0] = op
                | if self.rng.chance(4) {
                    self.rng.next() << 8
                } else {
                    0
                };
            let addr = self.ptr();
            let len = self.len(addr);
            match op as u8 {
                proto::MMAP => {
                    m[1..5].copy_from_slice(&[addr, len, self.map_flags(), self.rng.below(4)]);
                }
                proto::MUNMAP => m[1..3].copy_from_slice(&[addr, len]),
                proto::MPROTECT => {
                    let prot = self.map_flags() & !0xF;
                    m[1..4].copy_from_slice(&[addr, len, prot]);
                }
                proto::BRK => m[1] = addr,
                proto::SBRK => {
                    m[1] = self.rng.pick(&[
                        PAGE,
                        0u64.wrapping_sub(PAGE),
                        1 << 30,
                        0u64.wrapping_sub(1 << 30),
                        i64::MIN as u64,
                        i64::MAX as u64,
                        1,
                    ])
                }
                proto::MADVISE => {
                    let advice = self.rng.pick(&[0, 3, 4, 1, 99]);
                    m[1..4].copy_from_slice(&[addr, len, advice]);
                }
                proto::PROCESS_STATS | proto::REGIONS | proto::PROCESSES => {
                    m[1] = self.rng.pick(&[0, 1, 2, 3, 100, self.badge, u64::MAX]);
                    m[2] = addr;
                    if op as u8 != proto::REGIONS {
                        m[2] = 0;
                    }
                }
                proto::SPAWN => {
                    for w in &mut m[1..7] {
                        *w = self.rng.next() | 0x8080_8080_8080_8080;
                    }
                    m[self.rng.below(6) as usize + 1] = 0;
                }
                _ => {}
            }
            if self.rng.chance(8) {
                m[1 + self.rng.below(6) as usize] = self.rng.next();
            }
        } else {
            for w in m.iter_mut() {
                *w = self.word();
            }
        }
        let op = (m[0] & 0xFF) as u8;
        let heap = matches!(op, proto::BRK | proto::SBRK) && THREADED.load(Ordering::Relaxed);
        if op == proto::FORK || op == proto::WAIT || heap {
            m[0] = (m[0] & !0xFF) | proto::GLOBAL_STATS as u64;
        }
        if matches!(
            op,
            proto::MMAP | proto::MUNMAP | proto::MPROTECT | proto::MADVISE
        ) {
            let (mut a, mut l) = (m[1], m[2]);
            Self::memory_op(&mut a, &mut l);
            m[1] = a;
            m[2] = l;
        }
    }

    /// The arguments of call `n`.
    fn args(&mut self, n: u64) -> [u64; 10] {
        let mut a = [0u64; 10];
        for w in a.iter_mut() {
            *w = self.word();
        }
        let p = self.ptr();
        let l = self.len(p);
        match n {
            nr::DEBUG_WRITE => {
                a[0] = p;
                a[1] = l;
                // Anything in the user half but the pages never mapped may be readable (its
                // own memory, fuzzing mappings): such a write would reach the console, so it
                // writes nothing. A range the kernel refuses before copying keeps its length.
                let refused = p.checked_add(l).is_none_or(|end| end > USER_TOP)
                    || l > MAX_DEBUG_WRITE
                    || self.inaccessible.contains(&(p & !(PAGE - 1)));
                if !refused {
                    a[1] = 0;
                }
            }
            nr::FUTEX_WAIT => {
                // Never a wait that could last: the word is the read-only page's (0x5A5A5A5A)
                // and the value expected another, or an address the kernel refuses.
                let word = &raw const RO_PAGE as u64 + 4 * self.rng.below(8);
                a[0] = self.rng.pick(&[
                    word,
                    &raw const RO_PAGE as u64 + 1,
                    USER_TOP,
                    !3,
                    0x1000,
                    p & !3,
                ]);
                if a[0] == p & !3 && !self.inaccessible.contains(&(p & !(PAGE - 1))) {
                    a[0] = 0x1000;
                }
                if a[1] as u32 == 0x5A5A_5A5A {
                    a[1] ^= 1;
                }
            }
            nr::DEBUG_READ | nr::CMDLINE => {
                (a[0], a[1]) = (p, l);
                let (mut p, mut l) = (a[0], a[1]);
                self.dest(&mut p, &mut l);
                (a[0], a[1]) = (p, l);
            }
            nr::IPC_CALL => {
                a[0] = if self.rng.chance(2) { 0 } else { self.ep() };
                if a[0] != 0 && a[0] < 1 << 16 {
                    a[0] = self.rng.pick(&[0, 1 << 16, u64::MAX, 1 << 40]);
                }
                if a[0] == 0 {
                    self.memd_requests += 1;
                    self.pager_request(&mut a[1..8]);
                }
                let (mut p, mut l) = (p, l);
                if self.rng.chance(3) {
                    l = 0;
                }
                self.dest(&mut p, &mut l);
                (a[8], a[9]) = (p, l);
            }
            nr::IPC_RECEIVE => {
                a[0] = self.ep();
                if self.own_eps[..self.n_eps].contains(&a[0]) || Self::sibling_ep(a[0]) {
                    a[0] = 0;
                }
            }
            nr::IPC_REPLY => a[0] = self.token(),
            nr::IPC_READ | nr::IPC_WRITE => {
                a[0] = self.token();
                a[1] = self.len(0);
                let (mut p, mut l) = (p, l);
                self.dest(&mut p, &mut l);
                (a[2], a[3]) = (p, l);
            }
            nr::IPC_REPLY_RECEIVE => {
                a[0] = self.ep();
                if Self::sibling_ep(a[0]) {
                    a[0] = 0;
                }
                a[1] = self.token();
            }
            nr::THREAD_JOIN => {
                // Never a sibling: the first thread joins them at the end.
                let id = a[0] & 0xFFFF_FFFF;
                if SIBLINGS.iter().any(|s| s.load(Ordering::Relaxed) == id) {
                    a[0] = 0;
                }
            }
            nr::SPACE_DESTROY
            | nr::SPACE_APPLY
            | nr::SPACE_APPLY1
            | nr::SPACE_RECLAIM
            | nr::THREAD_START => {
                a[0] = self.token();
                if n == nr::SPACE_APPLY {
                    (a[1], a[2]) = (p, self.rng.pick(&[0, 1, 16, 17, 1 << 16, (1 << 16) + 1]));
                }
            }
            nr::THREAD_CLONE => {
                a[0] = self.token();
                a[1] = self.token();
            }
            nr::PAGER_INFO => (a[0], a[1]) = (p, l),
            SYS_FMAP => {
                a[0] = if self.rng.chance(5) {
                    self.word()
                } else {
                    ANONYMOUS_FD
                };
                a[2] = if self.rng.chance(5) {
                    self.word()
                } else {
                    REDOX_MAP_SIZE
                };
                let (s, e) = self.scratch;
                a[1] = if self.rng.chance(4) { p } else { s };
                if Self::own(a[1]) && !(s..e - 32).contains(&a[1]) {
                    a[1] = s;
                }
                if (s..e - 32).contains(&a[1]) {
                    let mut addr = self.ptr();
                    let mut size = self.len(addr);
                    Self::memory_op(&mut addr, &mut size);
                    let offset = if self.rng.chance(8) { self.word() } else { 0 };
                    let map = [offset, size, self.map_flags(), addr];
                    // SAFETY: 32 bytes inside the scratch buffer, which only this program and
                    // the kernel's checked copies touch.
                    unsafe { core::ptr::write_unaligned(a[1] as *mut [u64; 4], map) };
                }
            }
            SYS_FUNMAP | SYS_MPROTECT => {
                (a[0], a[1]) = (p, l);
                if n == SYS_MPROTECT {
                    a[2] = self.map_flags() & !0xF;
                }
                let (mut p, mut l) = (a[0], a[1]);
                Self::memory_op(&mut p, &mut l);
                (a[0], a[1]) = (p, l);
            }
            _ => {}
        }
        a
    }

    /// The number of the next call.
    fn number(&mut self) -> u64 {
        let random = self.rng.next();
        let n = match self.rng.below(10) {
            0 => self.rng.below(64),
            2 | 3 => self
                .rng
                .pick(&[nr::IPC_CALL, SYS_FMAP, SYS_FUNMAP, SYS_MPROTECT]),
            1 => self.rng.pick(&[
                random,
                SYS_FMAP + 1,
                SYS_FUNMAP - 1,
                SYS_MPROTECT + 1,
                1 << 32,
                u64::MAX,
                0x2000_0000,
            ]),
            _ => self.rng.pick(&KNOWN),
        };
        if n == nr::EXIT
            || n == nr::THREAD_EXIT
            || n == nr::THREAD_CREATE
            || n == nr::FAULT_RETURN
            || (n == nr::THREAD_JOIN && !self.joins)
        {
            nr::CLOCK
        } else {
            n
        }
    }

    /// One call: make it and check what the kernel guarantees.
    fn one(&mut self, i: u64) {
        let n = self.number();
        if matches!(n, SYS_FMAP | SYS_FUNMAP | SYS_MPROTECT) {
            self.memd_requests += 1;
        }
        let a = self.args(n);
        let flags = self.rng.next() & RANDOM_FLAGS;
        let (ret, after, changed) = raw_call(n, &a, flags);
        let what = || (i, n, a);
        check!(
            changed == 0,
            "call {}: rbx or rbp changed by {:?}",
            i,
            what()
        );
        check!(
            after & (NT | IOPL) == 0 && after & IF != 0,
            "call {}: rflags {:#x} after {:?}",
            i,
            after,
            what()
        );
        check!(
            after & (AC | DF | ID) == flags & (AC | DF | ID),
            "call {}: AC, DF or ID changed: set {:#x}, got {:#x}, {:?}",
            i,
            flags,
            after,
            what()
        );
        if n == nr::CPU_INFO {
            check!(
                (ret as u64 & 0xFFFF_FFFF) < ret as u64 >> 32 && ret as u64 >> 32 <= 8,
                "call {}: cpu_info gave {:#x}",
                i,
                ret
            );
        }
        if pager_only(n) {
            check!(
                ret == -errno::EPERM,
                "call {}: pager-only call gave {} for {:?}",
                i,
                ret,
                what()
            );
        } else if !KNOWN.contains(&n) {
            check!(
                ret == -errno::ENOSYS,
                "call {}: unknown number gave {} for {:?}",
                i,
                ret,
                what()
            );
        }
        if ret >= 0 {
            self.ok += 1;
        } else {
            check!(
                ret >= -133,
                "call {}: result {} is no errno, {:?}",
                i,
                ret,
                what()
            );
            self.errors[(-ret) as usize] += 1;
        }
        if n == nr::ENDPOINT_CREATE && ret >= 0 && self.n_eps < self.own_eps.len() {
            self.own_eps[self.n_eps] = ret as u64;
            self.n_eps += 1;
        }
    }
}

/// The other fuzzing threads, not yet joined.
type Crew = [Option<thread::JoinHandle<u64>>; MAX_THREADS];

/// Set once every other thread's stack and id are known: they wait for it (futex).
static GO: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The calling thread's TLS base (libvm's block: its word 0 is its own address).
fn tls_base() -> u64 {
    let at: u64;
    // SAFETY: every thread of this program has a libvm block under FS (the first one since
    // its first spawn), whose word 0 holds its address; nothing is written.
    unsafe {
        asm!("mov {}, fs:[0]", out(reg) at, options(nostack, readonly, preserves_flags));
    }
    at
}

/// Starts `n` more threads fuzzing like `first` (each its own stream: seed + its index), and
/// records their stacks and ids before they start. Each thread, `first` included, gets its own
/// two pages of the scratch buffer: what the kernel or memd writes for one (and a `Map` it
/// lends `fmap`) is never another's.
fn start_crew(first: &mut Fuzz, n: usize, seed: u64, calls: u64) -> Crew {
    let mut crew: Crew = [const { None }; MAX_THREADS];
    if n == 0 {
        return crew;
    }
    THREADED.store(true, Ordering::Release);
    let share = SCRATCH_PAGES / MAX_THREADS as u64 * PAGE;
    let s = first.scratch.0;
    first.scratch = (s, s + share);
    for (k, slot) in crew.iter_mut().enumerate().take(n) {
        let own = s + (k as u64 + 1) * share;
        let mut f = Fuzz {
            rng: Rng(seed.wrapping_add(k as u64 + 1)),
            scratch: (own, own + share),
            own_eps: [0; 64],
            n_eps: 0,
            ok: 0,
            errors: [0; 134],
            memd_requests: 0,
            joins: false,
            ..*first
        };
        let h = spawn_checked("a fuzzing thread", move || {
            while GO.load(Ordering::Acquire) == 0 {
                thread::futex_wait(&GO, 0);
            }
            let fs = tls_base();
            let local = 0u64;
            f.stack = core::hint::black_box(&local) as *const u64 as u64 & !(PAGE - 1);
            for i in 0..calls {
                f.one(i);
            }
            // Random `set_tls` calls moved FS: back to this thread's block before it ends.
            check!(
                libvm::sys::raw::set_tls(fs) == 0,
                "restoring a thread's TLS base"
            );
            calls
        });
        if let Some(h) = h {
            let (at, len) = h.stack();
            THREAD_STACKS[k][0].store(at as u64, Ordering::Relaxed);
            THREAD_STACKS[k][1].store((at + len) as u64, Ordering::Relaxed);
            SIBLINGS[k].store(h.id() & 0xFFFF_FFFF, Ordering::Relaxed);
            *slot = Some(h);
        }
    }
    // The first thread's block exists since the first spawn.
    FIRST_FS.store(tls_base(), Ordering::Relaxed);
    let heap = heap_region();
    HEAP[0].store(heap.start, Ordering::Relaxed);
    HEAP[1].store(heap.end, Ordering::Relaxed);
    GO.store(1, Ordering::Release);
    thread::futex_wake(&GO, u32::MAX);
    crew
}

/// Starts and joins `n` threads whose closures are the size of the fuzzing ones: the heap then
/// holds what the fuzzing threads' start and join will take again.
fn warm_up(n: usize) {
    let mut crew: Crew = [const { None }; MAX_THREADS];
    for slot in crew.iter_mut().take(n) {
        let pad = [0u8; core::mem::size_of::<Fuzz>()];
        let calls = 0u64;
        *slot = spawn_checked("a warm-up thread", move || {
            core::hint::black_box(pad)[0] as u64 + calls
        });
    }
    join_crew(crew);
}

/// The first thread's TLS base, when it started others (0: it did not).
static FIRST_FS: AtomicU64 = AtomicU64::new(0);

/// Joins the other threads (the first thread's TLS base back first: random `set_tls` calls
/// moved it); the calls they made.
fn join_crew(crew: Crew) -> u64 {
    let fs = FIRST_FS.load(Ordering::Relaxed);
    if fs != 0 {
        check!(
            libvm::sys::raw::set_tls(fs) == 0,
            "restoring the first thread's TLS base"
        );
    }
    let mut calls = 0;
    for (k, h) in crew.into_iter().enumerate() {
        let Some(h) = h else { continue };
        let r = h.join();
        check!(
            matches!(r, Ok(Some(_))),
            "joining fuzzing thread {}: {:?}",
            k + 1,
            r
        );
        calls += r.ok().flatten().unwrap_or(0);
        THREAD_STACKS[k][0].store(0, Ordering::Relaxed);
        THREAD_STACKS[k][1].store(0, Ordering::Relaxed);
    }
    calls
}

/// `name=VALUE` from the kernel command line.
fn option(line: &str, name: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Touches 48 KiB of stack, so the fuzzing itself never needs a new page.
#[inline(never)]
fn touch_stack() -> u64 {
    let mut a = [0u8; 48 << 10];
    for i in (0..a.len()).step_by(PAGE as usize) {
        // SAFETY: in bounds of the local array; volatile so the pages are really touched.
        unsafe { core::ptr::write_volatile(&mut a[i], 1) };
    }
    core::hint::black_box(&a) as *const _ as u64
}

/// memd's frames in use, and the kernel's frames held as page tables.
/// Spare page-table frames a process may keep after its mappings are gone (memd's
/// `tables::MAX_SPARE`).
const SPARE_TABLES: u64 = 8;

/// memd's data frames in use, and its page-table frames.
/// The heap: the region holding the break.
fn heap_region() -> proto::RegionInfo {
    let brk = vm().brk(0);
    let regions = vm().regions(0);
    check!(
        brk.is_ok() && regions.is_ok(),
        "the break {:?} and the regions {:?}",
        brk,
        regions.as_ref().map(|r| r.len())
    );
    let brk = brk.unwrap_or(0) as u64;
    let heap = regions
        .unwrap_or_default()
        .into_iter()
        .find(|r| r.start < brk && brk <= r.end);
    check!(heap.is_some(), "the heap region (break {:#x})", brk);
    heap.unwrap_or_default()
}

/// Resident pages of the heap.
fn heap_resident() -> u64 {
    heap_region().resident_pages
}

/// A thread running `f`; the program ends, saying why, when `what` cannot be started.
fn spawn_checked(
    what: &str,
    f: impl FnOnce() -> u64 + Send + 'static,
) -> Option<thread::JoinHandle<u64>> {
    match thread::spawn(f) {
        Ok(h) => Some(h),
        Err(e) => {
            check!(false, "spawning {}: {:?}", what, e);
            None
        }
    }
}

fn frames_used() -> (u64, u64) {
    match vm().global_stats() {
        Ok(s) => (s.data_frames(), s.page_table_frames),
        Err(e) => {
            check!(false, "memd's statistics: {:?}", e);
            (0, 0)
        }
    }
}

fn main(start: Start) -> u64 {
    let mut buf = [0u8; 256];
    let line = cmdline(&mut buf);
    let memd = line.split(' ').any(|w| w == PAGER_LOADS_FLAG);
    let seed = option(line, "sysfuzz.seed").unwrap_or(1);
    let calls = option(line, "sysfuzz.calls").unwrap_or(100_000);
    touch_stack();
    let local = 0u64;
    let stack = core::hint::black_box(&local) as *const u64 as u64 & !(PAGE - 1);
    // The stack region (with memd, wherever layout randomization put it) and the guard page
    // under it; with the test pager, the kernel's fixed stack below 2 GiB.
    let stack_region = if memd {
        vm().regions(0)
            .unwrap_or_default()
            .iter()
            .find(|r| (r.start..r.end).contains(&stack))
            .map_or((stack, stack + PAGE), |r| (r.start - PAGE, r.end))
    } else {
        (0x7F00_0000, 0x8000_0000)
    };
    STACK[0].store(stack_region.0, Ordering::Relaxed);
    STACK[1].store(stack_region.1, Ordering::Relaxed);
    let code = main as *const () as u64 & !(PAGE - 1);
    let rodata = &raw const RO_PAGE as u64;
    let (scratch, read_only, inaccessible) = if memd {
        let v = vm();
        let rw = ProtectionFlags::READ_WRITE;
        let fixed = MmapFlags::anonymous_private().fixed();
        let ok = v.mmap(FIX as usize, (SCRATCH_PAGES * PAGE) as usize, rw, fixed)
            == Ok(FIX as usize)
            && v.mmap(FIX_RO as usize, PAGE as usize, rw, fixed) == Ok(FIX_RO as usize)
            && v.mmap(
                FIX_NONE as usize,
                PAGE as usize,
                ProtectionFlags::NONE,
                fixed,
            ) == Ok(FIX_NONE as usize);
        check!(ok, "mapping the fixtures");
        for p in (FIX..FIX + SCRATCH_PAGES * PAGE)
            .chain([FIX_RO])
            .step_by(PAGE as usize)
        {
            // SAFETY: the page was just mapped read/write for this program alone.
            unsafe { core::ptr::write_volatile(p as *mut u8, 1) };
        }
        check!(
            v.mprotect(FIX_RO as usize, PAGE as usize, ProtectionFlags::READ)
                .is_ok(),
            "making the fixture read-only"
        );
        (
            (FIX, FIX + SCRATCH_PAGES * PAGE),
            [code, rodata, FIX_RO],
            [FIX_NONE, STACK[0].load(Ordering::Relaxed)],
        )
    } else {
        let s = &raw mut SCRATCH as u64;
        (
            (s, s + SCRATCH_PAGES * PAGE),
            [code, rodata, rodata],
            [USER_TOP - PAGE, 0x1_0000],
        )
    };
    let threads = option(line, "sysfuzz.threads").unwrap_or(1) as usize;
    check!(
        (1..=MAX_THREADS).contains(&threads) && (memd || threads == 1),
        "sysfuzz.threads={}: 1 to {}, more than one only with memd",
        threads,
        MAX_THREADS
    );
    if threads > 1 {
        // The heap first grows to what starting and joining the threads takes, so that the
        // figures below hold it already.
        warm_up(threads - 1);
    }
    let brk0 = if memd { vm().brk(0).ok() } else { None };
    let (frames0, tables0) = if memd { frames_used() } else { (0, 0) };
    // With other threads, the heap's resident pages are left out of the figure: their control
    // blocks come and go there, and the allocator gives back freed pages as it coalesces, in
    // an order that depends on the threads' timing.
    let heap0 = if threads > 1 { heap_resident() } else { 0 };
    println!(
        "sysfuzz: seed {}, {} calls, {}",
        seed,
        calls,
        if memd {
            "memd is the pager"
        } else {
            "the test pager"
        }
    );
    let mut f = Fuzz {
        rng: Rng(seed),
        memd,
        badge: start.badge,
        scratch,
        read_only,
        inaccessible,
        stack,
        own_eps: [0; 64],
        n_eps: 0,
        ok: 0,
        errors: [0; 134],
        memd_requests: 0,
        tables_peak: tables0,
        joins: true,
    };
    let crew = start_crew(&mut f, threads - 1, seed, calls);
    let t0 = clock();
    let step = (calls / 10).max(1);
    for i in 0..calls {
        f.one(i);
        if f.memd && i % 4096 == 4095 {
            let (_, tables) = frames_used();
            f.tables_peak = f.tables_peak.max(tables);
        }
        if i % step == step - 1 {
            println!(
                "sysfuzz: {} calls, {} ms",
                i + 1,
                (clock() - t0) / 1_000_000
            );
        }
    }
    let others = join_crew(crew);
    let ms = (clock() - t0) / 1_000_000;
    println!(
        "sysfuzz: {} calls in {} ms ({} a second), {} to the pager's endpoint; {} succeeded",
        calls,
        ms,
        calls * 1000 / ms.max(1),
        f.memd_requests,
        f.ok
    );
    if threads > 1 {
        println!(
            "sysfuzz: {} more threads made {} calls at once, every one checked",
            threads - 1,
            others
        );
    }
    let names = [
        (errno::EPERM, "EPERM"),
        (errno::ESRCH, "ESRCH"),
        (errno::E2BIG, "E2BIG"),
        (9, "EBADF"),
        (errno::ENOMEM, "ENOMEM"),
        (errno::EFAULT, "EFAULT"),
        (17, "EEXIST"),
        (errno::EINVAL, "EINVAL"),
        (32, "EPIPE"),
        (errno::ENOSYS, "ENOSYS"),
    ];
    for (e, name) in names {
        print!("{} {}  ", name, f.errors[e as usize]);
    }
    println!("(failures by errno)");

    let t = clock();
    check!(t > t0, "the clock stopped: {} then {}", t0, t);
    if memd {
        let v = vm();
        // Everything above the image and heap but its own memory (the fixtures it keeps, its
        // stack), up to the end of what may be mapped.
        let mut keep = [(FIX, FIX_NONE + PAGE), home()[2]];
        keep.sort_unstable();
        let mut from = 0x4000_0000;
        for (s, e) in keep
            .into_iter()
            .chain([(kernel_shim::abi::USER_TOP, kernel_shim::abi::USER_TOP)])
        {
            if s > from {
                let r = v.munmap(from as usize, (s - from) as usize);
                check!(r.is_ok(), "unmapping {:#x}..{:#x}: {:?}", from, s, r);
            }
            from = from.max(e);
        }
        if let Some(b) = brk0 {
            check!(v.brk(b) == Ok(b), "restoring the break {:#x}", b);
        }
        let p = v.mmap(
            0,
            4 * PAGE as usize,
            ProtectionFlags::READ_WRITE,
            MmapFlags::anonymous_private(),
        );
        check!(p.is_ok(), "mmap after the fuzzing: {:?}", p);
        let p = p.unwrap_or(0) as u64;
        for k in 0..4 * PAGE / 8 {
            // SAFETY: the four pages were just mapped read/write for this program.
            unsafe { core::ptr::write_volatile((p + 8 * k) as *mut u64, k) };
        }
        for k in 0..4 * PAGE / 8 {
            // SAFETY: as above.
            let got = unsafe { core::ptr::read_volatile((p + 8 * k) as *const u64) };
            check!(got == k, "the mapping reads {} at word {}", got, k);
        }
        check!(
            v.munmap(p as usize, 4 * PAGE as usize).is_ok(),
            "munmap after the fuzzing"
        );
        let (frames, tables) = frames_used();
        let heap = if threads > 1 { heap_resident() } else { 0 };
        check!(
            frames - heap == frames0 - heap0,
            "memd's data frames in use: {} before the fuzzing, {} after (of the heap: {}, {})",
            frames0,
            frames,
            heap0,
            heap
        );
        println!(
            "sysfuzz: memd still serves: mmap, touch, munmap; data frames in use {} before, {} after",
            frames0, frames
        );
        println!(
            "sysfuzz: page-table frames {} before, at most {} during, {} after",
            tables0, f.tables_peak, tables
        );
        check!(
            tables <= tables0 + SPARE_TABLES,
            "page-table frames {} before the fuzzing, {} after everything was unmapped",
            tables0,
            tables
        );
    }
    println!("PASS sysfuzz");
    0
}
