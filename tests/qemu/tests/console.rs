//! init's prompt as a person at a serial terminal meets it: the prompt shows before anything
//! is typed, what is typed is echoed and edited (backspace, Ctrl-U, arrow up), a line too long
//! is refused, `run` without a program says how to use it, Ctrl-C drops a line or kills what
//! `run` started, and `poweroff` ends the boot with status 0 (as `scripts/demo.sh -i` runs it).

use qemu_runner::Boot;
use qemu_runner::verdict::{self, code};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The log after the first `memd> ` following `from`.
fn after<'a>(log: &'a str, from: &str) -> &'a str {
    let at = log
        .find(from)
        .unwrap_or_else(|| panic!("{from:?} not in\n{log}"));
    &log[at + from.len()..]
}

#[test]
fn the_prompt_edits_lines_and_ctrl_c_kills_what_run_started() {
    let programs = [
        "memd", "init", "memstat", "hello", "segv_ro", "spinner", "exitwide",
    ];
    let long = "x".repeat(200);
    let o = Boot::new(&programs)
        .cmdline("init=interactive")
        // Backspace (DEL, as a terminal sends it) mends a typo.
        .keys("memd> ", b"helx\x7fp\r")
        // Ctrl-U erases what was typed.
        .keys("memd> ", b"junk\x15ps\r")
        // Arrow up brings the last command back: ps again.
        .keys("memd> ", b"\x1b[A\r")
        // Backspace as ^H, once more than there is to erase.
        .keys("memd> ", b"x\x08\x08y\x7frun\r")
        .keys("memd> ", format!("{long}\r").as_bytes())
        .keys("memd> ", b"abc\x03")
        .keys("memd> ", b"run spinner\r")
        .keys("spinner: spinning", b"\x03")
        .keys("memd> ", b"run exitwide\r")
        .keys("memd> ", b"poweroff\r")
        .run();
    o.assert_clean()
        .assert_log("init: demonstration passed; the prompt follows")
        .assert_log("  run PROGRAM [ARGS]")
        .assert_log("usage: run PROGRAM [ARGS]")
        .assert_log("init: a line of 200 characters is longer than the 160 init keeps: refused")
        .assert_log("memd> abc^C\nmemd> ")
        .assert_log(") killed (Ctrl-C)")
        .assert_log("its parent, pid 1, asked (KILL)")
        .assert_log(") exited with status 6")
        .assert_log("memd> poweroff\ninit: powering off")
        .assert_no_log("unknown command")
        .assert_no_log("spinner: done")
        .assert_no_log("FAIL")
        .assert_no_log("PANIC");
    // ps ran twice: typed after Ctrl-U, then recalled with arrow up.
    let ps = after(&o.log, "junk");
    assert_eq!(ps.matches("  PID  PPID NAME").count(), 2, "{ps}");
    // The spinner was killed by its parent's KILL, nothing else; its status said so.
    let spinner = after(&o.log, "memd> run spinner");
    let pid = spinner
        .lines()
        .find_map(|l| l.strip_prefix("spinner (pid "))
        .and_then(|l| l.split(')').next())
        .unwrap_or_else(|| panic!("no status line for spinner in\n{spinner}"));
    assert!(
        spinner.contains(&format!(
            "memd: killed pid {pid} (spinner): its parent, pid 1"
        )),
        "{spinner}"
    );
    let v = verdict::verdict(
        &programs.map(String::from),
        &o,
        &["init: demonstration passed".to_string()],
    );
    assert_eq!(v.code, code::OK, "{v:?}");
}

#[test]
fn by_hand_the_prompt_shows_at_once_and_poweroff_exits_with_zero() {
    // As `scripts/demo.sh -i` boots it, the console on the runner's stdin and stderr.
    let mut boot = Command::new(env!("CARGO_BIN_EXE_boot"))
        .args(["--append", "init=interactive", "--timeout", "120"])
        .args(["--expect", "init: demonstration passed"])
        .args(["memd", "init", "memstat", "hello", "segv_ro"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run boot");
    let mut stderr = boot.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 || tx.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // The prompt comes with no newline after it: it must be shown as it is.
    while !seen.ends_with(b"memd> ") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => seen.extend_from_slice(&bytes),
            Err(_) => panic!(
                "no prompt shown before a newline:\n{}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    let mut stdin = boot.stdin.take().expect("piped stdin");
    stdin.write_all(b"poweroff\r").expect("type poweroff");
    let status = boot.wait().expect("boot ends");
    drop(stdin);
    while let Ok(bytes) = rx.recv_timeout(Duration::from_secs(5)) {
        seen.extend_from_slice(&bytes);
    }
    // The kernel ends console lines with CR LF, as a serial terminal wants them.
    let text = String::from_utf8_lossy(&seen).replace('\r', "");
    assert_eq!(status.code(), Some(code::OK), "{text}");
    // init echoed what was typed, on the prompt's line.
    assert!(text.contains("memd> poweroff\n"), "{text}");
    assert!(
        text.contains("[boot] exit status 0: init exited with status 0"),
        "{text}"
    );
}
