//! Boots the system by hand: `cargo run -p qemu-tests --bin boot -- [--append CMDLINE]
//! [--timeout SECS] [PROGRAM...]` (module 0 is the pager). The serial console is on this
//! terminal (type to reach the guest's console read); QEMU's exit is reported.

use qemu_runner::{Boot, Exit};
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut boot = Boot::new(&[]);
    boot.timeout = Duration::from_secs(3600);
    boot.interactive = true;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--append" => boot.cmdline = args.next().unwrap_or_default(),
            "--timeout" => {
                let secs = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
                boot.timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => {
                eprintln!("usage: boot [--append CMDLINE] [--timeout SECS] [PROGRAM...]");
                return;
            }
            name => boot.programs.push(name.to_string()),
        }
    }
    match boot.try_run() {
        Ok(o) => {
            eprintln!("[boot] {:?} after {:.2?}", o.exit, o.elapsed);
            std::process::exit(if o.exit == Exit::Clean { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("[boot] {e}");
            std::process::exit(2);
        }
    }
}
