#!/usr/bin/env bash
# Makes one VM a rustnet host, the way the simulated-host tests make one
# (tests/src/host.rs, install_plugin): Docker, then rustnet as a managed
# plugin through docker-plugin/install.sh with this host's underlay address,
# the cluster's join token (the first host bootstraps the cluster with it)
# and, for every host but the first, the first host to join.
#
#   provision.sh ADDR TOKEN [SEED_ADDR]   (run as root, repository at /rustnet)
#
# The plugin is built from /rustnet/target/release/rustnet: build it on the
# machine that runs the VMs first (`cargo build --release -p rustnet`); the
# VMs run Debian 12 like it. With RUSTNET_PLUGIN_REF=REF (a plugin pushed
# with docker-plugin/push.sh) it is installed from that registry instead,
# with `docker plugin install` (tests/tests/registry.rs), and the rustnet
# command is the plugin's own binary.
set -euo pipefail
addr=$1
token=$2
seed=${3:-}
repo=/rustnet
binary=$repo/target/release/rustnet
ref=${RUSTNET_PLUGIN_REF:-}
if [ -z "$ref" ] && [ ! -x "$binary" ]; then
    echo "$binary is missing: run 'cargo build --release -p rustnet' in the repository first" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq docker.io busybox-static iproute2 iptables >/dev/null
systemctl enable --now docker

settings=("RUSTNET_ADVERTISE_ADDR=$addr" "RUSTNET_JOIN_TOKEN=$token")
[ -n "$seed" ] && settings+=("RUSTNET_JOIN=$seed:7950")
if [ -n "$ref" ]; then
    mkdir -p -m 0700 /var/lib/rustnet
    docker plugin inspect rustnet >/dev/null 2>&1 ||
        docker plugin install --grant-all-permissions --alias rustnet "$ref" "${settings[@]}"
    id=$(docker plugin inspect -f '{{.Id}}' rustnet)
    install -m 0755 "/var/lib/docker/plugins/$id/rootfs/usr/bin/rustnet" /usr/local/bin/rustnet
else
    install -m 0755 "$binary" /usr/local/bin/rustnet
    RUSTNET_BIN=$binary "$repo/docker-plugin/build.sh" /var/tmp/rustnet-plugin
    "$repo/docker-plugin/install.sh" --dir /var/tmp/rustnet-plugin "${settings[@]}"
fi

# The image the README's examples and the tests use, built locally.
docker image inspect rustnet-demo/busybox:latest >/dev/null 2>&1 ||
    "$repo/scripts/busybox-image.sh" rustnet-demo/busybox:latest
for _ in $(seq 1 50); do
    rustnet status >/dev/null 2>&1 && break
    sleep 0.2
done
rustnet status
