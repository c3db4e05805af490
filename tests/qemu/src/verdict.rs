//! What a boot came to, as one exit status for the boot runner (`boot`): how the first
//! program ended, read from the lines the system prints, and how QEMU ended.
//!
//! The first program is module 1 (with memd as module 0: the program memd starts, pid 1; with
//! another pager: the first program the kernel loads after it); with module 0 alone, module 0.
//! Its end is read from:
//!
//! | pager | started | ended |
//! |---|---|---|
//! | memd | `memd: started NAME as pid P` (or `memd: cannot start NAME: ...`) | `memd: pid P (NAME) ended: exit status S`, `memd: pid P (NAME) ended: killed by the kernel: NAME (vector V) at rip R`, `memd: killed pid P ...` |
//! | another (the test pager) | `kernel-shim: started NAME as space B` (or `kernel-shim: cannot load NAME: ...`) | `pager: space B ended with code C` (the test pager), `kernel-shim: killed thread T of space B: ...` |
//! | module 0 alone | `kernel-shim: started NAME as space B (pager)` | `kernel-shim: the pager (space B) ended with code C` |
//!
//! The codes ([`code`]) keep the program's own statuses (1..=119) apart from what the runner
//! says of the system (120..=127), so a script can tell "the program failed" from "the
//! system failed" by the status alone.

use crate::{Exit, MEMD, Outcome};

/// The exit statuses of the boot runner.
pub mod code {
    /// The first program exited with 0 (or there was none but the pager), QEMU powered off
    /// cleanly, and every `--expect` text was printed.
    pub const OK: i32 = 0;
    /// The largest of the first program's own statuses passed through: 1..=119 are its
    /// nonzero exit status, a larger one is cut to 119 (the message gives it whole).
    pub const MAX_STATUS: i32 = 119;
    /// Clean power-off, but nothing said how the first program ended (a pager that does not
    /// report exits).
    pub const UNREPORTED: i32 = 120;
    /// An `--expect` text was never printed (everything else as for [`OK`]).
    pub const EXPECT_MISSING: i32 = 121;
    /// QEMU exited on its own with a status the kernel never asks for: a triple fault, or a
    /// QEMU that refused its arguments.
    pub const QEMU_CRASHED: i32 = 122;
    /// The kernel stopped on a fatal error: a ring-0 exception, a kernel panic, a fault of
    /// the pager itself.
    pub const KERNEL_FATAL: i32 = 123;
    /// The boot ran past its time limit and QEMU was killed (124, as `timeout(1)`).
    pub const TIMEOUT: i32 = 124;
    /// The runner could not boot: bad arguments, a failed build, QEMU missing, an unknown
    /// program, more programs than a boot pack holds.
    pub const RUNNER_ERROR: i32 = 125;
    /// The first program was killed: a fault memd (or the pager, or the kernel) refused.
    pub const KILLED: i32 = 126;
    /// The first program was never started (its ELF was refused).
    pub const NOT_STARTED: i32 = 127;
    /// Whoever sat at the terminal left QEMU with Ctrl-A X (130, as a shell's status after
    /// Ctrl-C): nothing is said of the program.
    pub const QUIT: i32 = 130;
}

/// How the first program ended, as the system printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgramEnd {
    /// It exited with this status.
    Exited(u32),
    /// It was killed; the line that says so.
    Killed(String),
    /// It was never started; the line that says why, or what is missing.
    NotStarted(String),
    /// It started, and no line says how it ended.
    Unreported,
}

/// The first program of a boot and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstProgram {
    /// Its name (a boot module).
    pub name: String,
    /// How it ended.
    pub end: ProgramEnd,
}

/// The runner's exit status and what it says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The exit status (see [`code`]).
    pub code: i32,
    /// One line for a person.
    pub message: String,
}

/// The word after `prefix` in `line`, if `line` holds `prefix`.
fn word_after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let at = line.find(prefix)? + prefix.len();
    line[at..].split_whitespace().next()
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).ok()
}

/// The first program of a boot of `programs` and how it ended, from the serial `log`; `None`
/// when there is none (no module, or memd alone).
pub fn first_program(programs: &[String], log: &str) -> Option<FirstProgram> {
    let (name, end) = match programs {
        [] => return None,
        [pager] if pager == MEMD => return None,
        [alone] => (alone, alone_end(alone, log)),
        [pager, first, ..] if pager == MEMD => (first, memd_end(first, log)),
        [_, first, ..] => (first, kernel_loaded_end(first, log)),
    };
    Some(FirstProgram {
        name: name.clone(),
        end,
    })
}

fn never_started(name: &str) -> ProgramEnd {
    ProgramEnd::NotStarted(format!("no line says {name} started"))
}

/// memd started `name` as its first process (pid 1 by memd's numbering).
fn memd_end(name: &str, log: &str) -> ProgramEnd {
    let started = format!("memd: started {name} as pid ");
    let refused = format!("memd: cannot start {name}: ");
    let mut lines = log.lines();
    let pid = loop {
        let Some(line) = lines.next() else {
            return never_started(name);
        };
        if line.contains(&refused) {
            return ProgramEnd::NotStarted(line.trim().to_string());
        }
        if let Some(pid) = word_after(line, &started) {
            break pid;
        }
    };
    let exited = format!("memd: pid {pid} ({name}) ended: exit status ");
    let killed_by_kernel = format!("memd: pid {pid} ({name}) ended: killed");
    let killed = [
        format!("memd: killed pid {pid} "),
        format!("memd: killed pid {pid}:"),
    ];
    for line in lines {
        if let Some(status) = word_after(line, &exited).and_then(|s| s.parse().ok()) {
            return ProgramEnd::Exited(status);
        }
        if line.contains(&killed_by_kernel) || killed.iter().any(|k| line.contains(k.as_str())) {
            return ProgramEnd::Killed(line.trim().to_string());
        }
    }
    ProgramEnd::Unreported
}

/// The kernel loaded `name` after the pager (module 0, not memd).
fn kernel_loaded_end(name: &str, log: &str) -> ProgramEnd {
    let started = format!("kernel-shim: started {name} as space ");
    let refused = format!("kernel-shim: cannot load {name}: ");
    let mut lines = log.lines();
    let space = loop {
        let Some(line) = lines.next() else {
            return never_started(name);
        };
        if line.contains(&refused) {
            return ProgramEnd::NotStarted(line.trim().to_string());
        }
        if !line.trim_end().ends_with("(pager)")
            && let Some(space) = word_after(line, &started)
        {
            break space;
        }
    };
    let ended = format!("pager: space {space} ended with code ");
    let killed = format!(" of space {space}: ");
    for line in lines {
        if let Some(code) = word_after(line, &ended).and_then(hex) {
            return if code & kernel_shim::abi::KILLED != 0 {
                ProgramEnd::Killed(line.trim().to_string())
            } else {
                ProgramEnd::Exited(code as u32)
            };
        }
        if line.contains("kernel-shim: killed thread ") && line.contains(&killed) {
            return ProgramEnd::Killed(line.trim().to_string());
        }
    }
    ProgramEnd::Unreported
}

/// `name` is module 0 and alone: the pager the kernel loaded.
fn alone_end(name: &str, log: &str) -> ProgramEnd {
    let started = format!("kernel-shim: started {name} as space ");
    let Some(space) = log.lines().find_map(|l| word_after(l, &started)) else {
        return match log
            .lines()
            .find(|l| l.contains("kernel-shim: cannot load "))
        {
            Some(line) => ProgramEnd::NotStarted(line.trim().to_string()),
            None => never_started(name),
        };
    };
    let ended = format!("kernel-shim: the pager (space {space}) ended with code ");
    log.lines()
        .find_map(|l| word_after(l, &ended).and_then(hex))
        .map_or(ProgramEnd::Unreported, |c| ProgramEnd::Exited(c as u32))
}

/// The runner's exit status for `outcome`, a boot of `programs` where each of `expected`
/// should have been printed.
pub fn verdict(programs: &[String], outcome: &Outcome, expected: &[String]) -> Verdict {
    let first = first_program(programs, &outcome.log);
    let so_far = first.as_ref().map_or(String::new(), |f| match &f.end {
        ProgramEnd::Exited(s) => format!(" ({} had exited with status {s})", f.name),
        ProgramEnd::Killed(_) => format!(" ({} had been killed)", f.name),
        ProgramEnd::NotStarted(_) => format!(" ({} had not started)", f.name),
        ProgramEnd::Unreported => format!(" ({} was still running)", f.name),
    });
    let (code, message) = match outcome.exit {
        Exit::Timeout => (
            code::TIMEOUT,
            format!(
                "timed out after {:.2?}: QEMU killed{so_far}",
                outcome.elapsed
            ),
        ),
        Exit::Crashed(status) => (
            code::QEMU_CRASHED,
            format!(
                "QEMU exited with status {status}, which the kernel never asks for (a triple \
                 fault, or QEMU refused its arguments: see its stderr){so_far}"
            ),
        ),
        Exit::KernelFatal => (
            code::KERNEL_FATAL,
            format!("the kernel stopped on a fatal error{so_far}"),
        ),
        Exit::Quit => (code::QUIT, format!("left QEMU with Ctrl-A X{so_far}")),
        Exit::Clean => match first {
            None => (code::OK, "clean power-off".to_string()),
            Some(FirstProgram { name, end }) => match end {
                ProgramEnd::Exited(0) => (
                    code::OK,
                    format!("{name} exited with status 0; clean power-off"),
                ),
                ProgramEnd::Exited(status) => (
                    status.min(code::MAX_STATUS as u32) as i32,
                    format!("{name} exited with status {status}; clean power-off"),
                ),
                ProgramEnd::Killed(line) => (code::KILLED, format!("{name} was killed: {line}")),
                ProgramEnd::NotStarted(why) => {
                    (code::NOT_STARTED, format!("{name} never started: {why}"))
                }
                ProgramEnd::Unreported => (
                    code::UNREPORTED,
                    format!(
                        "clean power-off, but no line says how {name} ended (memd and the test \
                         pager report it; this pager does not)"
                    ),
                ),
            },
        },
    };
    let missing: Vec<&String> = expected
        .iter()
        .filter(|t| !outcome.log.contains(t.as_str()))
        .collect();
    if code == code::OK && !missing.is_empty() {
        return Verdict {
            code: code::EXPECT_MISSING,
            message: format!("{message}; but the console never printed {missing:?}"),
        };
    }
    Verdict { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn names(programs: &[&str]) -> Vec<String> {
        programs.iter().map(|s| s.to_string()).collect()
    }

    fn outcome(exit: Exit, log: &str) -> Outcome {
        Outcome {
            exit,
            log: log.to_string(),
            elapsed: Duration::from_secs(2),
        }
    }

    fn code_of(programs: &[&str], exit: Exit, log: &str) -> i32 {
        verdict(&names(programs), &outcome(exit, log), &[]).code
    }

    const MEMD_START: &str = "kernel-shim: started memd as space 0x10000 (pager)\n\
                              memd: ready: 30000 frames\n";

    #[test]
    fn memd_exit_statuses_pass_through_and_large_ones_are_cut() {
        let log = |s: &str| {
            format!(
                "{MEMD_START}memd: started exit7 as pid 1\n\
                 memd: pid 1 (exit7) ended: exit status {s}\n\
                 kernel-shim: no thread can run; powering off\n"
            )
        };
        let p = ["memd", "exit7"];
        assert_eq!(code_of(&p, Exit::Clean, &log("0")), code::OK);
        assert_eq!(code_of(&p, Exit::Clean, &log("7")), 7);
        assert_eq!(code_of(&p, Exit::Clean, &log("101")), 101);
        assert_eq!(code_of(&p, Exit::Clean, &log("119")), 119);
        assert_eq!(code_of(&p, Exit::Clean, &log("4294967295")), 119);
        let v = verdict(&names(&p), &outcome(Exit::Clean, &log("300")), &[]);
        assert_eq!(v.code, code::MAX_STATUS);
        assert!(v.message.contains("exited with status 300"), "{v:?}");
    }

    #[test]
    fn memd_kills_of_the_first_program_are_told_from_kills_of_others() {
        let p = ["memd", "crasher", "hello"];
        let fault = format!(
            "{MEMD_START}memd: started crasher as pid 1\n\
             memd: killed pid 1 (space 0x10001): write at 0x20000000 (nothing mapped)\n"
        );
        let v = verdict(&names(&p), &outcome(Exit::Clean, &fault), &[]);
        assert_eq!(v.code, code::KILLED);
        assert!(v.message.contains("write at 0x20000000"), "{v:?}");
        let kernel = format!(
            "{MEMD_START}memd: started crasher as pid 1\n\
             memd: pid 12 (hello) ended: exit status 3\n\
             kernel-shim: killed thread 0x10001 of space 0x10001: invalid opcode (vector 6) at rip 0x401000 (the pager refused its fault)\n\
             memd: pid 1 (crasher) ended: killed by the kernel: invalid opcode (vector 6) at rip 0x401000\n"
        );
        assert_eq!(code_of(&p, Exit::Clean, &kernel), code::KILLED);
        let oom = format!(
            "{MEMD_START}memd: started crasher as pid 1\n\
             memd: killed pid 11: out of memory (largest process)\n\
             memd: killed pid 1: out of memory (largest process)\n"
        );
        let v = verdict(&names(&p), &outcome(Exit::Clean, &oom), &[]);
        assert_eq!(v.code, code::KILLED);
        assert!(v.message.contains("killed pid 1:"), "{v:?}");
        let other_dies = format!(
            "{MEMD_START}memd: started crasher as pid 1\n\
             memd: killed pid 11: out of memory (largest process)\n\
             memd: pid 1 (crasher) ended: exit status 0\n"
        );
        assert_eq!(code_of(&p, Exit::Clean, &other_dies), code::OK);
    }

    #[test]
    fn a_first_program_memd_could_not_start_or_that_never_said_how_it_ended() {
        let p = ["memd", "broken"];
        let refused = format!("{MEMD_START}memd: cannot start broken: bad ELF\n");
        let v = verdict(&names(&p), &outcome(Exit::Clean, &refused), &[]);
        assert_eq!(v.code, code::NOT_STARTED);
        assert!(v.message.contains("bad ELF"), "{v:?}");
        assert_eq!(code_of(&p, Exit::Clean, MEMD_START), code::NOT_STARTED);
        let silent = format!("{MEMD_START}memd: started broken as pid 1\n");
        assert_eq!(code_of(&p, Exit::Clean, &silent), code::UNREPORTED);
    }

    #[test]
    fn kernel_loaded_programs_end_by_the_test_pager_or_the_kernel() {
        let start = "kernel-shim: started pager as space 0x10000 (pager)\n\
                     kernel-shim: started exit7 as space 0x10001\n\
                     kernel-shim: started hello as space 0x10002\n";
        let p = ["pager", "exit7", "hello"];
        let exited = format!(
            "{start}pager: space 0x10002 ended with code 0x0\n\
             pager: space 0x10001 ended with code 0x7\n"
        );
        assert_eq!(code_of(&p, Exit::Clean, &exited), 7);
        let killed = format!(
            "{start}kernel-shim: killed thread 0x10001 of space 0x10001: the pager refused its \
             fault (reason 14)\npager: space 0x10001 ended with code 0x10000000e\n"
        );
        assert_eq!(code_of(&p, Exit::Clean, &killed), code::KILLED);
        let reported_kill = format!("{start}pager: space 0x10001 ended with code 0x10000000e\n");
        assert_eq!(code_of(&p, Exit::Clean, &reported_kill), code::KILLED);
        let other_killed = format!(
            "{start}kernel-shim: killed thread 0x10002 of space 0x10002: #PF (reason 14)\n"
        );
        assert_eq!(code_of(&p, Exit::Clean, &other_killed), code::UNREPORTED);
        let refused = "kernel-shim: started pager as space 0x10000 (pager)\n\
                       kernel-shim: cannot load exit7: not an ELF file\n";
        assert_eq!(code_of(&p, Exit::Clean, refused), code::NOT_STARTED);
        // Two modules of one name: the pager's line is not the first program's.
        let same = "kernel-shim: started fpu as space 0x10000 (pager)\n\
                    kernel-shim: started fpu as space 0x10001\n\
                    pager: space 0x10001 ended with code 0x2\n";
        assert_eq!(code_of(&["fpu", "fpu"], Exit::Clean, same), 2);
    }

    #[test]
    fn a_lone_module_is_the_pager_and_the_kernel_reports_its_end() {
        let log = "kernel-shim: started hello as space 0x10000 (pager)\n\
                   PASS hello\n\
                   kernel-shim: the pager (space 0x10000) ended with code 0x5\n";
        assert_eq!(code_of(&["hello"], Exit::Clean, log), 5);
        assert_eq!(code_of(&["hello"], Exit::Clean, ""), code::NOT_STARTED);
    }

    #[test]
    fn no_program_or_memd_alone_is_judged_by_the_power_off() {
        assert_eq!(code_of(&[], Exit::Clean, ""), code::OK);
        assert_eq!(code_of(&["memd"], Exit::Clean, MEMD_START), code::OK);
        assert_eq!(code_of(&[], Exit::KernelFatal, ""), code::KERNEL_FATAL);
    }

    #[test]
    fn what_befalls_the_system_outweighs_the_program() {
        let p = ["memd", "hello"];
        let log = format!(
            "{MEMD_START}memd: started hello as pid 1\nmemd: pid 1 (hello) ended: exit status 0\n"
        );
        let v = verdict(&names(&p), &outcome(Exit::Timeout, &log), &[]);
        assert_eq!(v.code, code::TIMEOUT);
        assert!(
            v.message.contains("hello had exited with status 0"),
            "{v:?}"
        );
        assert_eq!(code_of(&p, Exit::KernelFatal, &log), code::KERNEL_FATAL);
        assert_eq!(code_of(&p, Exit::Crashed(1), &log), code::QEMU_CRASHED);
        assert_eq!(code_of(&p, Exit::Crashed(-1), &log), code::QEMU_CRASHED);
        let v = verdict(&names(&p), &outcome(Exit::Quit, &log), &[]);
        assert_eq!(v.code, code::QUIT);
        assert!(v.message.contains("Ctrl-A X"), "{v:?}");
    }

    #[test]
    fn a_missing_expected_text_fails_a_run_that_would_pass_and_only_that() {
        let p = names(&["memd", "hello"]);
        let log = |s: u32| {
            format!(
                "{MEMD_START}memd: started hello as pid 1\nPASS hello\n\
                 memd: pid 1 (hello) ended: exit status {s}\n"
            )
        };
        let seen = ["PASS hello".to_string()];
        let unseen = ["never printed".to_string()];
        assert_eq!(
            verdict(&p, &outcome(Exit::Clean, &log(0)), &seen).code,
            code::OK
        );
        let v = verdict(&p, &outcome(Exit::Clean, &log(0)), &unseen);
        assert_eq!(v.code, code::EXPECT_MISSING);
        assert!(v.message.contains("never printed"), "{v:?}");
        assert_eq!(verdict(&p, &outcome(Exit::Clean, &log(4)), &unseen).code, 4);
    }

    #[test]
    fn the_runner_codes_are_apart_from_the_program_statuses() {
        let runner = [
            code::UNREPORTED,
            code::EXPECT_MISSING,
            code::QEMU_CRASHED,
            code::KERNEL_FATAL,
            code::TIMEOUT,
            code::RUNNER_ERROR,
            code::KILLED,
            code::NOT_STARTED,
        ];
        for (i, c) in runner.iter().enumerate() {
            assert!(*c > code::MAX_STATUS && *c <= 127, "{c}");
            assert!(!runner[i + 1..].contains(c), "{c} twice");
        }
        // Leaving QEMU by hand is no program's status nor the system's.
        const { assert!(code::QUIT > 127) };
    }
}
