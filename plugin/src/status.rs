//! What `rustnet status` reports of the replicated state, as the daemon
//! answers it: this host, its networks, the pools and who holds what.

use rustnet_ipam::{HostId, State};
use serde_json::{Value, json};

/// The status of `host` as the daemon reports it: its name, its networks
/// with their endpoints, and every pool of the cluster with its holders.
pub(crate) fn view(state: &State, host: HostId) -> Value {
    let tables = state.tables();
    let networks: Vec<Value> = tables
        .networks_of(host)
        .map(|n| {
            let endpoints: Vec<Value> = tables
                .endpoints_of(&n.id)
                .map(|e| json!({
                    "id": e.id, "address": e.address, "mac": e.mac, "joined": e.joined, "ports": e.ports,
                    "container": e.container.as_ref().map(|c| &c.name),
                    "aliases": e.container.as_ref().map(|c| &c.aliases),
                }))
                .collect();
            json!({
                "id": n.id, "bridge": n.bridge, "subnet": n.subnet, "gateway": n.gateway,
                "mtu": n.mtu, "internal": n.internal, "endpoints": endpoints,
            })
        })
        .collect();
    let pools: Vec<Value> = state
        .pools()
        .map(|p| {
            let addresses: Vec<Value> = p
                .addresses
                .iter()
                .map(|(a, h)| json!({ "address": a, "host": h.host, "holder": state.describe(h) }))
                .collect();
            json!({ "pool": p.id(), "range": p.range, "hosts": p.refs, "addresses": addresses })
        })
        .collect();
    let allocations: Vec<Value> = state
        .allocations()
        .into_iter()
        .map(|(h, n)| json!({ "host": h, "name": state.host_name(h), "addresses": n }))
        .collect();
    json!({
        "host": host, "name": state.host_name(host), "networks": networks, "pools": pools,
        "allocations": allocations,
    })
}
