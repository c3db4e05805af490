//! Linux's memory interface on the metal: resource limits set by a process, inherited by its
//! forks.

use qemu_runner::Boot;

#[test]
fn resource_limits_hold_across_fork() {
    let o = Boot::new(&["memd", "rlimits"]).run();
    o.assert_clean()
        .assert_log("PASS rlimits")
        .assert_no_log("FAIL");
}
