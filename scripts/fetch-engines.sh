#!/usr/bin/env bash
# Fetches the newer Docker engines the end-to-end tests run beside Debian
# 12's own (20.10): docker.io from Debian's trixie suite (26.x) and from
# sid (28.x or newer), unpacked under target/engines/<suite>/, never
# installed on the system. Uses a private apt sources list, state and
# cache, so the system's apt setup and packages stay as they are.
#
#   scripts/fetch-engines.sh [SUITE...]      (default: trixie sid)
#
# Prints one line per engine: SUITE VERSION DIRECTORY. A suite already
# unpacked is not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."
suites=("$@")
((${#suites[@]})) || suites=(trixie sid)
root=$PWD/target/engines
apt_dir=$root/apt
mirror=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
    grep -v security | head -n1 | tr -d " " || true)
mirror=${mirror:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

apt_private() {
    apt-get -q \
        -o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::status="$apt_dir/status" \
        -o Dir::Cache="$apt_dir/cache" -o APT::Get::List-Cleanup=0 \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

apt_cache_private() {
    apt-cache \
        -o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::status="$apt_dir/status" \
        -o Dir::Cache="$apt_dir/cache" "$@"
}

# One fetch at a time (test processes may ask at once).
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

fetched=()
for suite in "${suites[@]}"; do
    [ -x "$root/$suite/usr/sbin/dockerd" ] || fetched+=("$suite")
done
if ((${#fetched[@]})); then
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
    : >"$apt_dir/status"
    : >"$apt_dir/sources.list"
    for suite in "${fetched[@]}"; do
        echo "deb [signed-by=$keyring] $mirror $suite main" >>"$apt_dir/sources.list"
    done
    apt_private update >/dev/null
    for suite in "${fetched[@]}"; do
        version=$(apt_cache_private madison docker.io | awk -F' *[|] *' -v s=" $suite/" 'index($3, s) {print $2; exit}')
        [ -n "$version" ] || { echo "no docker.io in $suite at $mirror" >&2; exit 1; }
        (cd "$apt_dir/debs" && rm -f docker.io_*.deb && apt_private download "docker.io=$version" >/dev/null)
        rm -rf "$root/$suite.tmp"
        dpkg-deb -x "$apt_dir/debs/docker.io_${version//:/%3a}_"*.deb "$root/$suite.tmp"
        echo "$version" >"$root/$suite.tmp/VERSION"
        rm -rf "${root:?}/$suite"
        mv "$root/$suite.tmp" "$root/$suite"
    done
fi
for suite in "${suites[@]}"; do
    echo "$suite $(cat "$root/$suite/VERSION") $root/$suite"
done
