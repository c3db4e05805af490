//! QEMU system tests of memd as the pager on the metal: module 0 is memd, which the kernel
//! alone loads (`modules=pager`, added by the runner); memd starts module 1, which spawns the
//! other modules by name. Each test program prints `PASS name` lines and a final verdict;
//! `FAIL` anywhere fails the test.

use qemu_runner::Boot;
use std::time::Duration;

fn run(programs: &[&str]) -> qemu_runner::Outcome {
    let mut boot = Boot::new(programs);
    boot.timeout = Duration::from_secs(120);
    boot.run()
}

#[test]
fn memd_starts_the_first_program_and_serves_it() {
    let o = run(&["memd", "hello"]);
    o.assert_clean()
        .assert_log("kernel-shim: the pager starts the other programs")
        .assert_log("memd: ready:")
        .assert_log("memd: started hello as pid 1")
        .assert_log("PASS hello")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn memory_calls_errnos_brk_allocator_redox_calls_hostile_requests_and_fault_kills() {
    let o = run(&[
        "memd",
        "vmtest",
        "segv_ro",
        "segv_none",
        "segv_null",
        "exit7",
    ]);
    o.assert_clean()
        .assert_log("PASS brk")
        .assert_log("PASS zero fill")
        .assert_log("PASS mmap semantics")
        .assert_log("PASS allocator")
        .assert_log("PASS redox fmap funmap mprotect")
        .assert_log("PASS hostile requests")
        .assert_log("PASS region flood refused at")
        .assert_log_line(
            "memd: killed pid 2 (space 0x10002): write at 0x",
            "(protection)",
        )
        .assert_log_line(
            "memd: killed pid 3 (space 0x20002): read at 0x",
            "(protection)",
        )
        .assert_log("read at 0x100 (nothing mapped)")
        .assert_log("PASS faults kill only the faulting process")
        .assert_log("PASS vmtest")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn fork_is_copy_on_write_shares_shared_memory_leaks_nothing_and_cycles_return_every_frame() {
    let o = run(&["memd", "forktest", "exit7"]);
    o.assert_clean()
        .assert_log("PASS cow isolation")
        .assert_log("PASS shared memory across fork")
        .assert_log("PASS freed frames never leak")
        .assert_log("PASS 200 fork/exit cycles")
        .assert_log("PASS 200 spawn/exit cycles")
        .assert_log("PASS forktest")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn a_process_that_exhausts_memory_is_refused_then_killed_and_the_rest_goes_on() {
    let o = run(&["memd", "oomtest", "hog", "worker", "exit7"]);
    o.assert_clean()
        .assert_log("PASS hog got ENOMEM")
        .assert_log("(out of memory (largest process))")
        .assert_log("PASS out of memory")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn several_processes_fault_and_map_at_once_under_preemption() {
    let o = run(&["memd", "stress", "worker"]);
    o.assert_clean()
        .assert_log("PASS worker 2")
        .assert_log("PASS worker 5")
        .assert_log("PASS stress")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn zombies_are_bounded_per_parent_refused_with_eagain_and_dropped_with_their_parent() {
    let o = run(&["memd", "zombies", "exit7"]);
    o.assert_clean()
        .assert_log("PASS fork refused with EAGAIN past 256 children")
        .assert_log("PASS another process is served during the flood")
        .assert_log("PASS waiting makes room again")
        .assert_log("PASS the zombies of 20 ended parents are dropped")
        .assert_log("PASS zombies")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn a_lent_buffer_memd_cannot_write_gets_efault_and_cow_buffers_work_through_libvm() {
    let o = run(&["memd", "lentbuf"]);
    o.assert_clean()
        .assert_log("PASS a read-only lent buffer gets EFAULT and is not written")
        .assert_log("PASS a WAIT refused for its buffer leaves the status for the next WAIT")
        .assert_log("PASS copy-on-write and untouched buffers work through libvm")
        .assert_log("PASS lentbuf")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn memd_answers_a_fuzzer_right_and_gets_every_frame_back() {
    // The fixed layout: the fuzzer keeps its hostile ranges off its own memory by address.
    let mut boot =
        Boot::new(&["memd", "memdfuzz", "exit7"]).cmdline("aslr=off device=vga:0xb8000:0x8000");
    boot.timeout = Duration::from_secs(120);
    let o = boot.run();
    o.assert_clean()
        .assert_log("PASS memdfuzz")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
}

#[test]
fn memd_serving_from_four_workers_answers_four_fuzzers_at_once_and_gets_every_frame_back() {
    // Four fuzzing processes (each its own seed, with its chaos children) on four processors,
    // against memd's four worker threads: every answer checked, every frame back.
    let mut boot = Boot::new(&["memd", "memdfuzz", "exit7"])
        .cmdline("aslr=off memdfuzz=11:10000 memdfuzz.workers=4");
    boot.cpus = 4;
    boot.timeout = Duration::from_secs(240);
    let o = boot.run();
    o.assert_clean()
        .assert_log("memd: 4 worker threads serving the pager endpoint")
        .assert_log("memdfuzz: seed 11, 10000 requests, 4 workers")
        .assert_log("PASS memdfuzz")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
    let finished = o.log.matches("memdfuzz: seed 11: ").count();
    assert_eq!(finished, 4, "{}", o.log);
}

#[test]
fn memds_log_level_comes_from_the_kernel_command_line() {
    let debug = Boot::new(&["memd", "aslrprobe"])
        .cmdline("loglevel=debug")
        .run();
    debug
        .assert_clean()
        .assert_log("memd: log level DEBUG")
        .assert_log("memd: started aslrprobe as pid 1")
        .assert_log_line("memd: pid 1 Ok(Mmap {", "})")
        .assert_log_line("memd: pid 1 Write fault at 0x", " resolved")
        .assert_log("PASS aslrprobe");
    let quiet = Boot::new(&["memd", "hello"]).cmdline("loglevel=warn").run();
    quiet
        .assert_clean()
        .assert_no_log("memd: ready")
        .assert_no_log("memd: started hello")
        .assert_log("PASS hello")
        .assert_log("memd: pid 1 (hello) ended: exit status 0");
}
