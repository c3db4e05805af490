//! Linux's memory interface on the metal: resource limits set by a process, inherited by its
//! forks; locked pages resident and kept.

use qemu_runner::Boot;

#[test]
fn resource_limits_hold_across_fork_and_locked_pages_stay_resident() {
    let o = Boot::new(&["memd", "rlimits"]).run();
    o.assert_clean()
        .assert_log("PASS rlimits")
        .assert_log("PASS mlock")
        .assert_no_log("FAIL");
}
