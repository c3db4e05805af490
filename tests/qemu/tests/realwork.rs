//! The real-program benchmark's workloads, checked: `realwork_quick` on the metal (as
//! `scripts/bench.sh --realwork` boots `realwork`: `-cpu qemu64 -icount shift=0`, 512 MiB,
//! layout randomization off, but at small sizes) prints every row, each with the checksum the
//! same workload code computes on the host, so the workloads are verified, not just timed; and
//! the figures hold what libvm promises: a zeroed vector read once a page leaves nothing
//! resident, a touched one every page. At the peer's sizes, the same code on the host computes
//! the checksums the Linux peer printed (`scripts/bench/linux-realwork.txt`): the inputs are
//! the peer's.

extern crate alloc;

#[path = "../programs/src/realwork/work.rs"]
mod work;

use qemu_runner::{Boot, workspace_root};
use std::collections::HashMap;
use std::time::Duration;

/// The figures of row `name`'s `RW` line in `log`.
fn row(log: &str, name: &str) -> HashMap<String, u64> {
    let line = log
        .lines()
        .filter_map(|l| l.split_once("RW ").map(|(_, r)| r))
        .find(|r| r.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no RW line for {name}\n{log}"));
    line.split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("a number"))
        })
        .collect()
}

/// The checksum of each workload at `scale`, computed here.
fn checksums(scale: &work::Scale) -> Vec<(&'static str, u64)> {
    work::WORKLOADS
        .iter()
        .map(|&(name, workload)| (name, workload(scale, &mut || {})))
        .collect()
}

#[test]
fn realwork_computes_on_the_metal_what_the_host_computes() {
    let mut boot = Boot::new(&["memd", "realwork_quick"]).cmdline("aslr=off");
    boot.cpu = "qemu64".into();
    boot.icount = true;
    boot.memory_mib = 512;
    boot.timeout = Duration::from_secs(120);
    let o = boot.run();
    o.assert_clean()
        .assert_log("REALWORK_BEGIN")
        .assert_log("REALWORK_END")
        .assert_no_log("FATAL")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
    let scale = work::QUICK;
    for (name, sum) in checksums(&scale) {
        let r = row(&o.log, name);
        assert_eq!(r["sum"], sum, "{name}: the host computes {sum}\n{}", o.log);
        assert!(r["instr"] > 0 && r["alloc_calls"] > 0, "{name}\n{}", o.log);
        assert!(r["rss_peak_kb"] >= r["rss_base_kb"], "{name}\n{}", o.log);
        // memd's high-water mark sees at least what the probes saw.
        assert!(r["hwm_kb"] >= r["rss_peak_kb"], "{name}\n{}", o.log);
    }
    let touched = scale.pages as u64 * 4;
    for name in ["touch64M_seq", "touch64M_rand"] {
        let r = row(&o.log, name);
        assert!(
            r["rss_peak_kb"] >= r["rss_base_kb"] + touched,
            "{name}: every page resident"
        );
        assert!(r["minflt"] > 0, "{name}");
    }
    // One fault a page when scattered; a sequential walk is backed several pages a fault.
    assert!(row(&o.log, "touch64M_rand")["minflt"] >= scale.pages as u64);
    assert!(row(&o.log, "touch64M_seq")["minflt"] < scale.pages as u64);
    // vec![0u8; n] is one zeroed allocation, which writes nothing: reading it once a page
    // maps memd's zero frame, so nothing new is resident.
    let zeroed = row(&o.log, "zeroed64M");
    assert_eq!(zeroed["zeroed_calls"], 1);
    assert_eq!(zeroed["req_peak_kb"], scale.zeroed as u64 / 1024);
    assert!(
        zeroed["rss_peak_kb"] <= zeroed["rss_base_kb"] + 16
            && zeroed["hwm_kb"] <= zeroed["rss_base_kb"] + 16,
        "zeroed memory became resident\n{}",
        o.log
    );
}

#[test]
fn at_the_peers_sizes_the_workloads_compute_the_peers_checksums() {
    let path = workspace_root().join("scripts/bench/linux-realwork.txt");
    let peer = std::fs::read_to_string(&path).expect("scripts/bench/linux-realwork.txt");
    let sums: HashMap<&str, u64> = peer
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            Some((*words.first()?, words.get(5)?.parse().ok()?))
        })
        .collect();
    for (name, sum) in checksums(&work::FULL) {
        assert_eq!(Some(&sum), sums.get(name), "{name}");
    }
}
