//! vmbench on the metal, as `scripts/bench.sh` boots it (`-cpu qemu64 -icount shift=0`, 512
//! MiB) but in its quick mode (`vmbench_quick`: a few operations per figure): every figure's
//! `RESULT` line is there with a positive median. Not a timed test: the figures themselves are
//! `scripts/bench.sh`'s business.

use qemu_runner::Boot;
use std::time::Duration;

/// Every figure vmbench prints.
const FIGURES: &[&str] = &[
    "timer_overhead",
    "h_getppid",
    "g_ipc_rtt_memd",
    "a_mmap4k_munmap",
    "a2_mmap4k_touch_munmap",
    "b_mmap1m_touch_munmap_total",
    "b_per_page_incl_mmap_munmap",
    "b_touch_fault_per_page",
    "c_mprotect_toggle_4k",
    "d_mprotect64_split",
    "d_mprotect64_merge",
    "e_brk_grow4k",
    "e_brk_shrink4k",
    "f_cow_fault_per_page",
    "f_fork_cow256_exit_wait",
    "f_fork_exit_wait_nocow",
];

/// The `med_cyc` of figure `name` in `log`.
fn median(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .find(|r| r.split_whitespace().next() == Some(name))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("med_cyc="))?
        .parse()
        .ok()
}

#[test]
fn vmbench_prints_every_figure_under_icount_on_qemu64() {
    let mut boot = Boot::new(&["memd", "vmbench_quick"]);
    boot.cpu = "qemu64".into();
    boot.icount = true;
    boot.memory_mib = 512;
    boot.timeout = Duration::from_secs(180);
    let o = boot.run();
    o.assert_clean()
        .assert_log("VMBENCH_BEGIN")
        .assert_log("VMBENCH_END")
        .assert_no_log("FATAL")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
    for name in FIGURES {
        match median(&o.log, name) {
            Some(m) => assert!(m > 0, "{name}: median {m}\n{}", o.log),
            None => panic!("no RESULT line for {name}\n{}", o.log),
        }
    }
}
