#!/usr/bin/env bash
# Cargo's test runner in scripts/test.sh: runs one test binary in a network
# namespace of its own, loopback up. Every test process builds its
# simulated underlay on 10.99.0.0/24; in namespaces of their own, several
# can run at once without seeing each other's.
exec unshare --net -- sh -c 'ip link set lo up && exec "$0" "$@"' "$@"
