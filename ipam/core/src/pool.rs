//! One pool: a subnet, the part of it addresses are handed out from, and who
//! holds what.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use imbl::OrdMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::addr::{from_int, to_int, usable};
use crate::{HolderKind, HostId, IpamError};

/// Who holds an address: the host that asked and what for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: HostId,
    pub kind: HolderKind,
    /// The container using the address, where the host's Docker told
    /// (learned in the background, for IPAM-only networks: Docker 20.10's
    /// IPAM requests do not name it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
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
        if let Some(name) = &self.container {
            return format!("container {name} on {host}");
        }
        match &self.kind {
            HolderKind::Gateway => format!("the network's gateway on {host}"),
            HolderKind::Static => format!("an --ip or --aux-address reservation on {host}"),
            HolderKind::Aux => format!("the network's --aux-address reservation on {host}"),
            HolderKind::Endpoint { name: Some(name) } => format!("container {name} on {host}"),
            HolderKind::Endpoint { name: None } => format!("a container endpoint on {host}"),
            HolderKind::Shim => format!("the host shim of {host}"),
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
    /// Who holds each address. A persistent map: a copy (a snapshot's)
    /// shares its nodes and costs nothing, where a `BTreeMap` was copied
    /// entry by entry while applying waited.
    pub addresses: OrdMap<IpAddr, Holder>,
    /// Released addresses, oldest first: handed out again last.
    #[serde(default)]
    pub released: Vec<IpAddr>,
    /// Where the search for a fresh address starts (derived, not
    /// replicated).
    #[serde(skip)]
    fresh: FreshHint,
}

/// A lower bound on the pool's lowest fresh address (neither held nor
/// released): every address of the range below it has been handed out.
/// An address only stops being fresh once taken and becomes fresh again
/// only when a host is forgotten, so the search for the lowest fresh
/// address resumes where the last one ended instead of walking every held
/// address each time. Not part of the state: it compares equal whatever
/// it holds, and a replica that starts without it (0) finds the same
/// addresses, only slower once.
#[derive(Debug, Clone, Copy, Default)]
struct FreshHint(u128);

impl PartialEq for FreshHint {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for FreshHint {}

impl Pool {
    /// How many addresses of the subnet can be held (network and broadcast
    /// addresses aside).
    pub fn capacity(&self) -> u128 {
        usable(self.subnet).map_or(0, |(lo, hi)| hi - lo + 1)
    }

    pub(crate) fn new(subnet: IpNet, range: Option<IpNet>, host: HostId) -> Self {
        Self {
            subnet,
            range,
            refs: BTreeMap::from([(host, 1)]),
            addresses: OrdMap::new(),
            released: Vec::new(),
            fresh: FreshHint::default(),
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
            // Every host of a shared subnet asks for the same gateway and
            // aux addresses; each is one reservation, held by the first.
            if current.kind.is_shared() && holder.kind == current.kind {
                return Ok(self.with_prefix(address));
            }
            return Err(IpamError::AddressInUse {
                address,
                holder: current.describe(names),
            });
        }
        if holder.kind == HolderKind::Gateway
            && let Some((existing, current)) = self.gateway()
        {
            return Err(IpamError::GatewayMismatch {
                subnet: self.subnet,
                existing,
                requested: address,
                holder: current.describe(names),
            });
        }
        self.released.retain(|a| *a != address);
        self.addresses.insert(address, holder);
        Ok(self.with_prefix(address))
    }

    /// Reserves the lowest free address of the range (or the subnet), as
    /// Docker's own IPAM does, but never a recently released one while a
    /// fresh one is left.
    pub(crate) fn take_any(&mut self, holder: Holder) -> Result<IpNet, IpamError> {
        // A host that names no gateway on a subnet another host already
        // created gets that host's gateway: one network, one gateway.
        if holder.kind == HolderKind::Gateway
            && let Some((gateway, _)) = self.gateway()
        {
            return Ok(self.with_prefix(gateway));
        }
        let range = self.range.unwrap_or(self.subnet);
        let Some((lo, hi)) = usable(self.subnet) else {
            return Err(IpamError::SubnetTooSmall {
                subnet: self.subnet,
            });
        };
        let lo = lo.max(to_int(range.network()));
        let hi = hi.min(to_int(range.broadcast()));
        let like = self.subnet.network();
        // A released address comes back only when nothing fresh is left,
        // oldest first: by then no host or container still caches the MAC
        // of its previous holder (stale ARP entries on other hosts are not
        // flushed by anything, since overlays do not flood).
        let fresh = self.lowest_fresh(lo.max(self.fresh.0), hi);
        if let Some(found) = fresh {
            self.fresh = FreshHint(found + 1);
        }
        let reused = || {
            self.released.iter().map(|a| to_int(*a)).find(|c| {
                (lo..=hi).contains(c) && !self.addresses.contains_key(&from_int(like, *c))
            })
        };
        let Some(candidate) = fresh.or_else(reused) else {
            return Err(IpamError::Exhausted {
                subnet: self.subnet,
                range,
                size: hi.saturating_sub(lo) + 1,
            });
        };
        let address = from_int(like, candidate);
        self.released.retain(|a| *a != address);
        self.addresses.insert(address, holder);
        Ok(self.with_prefix(address))
    }

    /// The lowest address from `from` to `hi` that is neither held nor
    /// released. The released queue is searched as it is while the walk
    /// is short (the usual case, from the hint), through a set once it is
    /// not (the first search of a replica with many released addresses).
    fn lowest_fresh(&self, from: u128, hi: u128) -> Option<u128> {
        let like = self.subnet.network();
        let mut released: Option<BTreeSet<IpAddr>> = None;
        let mut steps = 0usize;
        (from..=hi).find(|c| {
            let address = from_int(like, *c);
            if self.addresses.contains_key(&address) {
                return false;
            }
            steps += 1;
            if steps > 16 && released.is_none() {
                released = Some(self.released.iter().copied().collect());
            }
            match &released {
                Some(set) => !set.contains(&address),
                None => !self.released.contains(&address),
            }
        })
    }

    /// The subnet's gateway and who holds it, if one was asked for.
    fn gateway(&self) -> Option<(IpAddr, &Holder)> {
        self.addresses
            .iter()
            .find(|(_, h)| h.kind == HolderKind::Gateway)
            .map(|(a, h)| (*a, h))
    }

    /// Another host that still references the pool, to hand `host`'s share
    /// of the shared reservations to.
    fn heir(&self, host: HostId) -> Option<HostId> {
        self.refs.keys().copied().find(|h| *h != host)
    }

    /// Drops what `host` holds (a host removed from the cluster): those
    /// addresses are fresh again, but for the gateway and aux addresses
    /// that other hosts of the subnet still use.
    pub(crate) fn forget(&mut self, host: HostId) {
        self.refs.remove(&host);
        if let Some(heir) = self.heir(host) {
            let shared: Vec<IpAddr> = self
                .addresses
                .iter()
                .filter(|(_, h)| h.host == host && h.kind.is_shared())
                .map(|(a, _)| *a)
                .collect();
            for address in shared {
                if let Some(holder) = self.addresses.get_mut(&address) {
                    holder.host = heir;
                }
            }
        }
        crate::retain(&mut self.addresses, |_, holder| holder.host != host);
        self.fresh = FreshHint::default();
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
            // A shared reservation stays while another host uses the
            // subnet; it passes to that host when its holder lets go.
            Some(holder) if holder.kind.is_shared() => {
                match self.heir(host) {
                    Some(heir) if holder.host == host => {
                        let mut holder = holder.clone();
                        holder.host = heir;
                        self.addresses.insert(address, holder);
                    }
                    Some(_) => {}
                    None => {
                        self.addresses.remove(&address);
                        self.released.push(address);
                    }
                }
                Ok(())
            }
            Some(holder) if holder.host != host => Err(IpamError::NotHolder {
                address,
                holder: holder.describe(names),
                host: host_name(names, host),
            }),
            Some(_) => {
                self.addresses.remove(&address);
                self.released.push(address);
                Ok(())
            }
        }
    }

    fn with_prefix(&self, address: IpAddr) -> IpNet {
        // The prefix length always fits the address family of the subnet.
        IpNet::new(address, self.subnet.prefix_len()).unwrap_or_else(|_| IpNet::from(address))
    }
}
