//! kernel-shim, the bare-metal kernel (built with `--target x86_64-unknown-none`; on the host
//! this binary is a stub that says how to boot it).
//!
//! See `kernel/mod.rs` for the kernel's design principles and its system-call table.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "kernel-shim is a bare-metal kernel: build it with \
         `cargo build --release --target x86_64-unknown-none -p kernel-shim` \
         and boot it with `cargo run -p qemu-tests --bin boot`."
    );
}
