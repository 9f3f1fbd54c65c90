#!/usr/bin/env bash
# Installs rustnet as a host service: the release binary in
# /usr/local/bin, the systemd unit, and /etc/default/rustnet for settings
# (kept if it exists; SETTING=VALUE arguments are added to it). Starts it
# with systemd when systemd runs this machine.
#
#   scripts/install-service.sh [RUSTNET_SETTING=VALUE...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "$0 must run as root" >&2
    exit 1
fi
cargo build --release --locked -p rustnet
install -m 0755 target/release/rustnet /usr/local/bin/rustnet
install -m 0644 contrib/systemd/rustnet.service /etc/systemd/system/rustnet.service
if [ ! -e /etc/default/rustnet ]; then
    install -m 0600 /dev/null /etc/default/rustnet
    echo "# rustnet settings, RUSTNET_NAME=value per line (see the README)" >/etc/default/rustnet
fi
for setting in "$@"; do
    name=${setting%%=*}
    sed -i "/^$name=/d" /etc/default/rustnet
    echo "$setting" >>/etc/default/rustnet
done
mkdir -p /var/lib/rustnet
chmod 0700 /var/lib/rustnet
scripts/check-dns-setting.sh || true
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable rustnet.service
    systemctl restart rustnet.service
    echo "rustnet.service running: journalctl -u rustnet; rustnet status"
else
    echo "no systemd here: start it with  set -a; . /etc/default/rustnet; rustnet daemon"
fi
