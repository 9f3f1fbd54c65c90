#!/usr/bin/env bash
# Three multipass VMs (Debian 12 image) forming one rustnet cluster, with
# the managed plugin on each. Run from anywhere, after
# `cargo build --release -p rustnet` in the repository:
#
#   contrib/vm/multipass.sh            # creates rn1 rn2 rn3
#   multipass exec rn1 -- sudo rustnet status
#   contrib/vm/multipass.sh delete     # removes them
#
# RUSTNET_PLUGIN_REF=REF installs the plugin from a registry
# (docker-plugin/push.sh REF) instead of the local build.
#
# Each VM runs contrib/vm/provision.sh: the steps the simulated-host tests
# run in network namespaces (tests/tests/install_docker.rs).
set -euo pipefail
cd "$(dirname "$0")/../.."
nodes=(rn1 rn2 rn3)
image=${RUSTNET_VM_IMAGE:-debian:12}
if [ "${1:-}" = delete ]; then
    multipass delete --purge "${nodes[@]}"
    exit 0
fi
for node in "${nodes[@]}"; do
    multipass launch "$image" --name "$node" --cpus 2 --memory 2G --disk 10G \
        --cloud-init contrib/vm/cloud-init.yaml
    multipass mount "$PWD" "$node:/rustnet"
done
addr() { multipass info "$1" --format csv | awk -F, 'NR==2 {print $3}'; }
seed=$(addr rn1)
# rn1 bootstraps the cluster with this join token; rn2 and rn3 present it.
token=rnt-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
ref=${RUSTNET_PLUGIN_REF:-}
multipass exec rn1 -- sudo RUSTNET_PLUGIN_REF="$ref" bash /rustnet/contrib/vm/provision.sh "$seed" "$token"
for node in rn2 rn3; do
    multipass exec "$node" -- sudo RUSTNET_PLUGIN_REF="$ref" bash /rustnet/contrib/vm/provision.sh "$(addr "$node")" "$token" "$seed"
done
multipass exec rn1 -- sudo rustnet status
