#!/usr/bin/env bash
# Says whether this host's Docker needs rustnet's resolver address in
# daemon.json for names across hosts, and prints the exact line when it
# is missing. Docker 28 and later ask the host's resolvers from their own
# namespace, and so does every engine on a host whose /etc/resolv.conf
# names only systemd-resolved's stub: there, the containers' queries reach
# rustnet only through a `dns` server of daemon.json.
#
#   scripts/check-dns-setting.sh [DAEMON_JSON]   (default /etc/docker/daemon.json)
#
# Exit status 0 either way: it advises, it changes nothing.
set -euo pipefail
address=169.254.53.53
daemon_json=${1:-/etc/docker/daemon.json}
version=$(docker version -f '{{.Server.Version}}' 2>/dev/null || true)
major=${version%%.*}
why=
if [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 28)); then
    why="Docker $version asks the host's resolvers from its own namespace"
elif [ "$(grep -E '^\s*nameserver' /etc/resolv.conf 2>/dev/null | awk '{print $2}' | sort -u)" = 127.0.0.53 ]; then
    why="this host's /etc/resolv.conf names only systemd-resolved's stub"
fi
if [ -z "$why" ]; then
    echo "names across hosts: Docker ${version:-?} needs no daemon.json setting on this host"
    exit 0
fi
if grep -q "\"$address\"" "$daemon_json" 2>/dev/null; then
    echo "names across hosts: $daemon_json names $address (needed: $why)"
    exit 0
fi
cat <<MSG
names across hosts: $why, so overlay containers
resolve other hosts' containers only through a DNS server of daemon.json.
Add this to $daemon_json (first in "dns" if it has one), then restart
dockerd (systemctl restart docker); containers started since get it:

    "dns": ["$address"]

Every other name keeps resolving as the host resolves it, also while
rustnet is down. \`rustnet status\` says which containers lack it.
With IPv6-only networks (--ipv4=false), add rustnet's IPv6 resolver
address as the second entry: "dns": ["$address", "fd53::53"].
MSG
