# Shared by demo.sh and the benchmarks: build rustnet, make sure a dockerd,
# the rustnet daemon and a busybox image are there. Source it from the
# repository root, as root.

require_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "$0 must run as root" >&2
        exit 1
    fi
}

wait_for() { # wait_for WHAT COMMAND...
    local what=$1
    shift
    for _ in $(seq 1 150); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "$what did not come up" >&2
    return 1
}

build_and_install() {
    scripts/install-deps.sh
    cargo build --release --locked -p rustnet
    install -m 0755 target/release/rustnet /usr/local/bin/rustnet
}

ensure_dockerd() {
    if ! docker info >/dev/null 2>&1; then
        echo "starting dockerd (log: /var/log/rustnet-demo-dockerd.log)"
        nohup dockerd >/var/log/rustnet-demo-dockerd.log 2>&1 &
        wait_for dockerd docker info
    fi
}

# Starts the daemon unless one answers; restarts it when the binary changed.
ensure_rustnet() {
    local running
    running=$(pgrep -o -f "^(/usr/local/bin/)?rustnet daemon" || true)
    if [ -n "$running" ] && ! cmp -s /usr/local/bin/rustnet "/proc/$running/exe"; then
        echo "restarting rustnet daemon with the new build"
        kill "$running"
        wait_for "rustnet daemon to stop" sh -c "! kill -0 $running"
        running=
    fi
    if [ -z "$running" ] || ! rustnet status >/dev/null 2>&1; then
        echo "starting rustnet daemon (log: /var/log/rustnet.log)"
        nohup /usr/local/bin/rustnet daemon >>/var/log/rustnet.log 2>&1 &
        wait_for "rustnet daemon" rustnet status
    fi
}

ensure_image() { # ensure_image NAME:TAG
    docker image inspect "$1" >/dev/null 2>&1 || scripts/busybox-image.sh "$1"
}
