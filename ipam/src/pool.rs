//! One pool: a subnet, the part of it addresses are handed out from, and who
//! holds what.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::addr::{from_int, to_int, usable};
use crate::{HolderKind, HostId, IpamError};

/// Who holds an address: the host that asked and what for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: HostId,
    pub kind: HolderKind,
}

/// How hosts are named in messages: their registered name, else their id.
pub(crate) type HostNames = BTreeMap<HostId, String>;

pub(crate) fn host_name(names: &HostNames, host: HostId) -> String {
    names
        .get(&host)
        .cloned()
        .unwrap_or_else(|| format!("host {host}"))
}

impl Holder {
    /// Who holds the address, for a user: "container web on host-a".
    pub fn describe(&self, names: &HostNames) -> String {
        let host = host_name(names, self.host);
        match &self.kind {
            HolderKind::Gateway => format!("the network's gateway on {host}"),
            HolderKind::Static => format!("an --ip or --aux-address reservation on {host}"),
            HolderKind::Endpoint { name: Some(name) } => format!("container {name} on {host}"),
            HolderKind::Endpoint { name: None } => format!("a container endpoint on {host}"),
        }
    }
}

/// A subnet in the cluster-wide address space, shared by every host that
/// created a network on it (reference-counted per host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    pub subnet: IpNet,
    /// `--ip-range`: where addresses without an explicit `--ip` come from.
    pub range: Option<IpNet>,
    /// References per host (a host's Docker may request the pool once).
    pub refs: BTreeMap<HostId, u32>,
    pub addresses: BTreeMap<IpAddr, Holder>,
}

impl Pool {
    pub(crate) fn new(subnet: IpNet, range: Option<IpNet>, host: HostId) -> Self {
        Self {
            subnet,
            range,
            refs: BTreeMap::from([(host, 1)]),
            addresses: BTreeMap::new(),
        }
    }

    /// The pool's id as Docker sees it.
    pub fn id(&self) -> String {
        self.subnet.to_string()
    }

    /// The hosts holding the pool, for error messages.
    pub(crate) fn holders(&self, names: &HostNames) -> String {
        let hosts: Vec<String> = self.refs.keys().map(|h| host_name(names, *h)).collect();
        hosts.join(", ")
    }

    /// Reserves exactly `address`, or says who holds it.
    pub(crate) fn take(
        &mut self,
        address: IpAddr,
        holder: Holder,
        names: &HostNames,
    ) -> Result<IpNet, IpamError> {
        if !self.subnet.contains(&address) {
            return Err(IpamError::AddressOutsidePool {
                address,
                subnet: self.subnet,
            });
        }
        let Some((lo, hi)) = usable(self.subnet) else {
            return Err(IpamError::SubnetTooSmall {
                subnet: self.subnet,
            });
        };
        if !(lo..=hi).contains(&to_int(address)) {
            return Err(IpamError::ReservedAddress {
                address,
                subnet: self.subnet,
            });
        }
        if let Some(current) = self.addresses.get(&address) {
            // Every host of a shared (overlay) subnet asks for the same
            // gateway; it is one address, held by the first.
            if current.kind == HolderKind::Gateway && holder.kind == HolderKind::Gateway {
                return Ok(self.with_prefix(address));
            }
            return Err(IpamError::AddressInUse {
                address,
                holder: current.describe(names),
            });
        }
        self.addresses.insert(address, holder);
        Ok(self.with_prefix(address))
    }

    /// Reserves the lowest free address of the range (or the subnet), as
    /// Docker's own IPAM does.
    pub(crate) fn take_any(&mut self, holder: Holder) -> Result<IpNet, IpamError> {
        let range = self.range.unwrap_or(self.subnet);
        let Some((lo, hi)) = usable(self.subnet) else {
            return Err(IpamError::SubnetTooSmall {
                subnet: self.subnet,
            });
        };
        let lo = lo.max(to_int(range.network()));
        let hi = hi.min(to_int(range.broadcast()));
        let like = self.subnet.network();
        let mut candidate = lo;
        // Allocated addresses come in order: walk them alongside the
        // candidate and stop at the first gap.
        for taken in self
            .addresses
            .range(from_int(like, lo)..=from_int(like, hi))
        {
            if to_int(*taken.0) != candidate {
                break;
            }
            candidate += 1;
        }
        if candidate > hi {
            return Err(IpamError::Exhausted {
                subnet: self.subnet,
                range,
                size: hi.saturating_sub(lo) + 1,
            });
        }
        let address = from_int(like, candidate);
        self.addresses.insert(address, holder);
        Ok(self.with_prefix(address))
    }

    /// Frees `address`, which `host` must hold.
    pub(crate) fn release(
        &mut self,
        address: IpAddr,
        host: HostId,
        names: &HostNames,
    ) -> Result<(), IpamError> {
        match self.addresses.get(&address) {
            None => Err(IpamError::NotAllocated {
                address,
                pool_id: self.id(),
            }),
            Some(holder) if holder.host != host && holder.kind == HolderKind::Gateway => Ok(()),
            Some(holder) if holder.host != host => Err(IpamError::NotHolder {
                address,
                holder: holder.describe(names),
                host: host_name(names, host),
            }),
            Some(_) => {
                self.addresses.remove(&address);
                Ok(())
            }
        }
    }

    fn with_prefix(&self, address: IpAddr) -> IpNet {
        // The prefix length always fits the address family of the subnet.
        IpNet::new(address, self.subnet.prefix_len()).unwrap_or_else(|_| IpNet::from(address))
    }
}
