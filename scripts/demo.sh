#!/usr/bin/env bash
# The main job: builds rustnet, starts a dockerd if none runs, starts the
# rustnet plugin, and shows two containers on a rustnet network talking.
# Debian 12, as root. Leaves dockerd, the plugin and the network running.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "scripts/demo.sh must run as root" >&2
    exit 1
fi
scripts/install-deps.sh
cargo build --release --locked -p rustnet
install -m 0755 target/release/rustnet /usr/local/bin/rustnet

wait_for() { # wait_for WHAT COMMAND...
    local what=$1; shift
    for _ in $(seq 1 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "$what did not come up" >&2
    return 1
}

if ! docker info >/dev/null 2>&1; then
    echo "starting dockerd (log: /var/log/rustnet-demo-dockerd.log)"
    nohup dockerd >/var/log/rustnet-demo-dockerd.log 2>&1 &
    wait_for dockerd docker info
fi
if ! rustnet status >/dev/null 2>&1; then
    echo "starting rustnet daemon (log: /var/log/rustnet.log)"
    nohup rustnet daemon >>/var/log/rustnet.log 2>&1 &
    wait_for "rustnet daemon" rustnet status
fi
image=rustnet-demo/busybox:latest
docker image inspect "$image" >/dev/null 2>&1 || scripts/busybox-image.sh "$image"

docker rm -f rustnet-demo-a rustnet-demo-b >/dev/null 2>&1 || true
docker network rm rustnet-demo >/dev/null 2>&1 || true
set -x
docker network create --ipam-driver rustnet --subnet 10.0.42.0/24 --ip-range 10.0.42.128/25 rustnet-demo
docker run -d --name rustnet-demo-a --network rustnet-demo "$image" sleep 3600
docker run --rm --name rustnet-demo-b --network rustnet-demo "$image" \
    sh -c 'ip -4 -o addr show eth0 && ping -c 3 rustnet-demo-a'
rustnet status
