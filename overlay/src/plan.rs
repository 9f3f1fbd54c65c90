//! The planner: desired + observed -> the ordered operations that make the
//! kernel match, and nothing when it already does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::model::{Desired, Gateway, Lan, LanKind, LinkKind, Observed, Op, Port, Vxlan};

/// A conflict the planner will not resolve by force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "interface {name} exists and is not a bridge; choose another com.docker.network.bridge.name"
    )]
    NotABridge { name: String },
    #[error("interface {name} exists and was not created by rustnet")]
    Foreign { name: String },
    #[error(
        "interface {name} was created by rustnet under an earlier state directory (lost or replaced since) and still serves containers; it is left alone"
    )]
    Inherited { name: String },
    #[error(
        "parent interface {parent} does not exist (map the network's parent to this host's \
         interface with RUSTNET_PARENTS=NAME=IFACE)"
    )]
    NoParent { parent: String },
}

/// Plans the operations that turn `observed` into `desired`: first remove
/// what rustnet owns and no longer wants, then gateways and VXLAN devices,
/// then ports, remote entries, LAN networks and routes; the first conflict
/// refuses the whole plan.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Vec<Op>, PlanError> {
    let (ops, conflicts) = plan_isolated(desired, observed);
    match conflicts.into_iter().next() {
        Some(conflict) => Err(conflict.error),
        None => Ok(ops),
    }
}

/// A network the planner leaves alone on this pass, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The network: its gateway link, or a LAN network's name.
    pub bridge: String,
    pub error: PlanError,
}

/// Plans like [`plan`], but a conflict costs only the network it is in:
/// that network (its gateway, VXLAN device, ports and remote entries) is
/// neither built nor torn down on this pass, and every other network is
/// planned as usual.
pub fn plan_isolated(desired: &Desired, observed: &Observed) -> (Vec<Op>, Vec<Conflict>) {
    let attached: BTreeMap<&str, Attach> = desired
        .gateways
        .iter()
        .map(|g| (g.name.as_str(), attach(g, observed)))
        .collect();
    let attach_of = |name: &str| attached.get(name).copied().unwrap_or(Attach::Bridge);
    let gateways = desired.gateways.iter().filter_map(|gateway| {
        check_network(desired, gateway, attach_of(&gateway.name), observed)
            .err()
            .map(|error| Conflict {
                bridge: gateway.name.clone(),
                error,
            })
    });
    let lans = desired.lans.iter().filter_map(|lan| {
        plan_lan(lan, observed, &mut Vec::new())
            .err()
            .map(|error| Conflict {
                bridge: lan.name.clone(),
                error,
            })
    });
    let conflicts: Vec<Conflict> = gateways.chain(lans).collect();
    let failed: BTreeSet<&str> = conflicts.iter().map(|c| c.bridge.as_str()).collect();
    let healthy = without(desired, &failed);
    // Stale links are judged against everything wanted, failed networks
    // included: their links stay while the conflict lasts.
    let mut ops = stale(desired, observed);
    let mut late = Vec::new();
    for gateway in &healthy.gateways {
        if attach_of(&gateway.name) == Attach::Bridge {
            late.extend(plan_bridge(gateway, observed, &mut ops).err());
        }
    }
    for vxlan in &healthy.vxlans {
        let master = attach_of(&vxlan.gateway) == Attach::Bridge;
        late.extend(plan_vxlan(vxlan, master, observed, &mut ops).err());
    }
    for gateway in &healthy.gateways {
        if let Attach::Macvlan { vxlan } = attach_of(&gateway.name) {
            late.extend(plan_gateway(gateway, vxlan, observed, &mut ops).err());
        }
    }
    for port in &healthy.ports {
        let planned = match attach_of(&port.gateway) {
            Attach::Bridge => plan_veth(port, observed, &mut ops),
            Attach::Macvlan { vxlan } => plan_port(port, vxlan, observed, &mut ops),
        };
        late.extend(planned.err());
    }
    plan_remotes(&healthy, observed, &mut ops);
    for lan in &healthy.lans {
        late.extend(plan_lan(lan, observed, &mut ops).err());
    }
    plan_routes(&healthy, observed, &mut ops);
    debug_assert!(late.is_empty(), "checked networks conflict: {late:?}");
    (ops, conflicts)
}

/// Plans one network on its own, to find a conflict in it.
fn check_network(
    desired: &Desired,
    gateway: &Gateway,
    attached: Attach,
    observed: &Observed,
) -> Result<(), PlanError> {
    let mut scratch = Vec::new();
    match attached {
        Attach::Bridge => plan_bridge(gateway, observed, &mut scratch)?,
        Attach::Macvlan { vxlan } => plan_gateway(gateway, vxlan, observed, &mut scratch)?,
    }
    for vxlan in desired.vxlans.iter().filter(|v| v.gateway == gateway.name) {
        plan_vxlan(vxlan, attached == Attach::Bridge, observed, &mut scratch)?;
    }
    for port in desired.ports.iter().filter(|v| v.gateway == gateway.name) {
        match attached {
            Attach::Bridge => plan_veth(port, observed, &mut scratch)?,
            Attach::Macvlan { vxlan } => plan_port(port, vxlan, observed, &mut scratch)?,
        }
    }
    Ok(())
}

/// How a network's containers attach on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attach<'a> {
    /// Veth pairs on a Linux bridge holding the gateway, the VXLAN device
    /// (if any) a port of it.
    Bridge,
    /// Macvlan links on the overlay's VXLAN device, the gateway one of
    /// them.
    Macvlan { vxlan: &'a str },
}

/// An overlay is built on macvlan links unless a bridge of its name is
/// there: a bridge an earlier release built keeps its containers (their
/// veths are on it) until the network goes from this host.
fn attach<'a>(gateway: &'a Gateway, observed: &Observed) -> Attach<'a> {
    match (&gateway.vxlan, observed.links.get(&gateway.name)) {
        (Some(vxlan), None) => Attach::Macvlan { vxlan },
        (Some(vxlan), Some(link)) if link.kind == LinkKind::Macvlan => Attach::Macvlan { vxlan },
        _ => Attach::Bridge,
    }
}

/// `desired` without the networks of the `failed` bridges.
fn without(desired: &Desired, failed: &BTreeSet<&str>) -> Desired {
    let ok = |bridge: &str| !failed.contains(bridge);
    let vxlans: Vec<Vxlan> = desired
        .vxlans
        .iter()
        .filter(|v| ok(&v.gateway))
        .cloned()
        .collect();
    Desired {
        gateways: desired
            .gateways
            .iter()
            .filter(|b| ok(&b.name))
            .cloned()
            .collect(),
        ports: desired
            .ports
            .iter()
            .filter(|v| ok(&v.gateway))
            .cloned()
            .collect(),
        remotes: desired
            .remotes
            .iter()
            .filter(|r| vxlans.iter().any(|v| v.name == r.device))
            .cloned()
            .collect(),
        floods: desired
            .floods
            .iter()
            .filter(|f| vxlans.iter().any(|v| v.name == f.device))
            .cloned()
            .collect(),
        vxlans,
        lans: desired
            .lans
            .iter()
            .filter(|l| ok(&l.name))
            .cloned()
            .collect(),
    }
}

/// The VXLAN device, a port of the network's bridge if `master`.
fn plan_vxlan(
    vxlan: &Vxlan,
    master: bool,
    observed: &Observed,
    ops: &mut Vec<Op>,
) -> Result<(), PlanError> {
    let name = &vxlan.name;
    let Some(link) = ours(observed, name, LinkKind::Vxlan)? else {
        ops.push(Op::CreateVxlan {
            name: name.clone(),
            vni: vxlan.vni,
            local: vxlan.local,
            port: vxlan.port,
            mtu: vxlan.mtu,
        });
        if master {
            ops.push(Op::SetMaster {
                link: name.clone(),
                master: vxlan.gateway.clone(),
            });
        }
        // Guarded before it carries anything.
        ops.push(guard(vxlan));
        ops.push(Op::SetUp { link: name.clone() });
        return Ok(());
    };
    if master && link.master.as_deref() != Some(vxlan.gateway.as_str()) {
        ops.push(Op::SetMaster {
            link: name.clone(),
            master: vxlan.gateway.clone(),
        });
    }
    if link.mtu != vxlan.mtu {
        ops.push(Op::SetMtu {
            link: name.clone(),
            mtu: vxlan.mtu,
        });
    }
    if !observed.guarded.contains(name) {
        ops.push(guard(vxlan));
    }
    if !link.up {
        ops.push(Op::SetUp { link: name.clone() });
    }
    Ok(())
}

/// The VXLAN device's gateway guard.
fn guard(vxlan: &Vxlan) -> Op {
    Op::GuardVxlan {
        device: vxlan.name.clone(),
        prefix: vxlan.gateway_prefix,
    }
}

/// Static FDB, flood and neighbour entries: stale ones go, missing ones
/// come. Entries of a VXLAN device that is itself going away go with it.
fn plan_remotes(desired: &Desired, observed: &Observed, ops: &mut Vec<Op>) {
    let kept = |device: &str| desired.vxlans.iter().any(|v| v.name == device);
    let flooded = |device: &str, vtep: &IpAddr| {
        desired
            .floods
            .iter()
            .any(|f| f.device == device && f.vtep == *vtep)
    };
    for (device, vtep) in observed.floods.iter().filter(|(d, _)| kept(d)) {
        if !flooded(device, vtep) {
            ops.push(Op::DelFlood {
                device: device.clone(),
                vtep: *vtep,
            });
        }
    }
    let wanted = |device: &str, mac: &[u8; 6]| {
        desired
            .remotes
            .iter()
            .find(|r| r.device == device && &r.mac == mac)
    };
    for ((device, mac), vtep) in observed.fdb.iter().filter(|((d, _), _)| kept(d)) {
        if wanted(device, mac).map(|r| r.vtep) != Some(*vtep) {
            ops.push(Op::DelFdb {
                device: device.clone(),
                mac: *mac,
                vtep: *vtep,
            });
        }
    }
    for ((device, ip), mac) in observed.neighbours.iter().filter(|((d, _), _)| kept(d)) {
        let kept = desired
            .remotes
            .iter()
            .any(|r| &r.device == device && r.ips().any(|i| i == *ip) && &r.mac == mac);
        if !kept {
            ops.push(Op::DelNeighbour {
                device: device.clone(),
                ip: *ip,
                mac: *mac,
            });
        }
    }
    for f in &desired.floods {
        if !observed.floods.contains(&(f.device.clone(), f.vtep)) {
            ops.push(Op::AddFlood {
                device: f.device.clone(),
                vtep: f.vtep,
            });
        }
    }
    for r in &desired.remotes {
        if observed.fdb.get(&(r.device.clone(), r.mac)) != Some(&r.vtep) {
            ops.push(Op::AddFdb {
                device: r.device.clone(),
                mac: r.mac,
                vtep: r.vtep,
            });
        }
        for ip in r.ips() {
            if observed.neighbours.get(&(r.device.clone(), ip)) != Some(&r.mac) {
                ops.push(Op::AddNeighbour {
                    device: r.device.clone(),
                    ip,
                    mac: r.mac,
                });
            }
        }
    }
}

/// rustnet's links that nothing wants any more (leftovers of deleted
/// networks and endpoints, or of a crash between two steps).
fn stale(desired: &Desired, observed: &Observed) -> Vec<Op> {
    let wanted = |name: &str| {
        desired.gateways.iter().any(|b| b.name == name)
            || desired.vxlans.iter().any(|v| v.name == name)
            || desired
                .ports
                .iter()
                .any(|v| v.host == name || v.peer == name || v.link == name)
            || desired.lans.iter().any(|l| lan_has(l, name))
    };
    let mut ops: Vec<Op> = observed
        .links
        .iter()
        .filter(|(name, link)| link.owned && !wanted(name))
        .map(|(name, _)| Op::DeleteLink { name: name.clone() })
        .collect();
    // An inherited veth on no bridge is a container's end that Docker
    // handed back after the container went: the pair goes.
    ops.extend(
        observed
            .links
            .iter()
            .filter(|(name, l)| {
                l.inherited && l.kind == LinkKind::Veth && l.master.is_none() && !wanted(name)
            })
            .map(|(name, _)| Op::DeleteLink { name: name.clone() }),
    );
    // An inherited bridge goes once its containers have: nothing but
    // inherited VXLAN devices is attached to it any more.
    let inherited_vxlan = |link: &crate::Link| link.inherited && link.kind == LinkKind::Vxlan;
    for (name, bridge) in &observed.links {
        if !bridge.inherited || bridge.kind != LinkKind::Bridge || wanted(name) {
            continue;
        }
        let mut ports = observed
            .links
            .iter()
            .filter(|(_, l)| l.master.as_deref() == Some(name.as_str()));
        if ports.clone().all(|(_, l)| inherited_vxlan(l)) {
            ops.extend(
                ports
                    .by_ref()
                    .map(|(port, _)| Op::DeleteLink { name: port.clone() }),
            );
            ops.push(Op::DeleteLink { name: name.clone() });
        }
    }
    ops
}

fn plan_bridge(gateway: &Gateway, observed: &Observed, ops: &mut Vec<Op>) -> Result<(), PlanError> {
    let name = &gateway.name;
    let Some(link) = observed.links.get(name) else {
        ops.push(Op::CreateBridge {
            name: name.clone(),
            mtu: gateway.mtu,
        });
        ops.extend(gateway.mac.map(|mac| Op::SetMac {
            link: name.clone(),
            mac,
        }));
        ops.extend(gateway.addresses.iter().map(|a| Op::AddAddress {
            link: name.clone(),
            address: *a,
        }));
        ops.push(Op::SetUp { link: name.clone() });
        return Ok(());
    };
    if link.kind != LinkKind::Bridge {
        return Err(PlanError::NotABridge { name: name.clone() });
    }
    converge_gateway(gateway, link, ops);
    Ok(())
}

/// An overlay's gateway as a macvlan link on its VXLAN device `vxlan`
/// (planned after the device), with the gateway's MAC and addresses.
fn plan_gateway(
    gateway: &Gateway,
    vxlan: &str,
    observed: &Observed,
    ops: &mut Vec<Op>,
) -> Result<(), PlanError> {
    let name = &gateway.name;
    let Some(link) = ours(observed, name, LinkKind::Macvlan)? else {
        ops.push(Op::CreateLan {
            name: name.clone(),
            kind: LanKind::Macvlan,
            parent: vxlan.to_owned(),
            mac: gateway.mac,
            mtu: gateway.mtu,
        });
        ops.extend(gateway.addresses.iter().map(|a| Op::AddAddress {
            link: name.clone(),
            address: *a,
        }));
        ops.push(Op::SetUp { link: name.clone() });
        return Ok(());
    };
    converge_gateway(gateway, link, ops);
    Ok(())
}

/// The MTU, MAC, addresses and state of the existing gateway link `link`.
fn converge_gateway(gateway: &Gateway, link: &crate::Link, ops: &mut Vec<Op>) {
    let name = &gateway.name;
    if link.mtu != gateway.mtu {
        ops.push(Op::SetMtu {
            link: name.clone(),
            mtu: gateway.mtu,
        });
    }
    if let Some(mac) = gateway.mac.filter(|mac| link.mac != Some(*mac)) {
        ops.push(Op::SetMac {
            link: name.clone(),
            mac,
        });
    }
    for address in gateway
        .addresses
        .iter()
        .filter(|a| !link.addresses.contains(a))
    {
        ops.push(Op::AddAddress {
            link: name.clone(),
            address: *address,
        });
    }
    if !link.up {
        ops.push(Op::SetUp { link: name.clone() });
    }
}

/// An endpoint's macvlan link on the overlay's VXLAN device `vxlan`,
/// created when it is missing and the endpoint needs it; once Docker moved
/// it into the container it is no longer seen here.
fn plan_port(
    port: &Port,
    vxlan: &str,
    observed: &Observed,
    ops: &mut Vec<Op>,
) -> Result<(), PlanError> {
    let name = &port.link;
    if ours(observed, name, LinkKind::Macvlan)?.is_none() && port.required {
        ops.push(Op::CreateLan {
            name: name.clone(),
            kind: LanKind::Macvlan,
            parent: vxlan.to_owned(),
            mac: Some(port.mac),
            mtu: port.mtu,
        });
    }
    Ok(())
}

fn plan_veth(port: &Port, observed: &Observed, ops: &mut Vec<Op>) -> Result<(), PlanError> {
    let host = &port.host;
    let Some(link) = ours(observed, host, LinkKind::Veth)? else {
        if port.required {
            if observed.links.contains_key(&port.peer) {
                // Half a pair cannot be: the other end was deleted.
                ops.push(Op::DeleteLink {
                    name: port.peer.clone(),
                });
            }
            ops.push(Op::CreateVeth {
                host: host.clone(),
                peer: port.peer.clone(),
                mtu: port.mtu,
                mac: port.mac,
            });
            ops.push(Op::SetMaster {
                link: host.clone(),
                master: port.gateway.clone(),
            });
            ops.push(Op::SetUp { link: host.clone() });
        }
        return Ok(());
    };
    if link.master.as_deref() != Some(port.gateway.as_str()) {
        ops.push(Op::SetMaster {
            link: host.clone(),
            master: port.gateway.clone(),
        });
    }
    if link.mtu != port.mtu {
        ops.push(Op::SetMtu {
            link: host.clone(),
            mtu: port.mtu,
        });
    }
    if !link.up {
        ops.push(Op::SetUp { link: host.clone() });
    }
    Ok(())
}

/// Link `name` if it is there, refused unless rustnet made it under this
/// state (not inherited) and it is of `kind`.
fn ours<'a>(
    observed: &'a Observed,
    name: &str,
    kind: LinkKind,
) -> Result<Option<&'a crate::Link>, PlanError> {
    match observed.links.get(name) {
        None => Ok(None),
        Some(link) if link.inherited => Err(PlanError::Inherited {
            name: name.to_owned(),
        }),
        Some(link) if !link.owned || link.kind != kind => Err(PlanError::Foreign {
            name: name.to_owned(),
        }),
        Some(link) => Ok(Some(link)),
    }
}

/// Whether `name` is one of the LAN network's links (its VLAN parent,
/// shim or an endpoint's).
fn lan_has(lan: &Lan, name: &str) -> bool {
    lan.vlan.as_ref().is_some_and(|v| v.name == name)
        || lan.shim.as_ref().is_some_and(|s| s.name == name)
        || lan.links.iter().any(|l| l.name == name)
}

/// A LAN network: its VLAN parent if rustnet makes it, its shim with the
/// shim's address, and the missing links of endpoints that need one. A
/// parent that is not there, or a link of its names that rustnet did not
/// make, refuses the network.
fn plan_lan(lan: &Lan, observed: &Observed, ops: &mut Vec<Op>) -> Result<(), PlanError> {
    let links = &observed.links;
    if !links.contains_key(&lan.parent) {
        let Some(vlan) = lan.vlan.as_ref().filter(|v| v.name == lan.parent) else {
            return Err(PlanError::NoParent {
                parent: lan.parent.clone(),
            });
        };
        if !links.contains_key(&vlan.base) {
            return Err(PlanError::NoParent {
                parent: vlan.base.clone(),
            });
        }
        ops.push(Op::CreateVlan {
            name: vlan.name.clone(),
            base: vlan.base.clone(),
            id: vlan.id,
        });
        ops.push(Op::SetUp {
            link: vlan.name.clone(),
        });
    } else if let Some(vlan) = lan.vlan.as_ref().filter(|v| v.name == lan.parent)
        && links.get(&vlan.name).is_some_and(|l| l.owned && !l.up)
    {
        ops.push(Op::SetUp {
            link: vlan.name.clone(),
        });
    }
    let kind = LinkKind::from(lan.kind);
    let create = |name: &str, mac: Option<[u8; 6]>| Op::CreateLan {
        name: name.to_owned(),
        kind: lan.kind,
        parent: lan.parent.clone(),
        mac,
        mtu: lan.mtu,
    };
    let ours = |name: &str| ours(observed, name, kind);
    if let Some(shim) = &lan.shim {
        let name = &shim.name;
        let link = ours(name)?;
        if link.is_none() {
            ops.push(create(name, None));
        }
        if link.is_none_or(|l| !l.addresses.contains(&shim.address)) {
            ops.push(Op::AddAddress {
                link: name.clone(),
                address: shim.address,
            });
        }
        if link.is_none_or(|l| !l.up) {
            ops.push(Op::SetUp { link: name.clone() });
        }
    }
    for link in &lan.links {
        if ours(&link.name)?.is_none() && link.required {
            ops.push(create(&link.name, link.mac));
        }
    }
    Ok(())
}

/// The shims' host routes: one per container of this host on the network,
/// none else (a shim's own stale ones go; a deleted shim's go with it).
fn plan_routes(desired: &Desired, observed: &Observed, ops: &mut Vec<Op>) {
    let shims: Vec<&crate::model::Shim> = desired
        .lans
        .iter()
        .filter_map(|l| l.shim.as_ref())
        .collect();
    for (device, ip) in &observed.routes {
        let Some(shim) = shims.iter().find(|s| &s.name == device) else {
            continue;
        };
        if !shim.routes.contains(ip) {
            ops.push(Op::DelRoute {
                device: device.clone(),
                ip: *ip,
            });
        }
    }
    for shim in shims {
        for ip in &shim.routes {
            if !observed.routes.contains(&(shim.name.clone(), *ip)) {
                ops.push(Op::AddRoute {
                    device: shim.name.clone(),
                    ip: *ip,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
