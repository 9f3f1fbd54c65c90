#!/usr/bin/env bash
# Installs what rustnet's build, demo and tests need on Debian 12, if missing:
# Docker Engine and docker-compose, busybox (test image), iproute2 and
# iptables (which brings ebtables), and Prometheus's Python client (its
# parser checks a real scrape).
set -euo pipefail
packages=(docker.io docker-compose busybox-static iproute2 iptables python3-prometheus-client)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
