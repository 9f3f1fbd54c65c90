#!/usr/bin/env bash
# Builds what scripts/deny.sh and scripts/fuzz.sh need, ahead of them:
# cargo-deny and cargo-fuzz (from crates.io, once) and the fuzz targets.
# scripts/test.sh runs it in the background while the tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in cargo-deny cargo-fuzz; do
    command -v "$tool" >/dev/null || cargo install --locked --quiet "$tool"
done
cd fuzz
RUSTC_BOOTSTRAP=1 cargo fuzz build
