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

#[test]
fn fault_handlers_map_pages_skip_instructions_and_a_fault_inside_the_handler_kills() {
    // Pins: a refused fault goes to the registered handler with signal, code (MAPERR, ACCERR,
    // SI_KERNEL), address, access and registers; returning retries with the frame's registers;
    // a fault inside the handler, an unusable alternate stack or a removed handler kills.
    let o = Boot::new(&["memd", "faulthandler"]).run();
    o.assert_clean()
        .assert_log("PASS handler maps the page")
        .assert_log("PASS handler unprotects")
        .assert_log("PASS handler skips the instruction")
        .assert_log("PASS a fault inside the handler kills")
        .assert_log("PASS without a usable handler the process is killed")
        .assert_log("PASS forged frames")
        .assert_log("PASS fault handlers")
        .assert_no_log("FAIL");
}

#[test]
fn huge_pages_back_advised_memory_and_split_on_change() {
    // Pins: MADV_HUGEPAGE memory is placed on a 2 MiB boundary and backed by huge pages at
    // its first writes; a change to part of one splits it with every byte kept; fork copies
    // page by page; munmap gives every frame back. Shared memory given the advice: one huge
    // run per block, mapped whole by the child that touched it first and by its parent.
    let o = Boot::new(&["memd", "hugepages"]).run();
    o.assert_clean()
        .assert_log("PASS 4 huge pages, one fault each")
        .assert_log("PASS a split keeps every byte")
        .assert_log("PASS huge pages")
        .assert_log("PASS shared huge pages, one run mapped whole by each sharer")
        .assert_no_log("FAIL");
}
