#!/bin/bash
# The overlay's data path alone, without Docker or rustnet: two network
# namespaces as hosts on an underlay bridge, each with a bridge, a VXLAN
# device (static FDB and neighbour entries, as rustnet programs them) and a
# container namespace on a veth. iperf3 (4 s) host to host over the
# underlay, then container to container over the overlay; prints both and
# their ratio. As root, with iperf3, ethtool and busybox installed.
#
#   docs/bench/vxlan-path.sh VARIANT [perf]
#
# VARIANT: plain; nf (br_netfilter on, conntrack in FORWARD, as Docker's
# hosts have it); nf-notrack-udp (and NOTRACK for the outer VXLAN UDP);
# nf-notrack-all (and for the bridged frames); gro (GRO, hence NAPI, on the
# receiving veths); threaded (and threaded NAPI); rps (RPS over both CPUs
# on the receiving veths); tc (no bridge: tc redirects between the VXLAN
# device and the container's veth); macvlan (no bridge, no veth: the container's
# interface a macvlan link of the VXLAN device, as rustnet builds overlays now);
# macvlan-rps (and RPS over the CPUs in RPS, default 3, on the VXLAN
# device); macvlan-rfs (and flow steering: sets the host-wide
# net.core.rps_sock_flow_entries, put back to 0 at the end); macvlan-threaded
# (and threaded NAPI on the VXLAN device).
# `perf` records the overlay run system-wide to /tmp/exp/perf.data. UMTU sets
# the underlay's MTU (1500), IMTU the overlay's (1450).
set -e
variant=${1:-plain}
cleanup() {
  for n in ul h1 h2 c1 c2; do ip netns del $n 2>/dev/null || true; done
  if [ "$variant" = macvlan-rfs ]; then sysctl -qw net.core.rps_sock_flow_entries=0; fi
}
cleanup
modprobe br_netfilter 2>/dev/null || true
for n in ul h1 h2 c1 c2; do ip netns add $n; ip -n $n link set lo up; done
ip -n ul link add name brx type bridge; ip -n ul link set brx up
for i in 1 2; do
  ip -n ul link add name u$i type veth peer name ul0 netns h$i
  ip -n ul link set u$i master brx up
  ip -n h$i addr add 10.99.0.$i/24 dev ul0; ip -n h$i link set ul0 mtu ${UMTU:-1500} up
  ip -n ul link set u$i mtu ${UMTU:-1500}
  ip -n h$i link add name br0 type bridge; ip -n h$i link set br0 up
  ip -n h$i link add name vx0 type vxlan id 42 local 10.99.0.$i dstport 4789 nolearning proxy
  if [ "$variant" = tc ]; then ip -n h$i link set vx0 mtu ${IMTU:-1450} up; else ip -n h$i link set vx0 master br0 mtu ${IMTU:-1450} up; fi
  if [ "${variant#macvlan}" != "$variant" ]; then
    ip -n h$i link set vx0 nomaster
    ip -n h$i link add link vx0 name mv$i type macvlan mode bridge
    ip -n h$i link set mv$i netns c$i; ip -n c$i link set mv$i name eth0
  else
    ip -n h$i link add name rnh type veth peer name eth0 netns c$i
    if [ "$variant" = tc ]; then ip -n h$i link set rnh mtu ${IMTU:-1450} up; else ip -n h$i link set rnh master br0 mtu ${IMTU:-1450} up; fi
  fi
  ip -n c$i addr add 10.0.0.$i/24 dev eth0; ip -n c$i link set eth0 mtu ${IMTU:-1450} up
  ip -n c$i link set dev eth0 address 02:00:00:00:00:0$i
  if [ "$variant" != plain ] && [ "${variant#macvlan}" = "$variant" ]; then
    ip netns exec h$i sysctl -qw net.bridge.bridge-nf-call-iptables=1
    ip netns exec h$i iptables -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    ip netns exec h$i iptables -A FORWARD -i br0 -j ACCEPT
    ip netns exec h$i iptables -A INPUT -p udp --dport 4789 -s 10.99.0.0/24 -j ACCEPT
  fi
  case $variant in
  nf-notrack-udp|nf-notrack-all)
    ip netns exec h$i iptables -t raw -A PREROUTING -p udp --dport 4789 -j NOTRACK
    ip netns exec h$i iptables -t raw -A OUTPUT -p udp --dport 4789 -j NOTRACK ;;
  esac
  if [ "$variant" = nf-notrack-all ]; then
    ip netns exec h$i iptables -t raw -A PREROUTING -i br0 -j NOTRACK
  fi
done
case $variant in
gro|threaded|rps)
  for i in 1 2; do
    ip netns exec c$i ethtool -K eth0 gro on
    ip netns exec h$i ethtool -K ul0 gro on
    if [ $variant = threaded ]; then
      ip netns exec c$i sh -c 'echo 1 > /sys/class/net/eth0/threaded'
      ip netns exec h$i sh -c 'echo 1 > /sys/class/net/ul0/threaded'
    fi
  done ;;
esac
if [ $variant = rps ]; then
  for i in 1 2; do
    ip netns exec c$i sh -c 'echo 3 > /sys/class/net/eth0/queues/rx-0/rps_cpus'
    ip netns exec h$i sh -c 'echo 3 > /sys/class/net/ul0/queues/rx-0/rps_cpus'
  done
fi
if [ $variant = macvlan-rps ] || [ $variant = macvlan-rfs ]; then
  for i in 1 2; do ip netns exec h$i sh -c 'echo ${RPS:-3} > /sys/class/net/vx0/queues/rx-0/rps_cpus'; done
fi
if [ $variant = macvlan-threaded ]; then
  for i in 1 2; do ip netns exec h$i sh -c 'echo 1 > /sys/class/net/vx0/threaded'; done
fi
if [ $variant = macvlan-rfs ]; then
  sysctl -qw net.core.rps_sock_flow_entries=32768
  for i in 1 2; do ip netns exec h$i sh -c 'echo 4096 > /sys/class/net/vx0/queues/rx-0/rps_flow_cnt'; done
fi
if [ "$variant" = tc ]; then
  for i in 1 2; do j=$((3-i))
    for d in vx0 rnh; do ip netns exec h$i tc qdisc add dev $d clsact; done
    ip netns exec h$i tc filter add dev vx0 ingress protocol all u32 match u32 0 0 action mirred egress redirect dev rnh
    ip netns exec h$i tc filter add dev rnh ingress protocol all u32 match u32 0 0 action mirred egress redirect dev vx0
    ip -n c$i neigh add 10.0.0.$j lladdr 02:00:00:00:00:0$j dev eth0 nud permanent
  done
fi
for i in 1 2; do j=$((3-i))
  ip netns exec h$i bridge fdb append 02:00:00:00:00:0$j dev vx0 dst 10.99.0.$j self permanent
  ip -n h$i neigh add 10.0.0.$j lladdr 02:00:00:00:00:0$j dev vx0 nud permanent
done
ip netns exec c1 busybox ping -c1 -W2 10.0.0.2 >/dev/null
bps() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))'; }
ip netns exec h2 iperf3 -s -D -1 >/dev/null; sleep 0.3
u=$(ip netns exec h1 iperf3 -c 10.99.0.2 -t 4 -J | bps)
ip netns exec c2 iperf3 -s -D -1 >/dev/null; sleep 0.3
if [ "${2:-}" = perf ]; then
  mkdir -p /tmp/exp; perf record -a -g -o /tmp/exp/perf.data -- sleep 3 >/dev/null 2>&1 &
  pp=$!
fi
o=$(ip netns exec c1 iperf3 -c 10.0.0.2 -t 4 -J | bps)
[ -n "${pp:-}" ] && wait $pp
echo "$variant underlay=$u overlay=$o ratio=$(python3 -c "print(round($o/$u,2))")"
cleanup
