#!/usr/bin/env bash
# Installs what rustnet's build, demo and tests need on Debian 12, if missing:
# Docker Engine, docker-compose and docker-registry, busybox (test image), iproute2 and
# iptables (which brings ebtables), Prometheus's Python client (its
# parser checks a real scrape), tcpdump (captures of the underlay) and QEMU
# (VMs booting Debian's own kernel, scripts/vm-image.sh).
set -euo pipefail
packages=(docker.io docker-compose docker-registry busybox-static iproute2 iptables python3-prometheus-client tcpdump qemu-system-x86)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The tests run their own registry; one the package starts on :5000 is not
# wanted where this script installed it.
if [[ " ${missing[*]:-} " == *" docker-registry "* ]] && command -v systemctl >/dev/null &&
    [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
