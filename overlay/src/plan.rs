//! The planner: desired + observed -> the ordered operations that make the
//! kernel match, and nothing when it already does.

use crate::model::{Bridge, Desired, LinkKind, Observed, Op, Veth};

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
    for veth in &desired.veths {
        plan_veth(veth, observed, &mut ops)?;
    }
    Ok(ops)
}

/// rustnet's links that nothing wants any more (leftovers of deleted
/// networks and endpoints, or of a crash between two steps).
fn stale(desired: &Desired, observed: &Observed) -> Vec<Op> {
    let wanted = |name: &str| {
        desired.bridges.iter().any(|b| b.name == name)
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
