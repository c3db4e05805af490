#!/usr/bin/env bash
# Runs every test: formatting, lints, the host tests (page tables, memd, libvm, the hosted
# testbed with its randomized model test) and the QEMU system tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
