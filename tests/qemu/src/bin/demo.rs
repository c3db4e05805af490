//! `cargo demo [-i] [NAME...]`: README command 1, `scripts/demo.sh`, with these arguments,
//! from the workspace root wherever cargo runs it; exits with the script's status.

use std::process::Command;

fn main() {
    let script = qemu_runner::workspace_root().join("scripts/demo.sh");
    let status = Command::new("bash")
        .arg(&script)
        .args(std::env::args_os().skip(1))
        .status();
    match status {
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("demo: cannot run bash {}: {e}", script.display());
            std::process::exit(qemu_runner::verdict::code::RUNNER_ERROR);
        }
    }
}
