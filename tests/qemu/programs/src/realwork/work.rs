//! The workloads of the Linux peer's real-program benchmark (its `work.rs`), with their sizes
//! made a parameter ([`Scale`]): at [`FULL`] they are the peer's, byte for byte the same inputs
//! (the text generator, the key sequence, the values sorted), the same crates and versions
//! (`miniz_oxide` 0.8.9, `hashbrown` 0.15.5, `alloc`'s sort). [`QUICK`] is a small run of the
//! same code, for the QEMU test.
//!
//! This file is compiled twice: into the ring-3 program (`realwork`, `no_std` + `alloc`) and
//! into the QEMU test on the host (`tests/qemu/tests/realwork.rs`), which computes the
//! checksums the guest must print. `probe` is called where a workload's memory is at (or
//! near) its peak; the driver samples resident memory there. Each workload returns a checksum
//! (so nothing is optimised away) and is deterministic.

use alloc::vec::Vec;

/// The sizes of the workloads.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Bytes of generated text deflated and inflated.
    pub text: usize,
    /// Keys inserted into the hash map (and looked up).
    pub keys: usize,
    /// Values sorted.
    pub values: usize,
    /// Pages touched by the touch workloads (a power of two: the scattered order is a
    /// permutation modulo it).
    pub pages: usize,
    /// Bytes of the zeroed vector.
    pub zeroed: usize,
}

/// The peer's sizes: 8 MiB of text, 1M keys, 4M values, 64 MiB touched, 64 MiB zeroed.
pub const FULL: Scale = Scale {
    text: 8 << 20,
    keys: 1 << 20,
    values: 4 << 20,
    pages: 16384,
    zeroed: 64 << 20,
};

/// A smoke run of the same code: 256 KiB of text, 64K keys, 256K values, 4 MiB touched and
/// zeroed.
pub const QUICK: Scale = Scale {
    text: 256 << 10,
    keys: 1 << 16,
    values: 256 << 10,
    pages: 1024,
    zeroed: 4 << 20,
};

/// A small LCG (deterministic, the same on both sides).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
}

const WORDS: [&str; 32] = [
    "the",
    "memory",
    "of",
    "a",
    "process",
    "is",
    "mapped",
    "page",
    "by",
    "frame",
    "kernel",
    "daemon",
    "region",
    "fault",
    "copy",
    "on",
    "write",
    "zero",
    "fill",
    "heap",
    "break",
    "stack",
    "and",
    "with",
    "table",
    "entry",
    "flush",
    "shared",
    "private",
    "anonymous",
    "protection",
    "request",
];

/// `len` bytes of generated text: words from a small vocabulary, spaces, line breaks.
pub fn gen_text(len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut r = Lcg(42);
    let mut col = 0;
    while v.len() < len {
        let w = WORDS[(r.next() % 32) as usize].as_bytes();
        v.extend_from_slice(w);
        col += w.len() + 1;
        if col > 72 {
            v.push(b'\n');
            col = 0;
        } else {
            v.push(b' ');
        }
        if r.next().is_multiple_of(97) {
            // A number now and then, so the text is not too repetitive.
            let n = r.next() % 1_000_000;
            let mut buf = [0u8; 8];
            let mut i = buf.len();
            let mut m = n;
            loop {
                i -= 1;
                buf[i] = b'0' + (m % 10) as u8;
                m /= 10;
                if m == 0 {
                    break;
                }
            }
            v.extend_from_slice(&buf[i..]);
            v.push(b' ');
        }
    }
    v.truncate(len);
    v
}

/// deflate: miniz_oxide's zlib compression (level 6) and inflation of the generated text.
pub fn w_deflate(s: &Scale, probe: &mut dyn FnMut()) -> u64 {
    let text = gen_text(s.text);
    let packed = miniz_oxide::deflate::compress_to_vec_zlib(&text, 6);
    probe();
    let unpacked = miniz_oxide::inflate::decompress_to_vec_zlib(&packed).expect("inflate");
    probe();
    assert!(unpacked == text);
    let sum = packed.len() as u64 * 1_000_003 + unpacked.len() as u64;
    drop(unpacked);
    drop(packed);
    drop(text);
    sum
}

/// hashmap: a hashbrown `HashMap<u64, u64>` grown from empty to `keys` scattered keys, as many
/// lookups, dropped.
pub fn w_hashmap(s: &Scale, probe: &mut dyn FnMut()) -> u64 {
    let mut m: hashbrown::HashMap<u64, u64> = hashbrown::HashMap::new();
    let mut r = Lcg(7);
    for i in 0..s.keys as u64 {
        let k = r.next();
        m.insert(k, i);
        // Just before a resize (len == capacity): the old table is full.
        if m.len() == m.capacity() && m.len() >= 1 << 16 {
            probe();
        }
    }
    probe();
    let mut r = Lcg(7);
    let mut sum = 0u64;
    for _ in 0..s.keys {
        sum = sum.wrapping_add(*m.get(&r.next()).expect("key"));
    }
    sum = sum.wrapping_add(m.len() as u64);
    drop(m);
    sum
}

/// sort: a `Vec<u64>` of `values` grown by push, stable sort (alloc's driftsort: a scratch
/// buffer), checked, dropped. The comparator samples memory every 16M comparisons (while the
/// scratch lives).
pub fn w_sort(s: &Scale, probe: &mut dyn FnMut()) -> u64 {
    let mut v = Vec::new();
    let mut r = Lcg(99);
    for _ in 0..s.values {
        v.push(r.next());
    }
    probe();
    let mut cmps = 0u64;
    v.sort_by(|a, b| {
        cmps += 1;
        if cmps & ((1 << 24) - 1) == 0 {
            probe();
        }
        a.cmp(b)
    });
    let mut sum = 0u64;
    for w in v.windows(2) {
        assert!(w[0] <= w[1]);
    }
    for (i, x) in v.iter().enumerate() {
        sum = sum.wrapping_add(x ^ i as u64);
    }
    drop(v);
    sum.wrapping_add(cmps)
}

/// touch, in order: the first touch of `pages` pages (`Vec::with_capacity`), one volatile
/// write a page, in address order.
pub fn w_touch_seq(s: &Scale, probe: &mut dyn FnMut()) -> u64 {
    touch(s.pages, probe, false)
}

/// touch, scattered: the same, pages in a scattered order (an odd multiplier modulo the
/// number of pages).
pub fn w_touch_rand(s: &Scale, probe: &mut dyn FnMut()) -> u64 {
    touch(s.pages, probe, true)
}

fn touch(pages: usize, probe: &mut dyn FnMut(), scatter: bool) -> u64 {
    let mut v: Vec<u64> = Vec::with_capacity(pages * 512);
    let spare = v.spare_capacity_mut();
    for i in 0..pages {
        let p = if scatter {
            i.wrapping_mul(0x9E37_79B1) & (pages - 1)
        } else {
            i
        };
        // SAFETY: a pointer to an element inside the vector's capacity, written once, never
        // read as a `u64` of the vector (its length stays 0).
        unsafe { core::ptr::write_volatile(spare[p * 512].as_mut_ptr(), i as u64) };
    }
    probe();
    drop(v);
    pages as u64
}

/// zeroed: `vec![0u8; zeroed]` (the allocator's `alloc_zeroed`), then one read a page.
pub fn w_zeroed(s: &Scale, probe: &mut dyn FnMut()) -> u64 {
    let v = alloc::vec![0u8; s.zeroed];
    let mut sum = 0u64;
    for i in (0..v.len()).step_by(4096) {
        // SAFETY: a reference to a byte of the vector, in bounds.
        sum += unsafe { core::ptr::read_volatile(&v[i]) } as u64;
    }
    probe();
    drop(v);
    sum
}

/// A workload: its sizes, and where it samples memory.
pub type Workload = fn(&Scale, &mut dyn FnMut()) -> u64;

/// The workloads under the peer's row names, in its order.
pub const WORKLOADS: [(&str, Workload); 6] = [
    ("deflate8M", w_deflate),
    ("hashmap1M", w_hashmap),
    ("sort4M", w_sort),
    ("touch64M_seq", w_touch_seq),
    ("touch64M_rand", w_touch_rand),
    ("zeroed64M", w_zeroed),
];
