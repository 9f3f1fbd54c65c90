#!/usr/bin/env bash
# The main job: builds rustnet, starts a dockerd if none runs, starts the
# rustnet plugin, and shows two containers on a rustnet bridge network
# pinging each other by name. Debian 12, as root. Leaves dockerd, the plugin
# and the network running for you to explore.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
build_and_install
ensure_dockerd
ensure_rustnet
image=rustnet-demo/busybox:latest
ensure_image "$image"

docker rm -f rustnet-demo-a rustnet-demo-b >/dev/null 2>&1 || true
docker network rm rustnet-demo >/dev/null 2>&1 || true
set -x
docker network create -d rustnet --ipam-driver rustnet --subnet 10.0.42.0/24 --ip-range 10.0.42.128/25 rustnet-demo
docker run -d --name rustnet-demo-a --network rustnet-demo "$image" sleep 3600
docker run --rm --name rustnet-demo-b --network rustnet-demo "$image" \
    sh -c 'ip -4 -o addr show eth0 && ping -c 3 rustnet-demo-a'
rustnet status
