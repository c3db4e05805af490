//! Boots the system by hand: `cargo run -p qemu-tests --bin boot -- [--append CMDLINE]
//! [--timeout SECS] [--memory MIB] [--cpu MODEL] [--icount] [--no-input] [--expect TEXT]
//! [PROGRAM...]` (module 0 is the pager; `--icount` runs with `-icount shift=0`, where `rdtsc`
//! counts guest instructions; `--no-input` leaves the guest's console input unconnected, for
//! scripts; `--expect TEXT` fails the run unless the console printed TEXT). The serial console
//! is on this terminal (type to reach the guest's console read); QEMU's exit is reported, and
//! the exit status is 0 only for a clean power-off (with every expected text seen).

use qemu_runner::{Boot, Exit};
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut boot = Boot::new(&[]);
    let mut expected = Vec::new();
    boot.timeout = Duration::from_secs(3600);
    boot.interactive = true;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--append" => boot.cmdline = args.next().unwrap_or_default(),
            "--timeout" => {
                let secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
                boot.timeout = Duration::from_secs(secs);
            }
            "--memory" => {
                boot.memory_mib = args.next().and_then(|s| s.parse().ok()).unwrap_or(128);
            }
            "--cpu" => boot.cpu = args.next().unwrap_or_else(|| "max".to_string()),
            "--icount" => boot.icount = true,
            "--no-input" => boot.interactive = false,
            "--expect" => expected.extend(args.next()),
            "-h" | "--help" => {
                eprintln!(
                    "usage: boot [--append CMDLINE] [--timeout SECS] [--memory MIB] [--cpu MODEL] \
                     [--icount] [--no-input] [--expect TEXT] [PROGRAM...]"
                );
                return;
            }
            name => boot.programs.push(name.to_string()),
        }
    }
    match boot.try_run() {
        Ok(o) => {
            eprintln!("[boot] {:?} after {:.2?}", o.exit, o.elapsed);
            let missing: Vec<&String> = expected.iter().filter(|t| !o.log.contains(*t)).collect();
            for text in &missing {
                eprintln!("[boot] the console never printed {text:?}");
            }
            std::process::exit(if o.exit == Exit::Clean && missing.is_empty() {
                0
            } else {
                1
            });
        }
        Err(e) => {
            eprintln!("[boot] {e}");
            std::process::exit(2);
        }
    }
}
