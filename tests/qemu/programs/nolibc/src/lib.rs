//! nolibc: what the ring-3 programs link in place of a C library.
//!
//! The programs are built for `x86_64-unknown-linux-musl` (SSE2 in the ABI, on stable Rust)
//! and link no C library (`-nostdlib`), so two kinds of symbols that target expects from one
//! are here:
//!
//! - the C memory functions the compiler calls (`memcpy`, `memmove`, `memset`, `memcmp`,
//!   `bcmp`), which that target's `compiler_builtins` leaves to the C library and
//!   `x86_64-unknown-none`'s provides. They are written the way `compiler_builtins` writes
//!   them for x86_64 there: `rep movsq`/`rep stosq` over the 8-byte-aligned middle,
//!   `rep movsb`/`rep stosb` at the ends, and comparisons a word at a time; but a copy of at
//!   most 16 bytes is two loads and two stores, as glibc copies short ones (a `rep` string
//!   instruction has a start-up cost, and under QEMU's `-icount` each of its repetitions
//!   counts as an instruction);
//! - `_Unwind_Resume` and `rust_eh_personality`, which the target's prebuilt `alloc` names
//!   (it is compiled to unwind): the programs abort on panic, so no unwinding ever starts and
//!   neither is ever called; each is an invalid instruction, should one be.
//!
//! `#![no_builtins]` keeps the compiler from recognizing the memory functions' loops as the
//! very functions they implement (a call to itself).
#![no_std]
#![no_builtins]

use core::arch::asm;
use core::ffi::c_int;

/// Splits a copy or fill of `n` bytes at `dest` into bytes up to the first 8-byte boundary,
/// whole 8-byte words, and the bytes left.
fn split(dest: usize, n: usize) -> (usize, usize, usize) {
    let head = (dest.wrapping_neg() & 7).min(n);
    let rest = n - head;
    (head, rest / 8, rest % 8)
}

/// The most bytes [`copy_short`] copies.
const SHORT: usize = 16;

/// Copies `n` (at most [`SHORT`]) bytes from `src` to `dest` with two loads of the widest
/// size that fits twice (the second ending at the last byte, overlapping the first) and then
/// two stores: both loads come first, so any overlap of the ranges is copied right.
///
/// # Safety
///
/// `n` is at most [`SHORT`], `src` is valid for reads of `n` bytes and `dest` for writes of
/// `n` bytes.
#[inline(always)]
unsafe fn copy_short(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller's contract: every access lies inside `[src, src + n)` or
    // `[dest, dest + n)` (for `n` of 8 or more the words at 0 and `n - 8`, and so on down),
    // unaligned accesses being what `read_unaligned`/`write_unaligned` are for.
    unsafe {
        match n {
            0 => {}
            1..=3 => {
                let (a, b, c) = (*src, *src.add(n / 2), *src.add(n - 1));
                *dest = a;
                *dest.add(n / 2) = b;
                *dest.add(n - 1) = c;
            }
            4..=7 => {
                let a = src.cast::<u32>().read_unaligned();
                let b = src.add(n - 4).cast::<u32>().read_unaligned();
                dest.cast::<u32>().write_unaligned(a);
                dest.add(n - 4).cast::<u32>().write_unaligned(b);
            }
            _ => {
                let a = src.cast::<u64>().read_unaligned();
                let b = src.add(n - 8).cast::<u64>().read_unaligned();
                dest.cast::<u64>().write_unaligned(a);
                dest.add(n - 8).cast::<u64>().write_unaligned(b);
            }
        }
    }
}

/// Copies `n` bytes from `src` to `dest`, lowest address first.
///
/// # Safety
///
/// `src` is valid for reads of `n` bytes and `dest` for writes of `n` bytes; where they
/// overlap, `dest` lies below `src`.
unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    let (head, words, tail) = split(dest as usize, n);
    // SAFETY: the caller's contract: `rep movsb`/`rep movsq` (DF clear, as on every entry to
    // Rust code) read `[src, src + n)` and write `[dest, dest + n)` in order of address, which
    // is correct for an overlap with `dest` below `src`.
    unsafe {
        asm!(
            "rep movsb",
            "mov rcx, {words}",
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            words = in(reg) words,
            tail = in(reg) tail,
            inout("rcx") head => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Copies `n` bytes from `src` to `dest`, highest address first.
///
/// # Safety
///
/// `n` is not 0, `src` is valid for reads of `n` bytes and `dest` for writes of `n` bytes;
/// where they overlap, `dest` lies above `src`.
unsafe fn copy_backward(dest: *mut u8, src: *const u8, n: usize) {
    // From the top: the bytes above the last 8-byte boundary of `dest + n`, then whole words,
    // then the bytes left at the bottom.
    let head = ((dest as usize).wrapping_add(n) & 7).min(n);
    let rest = n - head;
    let (words, tail) = (rest / 8, rest % 8);
    // SAFETY: the caller's contract: with DF set, `rep movsb` and `rep movsq` walk down from
    // the last byte of each range (a word's pointer is its lowest byte, hence the 7s), reading
    // `[src, src + n)` and writing `[dest, dest + n)` highest address first, which is correct
    // for an overlap with `dest` above `src`; DF is clear again at the end, as Rust code
    // requires. `n` is not 0, so the first byte pointers lie inside the ranges.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "sub rdi, 7",
            "sub rsi, 7",
            "mov rcx, {words}",
            "rep movsq",
            "add rdi, 7",
            "add rsi, 7",
            "mov rcx, {tail}",
            "rep movsb",
            "cld",
            words = in(reg) words,
            tail = in(reg) tail,
            inout("rcx") head => _,
            inout("rdi") dest.wrapping_add(n - 1) => _,
            inout("rsi") src.wrapping_add(n - 1) => _,
            options(nostack)
        );
    }
}

/// C's `memcpy`: copies `n` bytes from `src` to `dest` (which do not overlap); returns `dest`.
///
/// # Safety
///
/// `src` is valid for reads of `n` bytes, `dest` for writes of `n` bytes, and they do not
/// overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n <= SHORT {
        // SAFETY: the caller's contract, and `n` is short.
        unsafe { copy_short(dest, src, n) };
        return dest;
    }
    // SAFETY: the caller's contract; ranges that do not overlap may be copied either way.
    unsafe { copy_forward(dest, src, n) };
    dest
}

/// C's `memmove`: copies `n` bytes from `src` to `dest`, which may overlap; returns `dest`.
///
/// # Safety
///
/// `src` is valid for reads of `n` bytes and `dest` for writes of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // `dest` at least `n` above `src`, or anywhere below it: no byte is read after it was
    // written when copying upwards.
    if n <= SHORT {
        // SAFETY: the caller's contract, and `n` is short (any overlap is copied right).
        unsafe { copy_short(dest, src, n) };
    } else if (dest as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: the caller's contract; any overlap has `dest` below `src`.
        unsafe { copy_forward(dest, src, n) };
    } else {
        // SAFETY: the caller's contract; `dest` lies above `src` by less than `n`, so `n` is
        // not 0 and the overlap has `dest` above `src`.
        unsafe { copy_backward(dest, src, n) };
    }
    dest
}

/// C's `memset`: writes `n` bytes of value `c` (its low byte) at `dest`; returns `dest`.
///
/// # Safety
///
/// `dest` is valid for writes of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: c_int, n: usize) -> *mut u8 {
    let (head, words, tail) = split(dest as usize, n);
    let fill = u64::from(c as u8) * 0x0101_0101_0101_0101;
    // SAFETY: the caller's contract: `rep stosb`/`rep stosq` (DF clear) write `[dest, dest +
    // n)` and nothing else.
    unsafe {
        asm!(
            "rep stosb",
            "mov rcx, {words}",
            "rep stosq",
            "mov rcx, {tail}",
            "rep stosb",
            words = in(reg) words,
            tail = in(reg) tail,
            inout("rcx") head => _,
            inout("rdi") dest => _,
            in("rax") fill,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// C's `memcmp`: compares `n` bytes at `a` and `b` as unsigned bytes, in order; returns a
/// negative number, 0 or a positive number as `a` sorts below, equal to or above `b`.
///
/// # Safety
///
/// `a` and `b` are valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`: both words lie in the ranges the caller vouches for.
        let (x, y) = unsafe {
            (
                a.add(i).cast::<u64>().read_unaligned(),
                b.add(i).cast::<u64>().read_unaligned(),
            )
        };
        if x != y {
            // Read big-endian, the first byte is the most significant: the words sort as
            // their bytes do.
            return if u64::from_be(x) < u64::from_be(y) {
                -1
            } else {
                1
            };
        }
        i += 8;
    }
    while i < n {
        // SAFETY: `i < n`: both bytes lie in the ranges the caller vouches for.
        let (x, y) = unsafe { (a.add(i).read(), b.add(i).read()) };
        if x != y {
            return c_int::from(x) - c_int::from(y);
        }
        i += 1;
    }
    0
}

/// C's `bcmp`: 0 when the `n` bytes at `a` and `b` are equal, something else when not.
///
/// # Safety
///
/// `a` and `b` are valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> c_int {
    // SAFETY: the caller's contract, which is memcmp's.
    unsafe { memcmp(a, b, n) }
}

/// The unwinder's `_Unwind_Resume`, which the landing pads of the prebuilt `alloc` call: never
/// reached, since a panic aborts and nothing unwinds.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    never_unwinds()
}

/// Rust's personality routine, which the unwinder would call for the prebuilt `alloc`'s
/// frames: never reached, since a panic aborts and nothing unwinds.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() -> ! {
    never_unwinds()
}

/// Stops the process with an invalid-opcode fault (the pager then ends it).
fn never_unwinds() -> ! {
    // SAFETY: `ud2` only raises #UD; it touches no memory and does not return.
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}
