//! allocbench on the metal, as `scripts/allocbench.sh` boots it (`-cpu qemu64 -icount
//! shift=0`, 512 MiB, layout randomization off) but in its quick mode (`allocbench_quick`: a
//! small trace): every allocator's `RESULT` line is there and sound — its instruction figures
//! positive, its resident memory never below the bytes it was asked for (every page of every
//! live block is written) — and the figures the choice of libvm's allocator rests on hold:
//! talc's and dlmalloc's resident memory at the peak is below the power-of-two allocator's,
//! and the memory libvm's allocator gives back leaves it below talc's own after the peak and
//! after every block is freed (then within what libvm keeps at the top of its heap). Not a
//! timed test: the figures themselves are `scripts/allocbench.sh`'s business.

use qemu_runner::Boot;
use std::collections::HashMap;
use std::time::Duration;

/// The allocators allocbench measures, in its order.
const ALLOCATORS: &[&str] = &["pow2", "talc", "dlmalloc", "libvm"];

/// Every figure of a `RESULT` line.
const FIGURES: &[&str] = &[
    "peak_req",
    "peak_rss",
    "end_req",
    "end_rss",
    "freed_rss",
    "malloc_mean",
    "malloc_med",
    "free_mean",
    "free_med",
    "realloc_mean",
    "realloc_med",
    "mallocs",
    "frees",
    "reallocs",
    "mmap",
    "munmap",
    "brk",
    "brackets",
    "total",
];

/// The figures of allocator `name`'s `RESULT` line in `log`.
fn figures(log: &str, name: &str) -> Option<HashMap<String, u64>> {
    let line = log
        .lines()
        .filter_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .find(|r| r.split_whitespace().next() == Some(name))?;
    line.split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
fn allocbench_prints_every_allocator_under_icount_on_qemu64() {
    let mut boot = Boot::new(&["memd", "allocbench_quick"]).cmdline("aslr=off");
    boot.cpu = "qemu64".into();
    boot.icount = true;
    boot.memory_mib = 512;
    boot.timeout = Duration::from_secs(180);
    let o = boot.run();
    o.assert_clean()
        .assert_log("ALLOCBENCH_BEGIN")
        .assert_log("ALLOCBENCH_END")
        .assert_no_log("FATAL")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
    let mut all = HashMap::new();
    for &name in ALLOCATORS {
        let Some(f) = figures(&o.log, name) else {
            panic!("no RESULT line for {name}\n{}", o.log)
        };
        for &figure in FIGURES {
            assert!(f.contains_key(figure), "{name}: no {figure}\n{}", o.log);
        }
        for figure in ["malloc_med", "free_med", "realloc_med", "mallocs", "total"] {
            assert!(f[figure] > 0, "{name}: {figure} = 0\n{}", o.log);
        }
        assert_eq!(f["mallocs"], f["frees"], "{name}: every block is freed");
        assert!(f["peak_req"] > f["end_req"], "{name}: the peak is a peak");
        assert!(
            f["peak_rss"] >= f["peak_req"],
            "{name}: resident below requested"
        );
        assert!(
            f["end_rss"] >= f["end_req"],
            "{name}: resident below requested"
        );
        all.insert(name, f);
    }
    // The same trace for every allocator.
    for figure in ["peak_req", "end_req", "mallocs", "reallocs"] {
        assert!(
            ALLOCATORS
                .iter()
                .all(|n| all[n][figure] == all["pow2"][figure])
        );
    }
    assert!(all["talc"]["peak_rss"] < all["pow2"]["peak_rss"]);
    assert!(all["dlmalloc"]["peak_rss"] < all["pow2"]["peak_rss"]);
    assert!(all["libvm"]["peak_rss"] < all["pow2"]["peak_rss"]);
    assert!(all["libvm"]["end_rss"] < all["talc"]["end_rss"]);
    // Once every block is freed, libvm's heap keeps less than 1 MiB free at its top, and 128
    // KiB above its highest block when it gives the rest back.
    assert!(all["libvm"]["freed_rss"] < all["talc"]["freed_rss"]);
    assert!(all["libvm"]["freed_rss"] <= (1 << 20) + (128 << 10));
}
