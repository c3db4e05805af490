//! Backtraces as a developer meets them: a program that panics prints its return addresses,
//! and the boot runner shows each with its function and source line from the ELF.

use std::process::Command;

#[test]
fn a_panic_shows_the_panicking_function_and_its_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_boot"))
        .args(["--no-input", "--timeout", "120", "memd", "panics"])
        .output()
        .expect("run boot");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{err}");
    // The program names itself as memd knows it: its ELF is found by that name.
    let trace = &err[err
        .find("backtrace (panics):")
        .unwrap_or_else(|| panic!("{err}"))..];
    let frames: Vec<&str> = trace
        .lines()
        .skip(1)
        .take_while(|l| {
            l.contains("] ")
                && l.split("] ")
                    .nth(1)
                    .is_some_and(|t| t.trim_start().starts_with('#'))
        })
        .collect();
    assert!(frames.len() >= 3, "{trace}");
    assert!(frames[0].contains("#0 0x"), "{trace}");
    // panics.rs line 12 is its `panic!`.
    assert!(
        frames
            .iter()
            .any(|f| f.contains(" panics::main (tests/qemu/programs/src/bin/panics.rs:12)")),
        "{trace}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.contains("core::panicking::panic_fmt")),
        "{trace}"
    );
}
