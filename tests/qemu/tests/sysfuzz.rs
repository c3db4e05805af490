//! The system-call fuzzer (`programs/src/bin/sysfuzz.rs`) in CI: 100,000 calls with the
//! default seed, once with the kernel's small test pager and once with memd as the pager, and
//! four threads of it at once on four processors (with layout randomization: their stacks lie
//! anywhere). The kernel must neither stop nor hang, the fuzzer's checks of every call must
//! hold, and memd must still serve afterwards with its frames back where they were.

use qemu_runner::Boot;
use std::time::Duration;

fn fuzz(programs: &[&str]) -> qemu_runner::Outcome {
    let o = run(Boot::new(programs));
    o.assert_log("sysfuzz: seed 1, 100000 calls")
        .assert_log("sysfuzz: 100000 calls in ");
    o
}

fn run(mut boot: Boot) -> qemu_runner::Outcome {
    boot.timeout = Duration::from_secs(120);
    let o = boot.run();
    o.assert_clean()
        .assert_log("PASS sysfuzz")
        .assert_no_log("KERNEL FAULT")
        .assert_no_log("KERNEL PANIC")
        .assert_no_log("PAGER FAULT")
        .assert_no_log("PANIC")
        .assert_no_log("FAIL");
    o
}

#[test]
fn a_hundred_thousand_hostile_system_calls_with_the_test_pager() {
    fuzz(&["pager", "sysfuzz"]).assert_log("sysfuzz: seed 1, 100000 calls, the test pager");
}

#[test]
fn a_hundred_thousand_hostile_system_calls_with_memd_and_memd_still_serves() {
    fuzz(&["memd", "sysfuzz"])
        .assert_log("sysfuzz: seed 1, 100000 calls, memd is the pager")
        .assert_log("sysfuzz: memd still serves: mmap, touch, munmap; data frames in use")
        .assert_no_log("memd: killed");
}

#[test]
fn four_threads_of_hostile_system_calls_at_once_on_four_processors() {
    let mut boot = Boot::new(&["memd", "sysfuzz"])
        .cmdline("sysfuzz.seed=5 sysfuzz.calls=40000 sysfuzz.threads=4");
    boot.cpus = 4;
    run(boot)
        .assert_log("sysfuzz: seed 5, 40000 calls, memd is the pager")
        .assert_log("sysfuzz: 3 more threads made 120000 calls at once, every one checked")
        .assert_log("sysfuzz: memd still serves: mmap, touch, munmap; data frames in use")
        .assert_no_log("memd: killed");
}
