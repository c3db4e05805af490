//! The boot runner (`boot`) as a developer meets it: its exit status tells how the first
//! program ended (its own status, killed, a panic's 101) and how the system did (kernel
//! stop, QEMU's crash, timeout); what it cannot boot it refuses with a message and 125.

use qemu_runner::verdict::code;
use std::process::Command;

/// Runs `boot ARGS` without input; its exit status and stderr.
fn boot(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_boot"))
        .arg("--no-input")
        .args(["--timeout", "120"])
        .args(args)
        .output()
        .expect("run boot");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = out.status.code().expect("boot exited (no signal)");
    (status, stderr)
}

/// The runner's last word: the `[boot] exit status N: ...` line.
fn last_word(stderr: &str) -> &str {
    stderr
        .lines()
        .rfind(|l| l.starts_with("[boot] exit status"))
        .unwrap_or_else(|| panic!("no [boot] line in\n{stderr}"))
}

#[test]
fn a_first_program_that_exits_zero_and_a_clean_power_off_give_zero() {
    let (status, err) = boot(&["--expect", "PASS hello", "memd", "hello"]);
    assert_eq!(status, code::OK, "{err}");
    assert!(
        last_word(&err).contains("hello exited with status 0"),
        "{err}"
    );
}

#[test]
fn the_first_programs_own_status_is_passed_on_not_another_programs() {
    // exit7 is the first program; hello, never spawned, changes nothing.
    let (status, err) = boot(&["memd", "exit7", "hello"]);
    assert_eq!(status, 7, "{err}");
    assert!(
        err.contains("memd: pid 1 (exit7) ended: exit status 7"),
        "{err}"
    );
}

#[test]
fn a_program_that_panics_gives_101() {
    let (status, err) = boot(&["memd", "panics"]);
    assert_eq!(status, 101, "{err}");
    assert!(err.contains("FAIL panic: panicked at"), "{err}");
}

#[test]
fn a_killed_first_program_gives_126_and_says_which_fault() {
    let (status, err) = boot(&["memd", "crasher"]);
    assert_eq!(status, code::KILLED, "{err}");
    assert!(
        last_word(&err).contains("crasher was killed: memd: killed pid 1 (space 0x10001): write at 0x20000000 (nothing mapped)"),
        "{err}"
    );
    // With the kernel tests' pager: the kernel's kill line.
    let (status, err) = boot(&["pager", "crasher", "hello"]);
    assert_eq!(status, code::KILLED, "{err}");
    assert!(
        last_word(&err).contains("the pager refused its fault"),
        "{err}"
    );
}

#[test]
fn a_kernel_fault_gives_123_announced_as_expected() {
    let (status, err) = boot(&["--append", "selftest=kernel-fault"]);
    assert_eq!(status, code::KERNEL_FATAL, "{err}");
    let banner = err
        .find("(expected: this test provokes a kernel fault)")
        .unwrap_or_else(|| panic!("no banner in\n{err}"));
    let dump = err.find("KERNEL FAULT: vector 14").expect("the dump");
    assert!(banner < dump, "the banner comes after the dump:\n{err}");
}

#[test]
fn a_missing_expected_text_gives_121() {
    let (status, err) = boot(&["--expect", "never printed", "memd", "hello"]);
    assert_eq!(status, code::EXPECT_MISSING, "{err}");
    assert!(last_word(&err).contains("\"never printed\""), "{err}");
}

#[test]
fn qemu_args_reach_qemu_and_its_refusal_gives_122() {
    let (status, err) = boot(&["--qemu-arg", "-no-such-option", "memd", "hello"]);
    assert_eq!(status, code::QEMU_CRASHED, "{err}");
    assert!(err.contains("-no-such-option: invalid option"), "{err}");
}

#[test]
fn a_boot_past_its_time_limit_gives_124() {
    // The spinner spins 1.5 s of guest time: always past a 1 s limit.
    let (status, err) = boot(&["--timeout", "1", "memd", "spinner"]);
    assert_eq!(status, code::TIMEOUT, "{err}");
    assert!(
        last_word(&err).contains("spinner was still running"),
        "{err}"
    );
}

#[test]
fn what_cannot_be_booted_is_refused_with_125_and_a_message() {
    for (args, says) in [
        (&["--tmeout", "5", "memd"][..], "invalid option '--tmeout'"),
        (&["-x", "memd"], "invalid option '-x'"),
        (&["--timeout", "abc", "memd"], "--timeout \"abc\""),
        (&["--memory", "x", "memd"], "--memory \"x\""),
        (
            &["memd", "--memory"],
            "missing argument for option '--memory'",
        ),
        (&["memd", "no_such_program"], "program no_such_program"),
    ] {
        let (status, err) = boot(args);
        assert_eq!(status, code::RUNNER_ERROR, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let max = qemu_runner::MAX_PROGRAMS;
    let too_many = vec!["hello"; max + 1];
    let (status, err) = boot(&too_many);
    assert_eq!(status, code::RUNNER_ERROR, "{err}");
    assert!(
        err.contains(&format!(
            "{} programs, but a boot pack holds at most {max}",
            max + 1
        )),
        "{err}"
    );
    assert!(!err.contains("[guest"), "it booted all the same:\n{err}");
}

#[test]
fn help_prints_the_options_and_the_exit_statuses() {
    let out = Command::new(env!("CARGO_BIN_EXE_boot"))
        .arg("--help")
        .output()
        .expect("run boot");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["--gdb", "--qemu-arg ARG", "--timeout SECS", "126", "127"] {
        assert!(text.contains(word), "{word} missing from\n{text}");
    }
}
