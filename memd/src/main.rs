//! memd on the metal: the first ring-3 task kernel-shim starts, and the pager of every other.
//!
//! Built with `--target x86_64-unknown-none` and booted as boot module 0 with the kernel
//! command line `modules=pager` (the QEMU runner adds it when module 0 is `memd`). On the host
//! this binary is a stub; memd's logic is the library, tested there with the hosted testbed.
//!
//! See `metal/mod.rs` for how it starts and what each file does.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod metal;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "memd's daemon runs on the metal: build it with \
         `cargo build --release --target x86_64-unknown-none -p memd --bin memd` and boot it \
         with `cargo run -p qemu-tests --bin boot -- memd PROGRAM...`."
    );
}
