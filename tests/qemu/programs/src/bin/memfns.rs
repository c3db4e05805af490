//! The memory functions the programs link in place of a C library's (`nolibc`): `memcpy`,
//! `memmove` (both directions of overlap), `memset`, `memcmp` and `bcmp` against byte loops,
//! at every length up to past a few words and every alignment of the 8 bytes of a word, with
//! the bytes around the range checked untouched. Stack buffers only: any pager will do.
#![no_std]
#![no_main]

use user_rt::*;

entry!(main);

const N: usize = 256;

/// Longest range tried.
const MAX_LEN: usize = 80;

/// A byte of a pattern that differs at every offset and between `seed`s.
fn pattern(seed: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 3) as u8
}

/// `b` filled with `pattern(seed, _)`, a byte at a time through volatile stores: the compiler
/// cannot make a call to the functions under test of it.
fn fill(b: &mut [u8; N], seed: u8) {
    for (i, x) in b.iter_mut().enumerate() {
        // SAFETY: `x` is a byte of `b`, borrowed mutably.
        unsafe { core::ptr::write_volatile(x, pattern(seed, i)) };
    }
}

/// `b[i]`, read through a volatile load.
fn at(b: &[u8; N], i: usize) -> u8 {
    // SAFETY: `i < N` (indexing checks it), a byte of `b`.
    unsafe { core::ptr::read_volatile(&b[i]) }
}

fn copies() {
    let (mut src, mut dst) = ([0u8; N], [0u8; N]);
    for len in 0..=MAX_LEN {
        for so in 0..8 {
            for d in 0..8 {
                fill(&mut src, 1);
                fill(&mut dst, 2);
                // SAFETY: both ranges lie inside their arrays (`8 + MAX_LEN < N`), which do
                // not overlap.
                let r =
                    unsafe { nolibc::memcpy(dst.as_mut_ptr().add(d), src.as_ptr().add(so), len) };
                check!(
                    r == dst.as_mut_ptr().wrapping_add(d),
                    "memcpy returned {:p}",
                    r
                );
                for i in 0..N {
                    let want = if (d..d + len).contains(&i) {
                        pattern(1, i - d + so)
                    } else {
                        pattern(2, i)
                    };
                    check!(
                        at(&dst, i) == want,
                        "memcpy of {} bytes from +{} to +{}: byte {} is {:#x}, not {:#x}",
                        len,
                        so,
                        d,
                        i,
                        at(&dst, i),
                        want
                    );
                }
            }
        }
    }
}

fn moves() {
    let mut b = [0u8; N];
    for len in 0..=MAX_LEN {
        for so in 0..24 {
            for d in 0..24 {
                fill(&mut b, 3);
                // SAFETY: both ranges lie inside `b` (`24 + MAX_LEN < N`); memmove allows
                // them to overlap.
                let r = unsafe { nolibc::memmove(b.as_mut_ptr().add(d), b.as_ptr().add(so), len) };
                check!(
                    r == b.as_mut_ptr().wrapping_add(d),
                    "memmove returned {:p}",
                    r
                );
                for i in 0..N {
                    let want = if (d..d + len).contains(&i) {
                        pattern(3, i - d + so)
                    } else {
                        pattern(3, i)
                    };
                    check!(
                        at(&b, i) == want,
                        "memmove of {} bytes from +{} to +{}: byte {} is {:#x}, not {:#x}",
                        len,
                        so,
                        d,
                        i,
                        at(&b, i),
                        want
                    );
                }
            }
        }
    }
}

fn fills() {
    let mut b = [0u8; N];
    for len in 0..=MAX_LEN {
        for d in 0..8 {
            for c in [0, 0xA5, 0x1FF] {
                fill(&mut b, 4);
                // SAFETY: the range lies inside `b`.
                let r = unsafe { nolibc::memset(b.as_mut_ptr().add(d), c, len) };
                check!(
                    r == b.as_mut_ptr().wrapping_add(d),
                    "memset returned {:p}",
                    r
                );
                for i in 0..N {
                    let want = if (d..d + len).contains(&i) {
                        c as u8
                    } else {
                        pattern(4, i)
                    };
                    check!(
                        at(&b, i) == want,
                        "memset of {} bytes of {:#x} at +{}: byte {} is {:#x}, not {:#x}",
                        len,
                        c,
                        d,
                        i,
                        at(&b, i),
                        want
                    );
                }
            }
        }
    }
}

fn compares() {
    let (mut a, mut b) = ([0u8; N], [0u8; N]);
    fill(&mut a, 5);
    fill(&mut b, 5);
    for len in 0..=MAX_LEN {
        for o in 0..8 {
            let (pa, pb) = (
                a.as_mut_ptr().wrapping_add(o),
                b.as_mut_ptr().wrapping_add(o),
            );
            // SAFETY: both ranges lie inside their arrays.
            let (m, e) = unsafe { (nolibc::memcmp(pa, pb, len), nolibc::bcmp(pa, pb, len)) };
            check!(
                m == 0 && e == 0,
                "{} equal bytes at +{}: {} {}",
                len,
                o,
                m,
                e
            );
            // One byte differs, first in `a` or in `b`; 0x80 against 0x7F sorts as unsigned.
            for i in 0..len {
                // SAFETY: `o + i < N`: a byte of `b`.
                let keep = unsafe { core::ptr::read_volatile(pb.add(i)) };
                for (x, y, sign) in [(0x7F, 0x80, -1), (0x80, 0x7F, 1), (1, 0, 1), (0, 1, -1)] {
                    // SAFETY: `o + i < N`, bytes of `a` and `b` written through their pointers.
                    let (m, e) = unsafe {
                        core::ptr::write_volatile(pa.add(i), x);
                        core::ptr::write_volatile(pb.add(i), y);
                        (nolibc::memcmp(pa, pb, len), nolibc::bcmp(pa, pb, len))
                    };
                    check!(
                        m.signum() == sign && e != 0,
                        "{} bytes at +{}, {:#x} against {:#x} at {}: memcmp {}, bcmp {}",
                        len,
                        o,
                        x,
                        y,
                        i,
                        m,
                        e
                    );
                }
                // Two bytes differ: the first decides, whatever the later one says (within
                // the same word or the next).
                for j in i + 1..len.min(i + 9) {
                    // SAFETY: `o + j < N`: a byte of `b`.
                    let later = unsafe { core::ptr::read_volatile(pb.add(j)) };
                    for (first, second, sign) in [
                        ((0x10, 0x20), (0xF0, 0x01), -1),
                        ((0x20, 0x10), (0x01, 0xF0), 1),
                    ] {
                        // SAFETY: `o + j < N`, bytes of `a` and `b` written through their
                        // pointers.
                        let m = unsafe {
                            core::ptr::write_volatile(pa.add(i), first.0);
                            core::ptr::write_volatile(pb.add(i), first.1);
                            core::ptr::write_volatile(pa.add(j), second.0);
                            core::ptr::write_volatile(pb.add(j), second.1);
                            nolibc::memcmp(pa, pb, len)
                        };
                        check!(
                            m.signum() == sign,
                            "{} bytes at +{}, {:#x} against {:#x} at {} and {:#x} against {:#x} at {}: memcmp {}",
                            len,
                            o,
                            first.0,
                            first.1,
                            i,
                            second.0,
                            second.1,
                            j,
                            m
                        );
                    }
                    // SAFETY: as above: the later bytes put back as they were.
                    unsafe {
                        core::ptr::write_volatile(pa.add(j), later);
                        core::ptr::write_volatile(pb.add(j), later);
                    }
                }
                // SAFETY: as above: the bytes put back as they were.
                unsafe {
                    core::ptr::write_volatile(pa.add(i), keep);
                    core::ptr::write_volatile(pb.add(i), keep);
                }
            }
        }
    }
}

fn main(_: Start) -> u64 {
    copies();
    moves();
    fills();
    compares();
    println!("PASS memfns");
    0
}
