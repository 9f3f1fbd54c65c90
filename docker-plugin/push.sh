#!/usr/bin/env bash
# Publishes the plugin to a registry, the way Docker distributes plugins:
# builds the plugin folder (docker-plugin/build.sh), creates it as the
# local plugin REF, `docker plugin push REF`, and removes the local copy
# again (REF is a name for the registry, not the plugin this host runs).
#
#   docker-plugin/push.sh [--dir DIR] REF
#
# REF names the registry, repository and tag, as for images:
# `registry.example.com:5000/rustnet:0.3`, or `youruser/rustnet:latest` for
# Docker Hub (after `docker login`). Every host then installs it with
#
#   mkdir -p -m 0700 /var/lib/rustnet
#   docker plugin install --grant-all-permissions --alias rustnet REF SETTING=VALUE...
#
# RUSTNET_BIN=PATH packages that binary instead of a fresh release build.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/docker-plugin
while [ $# -gt 0 ]; do
    case $1 in
    --dir) dir=$2; shift 2 ;;
    *) break ;;
    esac
done
if [ $# -ne 1 ]; then
    echo "usage: docker-plugin/push.sh [--dir DIR] REF (say registry.example.com:5000/rustnet:0.3)" >&2
    exit 2
fi
ref=$1
[ -f "$dir/config.json" ] || docker-plugin/build.sh "$dir"
# What this copy was published as. It also makes each push's rootfs its own:
# Docker 20.10 refuses to create a plugin whose rootfs is byte for byte one
# it stored before ("content sha256:...: already exists"), even after that
# plugin is removed.
printf 'reference=%s\npushed=%s\n' "$ref" "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >"$dir/rootfs/etc/rustnet-plugin"
# A plugin of that name left by an earlier push goes first.
if docker plugin inspect "$ref" >/dev/null 2>&1; then
    docker plugin rm -f "$ref" >/dev/null
fi
docker plugin create "$ref" "$dir" >/dev/null
status=0
docker plugin push "$ref" || status=$?
docker plugin rm -f "$ref" >/dev/null
if [ "$status" -ne 0 ]; then
    echo "docker plugin push $ref failed (status $status)" >&2
    exit "$status"
fi
echo "pushed $ref: on each host, mkdir -p -m 0700 /var/lib/rustnet && docker plugin install --grant-all-permissions --alias rustnet $ref SETTING=VALUE..."
