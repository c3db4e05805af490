//! Linux's memory interface on the metal: resource limits set by a process, inherited by its
//! forks; locked pages resident and kept; mappings moved and grown.

use qemu_runner::Boot;

#[test]
fn resource_limits_hold_across_fork_and_locked_pages_stay_resident() {
    let o = Boot::new(&["memd", "rlimits"]).run();
    o.assert_clean()
        .assert_log("PASS rlimits")
        .assert_log("PASS mlock")
        .assert_no_log("FAIL");
}

#[test]
fn mremap_moves_page_table_entries_and_remove_advice_frees_shared_pages() {
    let o = Boot::new(&["memd", "remap"]).run();
    o.assert_clean()
        .assert_log("PASS mremap move")
        .assert_log("PASS mremap shared")
        .assert_log("PASS madv_remove")
        .assert_no_log("FAIL");
}
