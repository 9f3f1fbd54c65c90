#!/usr/bin/env bash
# Where the write path's time goes: records every thread of cluster-bench
# (three members and their clients in one process) with perf, and draws a
# flame graph of it.
#
#   scripts/profile.sh [ALLOCATIONS [CLIENTS...]]
#
# Defaults to 20000 allocations in the 64-client row (long enough for each
# member to take snapshots under the clients). Writes, under
# target/profile/: cluster-bench.svg (the flame graph: open it in a
# browser, click to zoom), cluster-bench.folded (one line per stack, for
# grep or inferno-diff-folded) and perf.data. Prints the share of each
# thread and of the frames that take the most.
#
# As root on Debian 12; installs perf (linux-perf) and inferno (cargo) if
# they are missing. The release build keeps line tables, so frames carry
# their functions; perf unwinds with DWARF.
set -euo pipefail
cd "$(dirname "$0")/.."
allocations=${1:-20000}
shift || true
clients=("$@")
((${#clients[@]})) || clients=(64)

if ! command -v perf >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
if ! perf stat -e cpu-clock true >/dev/null 2>&1; then
    echo "perf cannot sample here (kernel.perf_event_paranoid, or no perf for this kernel)" >&2
    exit 1
fi
if ! command -v inferno-flamegraph >/dev/null; then
    cargo install --locked inferno
fi
cargo build --release --locked -p rustnet-store --example cluster-bench

out=target/profile
mkdir -p "$out"
# cpu-clock: a virtual machine often has no hardware counters. 499 Hz and
# 16 KiB of stack per sample keep a 20,000-allocation row to a few hundred
# MB of perf.data.
perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -o "$out/perf.data" -- \
    target/release/examples/cluster-bench "$allocations" "${clients[@]}" |
    grep -v '^RESULT'
perf script -i "$out/perf.data" 2>/dev/null | inferno-collapse-perf >"$out/cluster-bench.folded"
# Frames narrower than half a pixel are left out (a tenth of the file);
# colours follow the function names, alike from one graph to the next.
inferno-flamegraph --minwidth 0.5 --hash --title "cluster-bench $allocations ${clients[*]}" \
    <"$out/cluster-bench.folded" >"$out/cluster-bench.svg"

# Each folded line is "thread;frame;...;frame SAMPLES".
awk '{ n = $NF; split($0, f, ";"); by[f[1]] += n; total += n }
    END { for (t in by) printf "%5.1f%%  %s\n", 100 * by[t] / total, t }' \
    "$out/cluster-bench.folded" | sort -rn | head -8 |
    sed '1i share of the samples by thread:'
# The frames most often on a stack, each counted once per stack: where the
# time goes, inclusive.
awk '{ n = $NF; sub(/ [0-9]+$/, ""); total += n; delete seen
        k = split($0, f, ";")
        for (i = 2; i <= k; i++) if (!(f[i] in seen)) { seen[f[i]] = 1; by[f[i]] += n } }
    END { for (s in by) printf "%5.1f%%  %s\n", 100 * by[s] / total, substr(s, 1, 110) }' \
    "$out/cluster-bench.folded" | sort -rn |
    grep -E '  (redb::|__x64_sys|serde_json::|h2::proto|rustls::|openraft::|rustnet_ipam|miniz|tonic::codec)' |
    grep -vE 'closure|spawn_unchecked' |
    head -25 | sed '1i frames (inclusive) in the write path:'
echo "flame graph: $out/cluster-bench.svg"
