#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, lints, unit, integration and doc
# tests, examples and benchmarks (built, and run once in test mode), and the docs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== cargo test (libraries, integration tests, examples, benchmarks in test mode)"
cargo test --workspace --all-features --all-targets
echo "== cargo test --doc"
cargo test --workspace --all-features --doc
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps
echo "== all checks passed"
