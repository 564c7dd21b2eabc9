#!/usr/bin/env bash
# Instructions per iteration of the layer's hot paths, counted by callgrind (deterministic,
# unlike wall-clock time on a shared VM): each workload of benches/examples/instructions.rs
# runs with two counts, and the difference of the totals is divided by the difference of
# the counts, so that setup cancels out. Needs valgrind (apt-get install valgrind).
#
#   bash scripts/instructions.sh            # every workload
#   bash scripts/instructions.sh ours-hit   # one
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build --quiet --release -p cache-benches --example instructions
bin="${CARGO_TARGET_DIR:-target}/release/examples/instructions"
low=1000
high=11000
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(limit-hit ours-hit ours-hit-1mib baseline-miss ours-miss)
for workload in "${workloads[@]}"; do
    a=$(count "$workload" "$low")
    b=$(count "$workload" "$high")
    echo "$workload: $(( (b - a) / (high - low) )) instructions per iteration"
done
