//! This host's view of the replicated tables: what its kernel should hold
//! (bridges, veth pairs, VXLAN devices with their remote entries, firewall
//! networks, VXLAN ingress), computed purely from the state.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use ipnet::IpNet;
use rustnet_ipam::{Endpoint, HostId, Mac, Mode, Multicast, State};
use rustnet_overlay::firewall::{
    DnsRedirect, Ipv6Side, Network as FirewallNetwork, Published, Published6, ResolverAddress,
    Seal, VxlanIngress,
};
use rustnet_overlay::{Desired, Flood, Gateway, Port, Remote, Vxlan, Want};

use crate::encryption::{SEALED_VXLAN_PORT, TUNNEL_DEVICE, tunnel_address_of};
use crate::lan::Parents;
use crate::naming::{VXLAN_PREFIX, lan_link_name, veth_names, vxlan_name};

/// The resolver address: the `dns` entry of daemon.json that engines from
/// 28 on need for names across hosts. Link-local and owned by no host, so
/// only this host and its containers reach it, through rustnet's rules.
pub(crate) const RESOLVER_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 53, 53);

/// The IPv6 resolver address, daemon.json's second `dns` entry, for
/// containers without IPv4: a unique local address owned by no host.
pub(crate) const RESOLVER_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd53, 0, 0, 0, 0, 0, 0, 0x53);

/// Where this host's VXLAN traffic goes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Underlay {
    /// IPv4 or IPv6: VXLAN goes to the other hosts' addresses of its family.
    pub vtep: Option<IpAddr>,
    pub port: u16,
    /// This host's address in the WireGuard tunnel, while the tunnel runs:
    /// encrypted overlays' VXLAN goes from it, to the other hosts' (none:
    /// encrypted overlays do not come up here).
    pub tunnel: Option<Ipv4Addr>,
}

/// The upstream resolvers whose queries rustnet's own resolver takes, by
/// the local port it takes each one's on.
pub(crate) type DnsPorts = BTreeMap<Ipv4Addr, Taken>;

/// Where rustnet's resolver takes one upstream's queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    pub port: u16,
    /// Whether rustnet holds the upstream's liveness token, so that its
    /// queries go to the upstream itself while rustnet is down.
    pub guarded: bool,
}

/// What the host's resolver takes: each upstream's queries, and the
/// resolver address (`None`: names across hosts are off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DnsView {
    pub ports: DnsPorts,
    pub resolver: Option<ResolverAddress>,
    /// By network id: the addresses on docker_gwbridge of its containers
    /// that an earlier release started with a second interface there.
    pub legacy: BTreeMap<String, Vec<Ipv4Addr>>,
}

/// What this host's kernel should hold for `state`: a bridge per network
/// holding its gateway (an overlay's with the overlay's own MAC, the same
/// on every host), a VXLAN port per overlay with a static entry for every
/// endpoint on the other hosts, a veth pair per endpoint (created only for
/// `required` endpoints), and the firewall view of every network: an
/// overlay routes, NATs and publishes like a bridge network, and its DNS
/// queries to the `dns` upstreams go to rustnet's resolver, as do those to
/// the resolver address.
pub(crate) fn host_view(
    state: &State,
    host: HostId,
    required: &[&str],
    underlay: Underlay,
    dns: &DnsView,
    parents: &Parents,
) -> Want {
    let tables = state.tables();
    let mut desired = Desired::default();
    let mut firewall = Vec::new();
    for network in tables.networks_of(host) {
        if network.mode.is_lan() {
            let (lan, rules) = lan_view(state, network, required, dns, parents);
            desired.lans.push(lan);
            firewall.extend(rules);
            continue;
        }
        let overlay = network.mode == Mode::Overlay;
        // An encrypted overlay's VXLAN runs between tunnel addresses only.
        let (local, port) = if network.encrypted {
            (underlay.tunnel.map(IpAddr::V4), SEALED_VXLAN_PORT)
        } else {
            (underlay.vtep, underlay.port)
        };
        let tunnel = match (&network.overlay, network.vni, local) {
            (Some(key), Some(vni), Some(local)) => Some((key, vni, local)),
            _ => None,
        };
        desired.gateways.push(Gateway {
            name: network.bridge.clone(),
            addresses: network
                .gateway
                .iter()
                .chain(&network.gateway6)
                .copied()
                .collect(),
            mtu: network.mtu,
            mac: network
                .vni
                .filter(|_| overlay)
                .map(|vni| Mac::gateway(vni).octets()),
            // An encrypted overlay keeps a bridge: its VXLAN device comes
            // and goes with the tunnel, and would take macvlan links along.
            vxlan: tunnel
                .filter(|_| !network.encrypted)
                .map(|(_, vni, _)| vxlan_name(vni)),
        });
        if let Some((key, vni, local)) = tunnel {
            let device = vxlan_name(vni);
            desired.vxlans.push(Vxlan {
                name: device.clone(),
                vni,
                local,
                port,
                mtu: network.mtu,
                gateway: network.bridge.clone(),
                gateway_prefix: Mac::GATEWAY_PREFIX,
            });
            let vtep_of = |other: HostId| {
                if network.encrypted {
                    tunnel_address_of(state, other).map(IpAddr::V4)
                } else {
                    state.vtep(other).filter(|v| v.is_ipv6() == local.is_ipv6())
                }
            };
            let remotes = remotes(state, host, key, &device, vtep_of);
            if network.multicast == Multicast::Flood {
                desired.floods.extend(floods(&remotes));
            }
            desired.remotes.extend(remotes);
        }
        let endpoints: Vec<&Endpoint> = tables.endpoints_of(&network.id).collect();
        for endpoint in &endpoints {
            let (host_end, peer) = veth_names(&endpoint.id);
            desired.ports.push(Port {
                host: host_end,
                peer,
                link: lan_link_name(&endpoint.id),
                gateway: network.bridge.clone(),
                mtu: network.mtu,
                mac: endpoint.mac.octets(),
                required: required.contains(&endpoint.id.as_str()),
            });
        }
        let subnet = match network.subnet {
            Some(IpNet::V4(subnet)) => Some(subnet),
            _ => None,
        };
        // Every network with an address family has its rules (an
        // IPv6-only one its isolation and its IPv6 side).
        if subnet.is_some() || network.subnet6.is_some() {
            firewall.push(FirewallNetwork {
                bridge: network.bridge.clone(),
                subnet,
                internal: network.internal,
                published: endpoints
                    .iter()
                    .filter(|e| e.joined && !network.internal)
                    .flat_map(|e| published(e))
                    .collect(),
                dns: match network.gateway.map(|g| g.addr()) {
                    Some(IpAddr::V4(gateway)) if overlay => dns_redirects(gateway, &dns.ports),
                    _ => Vec::new(),
                },
                legacy_sources: dns
                    .legacy
                    .get(&network.id)
                    .filter(|_| overlay)
                    .cloned()
                    .unwrap_or_default(),
                ipv6: match network.subnet6 {
                    Some(IpNet::V6(subnet)) => Some(Ipv6Side {
                        subnet,
                        published: endpoints
                            .iter()
                            .filter(|e| e.joined && !network.internal)
                            .flat_map(|e| published6(e))
                            .collect(),
                    }),
                    _ => None,
                },
                lan: false,
            });
        }
    }
    Want {
        links: desired,
        firewall,
        ingress: vxlan_ingress(state, host, underlay.port),
        resolver: dns.resolver,
    }
}

/// A LAN network's links, and the DNS redirections of its shim: its
/// containers' name queries come to the resolver through it.
fn lan_view(
    state: &State,
    network: &rustnet_ipam::Network,
    required: &[&str],
    dns: &DnsView,
    parents: &Parents,
) -> (rustnet_overlay::Lan, Option<FirewallNetwork>) {
    let endpoints: Vec<&Endpoint> = state.tables().endpoints_of(&network.id).collect();
    let lan = crate::lan::desired(state, network, &endpoints, required, parents);
    let rules = match crate::lan::shim_address(state, network) {
        Some(IpAddr::V4(shim)) => Some(FirewallNetwork {
            bridge: network.bridge.clone(),
            subnet: None,
            internal: false,
            published: Vec::new(),
            dns: dns_redirects(shim, &dns.ports),
            legacy_sources: Vec::new(),
            ipv6: None,
            lan: true,
        }),
        _ => None,
    };
    (lan, rules)
}

/// A network's DNS queries to each upstream go to `gateway` (an
/// overlay's gateway, a LAN network's shim), at the port rustnet's
/// resolver takes that upstream's on.
fn dns_redirects(gateway: Ipv4Addr, dns: &DnsPorts) -> Vec<DnsRedirect> {
    dns.iter()
        .map(|(upstream, taken)| DnsRedirect {
            upstream: *upstream,
            to: SocketAddrV4::new(gateway, taken.port),
            guarded: taken.guarded,
        })
        .collect()
}

/// The upstream resolvers of this host's overlay containers: the host's
/// own (what Docker forwards to by default) and every `--dns` one but the
/// resolver address (whose queries rustnet takes from every interface).
pub(crate) fn dns_upstreams(
    state: &State,
    host: HostId,
    host_resolvers: &[Ipv4Addr],
) -> Vec<Ipv4Addr> {
    let tables = state.tables();
    let mut upstreams: Vec<Ipv4Addr> = host_resolvers.to_vec();
    let named = tables
        .networks_of(host)
        .filter(|n| n.mode == Mode::Overlay || n.mode.is_lan());
    for network in named {
        for endpoint in tables.endpoints_of(&network.id) {
            upstreams.extend(endpoint.dns.iter().filter_map(|ip| match ip {
                IpAddr::V4(v4) if !v4.is_loopback() && *v4 != RESOLVER_ADDR => Some(*v4),
                _ => None,
            }));
        }
    }
    upstreams.sort_unstable();
    upstreams.dedup();
    upstreams
}

/// One copy of each broadcast and multicast frame for every other host
/// with endpoints on the overlay (and for none without).
fn floods(remotes: &[Remote]) -> Vec<Flood> {
    let vteps: std::collections::BTreeSet<(&str, IpAddr)> = remotes
        .iter()
        .map(|r| (r.device.as_str(), r.vtep))
        .collect();
    vteps
        .into_iter()
        .map(|(device, vtep)| Flood {
            device: device.to_owned(),
            vtep,
        })
        .collect()
}

/// Every endpoint of overlay `key` on the other hosts, behind their VTEPs
/// (`vtep_of` a host: none leaves its endpoints out).
fn remotes(
    state: &State,
    host: HostId,
    key: &str,
    device: &str,
    vtep_of: impl Fn(HostId) -> Option<IpAddr>,
) -> Vec<Remote> {
    let tables = state.tables();
    tables
        .bound_to(key)
        .filter(|n| n.host != host)
        .flat_map(|n| tables.endpoints_of(&n.id))
        .filter_map(|e| {
            let vtep = vtep_of(e.host)?;
            let (ip, ip6) = (e.ipv4(), e.ipv6());
            (ip.is_some() || ip6.is_some()).then(|| Remote {
                device: device.to_owned(),
                mac: e.mac.octets(),
                ip,
                ip6,
                vtep,
            })
        })
        .collect()
}

fn published(endpoint: &Endpoint) -> Vec<Published> {
    let Some(address) = endpoint.ipv4() else {
        return Vec::new();
    };
    endpoint
        .ports
        .iter()
        // A port published on an IPv6 host address is IPv6's alone.
        .filter(|p| !matches!(p.host_ip, Some(IpAddr::V6(_))))
        .map(|p| Published {
            proto: p.proto.to_string(),
            host_ip: match p.host_ip {
                Some(IpAddr::V4(ip)) => Some(ip),
                _ => None,
            },
            host_port: p.host_port,
            container_ip: address,
            container_port: p.container_port,
        })
        .collect()
}

/// The endpoint's published ports on its IPv6 address, on the host's IPv6
/// addresses (all, or the one `-p` names).
fn published6(endpoint: &Endpoint) -> Vec<Published6> {
    let Some(address) = endpoint.ipv6() else {
        return Vec::new();
    };
    endpoint
        .ports
        .iter()
        .filter_map(|p| {
            let host_ip = match p.host_ip {
                None => None,
                Some(IpAddr::V6(ip)) if ip.is_unspecified() => None,
                Some(IpAddr::V6(ip)) => Some(ip),
                // An IPv4 host address: not published on IPv6.
                Some(IpAddr::V4(ip)) if ip.is_unspecified() => None,
                Some(IpAddr::V4(_)) => return None,
            };
            Some(Published6 {
                proto: p.proto.to_string(),
                host_ip,
                host_port: p.host_port,
                container_ip: address,
                container_port: p.container_port,
            })
        })
        .collect()
}

/// Who may send VXLAN to `host`: every member's underlay address, while
/// the host has an overlay network, and encrypted overlays' VXLAN through
/// the tunnel only, while it has one of those; `None` otherwise (pure).
pub(crate) fn vxlan_ingress(state: &State, host: HostId, port: u16) -> Option<VxlanIngress> {
    let tables = state.tables();
    let mut overlays = tables
        .networks_of(host)
        .filter(|n| n.mode == Mode::Overlay)
        .peekable();
    overlays.peek()?;
    let encrypted = overlays.any(|n| n.encrypted);
    Some(VxlanIngress {
        port,
        members: state.vteps().collect(),
        devices: format!("{VXLAN_PREFIX}+"),
        gateway_prefix: Mac::GATEWAY_PREFIX,
        seal: encrypted.then(|| Seal {
            port: SEALED_VXLAN_PORT,
            device: TUNNEL_DEVICE.to_owned(),
        }),
    })
}

#[cfg(test)]
mod tests;
