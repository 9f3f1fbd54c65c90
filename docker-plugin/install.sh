#!/usr/bin/env bash
# Builds the plugin folder and installs it as the managed plugin NAME
# (default rustnet), enabled; with SETTING=VALUE arguments passed to
# `docker plugin set` first. If NAME is already installed this is an
# upgrade: its settings are kept, it is disabled (-f: networks and
# containers stay up, the kernel data path keeps forwarding), replaced by
# the new build and enabled again. State lives on the host (state.source,
# default /var/lib/rustnet), so it survives. With --from REF the plugin comes
# from a registry (docker-plugin/push.sh REF) instead of a local build:
# `docker plugin install --alias NAME REF`, the same way for an upgrade.
# (`docker plugin upgrade` is not used: Docker 20.10 resets the mounts'
# settings in it.)
#
#   docker-plugin/install.sh [--name NAME] [--dir DIR | --from REF] [SETTING=VALUE...]
set -euo pipefail
cd "$(dirname "$0")/.."
name=rustnet
dir=target/docker-plugin
from=
while [ $# -gt 0 ]; do
    case $1 in
    --name) name=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    *) break ;;
    esac
done
[ -n "$from" ] || [ -f "$dir/config.json" ] || docker-plugin/build.sh "$dir"

settings=()
if docker plugin inspect "$name" >/dev/null 2>&1; then
    echo "upgrading the installed plugin $name (settings kept)"
    while read -r line; do
        [ -n "$line" ] && settings+=("$line")
    # (.Source is a pointer: printed by the template itself, not println.)
    done < <(docker plugin inspect -f \
        '{{range .Settings.Env}}{{println .}}{{end}}{{range .Settings.Mounts}}{{.Name}}.source={{.Source}}{{"\n"}}{{end}}' \
        "$name")
    docker plugin disable -f "$name" >/dev/null 2>&1 || true
    docker plugin rm -f "$name" >/dev/null
fi
settings+=("$@")
# The overlays rustnet creates in Docker must name the plugin as Docker knows it.
case "${settings[*]:-}" in
*RUSTNET_DRIVER_NAME=*) ;;
*) [[ $name == *:* ]] && settings+=("RUSTNET_DRIVER_NAME=$name") || settings+=("RUSTNET_DRIVER_NAME=$name:latest") ;;
esac

if [ -n "$from" ]; then
    docker plugin install --disable --grant-all-permissions --alias "$name" "$from" >/dev/null
else
    docker plugin create "$name" "$dir" >/dev/null
fi
if [ ${#settings[@]} -gt 0 ]; then
    docker plugin set "$name" "${settings[@]}"
fi
# Docker does not create a bind mount's source: make the state directory,
# root-only.
state=$(docker plugin inspect -f '{{range .Settings.Mounts}}{{if eq .Name "state"}}{{.Source}}{{end}}{{end}}' "$name")
mkdir -p "$state"
chmod 0700 "$state"
docker plugin enable "$name" >/dev/null
[[ $name == *:* ]] || name=$name:latest
echo "plugin $name enabled: docker network create -d $name --ipam-driver $name ..."
scripts/check-dns-setting.sh || true
