#!/usr/bin/env bash
# Dependency gate: licences, duplicate versions and sources (deny.toml),
# and RustSec advisories when a local copy of the advisory database exists
# (it is a git clone of github.com, which this machine may not reach).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null; then
    echo "installing cargo-deny (once)"
    cargo install --locked --quiet cargo-deny
fi
cargo deny check licenses bans sources
db="${RUSTNET_ADVISORY_DB:-$HOME/.cargo/advisory-dbs}"
if [ -d "$db" ] && [ -n "$(ls -A "$db" 2>/dev/null)" ]; then
    cargo deny --offline check advisories
else
    echo "cargo deny: advisories NOT checked: no advisory database at $db" \
        "(clone https://github.com/rustsec/advisory-db there, or set RUSTNET_ADVISORY_DB)" >&2
fi
