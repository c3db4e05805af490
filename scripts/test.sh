#!/usr/bin/env bash
# Runs every test: formatting, lints (host and bare-metal builds), the host tests (page tables,
# memd, libvm, the hosted testbed with its randomized model test) and the QEMU system tests.
# The QEMU tests echo the guest's console as they run, each line after its test's name; a dump
# of a kernel fault a test provokes on purpose follows a banner saying it is expected.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

programs=tests/qemu/programs
echo "== cargo fmt --check"
cargo fmt --all -- --check
(cd "$programs" && cargo fmt --all -- --check)
echo "== cargo clippy (host)"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo clippy (x86_64-unknown-none: the kernel, memd, libvm)"
cargo clippy --release --target x86_64-unknown-none --target-dir target/metal \
    -p kernel-shim -p memd -p libvm -- -D warnings
echo "== cargo clippy (x86_64-unknown-linux-musl: the ring-3 programs)"
(cd "$programs" && cargo clippy --release --workspace --target-dir ../../../target/metal -- -D warnings)
echo "== cargo test (host tests and QEMU system tests)"
cargo test --workspace
