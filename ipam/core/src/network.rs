//! The network and endpoint tables: what Docker created through rustnet's
//! network driver, kept in the replicated state because Docker never
//! replays CreateNetwork after a restart (moby controller.go).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use imbl::OrdMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::HostId;

/// How a network reaches its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// A Linux bridge on one host.
    Bridge,
    /// A bridge per host joined by VXLAN: one network across the cluster.
    Overlay,
    /// Containers straight on the hosts' LAN through macvlan links of a
    /// parent interface: one network and address space across the
    /// cluster, no tunnel.
    Macvlan,
    /// The same with ipvlan (L2) links: the containers share the parent's
    /// MAC.
    Ipvlan,
}

impl Mode {
    /// Macvlan or ipvlan: containers on the parent's LAN.
    pub fn is_lan(self) -> bool {
        matches!(self, Self::Macvlan | Self::Ipvlan)
    }

    /// Overlay, the mode of every record from before the LAN modes: not
    /// written, so such records read the same in every release.
    pub fn is_overlay(&self) -> bool {
        *self == Self::Overlay
    }

    fn overlay() -> Self {
        Self::Overlay
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bridge => "bridge",
            Self::Overlay => "overlay",
            Self::Macvlan => "macvlan",
            Self::Ipvlan => "ipvlan",
        })
    }
}

/// What an overlay does with broadcast and multicast frames (`-o
/// multicast=`): dropped at the host (`Off`, the default, as swarm's
/// overlay), or copied to every other host with an endpoint on the overlay
/// (`Flood`: head-end replication).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Multicast {
    #[default]
    Off,
    Flood,
}

impl Multicast {
    /// Off, the value every record from before the setting means: not
    /// written, so such records read the same in every release.
    pub fn is_off(&self) -> bool {
        *self == Self::Off
    }
}

impl fmt::Display for Multicast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Flood => "flood",
        })
    }
}

/// The first VNI rustnet hands out (below are commonly used by hand).
pub const FIRST_VNI: u32 = 4096;
/// The largest VNI VXLAN can carry (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// A network that spans the cluster: created once, bound by a local
/// Docker network on each host. Identified by its subnet, unique
/// cluster-wide, since Docker's network ids differ per host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    /// The key: the subnet in CIDR form.
    pub key: String,
    /// The IPv4 subnet, or the IPv6 one of an IPv6-only overlay.
    pub subnet: IpNet,
    pub gateway: Option<IpNet>,
    pub vni: u32,
    pub mtu: Option<u32>,
    /// The Docker network name, learned on the host that created it.
    pub name: Option<String>,
    /// Created by `docker network rm` on some host: every host removes it
    /// from its Docker once it has no containers on it; no new endpoints.
    pub removing: bool,
    pub origin: HostId,
    /// Set by the overlay's first network, for every host.
    #[serde(default, skip_serializing_if = "Multicast::is_off")]
    pub multicast: Multicast,
    /// The IPv6 subnet and gateway of a dual-stack overlay (`--ipv6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet6: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<IpNet>,
    /// Set by the overlay's first network (`-o encrypted`), for every
    /// host: its VXLAN travels only inside WireGuard between the hosts.
    #[serde(default, skip_serializing_if = "is_false")]
    pub encrypted: bool,
    /// How the network reaches its containers: VXLAN ([`Mode::Overlay`])
    /// or the hosts' LAN ([`Mode::Macvlan`], [`Mode::Ipvlan`]).
    #[serde(default = "Mode::overlay", skip_serializing_if = "Mode::is_overlay")]
    pub mode: Mode,
    /// A LAN network's parent interface as its first network named it
    /// (each host may map the name to its own interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A LAN network's host shim, set by its first network for every host.
    #[serde(default, skip_serializing_if = "is_false")]
    pub host_access: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// The first 12 characters of a Docker id, as Docker shows it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A network created on `host` by Docker's CreateNetwork.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Docker's network id on `host`.
    pub id: String,
    pub host: HostId,
    pub mode: Mode,
    /// The Linux bridge's name.
    pub bridge: String,
    /// IPv4 subnet and gateway (the gateway with the subnet's prefix).
    pub subnet: Option<IpNet>,
    pub gateway: Option<IpNet>,
    pub subnet6: Option<IpNet>,
    pub gateway6: Option<IpNet>,
    pub mtu: u32,
    /// `--internal`: no egress, no NAT, no published ports.
    pub internal: bool,
    /// For an overlay: its key, and the VNI (asked for with `-o vni=`, then
    /// the overlay's).
    #[serde(default)]
    pub overlay: Option<String>,
    #[serde(default)]
    pub vni: Option<u32>,
    /// For an overlay: asked for with `-o multicast=`, then the overlay's.
    #[serde(default, skip_serializing_if = "Multicast::is_off")]
    pub multicast: Multicast,
    /// For an overlay: asked for with `-o encrypted`, then the overlay's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub encrypted: bool,
    /// For a macvlan or ipvlan network: the parent interface as the
    /// network names it (`-o parent=`), the same on every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// For a macvlan or ipvlan network: a shim link on the parent with an
    /// address of the pool, through which the host reaches its own
    /// containers and they reach rustnet's resolver; then the network's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub host_access: bool,
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        })
    }
}

/// `-p [HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    pub proto: Proto,
    pub container_port: u16,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
}

/// A container's attachment to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Docker's endpoint id.
    pub id: String,
    pub network_id: String,
    pub host: HostId,
    pub address: Option<IpNet>,
    pub address6: Option<IpNet>,
    /// The container interface's MAC.
    pub mac: crate::Mac,
    /// Published ports, active while the endpoint is joined.
    pub ports: Vec<PortBinding>,
    /// Between Join and Leave: the container is running on it.
    pub joined: bool,
    /// The container's `--dns` servers (Docker forwards names it does not
    /// know to them from inside the container).
    #[serde(default)]
    pub dns: Vec<IpAddr>,
    /// Who uses the endpoint, as its host's Docker names it; learned in
    /// the background after the endpoint is made.
    #[serde(default)]
    pub container: Option<Container>,
}

impl Endpoint {
    /// Its IPv4 address (none on an IPv6-only network).
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self.address? {
            IpNet::V4(net) => Some(net.addr()),
            IpNet::V6(_) => None,
        }
    }

    /// Its IPv6 address (none without `--ipv6`).
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        match self.address6? {
            IpNet::V6(net) => Some(net.addr()),
            IpNet::V4(_) => None,
        }
    }
}

/// A container as Docker's embedded DNS knows it on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Docker's container id.
    pub id: String,
    /// The container's name, without Docker's leading `/`.
    pub name: String,
    /// `--network-alias`es on this network, and the short id Docker adds.
    pub aliases: Vec<String>,
}

/// Why a network or endpoint change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NetworkError {
    #[error("network {id} already exists with different settings")]
    NetworkConflict { id: String },
    #[error("bridge name {bridge} is already used by network {other}")]
    BridgeInUse { bridge: String, other: String },
    #[error("no network {id} on this host")]
    UnknownNetwork { id: String },
    #[error("endpoint {id} already exists with different settings")]
    EndpointConflict { id: String },
    #[error("no endpoint {id} on this host")]
    UnknownEndpoint { id: String },
    #[error("network {name} is being removed from the cluster; it takes no new containers")]
    Removing { name: String },
    #[error("overlay {key} uses vni {existing}, not {requested}")]
    VniMismatch {
        key: String,
        existing: u32,
        requested: u32,
    },
    #[error("vni {vni} is already used by overlay {other}")]
    VniInUse { vni: u32, other: String },
    #[error("no free vni left between {FIRST_VNI} and {MAX_VNI}")]
    NoFreeVni,
    #[error("no overlay {key} in the cluster (was it removed?)")]
    UnknownOverlay { key: String },
    #[error(
        "overlay {key} has IPv6 subnet {existing}, not {requested}: create it on this host with \
         --ipv6 --subnet {existing}"
    )]
    Ipv6Mismatch {
        key: String,
        existing: String,
        requested: String,
    },
    #[error(
        "overlay {key} is IPv6-only and this network has IPv4 too: an IPv6-only overlay needs \
         Docker 28 or later (--ipv4=false) on every host"
    )]
    Ipv6OnlyMismatch { key: String },
    #[error(
        "overlay {key} exists with multicast={existing}; its first network sets multicast for \
         every host: remove the overlay and create it again with -o multicast={requested}"
    )]
    MulticastMismatch {
        key: String,
        existing: Multicast,
        requested: Multicast,
    },
    #[error(
        "overlay {key} exists unencrypted; its first network sets encryption for every host: \
         remove the overlay and create it again with -o encrypted"
    )]
    EncryptionMismatch { key: String },
    #[error(
        "network {key} exists in the cluster with mode={existing}, not {requested}: its first \
         network sets the mode for every host"
    )]
    ModeMismatch {
        key: String,
        existing: Mode,
        requested: Mode,
    },
    #[error(
        "network {key} exists in the cluster with parent={existing}, not {requested}: every host \
         names the same parent (map it to this host's interface with RUSTNET_PARENTS={existing}=IFACE)"
    )]
    ParentMismatch {
        key: String,
        existing: String,
        requested: String,
    },
    #[error("MAC {mac} is already used by {holder} on {host}, on a macvlan network of the cluster")]
    MacInUse {
        mac: String,
        holder: String,
        /// The host's id, which the state machine replaces with its name.
        host: String,
    },
}

/// What a network takes from the overlay it binds to.
struct Bound {
    vni: u32,
    multicast: Multicast,
    encrypted: bool,
    host_access: bool,
}

/// The tables, changed only through [`crate::State::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tables {
    networks: BTreeMap<String, Network>,
    /// Persistent, like a pool's addresses: a snapshot's copy is free.
    endpoints: OrdMap<String, Endpoint>,
    #[serde(default)]
    overlays: BTreeMap<String, Overlay>,
}

impl Tables {
    /// Every network of `host`.
    pub fn networks_of(&self, host: HostId) -> impl Iterator<Item = &Network> {
        self.networks.values().filter(move |n| n.host == host)
    }

    pub fn network(&self, id: &str) -> Option<&Network> {
        self.networks.get(id)
    }

    /// Every network, on any host.
    pub fn networks(&self) -> impl Iterator<Item = &Network> {
        self.networks.values()
    }

    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.get(id)
    }

    /// Every endpoint, on any host.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// Every endpoint of network `id`.
    pub fn endpoints_of<'a>(&'a self, network_id: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints
            .values()
            .filter(move |e| e.network_id == network_id)
    }

    /// Every overlay of the cluster.
    pub fn overlays(&self) -> impl Iterator<Item = &Overlay> {
        self.overlays.values()
    }

    pub fn overlay(&self, key: &str) -> Option<&Overlay> {
        self.overlays.get(key)
    }

    /// Every network, on any host, bound to overlay `key`.
    pub fn bound_to<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Network> {
        self.networks
            .values()
            .filter(move |n| n.overlay.as_deref() == Some(key))
    }

    /// Records a network; the same request again is a no-op. An overlay
    /// network binds to the cluster's overlay of its subnet, creating it
    /// (with its VNI) when it is the first.
    pub(crate) fn create_network(&mut self, network: &Network) -> Result<(), NetworkError> {
        // A refused network leaves no overlay behind it.
        let overlays = network.overlay.is_some().then(|| self.overlays.clone());
        let created = self.try_create_network(network);
        if let (Err(_), Some(overlays)) = (&created, overlays) {
            self.overlays = overlays;
        }
        created
    }

    fn try_create_network(&mut self, network: &Network) -> Result<(), NetworkError> {
        let mut network = network.clone();
        if let Some(key) = network.overlay.clone() {
            let bound = self.bind_overlay(&key, &network)?;
            network.vni = Some(bound.vni);
            network.multicast = bound.multicast;
            network.encrypted = bound.encrypted;
            network.host_access = bound.host_access;
        }
        let network = &network;
        if let Some(existing) = self.networks.get(&network.id) {
            return if existing == network {
                Ok(())
            } else {
                Err(NetworkError::NetworkConflict {
                    id: network.id.clone(),
                })
            };
        }
        let same_bridge = self
            .networks_of(network.host)
            .find(|n| n.bridge == network.bridge);
        if let Some(other) = same_bridge {
            return Err(NetworkError::BridgeInUse {
                bridge: network.bridge.clone(),
                other: other.id.clone(),
            });
        }
        self.networks.insert(network.id.clone(), network.clone());
        Ok(())
    }

    /// The VNI, multicast and encryption of overlay `key` for `network`,
    /// creating the overlay when this is its first network. A later network
    /// takes the overlay's unless it asked for others, which is refused.
    fn bind_overlay(&mut self, key: &str, network: &Network) -> Result<Bound, NetworkError> {
        if let Some(overlay) = self.overlays.get(key) {
            if overlay.removing && !self.networks.contains_key(&network.id) {
                let name = overlay.name.clone().unwrap_or_else(|| key.to_owned());
                return Err(NetworkError::Removing { name });
            }
            if let Some(requested) = network.vni.filter(|v| *v != overlay.vni) {
                return Err(NetworkError::VniMismatch {
                    key: key.to_owned(),
                    existing: overlay.vni,
                    requested,
                });
            }
            // Off is also what a network that says nothing asks for.
            if !network.multicast.is_off() && network.multicast != overlay.multicast {
                return Err(NetworkError::MulticastMismatch {
                    key: key.to_owned(),
                    existing: overlay.multicast,
                    requested: network.multicast,
                });
            }
            if let (Some(existing), Some(requested)) = (overlay.subnet6, network.subnet6)
                && existing != requested
            {
                return Err(NetworkError::Ipv6Mismatch {
                    key: key.to_owned(),
                    existing: existing.to_string(),
                    requested: requested.to_string(),
                });
            }
            if matches!(overlay.subnet, IpNet::V6(_)) && network.subnet.is_some() {
                return Err(NetworkError::Ipv6OnlyMismatch {
                    key: key.to_owned(),
                });
            }
            // Unencrypted is also what a network that says nothing asks for.
            if network.encrypted && !overlay.encrypted {
                return Err(NetworkError::EncryptionMismatch {
                    key: key.to_owned(),
                });
            }
            if overlay.mode != network.mode {
                return Err(NetworkError::ModeMismatch {
                    key: key.to_owned(),
                    existing: overlay.mode,
                    requested: network.mode,
                });
            }
            if let (Some(existing), Some(requested)) = (&overlay.parent, &network.parent)
                && existing != requested
            {
                return Err(NetworkError::ParentMismatch {
                    key: key.to_owned(),
                    existing: existing.clone(),
                    requested: requested.clone(),
                });
            }
            return Ok(Bound {
                vni: overlay.vni,
                multicast: overlay.multicast,
                encrypted: overlay.encrypted,
                host_access: overlay.host_access,
            });
        }
        let vni = match network.vni {
            Some(vni) => {
                if let Some(other) = self.overlays.values().find(|o| o.vni == vni) {
                    return Err(NetworkError::VniInUse {
                        vni,
                        other: other.key.clone(),
                    });
                }
                vni
            }
            None => (FIRST_VNI..=MAX_VNI)
                .find(|v| !self.overlays.values().any(|o| o.vni == *v))
                .ok_or(NetworkError::NoFreeVni)?,
        };
        // An IPv6-only overlay's subnet and gateway are its IPv6 ones.
        let (subnet, gateway, subnet6, gateway6) = match network.subnet {
            Some(subnet) => (subnet, network.gateway, network.subnet6, network.gateway6),
            None => (
                network
                    .subnet6
                    .ok_or_else(|| NetworkError::UnknownOverlay {
                        key: key.to_owned(),
                    })?,
                network.gateway6,
                None,
                None,
            ),
        };
        self.overlays.insert(
            key.to_owned(),
            Overlay {
                key: key.to_owned(),
                subnet,
                gateway,
                vni,
                mtu: None,
                name: None,
                removing: false,
                origin: network.host,
                multicast: network.multicast,
                subnet6,
                gateway6,
                encrypted: network.encrypted,
                mode: network.mode,
                parent: network.parent.clone(),
                host_access: network.host_access,
            },
        );
        Ok(Bound {
            vni,
            multicast: network.multicast,
            encrypted: network.encrypted,
            host_access: network.host_access,
        })
    }

    /// Records the Docker name of an overlay, learned on its origin host.
    pub(crate) fn name_overlay(&mut self, key: &str, name: &str) -> Result<(), NetworkError> {
        let overlay = self
            .overlays
            .get_mut(key)
            .ok_or_else(|| NetworkError::UnknownOverlay {
                key: key.to_owned(),
            })?;
        overlay.name.get_or_insert_with(|| name.to_owned());
        Ok(())
    }

    /// Forgets a network and its endpoints. Docker deletes its own record
    /// whatever the driver answers, so this always succeeds. Removing an
    /// overlay network on any host removes the overlay cluster-wide.
    pub(crate) fn delete_network(&mut self, host: HostId, id: &str) {
        if self.networks.get(id).is_none_or(|n| n.host != host) {
            return;
        }
        let key = self.networks.remove(id).and_then(|n| n.overlay);
        if let Some(overlay) = key.and_then(|k| self.overlays.get_mut(&k)) {
            overlay.removing = true;
        }
        crate::retain(&mut self.endpoints, |_, e| e.network_id != id);
        self.prune_overlays();
    }

    /// Forgets `host`'s record of a network whose creation failed there,
    /// leaving the overlay it bound to as it is for the other hosts.
    pub(crate) fn forget_network(&mut self, host: HostId, id: &str) {
        if self.networks.get(id).is_none_or(|n| n.host != host) {
            return;
        }
        self.networks.remove(id);
        crate::retain(&mut self.endpoints, |_, e| e.network_id != id);
        self.prune_overlays();
    }

    /// Overlays no network is bound to any more are gone.
    fn prune_overlays(&mut self) {
        let networks = &self.networks;
        self.overlays.retain(|key, _| {
            networks
                .values()
                .any(|n| n.overlay.as_deref() == Some(key.as_str()))
        });
    }

    /// Records an endpoint; the same request again is a no-op.
    pub(crate) fn create_endpoint(&mut self, endpoint: &Endpoint) -> Result<(), NetworkError> {
        let network = match self.networks.get(&endpoint.network_id) {
            Some(n) if n.host == endpoint.host => n,
            _ => {
                return Err(NetworkError::UnknownNetwork {
                    id: endpoint.network_id.clone(),
                });
            }
        };
        let overlay = network.overlay.as_ref().and_then(|k| self.overlays.get(k));
        if let Some(overlay) =
            overlay.filter(|o| o.removing && !self.endpoints.contains_key(&endpoint.id))
        {
            let name = overlay.name.clone().unwrap_or_else(|| overlay.key.clone());
            return Err(NetworkError::Removing { name });
        }
        if network.mode == Mode::Macvlan && !self.endpoints.contains_key(&endpoint.id) {
            self.check_mac(endpoint)?;
        }
        if let Some(existing) = self.endpoints.get(&endpoint.id) {
            // What was learned about the container since is not a difference.
            let same = Endpoint {
                container: endpoint.container.clone(),
                ..existing.clone()
            };
            return if same == *endpoint {
                Ok(())
            } else {
                Err(NetworkError::EndpointConflict {
                    id: endpoint.id.clone(),
                })
            };
        }
        self.endpoints.insert(endpoint.id.clone(), endpoint.clone());
        Ok(())
    }

    /// Refuses a MAC another endpoint of a macvlan network holds: their
    /// frames meet on the hosts' LAN. (Scans every endpoint: only a new
    /// macvlan endpoint pays for it.)
    fn check_mac(&self, endpoint: &Endpoint) -> Result<(), NetworkError> {
        let on_macvlan = |e: &Endpoint| {
            self.networks
                .get(&e.network_id)
                .is_some_and(|n| n.mode == Mode::Macvlan)
        };
        let Some(other) = self
            .endpoints
            .values()
            .find(|e| e.mac == endpoint.mac && on_macvlan(e))
        else {
            return Ok(());
        };
        let who = match &other.container {
            Some(c) => format!("container {}", c.name),
            None => format!("endpoint {}", short(&other.id)),
        };
        Err(NetworkError::MacInUse {
            mac: endpoint.mac.to_string(),
            holder: who,
            host: other.host.to_string(),
        })
    }

    /// Drops every network and endpoint of `host`.
    pub(crate) fn forget(&mut self, host: HostId) {
        self.networks.retain(|_, n| n.host != host);
        crate::retain(&mut self.endpoints, |_, e| e.host != host);
        self.prune_overlays();
    }

    pub(crate) fn delete_endpoint(&mut self, host: HostId, id: &str) {
        if self.endpoints.get(id).is_some_and(|e| e.host == host) {
            self.endpoints.remove(id);
        }
    }

    /// Marks an endpoint joined (with its published ports) or left.
    /// Records who uses `host`'s endpoint `id`.
    pub(crate) fn name_endpoint(
        &mut self,
        host: HostId,
        id: &str,
        container: &Container,
    ) -> Result<(), NetworkError> {
        let endpoint = self
            .endpoints
            .get_mut(id)
            .filter(|e| e.host == host)
            .ok_or_else(|| NetworkError::UnknownEndpoint { id: id.to_owned() })?;
        endpoint.container = Some(container.clone());
        Ok(())
    }

    /// The endpoint holding `address`, anywhere in the cluster.
    pub fn endpoint_at(&self, address: IpAddr) -> Option<&Endpoint> {
        self.endpoints
            .values()
            .find(|e| e.address.map(|a| a.addr()) == Some(address))
    }

    pub(crate) fn set_joined(
        &mut self,
        host: HostId,
        id: &str,
        joined: Option<&[PortBinding]>,
    ) -> Result<(), NetworkError> {
        let endpoint = self
            .endpoints
            .get_mut(id)
            .filter(|e| e.host == host)
            .ok_or_else(|| NetworkError::UnknownEndpoint { id: id.to_owned() })?;
        endpoint.joined = joined.is_some();
        endpoint.ports = joined.map(<[PortBinding]>::to_vec).unwrap_or_default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(id: &str, bridge: &str) -> Network {
        Network {
            bridge: bridge.into(),
            ..crate::fixture::network(id, 1)
        }
    }

    fn endpoint(id: &str, network_id: &str) -> Endpoint {
        crate::fixture::endpoint(id, network_id, 1)
    }

    #[test]
    fn a_failed_create_is_forgotten_on_its_host_only() {
        let mut t = Tables::default();
        let overlay = |id: &str, host: HostId| Network {
            host,
            mode: Mode::Overlay,
            overlay: Some("10.0.42.0/24".into()),
            ..network(id, &format!("rn-{id}"))
        };
        t.create_network(&overlay("a", 1)).unwrap();
        t.create_network(&overlay("b", 2)).unwrap();
        // Host 2 could not build it: it forgets its record, and the
        // overlay stays usable (not removing) for host 1.
        t.forget_network(2, "b");
        assert!(t.network("b").is_none());
        let kept = t.overlay("10.0.42.0/24").unwrap();
        assert!(!kept.removing);
        // Host 2 may bind again once its fault is gone.
        t.create_network(&overlay("b", 2)).unwrap();
        // Forgetting another host's network does nothing.
        t.forget_network(2, "a");
        assert!(t.network("a").is_some());
        // The last binding forgotten, the overlay goes.
        t.forget_network(1, "a");
        t.forget_network(2, "b");
        assert!(t.overlay("10.0.42.0/24").is_none());
    }

    #[test]
    fn creates_are_idempotent_and_conflicts_refused() {
        let mut t = Tables::default();
        t.create_network(&network("n1", "rn-n1")).unwrap();
        t.create_network(&network("n1", "rn-n1")).unwrap();
        let mut changed = network("n1", "rn-n1");
        changed.mtu = 1400;
        assert_eq!(
            t.create_network(&changed).unwrap_err().to_string(),
            "network n1 already exists with different settings"
        );
        assert_eq!(
            t.create_network(&network("n2", "rn-n1"))
                .unwrap_err()
                .to_string(),
            "bridge name rn-n1 is already used by network n1"
        );
        t.create_endpoint(&endpoint("e1", "n1")).unwrap();
        t.create_endpoint(&endpoint("e1", "n1")).unwrap();
        assert_eq!(
            t.create_endpoint(&endpoint("e2", "nx"))
                .unwrap_err()
                .to_string(),
            "no network nx on this host"
        );
    }

    #[test]
    fn join_leave_and_delete() {
        let mut t = Tables::default();
        t.create_network(&network("n1", "rn-n1")).unwrap();
        t.create_endpoint(&endpoint("e1", "n1")).unwrap();
        let ports = [PortBinding {
            proto: Proto::Tcp,
            container_port: 80,
            host_ip: None,
            host_port: 8080,
        }];
        t.set_joined(1, "e1", Some(&ports)).unwrap();
        assert!(t.endpoint("e1").unwrap().joined);
        assert_eq!(t.endpoint("e1").unwrap().ports.len(), 1);
        t.set_joined(1, "e1", None).unwrap();
        assert!(!t.endpoint("e1").unwrap().joined);
        assert!(t.endpoint("e1").unwrap().ports.is_empty());
        assert!(
            t.set_joined(2, "e1", None).is_err(),
            "another host's endpoint"
        );
        t.delete_network(1, "n1");
        assert!(t.network("n1").is_none() && t.endpoint("e1").is_none());
    }

    fn overlay_network(id: &str, host: HostId, vni: Option<u32>) -> Network {
        Network {
            host,
            mode: Mode::Overlay,
            overlay: Some("10.0.42.0/24".into()),
            vni,
            ..network(id, &format!("rn-{id}"))
        }
    }

    #[test]
    fn overlays_bind_across_hosts_with_one_vni() {
        let mut t = Tables::default();
        t.create_network(&overlay_network("a1", 1, None)).unwrap();
        t.create_network(&overlay_network("b1", 2, None)).unwrap();
        assert_eq!(t.overlay("10.0.42.0/24").unwrap().vni, FIRST_VNI);
        assert_eq!(t.network("b1").unwrap().vni, Some(FIRST_VNI));
        assert_eq!(t.bound_to("10.0.42.0/24").count(), 2);
        assert_eq!(
            t.create_network(&overlay_network("c1", 3, Some(7)))
                .unwrap_err()
                .to_string(),
            "overlay 10.0.42.0/24 uses vni 4096, not 7"
        );
        let mut other = overlay_network("d1", 1, Some(FIRST_VNI));
        other.overlay = Some("10.0.43.0/24".into());
        assert_eq!(
            t.create_network(&other).unwrap_err().to_string(),
            "vni 4096 is already used by overlay 10.0.42.0/24"
        );
    }

    #[test]
    fn the_first_network_of_an_overlay_sets_its_encryption_for_every_host() {
        let mut t = Tables::default();
        let encrypted = |id: &str, host| Network {
            encrypted: true,
            ..overlay_network(id, host, None)
        };
        t.create_network(&encrypted("a1", 1)).unwrap();
        assert!(t.overlay("10.0.42.0/24").unwrap().encrypted);
        // A host saying nothing (a user's create there) gets the overlay's.
        t.create_network(&overlay_network("b1", 2, None)).unwrap();
        assert!(t.network("b1").unwrap().encrypted);
        // An unencrypted overlay takes no encrypted network later.
        let mut u = Tables::default();
        u.create_network(&overlay_network("a1", 1, None)).unwrap();
        let before = u.clone();
        assert_eq!(
            u.create_network(&encrypted("b1", 2))
                .unwrap_err()
                .to_string(),
            "overlay 10.0.42.0/24 exists unencrypted; its first network sets encryption for \
             every host: remove the overlay and create it again with -o encrypted"
        );
        assert_eq!(u, before, "a refused network changes nothing");
    }

    #[test]
    fn the_first_network_of_an_overlay_sets_its_multicast_for_every_host() {
        let mut t = Tables::default();
        let flood = |id: &str, host| Network {
            multicast: Multicast::Flood,
            ..overlay_network(id, host, None)
        };
        t.create_network(&flood("a1", 1)).unwrap();
        assert_eq!(
            t.overlay("10.0.42.0/24").unwrap().multicast,
            Multicast::Flood
        );
        // A host saying nothing (a user's create there) gets the overlay's.
        t.create_network(&overlay_network("b1", 2, None)).unwrap();
        assert_eq!(t.network("b1").unwrap().multicast, Multicast::Flood);
        t.create_network(&flood("c1", 3)).unwrap();
        // An overlay without multicast takes no flooding network later.
        let mut u = Tables::default();
        u.create_network(&overlay_network("a1", 1, None)).unwrap();
        let before = u.clone();
        assert_eq!(
            u.create_network(&flood("b1", 2)).unwrap_err().to_string(),
            "overlay 10.0.42.0/24 exists with multicast=off; its first network sets multicast for \
             every host: remove the overlay and create it again with -o multicast=flood"
        );
        assert_eq!(u, before, "a refused network changes nothing");
    }

    #[test]
    fn a_dual_stack_overlay_has_one_ipv6_subnet_on_every_host() {
        let mut t = Tables::default();
        let dual = |id: &str, host, subnet6: &str| Network {
            subnet6: subnet6.parse().ok(),
            gateway6: None,
            ..overlay_network(id, host, None)
        };
        t.create_network(&dual("a1", 1, "fd00:42::/64")).unwrap();
        let overlay = t.overlay("10.0.42.0/24").unwrap();
        assert_eq!(overlay.subnet6, "fd00:42::/64".parse().ok());
        t.create_network(&dual("b1", 2, "fd00:42::/64")).unwrap();
        let before = t.clone();
        assert_eq!(
            t.create_network(&dual("c1", 3, "fd00:43::/64"))
                .unwrap_err()
                .to_string(),
            "overlay 10.0.42.0/24 has IPv6 subnet fd00:42::/64, not fd00:43::/64: create it on \
             this host with --ipv6 --subnet fd00:42::/64"
        );
        assert_eq!(t, before);
        assert_eq!(
            crate::Command::CreateNetwork(dual("d1", 4, "fd00:42::/64")).format(),
            3,
            "a release of format 2 would refuse or half-build it"
        );
    }

    #[test]
    fn an_ipv6_only_overlay_is_keyed_by_its_ipv6_subnet() {
        let mut t = Tables::default();
        let only6 = |id: &str, host| Network {
            subnet: None,
            gateway: None,
            subnet6: "fd00:44::/64".parse().ok(),
            gateway6: "fd00:44::1/64".parse().ok(),
            overlay: Some("fd00:44::/64".into()),
            ..overlay_network(id, host, None)
        };
        t.create_network(&only6("a1", 1)).unwrap();
        let overlay = t.overlay("fd00:44::/64").unwrap();
        assert_eq!(overlay.subnet, "fd00:44::/64".parse().unwrap());
        assert_eq!(overlay.gateway, "fd00:44::1/64".parse().ok());
        assert_eq!(overlay.subnet6, None, "its one subnet is the IPv6 one");
        t.create_network(&only6("b1", 2)).unwrap();
        // An engine before 28 adds an IPv4 pool to what it creates.
        let before = t.clone();
        let dual = Network {
            subnet: "10.0.44.0/24".parse().ok(),
            ..only6("c1", 3)
        };
        assert_eq!(
            t.create_network(&dual).unwrap_err().to_string(),
            "overlay fd00:44::/64 is IPv6-only and this network has IPv4 too: an IPv6-only \
             overlay needs Docker 28 or later (--ipv4=false) on every host"
        );
        assert_eq!(t, before);
        assert_eq!(crate::Command::CreateNetwork(only6("d1", 4)).format(), 3);
    }

    #[test]
    fn removing_an_overlay_anywhere_refuses_new_endpoints_until_it_is_gone() {
        let mut t = Tables::default();
        t.create_network(&overlay_network("a1", 1, None)).unwrap();
        t.create_network(&overlay_network("b1", 2, None)).unwrap();
        t.name_overlay("10.0.42.0/24", "ov").unwrap();
        t.delete_network(1, "a1");
        assert!(t.overlay("10.0.42.0/24").unwrap().removing);
        let mut e = endpoint("e1", "b1");
        e.host = 2;
        assert_eq!(
            t.create_endpoint(&e).unwrap_err().to_string(),
            "network ov is being removed from the cluster; it takes no new containers"
        );
        assert!(
            t.create_network(&overlay_network("c1", 3, None)).is_err(),
            "no host re-creates it"
        );
        t.delete_network(2, "b1");
        assert!(t.overlay("10.0.42.0/24").is_none());
    }

    #[test]
    fn a_lan_network_binds_across_hosts_with_one_mode_and_parent_name() {
        let mut t = Tables::default();
        let key = "192.168.50.0/24";
        let lan = |id: &str, host| crate::fixture::macvlan(id, host, key);
        t.create_network(&lan("a1", 1)).unwrap();
        let overlay = t.overlay(key).unwrap();
        assert_eq!(
            (overlay.mode, overlay.parent.as_deref(), overlay.host_access),
            (Mode::Macvlan, Some("eth0"), true)
        );
        // A host saying nothing of host access gets the network's.
        let quiet = Network {
            host_access: false,
            ..lan("b1", 2)
        };
        t.create_network(&quiet).unwrap();
        assert!(t.network("b1").unwrap().host_access);
        let before = t.clone();
        let ipvlan = Network {
            mode: Mode::Ipvlan,
            ..lan("c1", 3)
        };
        assert_eq!(
            t.create_network(&ipvlan).unwrap_err().to_string(),
            "network 192.168.50.0/24 exists in the cluster with mode=macvlan, not ipvlan: its \
             first network sets the mode for every host"
        );
        let other_parent = Network {
            parent: Some("eth1".into()),
            ..lan("c1", 3)
        };
        assert_eq!(
            t.create_network(&other_parent).unwrap_err().to_string(),
            "network 192.168.50.0/24 exists in the cluster with parent=eth0, not eth1: every host \
             names the same parent (map it to this host's interface with RUSTNET_PARENTS=eth0=IFACE)"
        );
        assert_eq!(t, before, "a refused network changes nothing");
        // A record without a mode (every overlay before LAN networks) reads as VXLAN.
        let old: Overlay = serde_json::from_value(serde_json::json!({
            "key": key, "subnet": key, "gateway": null, "vni": 4096, "mtu": null,
            "name": null, "removing": false, "origin": 1
        }))
        .unwrap();
        assert_eq!(old.mode, Mode::Overlay);
        assert!(!serde_json::to_string(&old).unwrap().contains("mode"));
    }
}
