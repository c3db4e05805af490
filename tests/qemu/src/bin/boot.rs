//! The boot runner: builds the kernel, memd and the ring-3 programs, packs the programs
//! named on the command line into a boot pack (module 0 is the pager: `memd`, or the kernel
//! tests' `pager`), boots QEMU with the serial console on this terminal, and exits with a
//! status that tells how the first program (module 1) ended and how the system did.
//!
//! `cargo run -p qemu-tests --bin boot -- [OPTIONS] [PROGRAM...]`, or `cargo boot [OPTIONS]
//! [PROGRAM...]`; `--help` lists the options and the exit statuses (see [`USAGE`]; the
//! statuses are [`qemu_runner::verdict::code`]).

use qemu_runner::Boot;
use qemu_runner::verdict::{self, code};
use std::ffi::OsString;
use std::time::Duration;

/// What `--help` prints.
const USAGE: &str = "\
usage: boot [OPTIONS] [PROGRAM...]

Boots kernel-shim in QEMU (TCG) with PROGRAM... packed as its boot modules: module 0 is the
pager (memd, or the kernel tests' pager), module 1 the first program. With memd first, memd
starts module 1 and the others wait to be spawned by name. At most 256 programs. The serial
console is this terminal, shared with QEMU's monitor: what you type reaches the guest's
console read (Ctrl-C too); Ctrl-A X leaves QEMU, Ctrl-A C switches to QEMU's monitor and back.

options:
  --append CMDLINE    the kernel command line (e.g. aslr=off, init=interactive)
  --timeout SECS      kill QEMU after SECS seconds (default 3600; none with --gdb)
  --memory MIB        guest memory in MiB (default 128)
  --smp N             processors (default 1, or QEMU_SMP from the environment)
  --cpu MODEL         QEMU's CPU model (default max)
  --icount            run with -icount shift=0: rdtsc counts guest instructions
  --no-input          leave the guest's console input unconnected (for scripts)
  --expect TEXT       fail (121) unless the console printed TEXT; repeatable
  --gdb               start QEMU's gdb server (-s, port 1234) with the CPU stopped (-S), and
                      print the gdb command that loads the symbols of the kernel, the pager
                      and the first program
  --qemu-arg ARG      pass ARG to QEMU after the runner's own arguments; repeatable
  -h, --help          this text

exit status:
  0        the first program exited with 0 (or there was none but the pager), the system
           powered off cleanly, and every --expect text was printed
  1..=119  the first program's own exit status (a larger one is cut to 119)
  120      clean power-off, but nothing said how the first program ended
  121      an --expect text was never printed
  122      QEMU exited on its own (a triple fault, or QEMU refused an argument)
  123      the kernel stopped on a fatal error (ring-0 fault, kernel panic, pager fault)
  124      timeout: QEMU was killed
  125      the runner could not boot: bad arguments, build failure, QEMU missing, an
           unknown program, more than 256 programs
  126      the first program was killed (a fault memd, the pager or the kernel refused)
  127      the first program was never started
  130      you left QEMU with Ctrl-A X
A line [boot] ... on stderr says which, and why.
";

/// The boot the command line asks for.
#[derive(Debug)]
struct Args {
    /// What to boot.
    boot: Boot,
    /// Texts the console must print (`--expect`).
    expected: Vec<String>,
}

/// `value` of `option` as a positive whole number.
fn positive<T: std::str::FromStr + PartialOrd + Default>(
    option: &str,
    value: OsString,
    unit: &str,
) -> Result<T, String> {
    let text = value.to_string_lossy();
    match text.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!(
            "{option} {text:?}: expected a positive whole number of {unit}"
        )),
    }
}

fn utf8(what: &str, value: OsString) -> Result<String, String> {
    value
        .into_string()
        .map_err(|v| format!("{what} {v:?} is not UTF-8"))
}

/// Parses the runner's arguments (without the program's name); `None` for `--help`.
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Option<Args>, String> {
    use lexopt::Arg::{Long, Short, Value};
    let mut parser = lexopt::Parser::from_args(args);
    let mut boot = Boot::new(&[]);
    boot.interactive = true;
    let mut timeout = None;
    let mut expected = Vec::new();
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Long("append") => boot.cmdline = utf8("--append", parser.value().map_err(err)?)?,
            Long("timeout") => {
                let secs = positive("--timeout", parser.value().map_err(err)?, "seconds")?;
                timeout = Some(Duration::from_secs(secs));
            }
            Long("memory") => {
                boot.memory_mib = positive("--memory", parser.value().map_err(err)?, "MiB")?
            }
            Long("smp") => {
                boot.cpus = positive::<u32>("--smp", parser.value().map_err(err)?, "processors")?
            }
            Long("cpu") => boot.cpu = utf8("--cpu", parser.value().map_err(err)?)?,
            Long("icount") => boot.icount = true,
            Long("no-input") => boot.interactive = false,
            Long("expect") => expected.push(utf8("--expect", parser.value().map_err(err)?)?),
            Long("gdb") => boot.gdb = true,
            Long("qemu-arg") => boot
                .qemu_args
                .push(utf8("--qemu-arg", parser.value().map_err(err)?)?),
            Short('h') | Long("help") => return Ok(None),
            Value(name) => boot.programs.push(utf8("program name", name)?),
            other => return Err(other.unexpected().to_string()),
        }
    }
    boot.timeout = timeout.unwrap_or(if boot.gdb {
        Duration::MAX
    } else {
        Duration::from_secs(3600)
    });
    Ok(Some(Args { boot, expected }))
}

fn main() {
    let Args { boot, expected } = match parse(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("boot: {e} (try --help)");
            std::process::exit(code::RUNNER_ERROR);
        }
    };
    match boot.try_run() {
        Ok(outcome) => {
            let v = verdict::verdict(&boot.programs, &outcome, &expected);
            eprintln!("[boot] exit status {}: {}", v.code, v.message);
            std::process::exit(v.code);
        }
        Err(e) => {
            eprintln!("[boot] exit status {}: {e}", code::RUNNER_ERROR);
            std::process::exit(code::RUNNER_ERROR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parsed(args: &[&str]) -> Result<(Boot, Vec<String>), String> {
        match parse(args.iter().map(OsString::from))? {
            Some(Args { boot, expected }) => Ok((boot, expected)),
            None => Err("help".to_string()),
        }
    }

    fn refused(args: &[&str]) -> String {
        match parsed(args) {
            Err(e) => e,
            Ok((boot, _)) => panic!("{args:?} accepted: {boot:?}"),
        }
    }

    #[test]
    fn every_option_is_read() {
        let (boot, expected) = parsed(&[
            "--append",
            "aslr=off init=interactive",
            "--timeout",
            "90",
            "--memory",
            "512",
            "--cpu",
            "qemu64",
            "--icount",
            "--no-input",
            "--expect",
            "PASS a",
            "--qemu-arg",
            "-d",
            "--expect=PASS b",
            "--qemu-arg=int",
            "memd",
            "hello",
            "--",
            "exit7",
        ])
        .unwrap();
        assert_eq!(boot.programs, ["memd", "hello", "exit7"]);
        assert_eq!(boot.cmdline, "aslr=off init=interactive");
        assert_eq!(boot.timeout, Duration::from_secs(90));
        assert_eq!(boot.memory_mib, 512);
        assert_eq!(boot.cpu, "qemu64");
        assert!(boot.icount && !boot.interactive && !boot.gdb);
        assert_eq!(expected, ["PASS a", "PASS b"]);
        assert_eq!(boot.qemu_args, ["-d", "int"]);
    }

    #[test]
    fn the_defaults_are_an_hour_on_this_terminal_and_no_limit_under_gdb() {
        let (boot, expected) = parsed(&["memd", "hello"]).unwrap();
        assert_eq!(boot.timeout, Duration::from_secs(3600));
        assert_eq!(boot.memory_mib, 128);
        assert!(boot.interactive && !boot.icount && expected.is_empty());
        let (boot, _) = parsed(&["--gdb", "memd", "hello"]).unwrap();
        assert!(boot.gdb);
        assert_eq!(boot.timeout, Duration::MAX);
        let (boot, _) = parsed(&["--gdb", "--timeout", "5", "memd"]).unwrap();
        assert_eq!(boot.timeout, Duration::from_secs(5));
    }

    #[test]
    fn misspelt_options_bad_numbers_and_missing_values_are_refused() {
        assert!(refused(&["--tmeout", "5", "memd"]).contains("--tmeout"));
        assert!(refused(&["-x", "memd"]).contains("-x"));
        assert!(refused(&["memd", "--no-inptu"]).contains("--no-inptu"));
        assert!(refused(&["--timeout", "abc", "memd"]).contains("--timeout \"abc\""));
        assert!(refused(&["--timeout", "0", "memd"]).contains("positive"));
        assert!(refused(&["--timeout", "-5", "memd"]).contains("--timeout"));
        assert!(refused(&["--memory", "x", "memd"]).contains("--memory \"x\""));
        assert!(refused(&["--memory", "1.5", "memd"]).contains("--memory"));
        assert!(refused(&["memd", "--timeout"]).contains("--timeout"));
        assert!(refused(&["memd", "--append"]).contains("--append"));
        assert!(refused(&["--icount=yes", "memd"]).contains("--icount"));
    }

    #[test]
    fn help_is_asked_for_anywhere() {
        for args in [&["--help"][..], &["-h"], &["memd", "--help", "--bogus"]] {
            assert!(matches!(parse(args.iter().map(OsString::from)), Ok(None)));
        }
    }

    #[test]
    fn help_lists_every_exit_status() {
        for c in [
            code::OK,
            code::MAX_STATUS,
            code::UNREPORTED,
            code::EXPECT_MISSING,
            code::QEMU_CRASHED,
            code::KERNEL_FATAL,
            code::TIMEOUT,
            code::RUNNER_ERROR,
            code::KILLED,
            code::NOT_STARTED,
            code::QUIT,
        ] {
            assert!(
                USAGE
                    .lines()
                    .any(|l| l.trim_start().starts_with(&c.to_string())
                        || l.contains(&format!("..={c} "))),
                "status {c} is not in the usage"
            );
        }
        assert!(USAGE.contains(&qemu_runner::MAX_PROGRAMS.to_string()));
        assert!(USAGE.contains(&qemu_runner::GDB_PORT.to_string()));
    }

    #[test]
    fn gdb_and_qemu_args_reach_the_qemu_command_line() {
        let words = |boot: &Boot| -> Vec<String> {
            qemu_runner::qemu_args(boot, Path::new("/k"), Some(Path::new("/pack")))
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect()
        };
        let (plain, _) = parsed(&["memd", "hello"]).unwrap();
        let plain = words(&plain);
        assert!(!plain.contains(&"-s".to_string()) && !plain.contains(&"-S".to_string()));
        let (boot, _) = parsed(&[
            "--gdb",
            "--qemu-arg",
            "-d",
            "--qemu-arg",
            "int,cpu_reset",
            "memd",
            "hello",
        ])
        .unwrap();
        let args = words(&boot);
        let at = args.iter().position(|a| a == "-s").expect("-s");
        assert_eq!(args[at + 1], "-S");
        assert_eq!(args[args.len() - 2..], ["-d", "int,cpu_reset"]);
        // Nothing else changed: the same words less the added ones.
        let mut less = args.clone();
        less.drain(at..at + 2);
        less.truncate(less.len() - 2);
        assert_eq!(less, plain);
    }
}
