//! The kernel's ABI, written once: system-call numbers, the token bits and word layouts of the
//! messages the kernel sends the pager, the `space_apply` batch format, the pager's window and
//! boot pack, and the redox_syscall memory calls the kernel routes to the pager.
//!
//! Used by the kernel itself, by the ring-3 runtime of the test programs, by memd's metal side
//! and by libvm's system-call transport. Only constants and plain functions: host-testable.
//!
//! System calls: `syscall` with the number in rax and arguments in rdi, rsi, rdx, r10, r8, r9
//! (IPC also r12..r15); rax returns a value or -errno; rcx and r11 are clobbered.
//!
//! | nr | name | arguments | returns | who |
//! |---|---|---|---|---|
//! | 0 | `debug_write` | ptr, len (≤ 1 MiB) | len | any |
//! | 1 | `debug_read` | ptr, len | bytes read, 0 if none waiting (never blocks) | any |
//! | 2 | `exit` | code | does not return; ends every thread of the caller's space (those on other processors stopped first), then the space with the notice of `code` | any |
//! | 3 | `clock` | — | nanoseconds since boot (1 ms steps) | any |
//! | 4 | `yield` | — | 0 | any |
//! | 5 | `thread_exit` | code | does not return; ends the calling thread only (the last one's end is the process's, with `code`); its joiners wake | any |
//! | 6 | `thread_join` | thread id | 0 once that thread of the caller's space has ended (at once if it has, or is no thread of the space); `EINVAL` for the caller itself | any |
//! | 7 | `futex_wait` | addr (4-byte aligned), expected (u32) | 0 when woken; `EAGAIN` at once if the word is not `expected`; `EFAULT` if it is not mapped readable | any |
//! | 8 | `futex_wake` | addr, count | threads of the caller's space woken (up to count) | any |
//! | 9 | `set_tls` | base (below the user-half end) | 0: the caller's FS base from now on | any |
//! | 18 | `thread_create` | rip, rsp, arg, TLS base (all below the user-half end) | id of a new thread of the caller's space, starting at rip with rsp and rdi = arg; `EAGAIN` at [`MAX_THREADS_PER_SPACE`] threads, `ENOMEM` when the kernel's thread slots are all taken | any |
//! | 17 | `cpu_info` | — | the index of the processor running the caller, and in bits 32.. how many run the kernel | any |
//! | 10 | `ipc_call` | ep, words 0..7 in rsi rdx r10 r8 r9 r12 r13, lend ptr r14, len r15 | 0; reply in rdi, rsi | any |
//! | 11 | `ipc_receive` | ep | token; words 0..8 in rdi rsi rdx r10 r8 r9 r12 r13 (word 7 = sender badge), r14 = length of the lent buffer | owner of ep |
//! | 12 | `ipc_reply` | token, w0, w1 | 0 | receiving space |
//! | 13 | `ipc_read` | token, offset, dst, len | len (from the lent buffer) | receiving space |
//! | 14 | `ipc_write` | token, offset, src, len | len (into the lent buffer) | receiving space |
//! | 15 | `endpoint_create` | — | endpoint number (caller's space receives) | any |
//! | 16 | `ipc_reply_receive` | ep, token, w0, w1 | `ipc_reply(token, w0, w1)` then `ipc_receive(ep)` in one call; -errno with nothing done if the reply is refused | owner of ep |
//! | 20 | `space_create` | root frame (donated: becomes the space's PML4) | space id | pager |
//! | 21 | `space_destroy` | space | 0 | pager |
//! | 22 | `space_apply` | space, ops, count | the space's spare table frames (rdx = ops done) | pager |
//! | 23 | `thread_start` | space, rip, rsp, arg, TLS base | thread id; `EAGAIN` at [`MAX_THREADS_PER_SPACE`] threads | pager |
//! | 24 | `thread_clone` | token, space, w0 | thread id | pager |
//! | 25 | `pager_info` | buf, len | number of frame ranges | pager |
//! | 26 | `bootpack_info` | — | bytes of the boot pack mapped read-only at [`BOOTPACK_BASE`] (0: none) | pager |
//! | 27 | `page_table_frames` | — | kernel-pool frames held as page tables | pager |
//! | 28 | `cmdline` | ptr, len | bytes of the kernel command line copied (cut to len) | any |
//! | 29 | `space_apply1` | space, the four words of one `space_apply` operation in rsi, rdx, r10, r8 | as `space_apply` of that one operation, without the copy of a batch | pager |
//! | 30 | `space_reclaim` | space, buf, max (≤ [`MAX_RECLAIM`]) | spare page-table frames taken back, their addresses written to buf | pager |
//! | 31 | `fault_deliver` | token of a thread waiting on its fault, entry, frame (16-byte aligned), info (signal \| code << 32) | 0: the thread's [`fault_frame`] is written at frame in its space and it resumes at entry with rsp = rdi = frame | pager |
//! | 33 | `device_info` | index | the base of the index-th device range of the command line (rdx = its length); `ENODEV` if the kernel refused it or there is none (see [`devices`]) | pager |
//! | 32 | `fault_return` | frame | does not return: the caller's registers become those of the [`fault_frame`] at frame in its memory | any |
//! | [`SYS_FMAP`] | redox `fmap` | fd (must be `!0`: anonymous), `&Map`, size of `Map` | address | any (routed to the pager) |
//! | [`SYS_FUNMAP`] | redox `funmap` | addr, len | 0 | any (routed to the pager) |
//! | [`SYS_MPROTECT`] | redox `mprotect` | addr, len, `MapFlags` | 0 | any (routed to the pager) |

/// `debug_write(ptr, len)`.
pub const DEBUG_WRITE: u64 = 0;
/// `debug_read(ptr, len)`.
pub const DEBUG_READ: u64 = 1;
/// `exit(code)`.
pub const EXIT: u64 = 2;
/// `clock()`.
pub const CLOCK: u64 = 3;
/// `yield()`.
pub const YIELD: u64 = 4;
/// `thread_exit(code)`.
pub const THREAD_EXIT: u64 = 5;
/// `thread_join(id)`.
pub const THREAD_JOIN: u64 = 6;
/// `futex_wait(addr, expected)`.
pub const FUTEX_WAIT: u64 = 7;
/// `futex_wake(addr, count)`.
pub const FUTEX_WAKE: u64 = 8;
/// `set_tls(base)`.
pub const SET_TLS: u64 = 9;
/// `cpu_info()`.
pub const CPU_INFO: u64 = 17;
/// `thread_create(rip, rsp, arg, tls)`.
pub const THREAD_CREATE: u64 = 18;
/// The most threads a space can have at once.
pub const MAX_THREADS_PER_SPACE: u64 = 64;
/// `ipc_call(ep, w0..w6, lend, lend_len)`.
pub const IPC_CALL: u64 = 10;
/// `ipc_receive(ep)`.
pub const IPC_RECEIVE: u64 = 11;
/// `ipc_reply(token, w0, w1)`.
pub const IPC_REPLY: u64 = 12;
/// `ipc_read(token, offset, dst, len)`.
pub const IPC_READ: u64 = 13;
/// `ipc_write(token, offset, src, len)`.
pub const IPC_WRITE: u64 = 14;
/// `endpoint_create()`.
pub const ENDPOINT_CREATE: u64 = 15;
/// `ipc_reply_receive(ep, token, w0, w1)`.
pub const IPC_REPLY_RECEIVE: u64 = 16;
/// `space_create()`.
pub const SPACE_CREATE: u64 = 20;
/// `space_destroy(space)`.
pub const SPACE_DESTROY: u64 = 21;
/// `space_apply(space, ops, count)`.
pub const SPACE_APPLY: u64 = 22;
/// `thread_start(space, rip, rsp, arg, tls)`.
pub const THREAD_START: u64 = 23;
/// `thread_clone(token, space, w0)`.
pub const THREAD_CLONE: u64 = 24;
/// `pager_info(buf, len)`: the pager's frame ranges; returns their count, and in bits 32.. the
/// kernel's slots of spaces and threads (sized from RAM at boot).
pub const PAGER_INFO: u64 = 25;
/// `bootpack_info()`.
pub const BOOTPACK_INFO: u64 = 26;
/// `page_table_frames()`.
pub const PAGE_TABLE_FRAMES: u64 = 27;
/// `cmdline(ptr, len)`.
pub const CMDLINE: u64 = 28;
/// `space_apply1(space, kind, page, a, b)`: one `space_apply` operation passed in registers.
pub const SPACE_APPLY1: u64 = 29;
/// `space_reclaim(space, buf, max)`: spare page-table frames of a space back to the pager.
pub const SPACE_RECLAIM: u64 = 30;
/// `fault_deliver(token, entry, frame, info)`: a faulting thread resumes in its handler.
pub const FAULT_DELIVER: u64 = 31;
/// `fault_return(frame)`: the caller's registers from a [`fault_frame`] in its memory.
pub const FAULT_RETURN: u64 = 32;

/// `device_info(index)`: the device range the kernel accepted from the command line.
pub const DEVICE_INFO: u64 = 33;

/// redox_syscall's `SYS_FMAP` (`SYS_CLASS_FILE | SYS_ARG_SLICE | 900`): anonymous `fmap` is
/// routed to the pager as an `MMAP` request.
pub const SYS_FMAP: u64 = 0x2000_0000 | 0x0100_0000 | 900;
/// redox_syscall's `SYS_FUNMAP` (`SYS_CLASS_FILE | 92`): routed as `MUNMAP`.
pub const SYS_FUNMAP: u64 = 0x2000_0000 | 92;
/// redox_syscall's `SYS_MPROTECT` (125): routed as `MPROTECT`.
pub const SYS_MPROTECT: u64 = 125;
/// Size of redox_syscall's `Map` (offset, size, flags, address: four words).
pub const REDOX_MAP_SIZE: u64 = 32;
/// The file descriptor of an anonymous `fmap`.
pub const ANONYMOUS_FD: u64 = u64::MAX;

/// Opcodes of the pager requests the kernel builds for the routed calls. They are libvm's
/// `proto::{MMAP, MUNMAP, MPROTECT}` (libvm checks the equality at compile time).
pub mod routed {
    /// `MMAP`: args addr, len, `MapFlags` bits, extra.
    pub const MMAP: u8 = 1;
    /// `MUNMAP`: args addr, len.
    pub const MUNMAP: u8 = 2;
    /// `MPROTECT`: args addr, len, `MapFlags` bits.
    pub const MPROTECT: u8 = 3;
    /// `MMAP` extra bit: anonymous memory.
    pub const EXTRA_ANONYMOUS: u64 = 1;
}

/// Word 0 of an 8-word message in redox_syscall's `Sqe` layout: opcode (bits 0..8), flags
/// (8..16), reserved (16..32), tag (32..64). Words 1..7 are the six args, word 7 the caller.
pub fn sqe_word0(opcode: u8, flags: u8, tag: u32) -> u64 {
    opcode as u64 | (flags as u64) << 8 | (tag as u64) << 32
}

/// The pager's endpoint, created by the kernel at boot.
pub const PAGER_ENDPOINT: u64 = 0;

/// Token bit of a fault message; reply word 0 = 0 resumes the thread, anything else kills it
/// (its exit code is [`KILLED`] `|` the fault's vector, whatever the reply said).
pub const TOKEN_FAULT: u64 = 1 << 62;
/// Token bit of an exit notice (no reply).
pub const TOKEN_EXIT: u64 = 1 << 61;

/// Fault message, word 0: the exception vector.
pub const FAULT_VECTOR: usize = 0;
/// Fault message, word 1: the address (CR2 for a page fault, else RIP).
pub const FAULT_ADDR: usize = 1;
/// Fault message, word 2: the access kind (`ACCESS_*` bits).
pub const FAULT_ACCESS: usize = 2;
/// Fault message, word 3: RIP.
pub const FAULT_RIP: usize = 3;
/// Fault message, word 4: the thread id.
pub const FAULT_THREAD: usize = 4;
/// Fault message, word 5: the CPU error code.
pub const FAULT_ERROR: usize = 5;
/// Fault message, word 6: the thread's stack pointer when it faulted.
pub const FAULT_SP: usize = 6;
/// Every message, word 7: the badge of the sender's space (stamped by the kernel).
pub const MSG_BADGE: usize = 7;
/// Exit notice, word 0: the exit code: the low 32 bits a process passed to `exit`, or
/// [`KILLED`] `|` the exception vector when the kernel killed it (only the kernel sets
/// [`KILLED`]).
pub const EXIT_CODE: usize = 0;
/// Exit notice, word 3: the RIP the CPU saved for the exception that killed the thread (the
/// faulting instruction; for a trap, a breakpoint or a single step, the instruction after it);
/// 0 for an `exit`.
pub const EXIT_RIP: usize = 3;
/// Exit notice, word 4: the thread id.
pub const EXIT_THREAD: usize = 4;

/// Access kind bit: the access was a write.
pub const ACCESS_WRITE: u64 = 1;
/// Access kind bit: the access was an instruction fetch.
pub const ACCESS_EXEC: u64 = 2;
/// Access kind bit: the page was present (a protection violation, not a missing page).
pub const ACCESS_PRESENT: u64 = 4;

/// The page-fault vector.
pub const PAGE_FAULT: u64 = 14;
/// Exit code bit: the thread was killed; the low 32 bits are the exception vector (see
/// [`vector_name`]).
pub const KILLED: u64 = 1 << 32;

/// The name of exception `vector`, as the kernel's kill line and crash reports say it
/// (`breakpoint`, `general protection`, ...).
pub const fn vector_name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "non-maskable interrupt",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack segment",
        13 => "general protection",
        14 => "page fault",
        16 => "x87 floating point",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating point",
        20 => "virtualization",
        21 => "control protection",
        28 => "hypervisor injection",
        29 => "VMM communication",
        30 => "security",
        15 | 22..=27 | 31 => "reserved exception",
        32..=255 => "interrupt",
        _ => "unknown vector",
    }
}

/// The mnemonic of exception `vector` (`#BP`, `#GP`, ...; empty for a vector without one).
pub const fn vector_mnemonic(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        28 => "#HV",
        29 => "#VC",
        30 => "#SX",
        _ => "",
    }
}

/// The frame of a fault delivered to a handler: 24 words the kernel writes at the frame
/// address `fault_deliver` names (the handler's stack pointer on entry), and `fault_return`
/// reads back. Words [`SIGNAL`](fault_frame::SIGNAL) and [`CODE`](fault_frame::CODE) are the
/// pager's choice (its `info` word); the rest are the thread's own: the fault (address,
/// access, vector, error code, as in the fault message) and every register it had.
pub mod fault_frame {
    /// The signal number the pager chose (low 32 bits of `info`).
    pub const SIGNAL: usize = 0;
    /// The signal code the pager chose (high 32 bits of `info`).
    pub const CODE: usize = 1;
    /// The fault address: CR2 for a page fault, 0 for any other exception.
    pub const ADDR: usize = 2;
    /// The access kind (`ACCESS_*` bits).
    pub const ACCESS: usize = 3;
    /// The exception vector.
    pub const VECTOR: usize = 4;
    /// The CPU error code.
    pub const ERROR: usize = 5;
    /// RIP: the faulting instruction; `fault_return` resumes there.
    pub const RIP: usize = 6;
    /// RSP.
    pub const RSP: usize = 7;
    /// RFLAGS (`fault_return` keeps only the bits a process may set).
    pub const RFLAGS: usize = 8;
    /// The general registers from here: rax, rbx, rcx, rdx, rsi, rdi, rbp, r8 to r15.
    pub const RAX: usize = 9;
    /// Words in a frame.
    pub const WORDS: usize = 24;
    /// Bytes in a frame.
    pub const BYTES: u64 = WORDS as u64 * 8;
}

/// `space_apply` operation kind: map `page` to frame `a` with protection `b`, replacing.
pub const OP_MAP: u64 = 1;
/// `space_apply` operation kind: unmap the mapped pages of `a` pages from `page`; `b` 0 keeps
/// the page tables (empty or not: the next mapping near reuses them), [`UNMAP_PRUNE`] then
/// frees every page table under the range that maps nothing.
pub const OP_UNMAP: u64 = 2;
/// `b` of an [`OP_UNMAP`]: free the page tables the range leaves mapping nothing.
pub const UNMAP_PRUNE: u64 = 1;
/// `space_apply` operation kind: set protection `b` on the mapped pages of `a` pages.
pub const OP_PROTECT: u64 = 3;
/// `space_apply` operation kind: donate frame `a` to the space's reserve of page-table frames.
pub const OP_DONATE: u64 = 4;
/// `space_apply` operation kind: map the 2 MiB at `page` (aligned) to the 512 frames from `a`
/// (2 MiB aligned, all the pager's) as one huge page with protection `b`, replacing a huge page.
pub const OP_MAP_HUGE: u64 = 5;
/// `space_apply` operation kind: split the huge page at `page` into 512 pages (one table).
pub const OP_SPLIT: u64 = 6;
/// `space_apply` operation kind: map `page` to the physical page `a` of a device range the
/// kernel accepted (see [`devices`]), with protection `b & 7` and the caching `b >> 8`
/// ([`CACHE_UNCACHED`] or [`CACHE_WRITE_COMBINING`]), replacing.
pub const OP_MAP_DEVICE: u64 = 7;
/// Caching of an [`OP_MAP_DEVICE`]: uncached (every access goes to the device, in order).
pub const CACHE_UNCACHED: u64 = 0;
/// Caching of an [`OP_MAP_DEVICE`]: write-combining (stores may be merged and reordered, as a
/// framebuffer wants; loads are uncached).
pub const CACHE_WRITE_COMBINING: u64 = 1;
/// Protection bit of a `space_apply` operation: readable.
pub const PROT_READ: u64 = 1;
/// Protection bit: writable.
pub const PROT_WRITE: u64 = 2;
/// Protection bit: executable.
pub const PROT_EXEC: u64 = 4;
/// The most operations of one batch.
pub const MAX_BATCH: u64 = 1 << 16;
/// The end of what a process may map: the top page of the user half stays unmapped, so no
/// instruction can end at the boundary of the non-canonical hole (the `sysret` hazard).
pub const USER_TOP: u64 = 0x0000_7FFF_FFFF_F000;
/// The most frame addresses one `space_reclaim` returns.
pub const MAX_RECLAIM: u64 = 512;

/// Where the pager's window onto its frames starts: frame `f` is at `WINDOW_BASE + f`.
pub const WINDOW_BASE: u64 = 0x0000_4000_0000_0000;
/// Where the boot pack is mapped read-only in the pager, when the pager loads the programs.
pub const BOOTPACK_BASE: u64 = 0x0000_3000_0000_0000;
/// The most frame ranges `pager_info` reports.
pub const MAX_PAGER_RANGES: usize = 16;
/// The kernel command-line word that makes module 0 the only program the kernel loads and
/// maps the boot pack into it: the pager starts the others.
pub const PAGER_LOADS_FLAG: &str = "modules=pager";

/// The boot pack: the runner packs the boot programs into QEMU's one `-initrd` module.
///
/// ```text
/// 0      "BOOTPACK"
/// 8      count: u64 (little endian)
/// 16     count entries of 64 bytes: offset u64, length u64, name [u8; 48] (NUL padded)
/// ...    program bytes, at offsets from the start of the pack
/// ```
pub mod bootpack {
    /// The magic that opens a pack.
    pub const MAGIC: &[u8; 8] = b"BOOTPACK";
    /// The most programs of a pack.
    pub const MAX_PROGRAMS: usize = 256;

    /// One program of the pack: its bytes and its name.
    #[derive(Clone, Copy, Debug)]
    pub struct Program<'a> {
        /// The ELF file.
        pub bytes: &'a [u8],
        /// Its name.
        pub name: &'a str,
    }

    fn word(b: &[u8], at: usize) -> Option<u64> {
        Some(u64::from_le_bytes(
            b.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    }

    /// The programs of a pack, each checked to lie inside it; `None` if it is not a pack.
    pub fn parse(pack: &[u8]) -> Option<impl Iterator<Item = Program<'_>>> {
        if pack.get(..8)? != MAGIC {
            return None;
        }
        let count = (word(pack, 8)? as usize).min(MAX_PROGRAMS);
        Some((0..count).filter_map(move |i| {
            let e = 16 + 64 * i;
            let offset = word(pack, e)? as usize;
            let len = word(pack, e + 8)? as usize;
            let bytes = pack.get(offset..offset.checked_add(len)?)?;
            let name = pack.get(e + 16..e + 64)?;
            let n = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            Some(Program {
                bytes,
                name: core::str::from_utf8(&name[..n]).unwrap_or("?"),
            })
        }))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_pack_parses_and_garbage_does_not() {
            let mut p = std::vec![0u8; 16 + 64 + 4];
            p[..8].copy_from_slice(MAGIC);
            p[8] = 1;
            p[16] = 80;
            p[24] = 4;
            p[32..35].copy_from_slice(b"abc");
            p[80..84].copy_from_slice(b"\x7fELF");
            let v: std::vec::Vec<_> = parse(&p).unwrap().collect();
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].name, "abc");
            assert_eq!(v[0].bytes, b"\x7fELF");
            p[24] = 200;
            assert_eq!(parse(&p).unwrap().count(), 0);
            assert!(parse(b"BOOT").is_none());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_numbers_do_not_collide_with_the_kernel_calls() {
        for n in [SYS_FMAP, SYS_FUNMAP, SYS_MPROTECT] {
            assert!(n > FAULT_RETURN);
        }
        assert_eq!(SYS_FMAP, 0x2100_0384);
        assert_eq!(SYS_FUNMAP, 0x2000_005C);
        assert_eq!(sqe_word0(1, 2, 3), 0x0000_0003_0000_0201);
    }

    #[test]
    fn every_exception_vector_has_its_name() {
        assert_eq!(vector_name(0), "divide error");
        assert_eq!(vector_name(3), "breakpoint");
        assert_eq!(vector_name(PAGE_FAULT), "page fault");
        assert_eq!(vector_name(19), "SIMD floating point");
        assert_eq!(vector_name(15), "reserved exception");
        assert_eq!(vector_name(32), "interrupt");
        assert_eq!(vector_name(KILLED), "unknown vector");
        assert_eq!(vector_mnemonic(13), "#GP");
        assert_eq!(vector_mnemonic(16), "#MF");
        assert_eq!(vector_mnemonic(9), "");
        // Every architectural exception the CPU may raise has a name and a mnemonic of its own.
        let named: std::vec::Vec<u64> = (0..32)
            .filter(|&v| vector_name(v) != "reserved exception")
            .collect();
        for &v in &named {
            assert!(!vector_name(v).is_empty());
            for &w in &named {
                assert!(v == w || vector_name(v) != vector_name(w), "{v} {w}");
            }
        }
    }
}

/// Device ranges: physical memory that is not RAM (memory-mapped I/O, a framebuffer), named on
/// the kernel command line as `device=NAME:BASE:LEN` (numbers in hex with `0x`, or decimal),
/// one word per range. The kernel accepts a range that is page aligned, not empty, inside its
/// physical window and clear of every RAM range of the memory map, and lets the pager map
/// pages of accepted ranges only ([`OP_MAP_DEVICE`]); the pager names them by the same words
/// and hands them to the processes holding their capability. One parser for both.
pub mod devices {
    /// The most device ranges the command line may name.
    pub const MAX_DEVICES: usize = 8;
    /// The most bytes of a device's name.
    pub const MAX_DEVICE_NAME: usize = 16;

    /// One `device=` word of the command line, as written (not yet checked against memory).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Device<'a> {
        /// Its name.
        pub name: &'a str,
        /// First physical byte.
        pub base: u64,
        /// Length in bytes.
        pub len: u64,
    }

    fn number(s: &str) -> Option<u64> {
        match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        }
    }

    /// The `device=` words of `cmdline`, in order, at most [`MAX_DEVICES`]; a word that does not
    /// parse (a bad number, an empty or too long name) is `None` in its place, so the indices
    /// of the kernel and the pager agree.
    pub fn parse(cmdline: &str) -> impl Iterator<Item = Option<Device<'_>>> {
        cmdline
            .split(' ')
            .filter_map(|w| w.strip_prefix("device="))
            .take(MAX_DEVICES)
            .map(|w| {
                let mut parts = w.split(':');
                let (name, base, len) = (parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some() || name.is_empty() || name.len() > MAX_DEVICE_NAME {
                    return None;
                }
                Some(Device {
                    name,
                    base: number(base)?,
                    len: number(len)?,
                })
            })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn words_parse_in_order_with_bad_ones_kept_as_none() {
            let d: Vec<_> = parse(
                "loglevel=info device=vga:0xb8000:0x8000 device=bad:zz:1 x device=fb:4096:8192",
            )
            .collect();
            assert_eq!(
                d,
                [
                    Some(Device {
                        name: "vga",
                        base: 0xb8000,
                        len: 0x8000
                    }),
                    None,
                    Some(Device {
                        name: "fb",
                        base: 4096,
                        len: 8192
                    }),
                ]
            );
            assert_eq!(parse("device=:1:2 device=a:1 device=a:1:2:3").count(), 3);
            assert!(parse("device=:1:2 device=a:1 device=a:1:2:3").all(|d| d.is_none()));
            let many = "device=a:0:4096 ".repeat(12);
            assert_eq!(parse(&many).count(), MAX_DEVICES);
        }
    }
}
