//! vmbench, vmscaled and vmsmp on the metal, as `scripts/bench.sh` (and `--scaled`, `--smp`)
//! boots them (`-cpu qemu64 -icount shift=0`, 512 MiB; vmsmp on four processors) but in their
//! quick modes (`vmbench_quick`, `vmscaled_quick`, `vmsmp_quick`: a few operations per figure):
//! every figure's `RESULT` line is there with a positive median. Not timed tests: the figures
//! themselves are `scripts/bench.sh`'s business.

use qemu_runner::{Boot, default_cpus};
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

/// Every row vmscaled prints: the Linux peer's scaled rows, in its order.
const SCALED_ROWS: &[&str] = &[
    "timer_overhead",
    "p_zero4k_rep_stosq",
    "p_zero4k_rep_stosb",
    "p_zero4k_loop_qword",
    "p_zero4k_loop_sse128",
    "p_copy4k_rep_movsq",
    "p_bad_syscall",
    "h_getppid",
    "s_mprotect_toggle_R1",
    "s_mprotect_toggle_R1000",
    "s_mprotect_toggle_R10000",
    "s_mmap2p_munmap_holes_R1",
    "s_mmap2p_munmap_holes_R1000",
    "s_mmap2p_munmap_holes_R10000",
    "s_mmap_munmap_lazy_1p",
    "s_mmap_munmap_lazy_256p",
    "s_mmap_munmap_lazy_65536p",
    "s_munmap_populated_1p",
    "s_munmap_populated_256p",
    "s_munmap_populated_65536p",
    "s_mmap_touch_munmap_pp_1M",
    "s_touch_fault_per_page_1M",
    "s_mmap_touch_munmap_pp_64M",
    "s_touch_fault_per_page_64M",
    "s_mmap_touch_munmap_pp_256M",
    "s_touch_fault_per_page_256M",
    "s_mmap_touch_munmap_pp_64M_huge",
    "s_touch_fault_per_page_64M_huge",
    "s_read_fault_per_page_1M",
    "s_cow_fault_per_page_256",
    "s_fork_cow256_exit_wait",
    "s_cow_fault_per_page_4096",
    "s_fork_cow4096_exit_wait",
    "s_cow_fault_per_page_32768",
    "s_fork_cow32768_exit_wait",
    "s_wp_reuse_fault_per_page",
    "s_fork_exit_wait_R1",
    "s_fork_exit_wait_R1000",
    "s_fork_exit_wait_R10000",
    "s_mprotect_toggle_R1_afterfork",
    "s_pipe_rtt_P0",
    "s_fork_exit_wait_nocow_P0",
    "s_pipe_rtt_P8",
    "s_fork_exit_wait_nocow_P8",
    "s_pipe_rtt_P24",
    "s_fork_exit_wait_nocow_P24",
];

/// Every row vmsmp prints: the Linux peer's multi-CPU rows (but its pipe ping-pong: we have no
/// pipes), in its order, and our IPC round trip to memd.
const SMP_ROWS: &[&str] = &[
    "timer_overhead",
    "m_fault_threads_1",
    "m_fault_threads_2",
    "m_fault_threads_4",
    "m_fault_procs_1",
    "m_fault_procs_2",
    "m_fault_procs_4",
    "m_munmap_shootdown_1",
    "m_mprotect_shootdown_1",
    "m_fork_threads_1",
    "m_munmap_shootdown_2",
    "m_mprotect_shootdown_2",
    "m_fork_threads_2",
    "m_munmap_shootdown_4",
    "m_mprotect_shootdown_4",
    "m_fork_threads_4",
    "m_thread_create_join",
    "m_thread_create_join_crosscpu",
    "m_futex_rtt_samecpu",
    "m_futex_rtt_crosscpu",
    "m_ipc_rtt_memd",
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

/// Boots memd and `program` on `cpus` processors as `scripts/bench.sh` does (without
/// `aslr=off`) and checks that it ran to its end and printed every one of `figures` with a
/// positive median.
fn prints_every_figure(program: &str, cpus: u32, figures: &[&str]) {
    let mut boot = Boot::new(&["memd", program]);
    boot.cpus = cpus;
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
    for name in figures {
        match median(&o.log, name) {
            Some(m) => assert!(m > 0, "{name}: median {m}\n{}", o.log),
            None => panic!("no RESULT line for {name}\n{}", o.log),
        }
    }
}

#[test]
fn vmbench_prints_every_figure_under_icount_on_qemu64() {
    prints_every_figure("vmbench_quick", default_cpus(), FIGURES);
}

#[test]
fn vmscaled_prints_every_row_under_icount_on_qemu64() {
    prints_every_figure("vmscaled_quick", default_cpus(), SCALED_ROWS);
}

#[test]
fn vmsmp_prints_every_row_under_icount_on_four_processors() {
    prints_every_figure("vmsmp_quick", 4, SMP_ROWS);
}
