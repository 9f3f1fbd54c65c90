#!/usr/bin/env bash
# Runs every rustnet test on a Debian 12 machine, as root: formatting, lints,
# unit and property tests, the openraft storage suite, the plugin API over a
# real socket, end-to-end tests against real dockerds in simulated hosts,
# and a short run of each fuzz target.
# Installs what it needs; starts (and stops) its own dockerds.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh must run as root (namespaces, dockerd, iptables)" >&2
    exit 1
fi
scripts/install-deps.sh
# The newer engines the end-to-end matrix runs (Debian's trixie and sid
# docker.io, unpacked under target/engines, not installed); prints their
# versions.
scripts/fetch-engines.sh
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --document-private-items
scripts/deny.sh
cargo build --locked -p rustnet
cargo test --locked --workspace
scripts/fuzz.sh 20000
