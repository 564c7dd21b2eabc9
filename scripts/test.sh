#!/usr/bin/env bash
# Runs every check and test of the workspace: formatting, lints, unit, integration and doc
# tests, examples and benchmarks (built, and run once in test mode), and the docs.
#
# The shared stores' tests need real servers: this script installs what is missing (Debian's
# redis-server), starts a Redis server and a Redis Cluster of three masters on 127.0.0.1 on
# free ports with their data in a temporary directory, runs everything with every feature, and
# stops exactly what it started, also when a step fails. With CI=true, a test whose server is
# missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

export CI="${CI:-true}"
servers="$(mktemp -d "${TMPDIR:-/tmp}/cache-test-servers.XXXXXX")"
stop_servers() {
    [ -d "$servers/redis" ] && bash scripts/redis.sh stop "$servers/redis" || true
    [ -d "$servers/s3" ] && bash scripts/s3.sh stop "$servers/s3" || true
    rm -rf "$servers"
}
trap stop_servers EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== servers for the shared stores (Redis, Redis Cluster)"
eval "$(bash scripts/redis.sh start "$servers/redis")"
echo "REDIS_URL=$REDIS_URL"
echo "REDIS_CLUSTER_URL=$REDIS_CLUSTER_URL"
echo "== server for the S3 store (moto)"
eval "$(bash scripts/s3.sh start "$servers/s3")"
echo "S3_ENDPOINT=$S3_ENDPOINT"
echo "== cargo test (libraries, integration tests, examples, benchmarks in test mode)"
# `--all-targets` builds the examples as test harnesses only: the tests that run the proxy
# and custom_pool binaries (tests/examples.rs, tests/fleet_processes.rs) need them built.
cargo build --workspace --all-features --examples
cargo test --workspace --all-features --all-targets
echo "== cargo test --doc"
cargo test --workspace --all-features --doc
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps
echo "== all checks passed"
