#!/usr/bin/env bash
# The scale benchmark (issue-sized: 50 members, 10,000 endpoints) on
# simulated hosts, with the release build; writes target/scale-bench.md.
#
#   scripts/scale-bench.sh [DOCKER_HOSTS BARE_HOSTS ENDPOINTS WHILE_DOWN]
#
# As root on Debian 12; installs what it needs. Takes a few minutes; the
# test suite runs a small form of it (tests/tests/scale.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "scripts/scale-bench.sh must run as root (namespaces, dockerd, iptables)" >&2
    exit 1
fi
scripts/install-deps.sh
cargo build --release --locked -p rustnet -p rustnet-tests --bin rustnet --bin scale-bench
RUSTNET_BIN=$PWD/target/release/rustnet exec target/release/scale-bench "$@"
