use rustnet_ipam::{Command, Mac, Network, PortBinding, Proto, State};
use rustnet_ipam_core::fixture;

use super::*;
use crate::naming::bridge_name;

const HOST: HostId = 7;
const UNDERLAY: Underlay = Underlay {
    vtep: None,
    port: 4789,
    tunnel: None,
};

fn tables(internal: bool, joined: bool) -> State {
    let mut state = State::default();
    let network = Network {
        bridge: bridge_name("net1net1net1net1"),
        mtu: 1450,
        internal,
        ..fixture::network("net1net1net1net1", HOST)
    };
    state.apply(&Command::CreateNetwork(network)).unwrap();
    let other_host = Network {
        bridge: "rn-other".into(),
        subnet: Some("10.0.43.0/24".parse().unwrap()),
        gateway: None,
        ..fixture::network("net2net2net2net2", HOST + 1)
    };
    state.apply(&Command::CreateNetwork(other_host)).unwrap();
    let endpoint = Endpoint {
        mac: Mac([2, 0, 0, 0, 0, 7]),
        ..fixture::endpoint("ep1ep1ep1ep1ep1ep1", "net1net1net1net1", HOST)
    };
    state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
    if joined {
        let ports = vec![PortBinding {
            proto: Proto::Udp,
            container_port: 53,
            host_ip: Some("10.99.0.1".parse().unwrap()),
            host_port: 5353,
        }];
        let join = Command::SetJoined {
            host: HOST,
            id: "ep1ep1ep1ep1ep1ep1".into(),
            ports: Some(ports),
        };
        state.apply(&join).unwrap();
    }
    state
}

fn dns_ports() -> DnsView {
    DnsView {
        ports: DnsPorts::from([(
            "10.99.0.254".parse().unwrap(),
            Taken {
                port: 40001,
                guarded: true,
            },
        )]),
        resolver: Some(ResolverAddress {
            addr: RESOLVER_ADDR,
            port: Some(40002),
            upstream: Some("10.99.0.254".parse().unwrap()),
            local_upstream: Some("10.99.0.254".parse().unwrap()),
            v6: None,
        }),
        legacy: BTreeMap::from([
            (
                "net1net1net1net1".into(),
                vec!["172.18.0.3".parse().unwrap()],
            ),
            (
                "ov1ov1ov1ov1ov1o".into(),
                vec!["172.18.0.4".parse().unwrap()],
            ),
        ]),
    }
}

/// `tables` plus overlay `ov1` on this host and one endpoint on it, with
/// `--dns 10.99.0.53`.
fn with_overlay(internal: bool) -> State {
    let mut state = tables(false, false);
    let overlay = Network {
        bridge: bridge_name("ov1ov1ov1ov1ov1o"),
        gateway: Some("10.0.80.1/24".parse().unwrap()),
        internal,
        vni: Some(4096),
        ..fixture::overlay("ov1ov1ov1ov1ov1o", HOST, "10.0.80.0/24")
    };
    state.apply(&Command::CreateNetwork(overlay)).unwrap();
    let endpoint = Endpoint {
        id: "ep9ep9ep9ep9ep9ep9".into(),
        network_id: "ov1ov1ov1ov1ov1o".into(),
        host: HOST,
        address: Some("10.0.80.2/24".parse().unwrap()),
        address6: None,
        mac: Mac([2, 0, 0, 0, 0, 9]),
        ports: vec![PortBinding {
            proto: Proto::Tcp,
            container_port: 80,
            host_ip: None,
            host_port: 8080,
        }],
        joined: true,
        dns: vec![
            "10.99.0.53".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
            RESOLVER_ADDR.into(),
        ],
        container: None,
    };
    state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
    state
}

#[test]
fn an_overlay_bridge_is_its_gateway_with_the_overlays_mac_and_routes_like_a_bridge() {
    let state = with_overlay(false);
    let want = host_view(
        &state,
        HOST,
        &[],
        UNDERLAY,
        &dns_ports(),
        &Parents::default(),
    );
    let bridge = &want.links.gateways[1];
    assert_eq!(bridge.name, bridge_name("ov1ov1ov1ov1ov1o"));
    assert_eq!(bridge.addresses, ["10.0.80.1/24".parse::<IpNet>().unwrap()]);
    assert_eq!(bridge.mac, Some(Mac::gateway(4096).octets()));
    assert_eq!(
        bridge.vxlan, None,
        "no VTEP here: no VXLAN device to build on"
    );
    let with_vtep = Underlay {
        vtep: Some("10.99.0.7".parse().unwrap()),
        ..UNDERLAY
    };
    let links = host_view(
        &state,
        HOST,
        &[],
        with_vtep,
        &dns_ports(),
        &Parents::default(),
    )
    .links;
    assert_eq!(
        links.gateways[1].vxlan.as_deref(),
        Some("rnx4096"),
        "built on macvlan links of its VXLAN device where no bridge is"
    );
    assert_eq!(
        links.gateways[0].vxlan, None,
        "a bridge network's is a bridge"
    );
    let firewall = &want.firewall[1];
    assert!(!firewall.internal, "egress is NATed out of this host");
    assert_eq!(firewall.published.len(), 1, "-p on the container's host");
    assert_eq!(
        firewall.dns,
        [DnsRedirect {
            upstream: "10.99.0.254".parse().unwrap(),
            to: "10.0.80.1:40001".parse().unwrap(),
            guarded: true,
        }]
    );
    assert_eq!(want.resolver, dns_ports().resolver, "host-wide, as given");
    assert_eq!(
        firewall.legacy_sources,
        ["172.18.0.4".parse::<Ipv4Addr>().unwrap()],
        "its containers' queries from a legacy docker_gwbridge interface too"
    );
    assert!(
        want.firewall[0].dns.is_empty() && want.firewall[0].legacy_sources.is_empty(),
        "bridge networks: DNS as before"
    );
    assert_eq!(
        dns_upstreams(&state, HOST, &["10.99.0.254".parse().unwrap()]),
        [
            "10.99.0.53".parse::<Ipv4Addr>().unwrap(),
            "10.99.0.254".parse().unwrap()
        ],
        "the host's resolvers and every --dns, loopback left to Docker, the resolver address apart"
    );
}

#[test]
fn an_internal_overlay_has_no_egress_and_no_published_ports() {
    let state = with_overlay(true);
    let want = host_view(
        &state,
        HOST,
        &[],
        UNDERLAY,
        &dns_ports(),
        &Parents::default(),
    );
    assert!(want.firewall[1].internal);
    assert!(want.firewall[1].published.is_empty());
}

#[test]
fn the_host_view_has_this_hosts_networks_only() {
    let state = tables(false, true);
    let Want {
        links: desired,
        firewall,
        ..
    } = host_view(
        &state,
        HOST,
        &["ep1ep1ep1ep1ep1ep1"],
        UNDERLAY,
        &dns_ports(),
        &Parents::default(),
    );
    assert_eq!(
        desired.gateways,
        [Gateway {
            name: "rn-net1net1net1".into(),
            addresses: vec!["10.0.42.1/24".parse().unwrap()],
            mtu: 1450,
            mac: None,
            vxlan: None,
        }]
    );
    assert_eq!(
        desired.ports,
        [Port {
            host: "rnhep1ep1ep1ep1".into(),
            peer: "rncep1ep1ep1ep1".into(),
            link: "rnmep1ep1ep1ep1".into(),
            gateway: "rn-net1net1net1".into(),
            mtu: 1450,
            mac: [2, 0, 0, 0, 0, 7],
            required: true,
        }]
    );
    assert_eq!(
        firewall,
        [FirewallNetwork {
            bridge: "rn-net1net1net1".into(),
            subnet: "10.0.42.0/24".parse().ok(),
            internal: false,
            published: vec![Published {
                proto: "udp".into(),
                host_ip: Some("10.99.0.1".parse().unwrap()),
                host_port: 5353,
                container_ip: "10.0.42.2".parse().unwrap(),
                container_port: 53,
            }],
            dns: vec![],
            legacy_sources: vec![],
            lan: false,
            ipv6: None,
        }]
    );
}

#[test]
fn endpoints_not_named_are_kept_but_not_created_and_unjoined_ports_stay_closed() {
    let state = tables(false, false);
    let Want {
        links: desired,
        firewall,
        ..
    } = host_view(
        &state,
        HOST,
        &[],
        UNDERLAY,
        &dns_ports(),
        &Parents::default(),
    );
    assert!(!desired.ports[0].required);
    assert!(firewall[0].published.is_empty());
}

#[test]
fn vxlan_ingress_only_with_an_overlay_and_from_members() {
    let mut state = tables(false, false);
    let register = |host: HostId, addr: &str| Command::RegisterHost {
        host,
        name: format!("h{host}"),
        addr: Some(addr.parse().unwrap()),
    };
    state.apply(&register(HOST, "10.99.0.1")).unwrap();
    state.apply(&register(HOST + 1, "10.99.0.2")).unwrap();
    assert_eq!(
        vxlan_ingress(&state, HOST, 4790),
        None,
        "bridge networks only"
    );
    let overlay = Network {
        bridge: bridge_name("ov1ov1ov1ov1ov1o"),
        vni: Some(4096),
        ..fixture::overlay("ov1ov1ov1ov1ov1o", HOST, "10.0.80.0/24")
    };
    state.apply(&Command::CreateNetwork(overlay)).unwrap();
    let ingress = vxlan_ingress(&state, HOST, 4790).unwrap();
    assert_eq!(ingress.port, 4790);
    assert_eq!(
        ingress.members,
        [
            "10.99.0.1".parse::<std::net::Ipv4Addr>().unwrap(),
            "10.99.0.2".parse().unwrap()
        ]
    );
    state
        .apply(&Command::ForgetHost { host: HOST + 1 })
        .unwrap();
    let ingress = vxlan_ingress(&state, HOST, 4790).unwrap();
    assert_eq!(
        ingress.members,
        ["10.99.0.1".parse::<std::net::Ipv4Addr>().unwrap()]
    );
}

/// Registers `host` with underlay address 10.99.0.`host`.
fn register_at_its_address(state: &mut State, host: HostId) {
    let addr = Some(format!("10.99.0.{host}").parse().unwrap());
    let name = format!("h{host}");
    state
        .apply(&Command::RegisterHost { host, name, addr })
        .unwrap();
}

#[test]
fn an_overlay_with_multicast_floods_to_each_other_host_with_endpoints_once() {
    let mut state = State::default();
    let key = "10.0.80.0/24";
    for host in [HOST, 8, 9, 10] {
        register_at_its_address(&mut state, host);
        let network = Network {
            multicast: Multicast::Flood,
            ..fixture::overlay(&format!("ov{host}"), host, key)
        };
        state.apply(&Command::CreateNetwork(network)).unwrap();
    }
    // Two endpoints on host 8, one on 10, none on 9.
    for (n, host) in [(2u8, 8), (3, 8), (4, 10), (5, HOST)] {
        let endpoint = Endpoint {
            address: Some(format!("10.0.80.{n}/24").parse().unwrap()),
            mac: Mac([2, 0, 0, 0, 0, n]),
            ..fixture::endpoint(&format!("ep{n}"), &format!("ov{host}"), host)
        };
        state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
    }
    let underlay = Underlay {
        vtep: Some("10.99.0.7".parse().unwrap()),
        port: 4789,
        tunnel: None,
    };
    let want = host_view(
        &state,
        HOST,
        &[],
        underlay,
        &DnsView::default(),
        &Parents::default(),
    );
    let floods: Vec<IpAddr> = want.links.floods.iter().map(|f| f.vtep).collect();
    assert_eq!(
        floods,
        [
            "10.99.0.8".parse::<IpAddr>().unwrap(),
            "10.99.0.10".parse::<IpAddr>().unwrap()
        ],
        "one copy per host with endpoints; none to 9, none to this host"
    );
    assert_eq!(want.links.remotes.len(), 3);
    // The same overlay without multicast floods nowhere.
    let mut off = State::default();
    for command in [
        Command::RegisterHost {
            host: 8,
            name: "h8".into(),
            addr: Some("10.99.0.8".parse().unwrap()),
        },
        Command::CreateNetwork(fixture::overlay("ov7", HOST, key)),
        Command::CreateNetwork(fixture::overlay("ov8", 8, key)),
        Command::CreateEndpoint(fixture::endpoint("ep2", "ov8", 8)),
    ] {
        off.apply(&command).unwrap();
    }
    let want = host_view(
        &off,
        HOST,
        &[],
        underlay,
        &DnsView::default(),
        &Parents::default(),
    );
    assert_eq!(want.links.remotes.len(), 1);
    assert!(want.links.floods.is_empty());
}

#[test]
fn over_an_ipv6_underlay_the_tunnels_go_to_the_ipv6_hosts() {
    let mut state = State::default();
    let key = "10.0.81.0/24";
    let hosts = [(HOST, "fd99::7"), (8, "fd99::8"), (9, "10.99.0.9")];
    for (host, addr) in hosts {
        let addr = Some(addr.parse().unwrap());
        let name = format!("h{host}");
        state
            .apply(&Command::RegisterHost { host, name, addr })
            .unwrap();
        let overlay = fixture::overlay(&format!("ov{host}"), host, key);
        state.apply(&Command::CreateNetwork(overlay)).unwrap();
        let endpoint = Endpoint {
            mac: Mac([2, 0, 0, 0, 0, 10 + u8::try_from(host).unwrap()]),
            ..fixture::endpoint(&format!("ep{host}"), &format!("ov{host}"), host)
        };
        state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
    }
    let underlay = Underlay {
        vtep: Some("fd99::7".parse().unwrap()),
        port: 4789,
        tunnel: None,
    };
    let want = host_view(
        &state,
        HOST,
        &[],
        underlay,
        &DnsView::default(),
        &Parents::default(),
    );
    assert_eq!(want.links.vxlans.len(), 1);
    assert_eq!(want.links.vxlans[0].local, underlay.vtep.unwrap());
    let vteps: Vec<IpAddr> = want.links.remotes.iter().map(|r| r.vtep).collect();
    assert_eq!(
        vteps,
        ["fd99::8".parse::<IpAddr>().unwrap()],
        "host 9 advertises IPv4: no tunnel from an IPv6 VTEP reaches it"
    );
    let ingress = vxlan_ingress(&state, HOST, 4789).unwrap();
    assert!(ingress.wants_ipv6());
    assert_eq!(ingress.members.len(), 3, "{:?}", ingress.members);
}

#[test]
fn an_encrypted_overlay_runs_between_tunnel_addresses_of_hosts_with_keys_only() {
    let mut state = State::default();
    let key = "10.0.80.0/24";
    for host in [HOST, 8, 9] {
        register_at_its_address(&mut state, host);
        let network = Network {
            encrypted: true,
            ..fixture::overlay(&format!("ov{host}"), host, key)
        };
        state.apply(&Command::CreateNetwork(network)).unwrap();
        let endpoint = Endpoint {
            address: Some(format!("10.0.80.{host}/24").parse().unwrap()),
            mac: Mac([2, 0, 0, 0, 0, u8::try_from(host).unwrap()]),
            ..fixture::endpoint(&format!("ep{host}"), &format!("ov{host}"), host)
        };
        state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
    }
    // Host 9 has not published a key (yet): no way to it but in clear.
    for host in [HOST, 8] {
        state
            .apply(&Command::SetTunnelKey {
                host,
                key: crate::encryption::encode_key(&[u8::try_from(host).unwrap(); 32]),
                port: 51871,
            })
            .unwrap();
    }
    let up = Underlay {
        vtep: Some("10.99.0.7".parse().unwrap()),
        port: 4789,
        tunnel: crate::encryption::tunnel_address_of(&state, HOST),
    };
    let want = host_view(
        &state,
        HOST,
        &[],
        up,
        &DnsView::default(),
        &Parents::default(),
    );
    let vxlan = &want.links.vxlans[0];
    assert_eq!(vxlan.local, "169.254.192.1".parse::<IpAddr>().unwrap());
    assert_eq!(vxlan.port, crate::encryption::SEALED_VXLAN_PORT);
    let remotes: Vec<(IpAddr, Option<std::net::Ipv4Addr>)> =
        want.links.remotes.iter().map(|r| (r.vtep, r.ip)).collect();
    assert_eq!(
        remotes,
        [(
            "169.254.192.2".parse().unwrap(),
            Some("10.0.80.8".parse().unwrap())
        )]
    );
    let seal = want.ingress.as_ref().and_then(|i| i.seal.clone()).unwrap();
    assert_eq!(seal.port, 7951);
    assert_eq!(seal.device, "rn-wg0");
    // Without a tunnel here the overlay does not come up (its bridge
    // stays for Docker), and its VXLAN stays sealed.
    let down = Underlay { tunnel: None, ..up };
    let want = host_view(
        &state,
        HOST,
        &[],
        down,
        &DnsView::default(),
        &Parents::default(),
    );
    assert!(want.links.vxlans.is_empty());
    assert!(want.links.remotes.is_empty());
    assert_eq!(want.links.gateways.len(), 1);
    assert_eq!(
        want.links.gateways[0].vxlan, None,
        "an encrypted overlay keeps a bridge, tunnel or not"
    );
    assert!(want.ingress.unwrap().seal.is_some());
}

#[test]
fn a_lan_network_has_no_bridge_and_only_its_shims_dns_rules() {
    let mut state = State::default();
    let subnet = "192.168.50.0/24";
    state
        .apply(&Command::RequestPool {
            host: HOST,
            pool: subnet.parse().ok(),
            range: Some("192.168.50.64/26".parse().unwrap()),
            v6: false,
            defaults: vec![],
        })
        .unwrap();
    let network = Network {
        bridge: "rnslan1".into(),
        ..fixture::macvlan("lan1lan1lan1lan1", HOST, subnet)
    };
    state.apply(&Command::CreateNetwork(network)).unwrap();
    let endpoint = Endpoint {
        address: "192.168.50.65/24".parse().ok(),
        ..fixture::endpoint("ep1ep1ep1ep1ep1ep1", "lan1lan1lan1lan1", HOST)
    };
    state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
    let parents: Parents = "eth0=ens5".parse().unwrap();
    let want = host_view(&state, HOST, &[], UNDERLAY, &dns_ports(), &parents);
    assert!(want.links.gateways.is_empty() && want.links.ports.is_empty());
    let lan = &want.links.lans[0];
    assert_eq!(lan.parent, "ens5");
    let shim = lan.shim.as_ref().unwrap();
    assert_eq!(shim.address, "192.168.50.64/32".parse().unwrap());
    assert_eq!(
        shim.routes,
        vec!["192.168.50.65".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        want.firewall,
        vec![FirewallNetwork {
            bridge: "rnslan1".into(),
            subnet: None,
            internal: false,
            published: vec![],
            dns: vec![DnsRedirect {
                upstream: "10.99.0.254".parse().unwrap(),
                to: "192.168.50.64:40001".parse().unwrap(),
                guarded: true,
            }],
            legacy_sources: vec![],
            ipv6: None,
            lan: true,
        }]
    );
    assert_eq!(want.ingress, None, "no VXLAN");
}
