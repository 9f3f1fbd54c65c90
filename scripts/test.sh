#!/usr/bin/env bash
# Runs every rustnet test on a Debian 12 machine, as root: formatting, lints,
# unit and property tests, the openraft storage suite, the plugin API over a
# real socket, the kernel tests, end-to-end tests against real dockerds
# (Docker 20.10, 26 and 28) in simulated hosts, and a short run of each fuzz
# target. Installs what it needs; starts (and stops) its own dockerds.
#
#   scripts/test.sh           everything
#   scripts/test.sh --quick   lints, unit, property and kernel tests only
#
# Tests that need root, namespaces or dockerd are marked ignored (plain
# `cargo test` as any user skips them, saying why); this script runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=false
[ "${1:-}" = --quick ] && quick=true
if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh must run as root (namespaces, dockerd, iptables)" >&2
    exit 1
fi
scripts/install-deps.sh
if ! $quick; then
    # A whole run builds everything once: no incremental state (4 GB less
    # on disk; set CARGO_INCREMENTAL=1 to keep it).
    export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
    scripts/disk-check.sh
    # The newer engines the end-to-end matrix runs (Debian's trixie and sid
    # docker.io, unpacked under target/engines, not installed); prints their
    # versions.
    scripts/fetch-engines.sh
    # Debian 12's own kernel, for the tests that boot it in VMs (they run
    # without the network): fetched once, unpacked under target/vm.
    scripts/vm-image.sh --fetch
    # cargo-deny, cargo-fuzz and the fuzz targets build at the lowest
    # priority while the tests run: the end-to-end tests mostly wait on
    # dockerds, and the two cores would otherwise idle.
    mkdir -p target
    nice -n 19 scripts/prepare-tools.sh >target/prepare-tools.log 2>&1 &
    prepared=$!
    # The previous release's binary, from this repository's history, for
    # the upgrade test (which waits for it, or builds it if this failed).
    nice -n 10 scripts/previous-release.sh >target/previous-release.log 2>&1 &
fi
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
if $quick; then
    cargo test --locked --workspace --exclude rustnet-tests -- --include-ignored
    cargo test --locked -p rustnet-tests --test cli
    exit 0
fi
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --document-private-items
cargo build --locked -p rustnet
# Every test, ignored ones included, each in a process and network
# namespace of its own, several at once (.config/nextest.toml); the ones
# that measure timing under load or load the machine themselves, after,
# one at a time; then the doc tests, which nextest does not run.
command -v cargo-nextest >/dev/null || cargo install --locked --quiet cargo-nextest
alone='binary(election) | binary(scale)'
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/scripts/own-netns.sh"
cargo nextest run --locked --workspace --profile suite --run-ignored all -E "not ($alone)"
cargo nextest run --locked --workspace --profile suite --run-ignored all -E "$alone" -j 1
unset CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER
cargo test --locked --workspace --doc
if ! wait "$prepared"; then
    cat target/prepare-tools.log >&2
    echo "scripts/prepare-tools.sh failed" >&2
    exit 1
fi
scripts/deny.sh
scripts/fuzz.sh 20000
