#!/usr/bin/env bash
# Builds every fuzz target and runs each for a fixed number of iterations.
#
#   bash scripts/fuzz.sh [RUNS] [TARGET...]     (RUNS defaults to 1000000; all targets by default)
#
# Targets: the policy's in fuzz/ (cache_control, vary, age, http_date, etag_list, location,
# decision) and the store's in crates/cache-store/fuzz/ (decode_entry, decode_records,
# decode_many_lines, entry_read_path). Each run starts from the committed seeds in
# <fuzz dir>/corpus/<target>/ (read only) and grows a scratch corpus under $FUZZ_WORK
# (default /tmp/fuzz-work), so nothing the fuzzer finds lands in the checkout except crash
# artifacts (<fuzz dir>/artifacts/<target>/, not committed). Needs a nightly toolchain;
# installs cargo-fuzz if missing. Stops at the first target that fails.
set -euo pipefail

RUNS="${1:-1000000}"
shift || true
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${FUZZ_WORK:-/tmp/fuzz-work}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

declare -A DIR_OF
for t in cache_control vary age http_date etag_list location decision; do
    DIR_OF[$t]="$ROOT/fuzz"
done
for t in decode_entry decode_records decode_many_lines entry_read_path; do
    DIR_OF[$t]="$ROOT/crates/cache-store/fuzz"
done
# Larger inputs where a target needs them (bodies past 64 KiB are built by repetition).
declare -A MAX_LEN=([decode_entry]=4096 [decode_records]=4096 [decode_many_lines]=256)

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=(cache_control vary age http_date etag_list location decision
             decode_entry decode_records decode_many_lines entry_read_path)
fi

for dir in "$ROOT/fuzz" "$ROOT/crates/cache-store/fuzz"; do
    (cd "$dir" && cargo +nightly fuzz build)
done

for t in "${targets[@]}"; do
    dir="${DIR_OF[$t]:?unknown target $t}"
    mkdir -p "$WORK/$t" "$dir/corpus/$t"
    extra=()
    if [ -n "${MAX_LEN[$t]:-}" ]; then
        extra+=("-max_len=${MAX_LEN[$t]}")
    fi
    echo "== $t: $RUNS runs"
    start=$(date +%s)
    (cd "$dir" && cargo +nightly fuzz run "$t" "$WORK/$t" "corpus/$t" -- \
        -runs="$RUNS" -print_final_stats=1 "${extra[@]}")
    echo "== $t: done in $(( $(date +%s) - start )) s"
done
