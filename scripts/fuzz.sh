#!/usr/bin/env bash
# Fuzzes rustnet with cargo fuzz (libFuzzer, AddressSanitizer):
#   api_bodies     arbitrary bodies to every path of the plugin socket, in
#                  process, over a real one-node store
#   state_machine  arbitrary command sequences against the replicated state
#                  machine, its invariants checked after every command
#
#   scripts/fuzz.sh [RUNS] [TARGET...]     (default: 1000000 runs of each)
#
# Runs on the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo fuzz pass its
# -Z flags). Stops at the first crash, panic or broken invariant, with the
# input under fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(api_bodies state_machine)
if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz (once)"
    cargo install --locked --quiet cargo-fuzz
fi
cd fuzz
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" -- \
        -runs="$runs" -print_final_stats=1 >"$log" 2>&1; then
        tail -60 "$log" >&2
        echo "fuzz $target: FAILED (input in fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    echo "fuzz $target: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') executions, no crash"
    rm -f "$log"
done
