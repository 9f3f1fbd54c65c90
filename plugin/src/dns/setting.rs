//! Whether this host's engine needs the resolver address in daemon.json,
//! and which overlay containers here miss it (pure).
//!
//! Up to Docker 27 the embedded DNS asks the host's resolv.conf servers
//! from inside the container; from 28 on it asks them from its own
//! namespace, and only servers given with `--dns` or daemon.json's `dns`
//! are still asked from inside. Docker hands the container's servers
//! (its `--dns`, else daemon.json's) to CreateEndpoint, so the tables know,
//! for each endpoint, whether any of its queries can pass the overlay.

use std::net::{IpAddr, Ipv4Addr};

use rustnet_ipam::{HostId, Mode, State};
use serde::{Deserialize, Serialize};

use super::{RESOLVER_ADDR, RESOLVER_ADDR6};

/// The oldest Docker major version that asks the host's resolvers from
/// its own namespace.
const ASKS_FROM_ITS_OWN_NAMESPACE: u32 = 28;

/// What `rustnet status` says of names across hosts on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NamesView {
    /// The address daemon.json's `dns` names where the engine needs it.
    pub resolver_address: Ipv4Addr,
    /// The local engine's version, once Docker has told it.
    pub engine: Option<String>,
    /// Whether the engine needs the setting; `None` until it is known.
    pub needs_setting: Option<bool>,
    /// The line daemon.json needs.
    pub setting: String,
    /// How many endpoints of this host's routed overlays were judged.
    pub checked: usize,
    /// Containers on this host's overlays none of whose DNS servers pass
    /// the overlay: they resolve only same-host names of it.
    pub missing_for: Vec<String>,
}

/// Whether Docker `version` asks the host's resolvers from its own
/// namespace (`None`: not a version).
pub(crate) fn needs_setting(version: &str) -> Option<bool> {
    let major: u32 = version.split('.').next()?.trim().parse().ok()?;
    Some(major >= ASKS_FROM_ITS_OWN_NAMESPACE)
}

/// The names view of `host` on Docker `engine`.
pub(crate) fn names_view(state: &State, host: HostId, engine: Option<&str>) -> NamesView {
    let needs = engine.and_then(needs_setting);
    let (checked, missing_for) = if needs == Some(true) {
        missing_for(state, host)
    } else {
        (0, Vec::new())
    };
    // An IPv6-only container reaches the IPv6 resolver address only.
    let ipv6_only = state
        .tables()
        .networks_of(host)
        .any(|n| n.subnet.is_none() && n.subnet6.is_some());
    let setting = if ipv6_only {
        format!("\"dns\": [\"{RESOLVER_ADDR}\", \"{RESOLVER_ADDR6}\"]")
    } else {
        format!("\"dns\": [\"{RESOLVER_ADDR}\"]")
    };
    NamesView {
        resolver_address: RESOLVER_ADDR,
        engine: engine.map(str::to_owned),
        needs_setting: needs,
        setting,
        checked,
        missing_for,
    }
}

/// The containers (or endpoints, while unnamed) of this host's routed
/// overlays with no DNS server a query from inside the container reaches
/// through the overlay, and how many endpoints were judged. Docker gives
/// no servers for `--internal` networks' endpoints, so those are not
/// judged.
fn missing_for(state: &State, host: HostId) -> (usize, Vec<String>) {
    let tables = state.tables();
    let judged: Vec<_> = tables
        .networks_of(host)
        .filter(|n| (n.mode == Mode::Overlay || n.host_access) && !n.internal)
        .flat_map(|n| tables.endpoints_of(&n.id).map(move |e| (n, e)))
        .collect();
    // A LAN network's upstream on its own subnet is asked on the LAN, not
    // through the host.
    let on_lan = |n: &rustnet_ipam::Network, server: &IpAddr| {
        n.mode.is_lan() && n.subnet.is_some_and(|s| s.contains(server))
    };
    let mut missing: Vec<String> = judged
        .iter()
        .filter(|(n, e)| {
            !e.dns
                .iter()
                .any(|server| passes_the_overlay(server, e) && !on_lan(n, server))
        })
        .map(|(_, e)| e)
        .map(|e| {
            e.container
                .as_ref()
                .map_or_else(|| format!("endpoint {}", short(&e.id)), |c| c.name.clone())
        })
        .collect();
    missing.sort_unstable();
    missing.dedup();
    (judged.len(), missing)
}

/// Whether a query to `server` from inside the container of `endpoint`
/// leaves through its default route: a loopback one stays in the
/// container, and one of a family the endpoint has no address of has no
/// route (an IPv4 server from an IPv6-only container).
fn passes_the_overlay(server: &IpAddr, endpoint: &rustnet_ipam::Endpoint) -> bool {
    let family = match server {
        IpAddr::V4(_) => endpoint.address,
        IpAddr::V6(_) => endpoint.address6,
    };
    !server.is_loopback() && family.is_some()
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use rustnet_ipam::{Command, Container, Endpoint, Network};
    use rustnet_ipam_core::fixture;

    use super::*;

    const HOST: HostId = 1;

    fn state(internal: bool, dns: &[&str]) -> State {
        let mut state = State::default();
        let network = Network {
            bridge: "rn-ov1".into(),
            gateway: Some("10.0.80.1/24".parse().unwrap()),
            internal,
            vni: Some(4096),
            ..fixture::overlay("ov1ov1ov1ov1ov1o", HOST, "10.0.80.0/24")
        };
        state.apply(&Command::CreateNetwork(network)).unwrap();
        let endpoint = Endpoint {
            address: Some("10.0.80.2/24".parse().unwrap()),
            joined: true,
            dns: dns.iter().map(|d| d.parse().unwrap()).collect(),
            ..fixture::endpoint("ep1ep1ep1ep1ep1ep1", "ov1ov1ov1ov1ov1o", HOST)
        };
        state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
        state
    }

    #[test]
    fn engines_from_28_on_need_the_setting() {
        assert_eq!(needs_setting("20.10.24+dfsg1"), Some(false));
        assert_eq!(needs_setting("26.1.5+dfsg1"), Some(false));
        assert_eq!(needs_setting("27.5.1"), Some(false));
        assert_eq!(needs_setting("28.5.2+dfsg4"), Some(true));
        assert_eq!(needs_setting("29.1.0"), Some(true));
        assert_eq!(needs_setting("dev"), None);
    }

    #[test]
    fn on_28_a_container_without_a_dns_server_of_its_own_is_named() {
        let state = state(false, &[]);
        let view = names_view(&state, HOST, Some("28.5.2"));
        assert_eq!(view.needs_setting, Some(true));
        assert_eq!(view.missing_for, ["endpoint ep1ep1ep1ep1"]);
        assert_eq!(view.checked, 1);
        assert_eq!(view.setting, "\"dns\": [\"169.254.53.53\"]");
        let mut named = state.clone();
        let name = Command::NameEndpoint {
            host: HOST,
            id: "ep1ep1ep1ep1ep1ep1".into(),
            container: Container {
                id: "c0ffee".into(),
                name: "web1".into(),
                aliases: vec![],
            },
        };
        named.apply(&name).unwrap();
        assert_eq!(
            names_view(&named, HOST, Some("28.5.2")).missing_for,
            ["web1"]
        );
        // Up to 27, the host's servers are asked from the container.
        assert!(
            names_view(&state, HOST, Some("26.1.5"))
                .missing_for
                .is_empty()
        );
        // Until Docker has told its version, nothing is judged.
        let unknown = names_view(&state, HOST, None);
        assert_eq!(unknown.needs_setting, None);
        assert!(unknown.missing_for.is_empty());
        // No overlay container here: nothing to judge yet.
        assert_eq!(
            names_view(&State::default(), HOST, Some("28.5.2")).checked,
            0
        );
    }

    #[test]
    fn the_setting_or_any_routed_dns_server_is_enough_a_loopback_one_is_not() {
        for dns in [&["169.254.53.53"][..], &["10.99.0.254"]] {
            let view = names_view(&state(false, dns), HOST, Some("28.5.2"));
            assert!(view.missing_for.is_empty(), "{dns:?}");
        }
        let view = names_view(&state(false, &["127.0.0.53"]), HOST, Some("28.5.2"));
        assert_eq!(view.missing_for.len(), 1);
        // Docker gives internal networks' endpoints no servers at all.
        let view = names_view(&state(true, &[]), HOST, Some("28.5.2"));
        assert!(view.missing_for.is_empty());
    }

    #[test]
    fn an_ipv6_only_container_needs_the_ipv6_resolver_address() {
        let mut state = State::default();
        let key = "fd00:80::/64";
        let network = Network {
            subnet: None,
            gateway: None,
            subnet6: key.parse().ok(),
            overlay: Some(key.into()),
            vni: Some(4097),
            ..fixture::overlay("ov6ov6ov6ov6ov6o", HOST, key)
        };
        state.apply(&Command::CreateNetwork(network)).unwrap();
        let endpoint = |dns: &[&str]| Endpoint {
            address: None,
            address6: Some("fd00:80::2/64".parse().unwrap()),
            joined: true,
            dns: dns.iter().map(|d| d.parse().unwrap()).collect(),
            ..fixture::endpoint("ep6ep6ep6ep6ep6ep6", "ov6ov6ov6ov6ov6o", HOST)
        };
        let mut only4 = state.clone();
        only4
            .apply(&Command::CreateEndpoint(endpoint(&["169.254.53.53"])))
            .unwrap();
        let view = names_view(&only4, HOST, Some("28.5.2"));
        assert_eq!(view.missing_for.len(), 1, "no route to an IPv4 server");
        assert_eq!(view.setting, "\"dns\": [\"169.254.53.53\", \"fd53::53\"]");
        state
            .apply(&Command::CreateEndpoint(endpoint(&[
                "169.254.53.53",
                "fd53::53",
            ])))
            .unwrap();
        assert!(
            names_view(&state, HOST, Some("28.5.2"))
                .missing_for
                .is_empty()
        );
    }
}
