//! Links the test programs at 4 MiB, static and not position independent, with nothing of the
//! C library (their target, `.cargo/config.toml`, is x86_64-unknown-linux-musl, linked through
//! the C compiler: the linker's own options go through `-Wl,`).

fn main() {
    println!("cargo:rerun-if-changed=user.ld");
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    assert_eq!(
        target, "x86_64-unknown-linux-musl",
        "the ring-3 programs are built for x86_64-unknown-linux-musl (.cargo/config.toml)"
    );
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        &format!("-Wl,-T,{dir}/user.ld"),
        "-Wl,-z,max-page-size=4096",
        "-Wl,--build-id=none",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
