#!/usr/bin/env bash
# Says how much disk the whole test run has, and stops it before it starts
# when that is less than it needs (the builds under target/, the fuzz
# targets, the previous release, and the simulated hosts' dockerds under
# /tmp/rustnet-e2e): a run out of space fails in ways that say nothing of
# the cause. RUSTNET_TEST_DISK_GB overrides the need.
set -euo pipefail
cd "$(dirname "$0")/.."
need=${RUSTNET_TEST_DISK_GB:-8}
mkdir -p target
short=false
for dir in target /tmp; do
    avail=$(df --output=avail -B1G "$dir" | tail -1 | tr -d ' ')
    echo "disk: ${avail} GB free for $dir ($(df --output=source "$dir" | tail -1))"
    ((avail >= need)) || short=true
done
if $short; then
    echo "scripts/test.sh needs about $need GB free on target/ and /tmp; free some space first" >&2
    exit 1
fi
