#!/bin/bash
# The baseline beside docs/bench/vxlan-path.sh: the same two namespaces as
# hosts and a container on a bridge in each, but routed between the hosts
# over the underlay (no VXLAN, MTU 1500). iperf3 (4 s) host to host, then
# container to container; prints both and their ratio. As root, with iperf3.
set -e
cleanup() { for n in ul h1 h2 c1 c2; do ip netns del $n 2>/dev/null || true; done; }
cleanup
for n in ul h1 h2 c1 c2; do ip netns add $n; ip -n $n link set lo up; done
ip -n ul link add name brx type bridge; ip -n ul link set brx up
for i in 1 2; do j=$((3-i))
  ip -n ul link add name u$i type veth peer name ul0 netns h$i
  ip -n ul link set u$i master brx up
  ip -n h$i addr add 10.99.0.$i/24 dev ul0; ip -n h$i link set ul0 up
  ip -n h$i link add name br0 type bridge; ip -n h$i addr add 10.0.$i.254/24 dev br0; ip -n h$i link set br0 up
  ip -n h$i link add name rnh type veth peer name eth0 netns c$i
  ip -n h$i link set rnh master br0 up
  ip -n c$i addr add 10.0.$i.1/24 dev eth0; ip -n c$i link set eth0 up
  ip -n c$i route add default via 10.0.$i.254
  ip netns exec h$i sysctl -qw net.ipv4.ip_forward=1
  ip -n h$i route add 10.0.$j.0/24 via 10.99.0.$j
done
bps() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))'; }
ip netns exec h2 iperf3 -s -D -1 >/dev/null; sleep 0.3
u=$(ip netns exec h1 iperf3 -c 10.99.0.2 -t 4 -J | bps)
ip netns exec c2 iperf3 -s -D -1 >/dev/null; sleep 0.3
o=$(ip netns exec c1 iperf3 -c 10.0.2.1 -t 4 -J | bps)
echo "routed underlay=$u containers=$o ratio=$(python3 -c "print(round($o/$u,2))")"
cleanup
