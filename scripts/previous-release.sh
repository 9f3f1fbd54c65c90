#!/usr/bin/env bash
# Builds the rustnet binary of a previous release from this repository's
# own history, once, and prints its path (target/previous/COMMIT/rustnet).
# The default is the release before formats were numbered (the main branch
# as of 2026-12-01, commit d6f0e30): the upgrade test upgrades a cluster
# from it. Safe to run concurrently (one build at a time, then cached).
set -euo pipefail
commit=${1:-d6f0e30}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/target/previous/$commit
mkdir -p "$out"
exec 9>"$out.lock"
flock 9
if [ -x "$out/rustnet" ]; then
    echo "$out/rustnet"
    exit 0
fi
if ! git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
    # A shallow clone: its origin may still have the history.
    git -C "$root" fetch --quiet --unshallow 2>/dev/null || true
fi
if ! git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
    echo "previous-release: commit $commit is not in this clone's history (a shallow clone?): run git fetch --unshallow" >&2
    exit 1
fi
rm -rf "$out/src"
mkdir -p "$out/src"
git -C "$root" archive "$commit" | tar -x -C "$out/src"
# Without debug info or incremental state: only the binary is kept.
(cd "$out/src" && CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=false \
    cargo build --locked --bin rustnet --target-dir "$out/target") >"$out/build.log" 2>&1 || {
    tail -30 "$out/build.log" >&2
    echo "previous-release: building $commit failed (log: $out/build.log)" >&2
    exit 1
}
cp "$out/target/debug/rustnet" "$out/rustnet.tmp"
mv "$out/rustnet.tmp" "$out/rustnet"
rm -rf "$out/target" "$out/src"
echo "$out/rustnet"
