//! The planner: desired + observed -> the ordered operations that make the
//! kernel match, and nothing when it already does.

use crate::model::{Bridge, Desired, LinkKind, Observed, Op, Veth, Vxlan};

/// A conflict the planner will not resolve by force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "interface {name} exists and is not a bridge; choose another com.docker.network.bridge.name"
    )]
    NotABridge { name: String },
    #[error("interface {name} exists and was not created by rustnet")]
    Foreign { name: String },
}

/// Plans the operations that turn `observed` into `desired`: first remove
/// what rustnet owns and no longer wants, then bridges, then veth pairs.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Vec<Op>, PlanError> {
    let mut ops = stale(desired, observed);
    for bridge in &desired.bridges {
        plan_bridge(bridge, observed, &mut ops)?;
    }
    for vxlan in &desired.vxlans {
        plan_vxlan(vxlan, observed, &mut ops)?;
    }
    for veth in &desired.veths {
        plan_veth(veth, observed, &mut ops)?;
    }
    plan_remotes(desired, observed, &mut ops);
    Ok(ops)
}

fn plan_vxlan(vxlan: &Vxlan, observed: &Observed, ops: &mut Vec<Op>) -> Result<(), PlanError> {
    let name = &vxlan.name;
    let Some(link) = observed.links.get(name) else {
        ops.push(Op::CreateVxlan {
            name: name.clone(),
            vni: vxlan.vni,
            local: vxlan.local,
            port: vxlan.port,
            mtu: vxlan.mtu,
        });
        ops.push(Op::SetMaster {
            link: name.clone(),
            master: vxlan.bridge.clone(),
        });
        ops.push(Op::SetUp { link: name.clone() });
        return Ok(());
    };
    if !link.owned || link.kind != LinkKind::Vxlan {
        return Err(PlanError::Foreign { name: name.clone() });
    }
    if link.master.as_deref() != Some(vxlan.bridge.as_str()) {
        ops.push(Op::SetMaster {
            link: name.clone(),
            master: vxlan.bridge.clone(),
        });
    }
    if link.mtu != vxlan.mtu {
        ops.push(Op::SetMtu {
            link: name.clone(),
            mtu: vxlan.mtu,
        });
    }
    if !link.up {
        ops.push(Op::SetUp { link: name.clone() });
    }
    Ok(())
}

/// Static FDB and neighbour entries: stale ones go, missing ones come.
/// Entries of a VXLAN device that is itself going away go with it.
fn plan_remotes(desired: &Desired, observed: &Observed, ops: &mut Vec<Op>) {
    let kept = |device: &str| desired.vxlans.iter().any(|v| v.name == device);
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
            .any(|r| &r.device == device && &r.ip == ip && &r.mac == mac);
        if !kept {
            ops.push(Op::DelNeighbour {
                device: device.clone(),
                ip: *ip,
                mac: *mac,
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
        if observed.neighbours.get(&(r.device.clone(), r.ip)) != Some(&r.mac) {
            ops.push(Op::AddNeighbour {
                device: r.device.clone(),
                ip: r.ip,
                mac: r.mac,
            });
        }
    }
}

/// rustnet's links that nothing wants any more (leftovers of deleted
/// networks and endpoints, or of a crash between two steps).
fn stale(desired: &Desired, observed: &Observed) -> Vec<Op> {
    let wanted = |name: &str| {
        desired.bridges.iter().any(|b| b.name == name)
            || desired.vxlans.iter().any(|v| v.name == name)
            || desired
                .veths
                .iter()
                .any(|v| v.host == name || v.peer == name)
    };
    observed
        .links
        .iter()
        .filter(|(name, link)| link.owned && !wanted(name))
        .map(|(name, _)| Op::DeleteLink { name: name.clone() })
        .collect()
}

fn plan_bridge(bridge: &Bridge, observed: &Observed, ops: &mut Vec<Op>) -> Result<(), PlanError> {
    let name = &bridge.name;
    let Some(link) = observed.links.get(name) else {
        ops.push(Op::CreateBridge {
            name: name.clone(),
            mtu: bridge.mtu,
        });
        ops.extend(bridge.addresses.iter().map(|a| Op::AddAddress {
            link: name.clone(),
            address: *a,
        }));
        ops.push(Op::SetUp { link: name.clone() });
        return Ok(());
    };
    if link.kind != LinkKind::Bridge {
        return Err(PlanError::NotABridge { name: name.clone() });
    }
    if link.mtu != bridge.mtu {
        ops.push(Op::SetMtu {
            link: name.clone(),
            mtu: bridge.mtu,
        });
    }
    for address in bridge
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
    Ok(())
}

fn plan_veth(veth: &Veth, observed: &Observed, ops: &mut Vec<Op>) -> Result<(), PlanError> {
    let host = &veth.host;
    let Some(link) = observed.links.get(host) else {
        if veth.required {
            if observed.links.contains_key(&veth.peer) {
                // Half a pair cannot be: the other end was deleted.
                ops.push(Op::DeleteLink {
                    name: veth.peer.clone(),
                });
            }
            ops.push(Op::CreateVeth {
                host: host.clone(),
                peer: veth.peer.clone(),
                mtu: veth.mtu,
                mac: veth.mac,
            });
            ops.push(Op::SetMaster {
                link: host.clone(),
                master: veth.bridge.clone(),
            });
            ops.push(Op::SetUp { link: host.clone() });
        }
        return Ok(());
    };
    if !link.owned {
        return Err(PlanError::Foreign { name: host.clone() });
    }
    if link.master.as_deref() != Some(veth.bridge.as_str()) {
        ops.push(Op::SetMaster {
            link: host.clone(),
            master: veth.bridge.clone(),
        });
    }
    if link.mtu != veth.mtu {
        ops.push(Op::SetMtu {
            link: host.clone(),
            mtu: veth.mtu,
        });
    }
    if !link.up {
        ops.push(Op::SetUp { link: host.clone() });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
