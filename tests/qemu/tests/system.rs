//! QEMU system tests: each boots kernel-shim (TCG) with a set of ring-3 test programs and
//! checks the serial log and the exit status. Module 0 of every boot is the pager.

use qemu_runner::{Boot, Exit};

#[test]
fn boots_to_long_mode_and_prints_the_memory_map() {
    let o = Boot::new(&[]).run();
    o.assert_clean()
        .assert_log("kernel-shim: long mode, serial up")
        .assert_log("GDT, TSS, IDT, syscall ready")
        .assert_log("memory 0x0000100000..")
        .assert_log(" ram");
}

#[test]
fn a_kernel_fault_is_reported_and_halts() {
    let o = Boot::new(&[]).cmdline("selftest=kernel-fault").run();
    assert_eq!(o.exit, Exit::KernelFatal, "{}", o.log);
    o.assert_log("KERNEL FAULT: vector 14 (#PF page fault)")
        .assert_log("cr2 0xffff900000000000")
        .assert_log("page fault: page not present, read")
        .assert_log("r15 ")
        .assert_log("kernel halted");
}

#[test]
fn the_boot_log_says_smep_smap_and_wx_are_on() {
    // The runner's default CPU model (`-cpu max`) has SMEP and SMAP.
    let o = Boot::new(&[]).run();
    o.assert_clean()
        .assert_log("kernel-shim: kernel mappings W^X with NX: text r-x, rodata r--, data rw-, window rw- (image r--); guard pages under both stacks")
        .assert_log("kernel-shim: SMEP on, SMAP on");
}

/// Boots `selftest=NAME` (with `programs`) and checks that it ends in the fatal report of a
/// ring-0 fault holding every one of `report`.
fn selftest_is_a_reported_kernel_fault(name: &str, programs: &[&str], report: &[&str]) {
    let o = Boot::new(programs)
        .cmdline(&format!("selftest={name}"))
        .run();
    assert_eq!(o.exit, Exit::KernelFatal, "selftest={name}:\n{}", o.log);
    o.assert_log(&format!("kernel-shim: self test {name}: "))
        .assert_log("kernel halted");
    for line in report {
        o.assert_log(line);
    }
}

#[test]
fn the_kernel_cannot_write_its_text_or_rodata_not_even_through_the_window() {
    for name in ["write-text", "write-rodata", "write-window-text"] {
        selftest_is_a_reported_kernel_fault(
            name,
            &[],
            &[
                "KERNEL FAULT: vector 14 (#PF page fault) error 0x3",
                "page fault: protection violation, write",
            ],
        );
    }
}

#[test]
fn the_kernel_cannot_execute_its_data_or_the_physical_window() {
    for name in ["exec-data", "exec-window"] {
        selftest_is_a_reported_kernel_fault(
            name,
            &[],
            &[
                "KERNEL FAULT: vector 14 (#PF page fault) error 0x11",
                "page fault: protection violation, instruction fetch",
            ],
        );
    }
}

#[test]
fn a_kernel_stack_overflow_hits_the_guard_page_and_is_reported_as_a_double_fault() {
    selftest_is_a_reported_kernel_fault(
        "stack-overflow",
        &[],
        &["KERNEL FAULT: vector 8 (#DF double fault)"],
    );
}

#[test]
fn smep_and_smap_keep_the_kernel_out_of_user_pages() {
    selftest_is_a_reported_kernel_fault(
        "smep",
        &["hello"],
        &[
            "KERNEL FAULT: vector 14 (#PF page fault) error 0x11",
            "rip 0x0000000000400",
            "page fault: protection violation, instruction fetch",
        ],
    );
    selftest_is_a_reported_kernel_fault(
        "smap",
        &["hello"],
        &[
            "KERNEL FAULT: vector 14 (#PF page fault) error 0x1",
            "cr2 0x000000007ffffff8",
            "page fault: protection violation, read",
        ],
    );
}

#[test]
fn a_ring3_program_runs_and_exits() {
    let o = Boot::new(&["pager", "hello"]).run();
    o.assert_clean()
        .assert_log("started pager as space 0x10000 (pager)")
        .assert_log("PASS hello")
        .assert_log("pager: space 0x10001 ended with code 0x0")
        .assert_no_log("FAIL");
}

#[test]
fn system_call_arguments_are_checked() {
    let o = Boot::new(&["pager", "syscheck"]).run();
    o.assert_clean()
        .assert_log("PASS syscheck")
        .assert_no_log("FAIL");
}

#[test]
fn ipc_round_trips_carry_the_kernel_badge_and_lent_buffers() {
    let o = Boot::new(&["pager", "ipcping"]).run();
    o.assert_clean()
        .assert_log("PASS ipcping")
        .assert_no_log("FAIL");
}

#[test]
fn a_page_fault_goes_to_the_pager_and_the_thread_resumes() {
    let o = Boot::new(&["pager", "demand"]).run();
    o.assert_clean()
        .assert_log("pager: mapped 0x10000000 for space 0x10001 (access 0)")
        .assert_log("pager: mapped 0x10001000 for space 0x10001 (access 1)")
        .assert_log("PASS demand")
        .assert_no_log("FAIL");
}

#[test]
fn a_faulting_process_is_killed_while_others_go_on() {
    let o = Boot::new(&["pager", "crasher", "hello", "demand"]).run();
    o.assert_clean()
        .assert_log(
            "killed thread 0x10001 of space 0x10001: the pager refused its fault (reason 14)",
        )
        .assert_log("pager: space 0x10001 ended with code 0x10000000e")
        .assert_log("PASS hello")
        .assert_log("PASS demand")
        .assert_no_log("FAIL");
}

#[test]
fn pager_capabilities_are_refused_to_other_processes() {
    let o = Boot::new(&["pager", "caps"]).run();
    o.assert_clean()
        .assert_log("PASS caps")
        .assert_no_log("FAIL");
}

#[test]
fn the_timer_preempts_a_spinning_process() {
    let o = Boot::new(&["pager", "spinner", "hello"]).run();
    o.assert_clean()
        .assert_log("spinner: done")
        .assert_log("PASS hello")
        .assert_no_log("FAIL");
    let hello = o.log.find("PASS hello").unwrap();
    let spun = o.log.find("spinner: done").unwrap();
    assert!(
        hello < spun,
        "hello finished only after the spinner:\n{}",
        o.log
    );
}

#[test]
fn fpu_and_sse_state_is_saved_per_thread() {
    let o = Boot::new(&["pager", "fpu", "fpu"]).run();
    o.assert_clean()
        .assert_log("PASS fpu 0x10001")
        .assert_log("PASS fpu 0x10002")
        .assert_no_log("FAIL");
}

#[test]
fn once_the_pager_has_ended_a_fault_kills_the_process() {
    // hello is module 0, so it is the pager; it ends at once, leaving the crasher without one.
    let o = Boot::new(&["hello", "crasher"]).run();
    o.assert_clean()
        .assert_log("PASS hello")
        .assert_log("the pager (space 0x10000) ended with code 0x0")
        .assert_log("killed thread 0x10001 of space 0x10001: #PF page fault (reason 14)");
}

#[test]
fn rflags_set_by_ring3_never_reach_the_kernel_and_return_sanitized() {
    // ntflag sets NT (and AC, ID, DF, IOPL) and yields while the spinner is runnable: the
    // kernel switches to the spinner's interrupted frame with `iretq`, which raises #GP in
    // ring 0 if the kernel runs with the caller's NT. Every return must clear NT.
    let o = Boot::new(&["pager", "ntflag", "spinner"]).run();
    o.assert_clean()
        .assert_log("ntflag: 200 yields with NT set, NT clear after each")
        .assert_log("ntflag: AC, ID and DF kept, NT and IOPL clear")
        .assert_log("ntflag: NT cleared by an interrupt return")
        .assert_log("PASS ntflag")
        .assert_log("spinner: done")
        .assert_no_log("KERNEL FAULT")
        .assert_no_log("FAIL");
}

#[test]
fn jumping_out_of_the_user_half_or_reading_the_kernel_half_kills_only_that_process() {
    let o = Boot::new(&["pager", "jump_top", "kread", "hello"]).run();
    o.assert_clean()
        .assert_log("pager: refusing fault vector 13 at 0x800000000000 of space 0x10001")
        .assert_log("pager: refusing fault vector 14 at 0xffff800000100000 of space 0x10002")
        .assert_log("pager: space 0x10001 ended with code 0x10000000e")
        .assert_log("pager: space 0x10002 ended with code 0x10000000e")
        .assert_log("PASS hello")
        .assert_no_log("KERNEL FAULT")
        .assert_no_log("FAIL");
}

#[test]
fn a_thread_is_never_resumed_outside_the_user_half() {
    // badpager resumes every fault unchanged, here jump_top's #GP at the non-canonical
    // 0x800000000000: the kernel must kill the thread rather than return there.
    let mut boot = Boot::new(&["badpager", "jump_top", "hello"]);
    boot.timeout = std::time::Duration::from_secs(20);
    let o = boot.run();
    o.assert_clean()
        .assert_log("badpager: resuming fault vector 13 at 0x800000000000")
        .assert_log("kernel-shim: thread 0x10001 cannot return to 0x800000000000, outside the user half")
        .assert_log(
            "killed thread 0x10001 of space 0x10001: #GP general protection (return outside the user half) (reason 13)",
        )
        .assert_log("badpager: space 0x10001 ended with code 0x10000000d")
        .assert_log("PASS hello")
        .assert_no_log("KERNEL FAULT");
}
