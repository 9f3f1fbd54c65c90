#!/usr/bin/env bash
# `docker run -d` latency on a rustnet bridge network vs Docker's own
# bridge, alternated in one run on the same dockerd; prints the medians and
# their ratio. Usage: scripts/bench-docker-run.sh [RUNS] (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root
runs=${1:-20}
build_and_install >/dev/null
ensure_dockerd
ensure_rustnet
image=rustnet-demo/busybox:latest
ensure_image "$image"

cleanup() {
    docker rm -f $(docker ps -aq --filter label=rustnet-bench) >/dev/null 2>&1 || true
    docker network rm bench-rustnet bench-docker >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
docker network create -d rustnet --ipam-driver rustnet --subnet 10.0.90.0/24 bench-rustnet >/dev/null
docker network create --subnet 10.0.91.0/24 bench-docker >/dev/null

declare -A times
for i in $(seq 1 "$runs"); do
    for net in bench-rustnet bench-docker; do
        start=$(date +%s%N)
        docker run -d --label rustnet-bench --network "$net" "$image" sleep 600 >/dev/null
        end=$(date +%s%N)
        times[$net]+="$(( (end - start) / 1000000 )) "
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
r=$(echo "${times[bench-rustnet]}" | median)
d=$(echo "${times[bench-docker]}" | median)
echo "docker run -d, median of $runs runs each, alternated:"
echo "  rustnet bridge: ${r} ms"
echo "  docker bridge:  ${d} ms"
awk -v r="$r" -v d="$d" 'BEGIN { printf "  ratio rustnet/docker: %.3f\n", r / d }'
