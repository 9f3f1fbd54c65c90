#!/usr/bin/env bash
# Builds the managed-plugin folder (config.json + rootfs/) that
# `docker plugin create` takes, without any registry:
#
#   docker-plugin/build.sh [DIR]     (default: target/docker-plugin)
#
# RUSTNET_BIN=PATH packages that binary instead of a fresh release build.
#
# The rootfs holds the release rustnet binary and the host's own iptables
# and ebtables (same backend as the host's Docker: nft or legacy, whichever
# `iptables` and `ebtables` resolve to here), each with the libraries it
# loads.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/docker-plugin}
binary=${RUSTNET_BIN:-}
if [ -z "$binary" ]; then
    cargo build --release --locked -p rustnet
    binary=target/release/rustnet
fi

rm -rf "$out"
rootfs=$out/rootfs
mkdir -p "$rootfs"/{usr/bin,usr/sbin,run/docker/plugins,var/lib/rustnet,var/run,proc,sys,dev,etc,tmp}
chmod 1777 "$rootfs/tmp"
touch "$rootfs/var/run/docker.sock"
cp docker-plugin/config.json "$out/config.json"

# copy_with_libraries FILE [DEST]: FILE (at DEST, default its own path)
# and the libraries `ldd` lists, at their own paths.
copy_with_libraries() {
    local file=$1 dest=${2:-$1}
    mkdir -p "$rootfs$(dirname "$dest")"
    cp -L "$file" "$rootfs$dest"
    ldd "$file" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
        mkdir -p "$rootfs$(dirname "$lib")"
        [ -e "$rootfs$lib" ] || cp -L "$lib" "$rootfs$lib"
    done
}

copy_with_libraries "$binary" /usr/bin/rustnet
strip --strip-debug "$rootfs/usr/bin/rustnet" 2>/dev/null || true

iptables=$(readlink -f "$(command -v iptables)")
copy_with_libraries "$iptables"
for name in iptables iptables-restore iptables-save; do
    ln -sf "$iptables" "$rootfs/usr/sbin/$name"
done
ebtables=$(readlink -f "$(command -v ebtables)")
[ -e "$rootfs$ebtables" ] || copy_with_libraries "$ebtables"
ln -sf "$ebtables" "$rootfs/usr/sbin/ebtables"
# iptables loads its matches and targets at run time.
for ext in /usr/lib/*-linux-gnu/xtables/*.so; do
    copy_with_libraries "$ext"
done
for f in /etc/protocols /etc/services /etc/ethertypes; do
    [ -e "$f" ] && cp "$f" "$rootfs$f"
done
echo "$out: $(du -sh "$rootfs" | cut -f1) rootfs, iptables $(basename "$iptables")"
