//! Builders for tests (feature `fixtures`): a network and an endpoint with
//! plain values, changed where a test needs it with struct update syntax,
//! e.g. `Network { mtu: 1450, ..network("net1", 1) }`.

use crate::{Endpoint, HostId, Mac, Mode, Network};

/// Bridge network `id` of `host`: bridge `rn-<id>`, subnet 10.0.42.0/24
/// with gateway 10.0.42.1, MTU 1500, not internal.
pub fn network(id: &str, host: HostId) -> Network {
    Network {
        id: id.to_owned(),
        host,
        mode: Mode::Bridge,
        bridge: format!("rn-{id}"),
        subnet: "10.0.42.0/24".parse().ok(),
        gateway: "10.0.42.1/24".parse().ok(),
        subnet6: None,
        gateway6: None,
        mtu: 1500,
        internal: false,
        overlay: None,
        vni: None,
        multicast: crate::Multicast::Off,
        encrypted: false,
        parent: None,
        host_access: false,
    }
}

/// Overlay network `id` of `host` on the overlay `key` (its subnet):
/// bridge `rn-<id>`, no gateway, MTU 1450, no pinned VNI.
pub fn overlay(id: &str, host: HostId, key: &str) -> Network {
    Network {
        mode: Mode::Overlay,
        subnet: key.parse().ok(),
        gateway: None,
        mtu: 1450,
        overlay: Some(key.to_owned()),
        ..network(id, host)
    }
}

/// Macvlan network `id` of `host` on `key` (its subnet) with parent
/// `eth0` and a host shim: no bridge of its own, gateway the subnet's
/// first address (the LAN's router), MTU 1500.
pub fn macvlan(id: &str, host: HostId, key: &str) -> Network {
    let subnet: Option<ipnet::IpNet> = key.parse().ok();
    Network {
        mode: Mode::Macvlan,
        subnet,
        gateway: subnet.and_then(|s| {
            s.hosts()
                .next()
                .and_then(|g| ipnet::IpNet::new(g, s.prefix_len()).ok())
        }),
        overlay: Some(key.to_owned()),
        parent: Some("eth0".to_owned()),
        host_access: true,
        ..network(id, host)
    }
}

/// Endpoint `id` of `host` on network `network_id`: address
/// 10.0.42.2/24, MAC 02:00:00:00:00:01, not joined, no ports.
pub fn endpoint(id: &str, network_id: &str, host: HostId) -> Endpoint {
    Endpoint {
        id: id.to_owned(),
        network_id: network_id.to_owned(),
        host,
        address: "10.0.42.2/24".parse().ok(),
        address6: None,
        mac: Mac([2, 0, 0, 0, 0, 1]),
        ports: vec![],
        joined: false,
        dns: vec![],
        container: None,
    }
}
