#!/usr/bin/env bash
# Every benchmark of the project in one run, beside Docker's own bridge and
# swarm's overlay, with the release build: writes target/bench-report/report.md
# and its plots (SVG) beside it.
#
#   scripts/bench-report.sh [--quick] [--baseline REV]
#
# --quick: the shortened form (a few minutes after the build).
# --baseline REV: also builds cluster-bench at git revision REV and
#   alternates its rounds with this build's (before/after in one run).
# As root on Debian 12; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "scripts/bench-report.sh must run as root (namespaces, dockerd, iptables)" >&2
    exit 1
fi
args=()
baseline=
while (($#)); do
    case $1 in
    --quick) args+=(--quick) ;;
    --baseline)
        baseline=${2:?--baseline needs a git revision}
        shift
        ;;
    *)
        echo "usage: scripts/bench-report.sh [--quick] [--baseline REV]" >&2
        exit 2
        ;;
    esac
    shift
done
scripts/install-deps.sh
command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null
cargo build --release --locked -p rustnet -p rustnet-tests --bins
cargo build --release --locked -p rustnet-store --example cluster-bench
if [ -n "$baseline" ]; then
    rev=$(git rev-parse --short "$baseline^{commit}")
    src=target/bench-baseline/src
    rm -rf "$src"
    mkdir -p "$src"
    git archive "$rev" | tar -x -C "$src"
    (cd "$src" && CARGO_TARGET_DIR=$PWD/../target cargo build --release --locked \
        -p rustnet-store --example cluster-bench)
    args+=(--baseline "$PWD/target/bench-baseline/target/release/examples" "$rev")
fi
RUSTNET_BIN=$PWD/target/release/rustnet \
    RUSTNET_REV=$(git describe --always --dirty 2>/dev/null || echo unknown) \
    exec target/release/bench-report "${args[@]}"
