//! The hosted benchmark: what memd's logic costs on the host, over the emulated kernel.
//! Run: `cargo bench -p testbed --bench hostbench`. Prints figures; asserts nothing.

use libvm::{MmapFlags, ProtectionFlags as P};
use memd::region::{Region, RegionFlags, RegionKind, RegionMap};
use std::hint::black_box;
use std::time::Instant;
use testbed::system::{Config, System};

const PAGE: u64 = 4096;

fn per_op(label: &str, n: u64, start: Instant) {
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{label:<34} {ns:>10.0} ns/op");
}

fn main() {
    println!("region descriptor: {} bytes", std::mem::size_of::<Region>());
    let sys = System::new(Config {
        ram_bytes: 256 << 20,
        table_frames: 8192,
        ..Config::default()
    });
    let p = sys.spawn().unwrap();
    let vm = sys.client(p);
    let anon = MmapFlags::anonymous_private();

    let n = 20_000;
    let t = Instant::now();
    let mut addrs = Vec::with_capacity(n as usize);
    for _ in 0..n {
        addrs.push(vm.mmap(0, 4096, P::READ_WRITE, anon).unwrap());
    }
    per_op("mmap 4 KiB", n, t);
    let t = Instant::now();
    for &a in &addrs {
        vm.munmap(a, 4096).unwrap();
    }
    per_op("munmap 4 KiB", n, t);

    let a = vm.mmap(0, 256 * 4096, P::READ_WRITE, anon).unwrap();
    for i in 0..256 {
        sys.write(p, a as u64 + i * PAGE, b"x").unwrap();
    }
    let n = 5_000;
    let t = Instant::now();
    for _ in 0..n {
        vm.mprotect(a + 96 * 4096, 64 * 4096, P::READ).unwrap();
        vm.mprotect(a + 96 * 4096, 64 * 4096, P::READ_WRITE)
            .unwrap();
    }
    per_op("mprotect 64-page split + merge", n, t);

    let pages = 16_384u64;
    let b = vm
        .mmap(0, (pages * PAGE) as usize, P::READ_WRITE, anon)
        .unwrap() as u64;
    let t = Instant::now();
    for i in 0..pages {
        sys.write(p, b + i * PAGE, b"z").unwrap();
    }
    per_op("fault, zero fill (per page)", pages, t);

    let c = sys.fork(p).unwrap();
    let t = Instant::now();
    for i in 0..pages {
        sys.write(c, b + i * PAGE, b"c").unwrap();
    }
    per_op("fault, copy-on-write (per page)", pages, t);
    sys.exit(c, 0).unwrap();

    for regions in [1_000u64, 100_000, 1_000_000] {
        let mut map = RegionMap::new();
        for i in 0..regions {
            let start = 0x1000_0000 + i * 2 * PAGE;
            map.insert(Region {
                start,
                end: start + PAGE,
                prot: P::READ,
                kind: RegionKind::Anonymous,
                shared: false,
                object: 0,
                flags: RegionFlags::empty(),
                offset: 0,
            })
            .unwrap();
        }
        let lookups = 2_000_000u64;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let t = Instant::now();
        let mut found = 0u64;
        for _ in 0..lookups {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let addr = 0x1000_0000 + (x % (regions * 2)) * PAGE;
            found += black_box(map.find(addr)).is_some() as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "lookups at {regions:>9} regions   {:>10.1} M/s  ({found} hits)",
            lookups as f64 / secs / 1e6
        );
    }
}
