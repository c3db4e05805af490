//! QEMU regression tests of "Isolation holds under attack": one per break (a process reading
//! another's memory after a large munmap, a refused request changing things, page tables
//! nobody pays for, out of memory killing whoever faults first), and the isolation of fresh
//! pages and of memd's and the kernel's memory. memd is module 0 and the test program module
//! 1 (pid 1, exempt from the out-of-memory policy); each program prints `PASS` lines and
//! `FAIL` on any broken check.

use qemu_runner::{Boot, Outcome};
use std::time::Duration;

fn run(programs: &[&str]) -> Outcome {
    let mut boot = Boot::new(programs);
    boot.timeout = Duration::from_secs(120);
    boot.run()
}

/// Panics unless the boot powered off cleanly with no `FAIL` and no panic.
fn clean(o: &Outcome) -> &Outcome {
    o.assert_clean()
        .assert_no_log("FAIL")
        .assert_no_log("PANIC")
}

/// Lines of the log that contain `needle`.
fn count(o: &Outcome, needle: &str) -> usize {
    o.log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn break1_memory_given_up_over_5_gib_is_gone_for_good() {
    let o = run(&["memd", "bigunmap"]);
    clean(&o)
        .assert_log("PASS MADV_DONTNEED over 5 GiB: frames back, pages read zero")
        .assert_log("PASS MAP_FIXED over 5 GiB: frames back, pages read zero")
        .assert_log("PASS mprotect NONE over 5 GiB")
        .assert_log("PASS munmap of 5 GiB: forked readers killed (MAPERR)")
        .assert_log("PASS munmap of 5 GiB: frames back; the owner killed reading")
        .assert_log("PASS bigunmap");
    // Six forked readers and the owner, each killed for reading a PROT_NONE page; six forked
    // readers and the owner of an unmapped range, each killed for reading it.
    assert_eq!(count(&o, "(protection)"), 7, "{}", o.log);
    assert_eq!(count(&o, "(nothing mapped)"), 7, "{}", o.log);
}

#[test]
fn break5_a_refused_mprotect_changes_nothing_and_is_granted_once_memory_is_back() {
    let o = run(&["memd", "refusal"]);
    clean(&o)
        .assert_log("refusal: mprotect READ_WRITE refused with ENOMEM")
        .assert_log("PASS refused mprotect changed nothing")
        // Nobody faulted while memory was exhausted: the policy never had to act.
        .assert_no_log("memd: killed");
}

#[test]
fn break6_page_tables_are_charged_to_the_attackers_and_the_bystander_completes() {
    let o = run(&["memd", "tablehog", "exit7"]);
    clean(&o)
        .assert_log("PASS tablehog bystander")
        .assert_log("out of memory (largest process)")
        .assert_log("PASS tablehog");
    // The first attacker waits for the others and says how they ended, unless the policy
    // picked it (it may hold the most: which attacker does depends on the layout drawn).
    if o.log.contains("the attacker was killed for memory") {
        o.assert_no_log("tablehog: attacker children:");
    } else {
        o.assert_log("tablehog: attacker children:");
    }
    let peak: u64 = o
        .log
        .lines()
        .find_map(|l| l.strip_prefix("tablehog: peak "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak figure in\n{}", o.log));
    // Nine attackers of about 1,000 pages one GiB apart: two tables a page.
    assert!(
        peak > 9_000,
        "only {peak} page-table frames at the peak\n{}",
        o.log
    );
}

#[test]
fn break7_out_of_memory_kills_the_largest_process_not_whoever_faults_first() {
    let o = run(&["memd", "oomrace", "exit7"]);
    clean(&o)
        .assert_log("PASS oomrace: 3 workers exited 0, 3 hogs killed for memory (oom_kills +3)");
    assert_eq!(count(&o, "PASS oomrace worker"), 3, "{}", o.log);
    assert_eq!(count(&o, "out of memory (largest process)"), 3, "{}", o.log);
    assert_eq!(count(&o, "memd: killed"), 3, "{}", o.log);
}

#[test]
fn fresh_pages_are_zero_and_memd_boot_pack_kernel_and_top_page_are_out_of_reach() {
    let o = run(&["memd", "isolation"]);
    clean(&o)
        .assert_log("PASS fresh pages read zero after another process wrote its secret")
        .assert_log("PASS read of memd's window at 0x400002000000: killed, page fault MAPERR")
        .assert_log("PASS read of the boot pack at 0x300000000000: killed")
        .assert_log("PASS read of the kernel's physical map at 0xffff800002000000: killed")
        .assert_log("PASS read of the kernel image at 0xffffffff80100000: killed")
        .assert_log("PASS read of the top page of the user half at 0x7ffffffff000: killed")
        .assert_log("PASS read of the last word of the user half")
        .assert_log("PASS write to the kernel's physical map")
        .assert_log("PASS read of memd's window by a spawned process")
        .assert_log("PASS read of 0x800000000000 (non-canonical): killed, general protection")
        .assert_log("PASS the top page is never mappable")
        .assert_log("PASS isolation");
    assert_eq!(count(&o, "(nothing mapped)"), 8, "{}", o.log);
}
