//! What `rustnet status` reports: one type ([`Status`]) that the daemon
//! answers, the CLI reads back and the renderer shows. Its view of the
//! replicated state: this host, its networks, the pools and who holds
//! what.
//!
//! The view is copied out of the state, under its lock, in plain records
//! (one string per held address) and serialized straight to the reply
//! after the lock is released: built as a tree of JSON values, it took
//! 26 MB for a moment at 10,000 addresses (heaptrack).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use rustnet_ipam::store::{ClusterView, UpgradeView};
use rustnet_ipam::{HostId, Mac, PortBinding, State};
use serde::{Deserialize, Serialize};

use crate::dns::setting::NamesView;
use crate::recent::Seen;

/// What `rustnet status` answers: the replicated state's view of this
/// host, the cluster as this member sees it, its certificates and its
/// latest errors. Every part defaults when missing, so that a reply of a
/// release that lacks a part still reads.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Status {
    #[serde(flatten)]
    pub view: View,
    pub cluster: ClusterView,
    /// On the leader: how many log entries each member is behind.
    pub replication: BTreeMap<String, u64>,
    pub tls: Tls,
    pub errors: Vec<Seen>,
    /// Names across hosts on this host (`None`: `RUSTNET_NAMES=false`).
    pub names: Option<NamesView>,
    /// Each member's version, and what waits while they differ.
    pub upgrade: UpgradeView,
    /// This host's WireGuard tunnel for encrypted overlays.
    pub encryption: Option<crate::encryption::EncryptionStatus>,
}

/// The cluster's CA and this member's certificate (fingerprints).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Tls {
    pub ca: Option<String>,
    pub certificate: Option<String>,
    pub ca_rotation: Option<Rotation>,
}

/// A CA rotation under way: the CA before, and who has yet to renew.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Rotation {
    pub from: String,
    pub waiting_for: BTreeSet<HostId>,
}

/// The status of one host as the daemon reports it: its name, its
/// networks with their endpoints, and every pool of the cluster with its
/// holders.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct View {
    pub host: HostId,
    pub name: String,
    pub networks: Vec<NetworkView>,
    pub pools: Vec<PoolView>,
    pub allocations: Vec<Allocations>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct NetworkView {
    pub id: String,
    pub bridge: String,
    pub subnet: Option<IpNet>,
    pub gateway: Option<IpNet>,
    pub mtu: u32,
    pub internal: bool,
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct EndpointView {
    pub id: String,
    pub address: Option<IpNet>,
    pub mac: Mac,
    pub joined: bool,
    pub ports: Vec<PortBinding>,
    pub container: Option<String>,
    pub aliases: Option<Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct PoolView {
    pub pool: String,
    pub range: Option<IpNet>,
    /// References per host, by host id (a string: the view is flattened
    /// into the status, and a flattened map reads only string keys).
    pub hosts: BTreeMap<String, u32>,
    pub addresses: Vec<Held>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Held {
    pub address: IpAddr,
    pub host: HostId,
    pub holder: String,
}

/// How many addresses a host holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Allocations {
    pub host: HostId,
    pub name: String,
    pub addresses: usize,
}

/// The status of `host` in `state`.
pub(crate) fn view(state: &State, host: HostId) -> View {
    let tables = state.tables();
    let networks = tables
        .networks_of(host)
        .map(|n| NetworkView {
            id: n.id.clone(),
            bridge: n.bridge.clone(),
            subnet: n.subnet,
            gateway: n.gateway,
            mtu: n.mtu,
            internal: n.internal,
            endpoints: tables
                .endpoints_of(&n.id)
                .map(|e| EndpointView {
                    id: e.id.clone(),
                    address: e.address,
                    mac: e.mac,
                    joined: e.joined,
                    ports: e.ports.clone(),
                    container: e.container.as_ref().map(|c| c.name.clone()),
                    aliases: e.container.as_ref().map(|c| c.aliases.clone()),
                })
                .collect(),
        })
        .collect();
    let pools = state
        .pools()
        .map(|p| PoolView {
            pool: p.id(),
            range: p.range,
            hosts: p.refs.iter().map(|(h, n)| (h.to_string(), *n)).collect(),
            addresses: p
                .addresses
                .iter()
                .map(|(a, h)| Held {
                    address: *a,
                    host: h.host,
                    holder: state.describe(h),
                })
                .collect(),
        })
        .collect();
    let allocations = state
        .allocations()
        .into_iter()
        .map(|(h, n)| Allocations {
            host: h,
            name: state.host_name(h),
            addresses: n,
        })
        .collect();
    View {
        host,
        name: state.host_name(host),
        networks,
        pools,
        allocations,
    }
}

#[cfg(test)]
mod tests {
    use rustnet_ipam::{Command, Response};

    use super::*;

    /// What the daemon answers, the CLI reads back whole: a pool held by
    /// two hosts, the reservations, a network with an endpoint.
    #[test]
    fn the_status_the_daemon_answers_reads_back() {
        let mut state = State::default();
        for host in [1, 2] {
            let pool = Command::RequestPool {
                host,
                pool: Some("10.0.42.0/24".parse().unwrap()),
                range: None,
                v6: false,
                defaults: vec![],
            };
            assert!(matches!(state.apply(&pool), Ok(Response::Pool { .. })));
        }
        let network = rustnet_ipam_core::fixture::network("net1", 1);
        state.apply(&Command::CreateNetwork(network)).unwrap();
        let endpoint = rustnet_ipam_core::fixture::endpoint("ep1", "net1", 1);
        state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
        let status = Status {
            view: view(&state, 1),
            ..Status::default()
        };
        let json = serde_json::to_string(&status).unwrap();
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back.view.pools[0].hosts.len(), 2, "{json}");
        assert_eq!(back.view.networks[0].endpoints[0].id, "ep1");
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}
