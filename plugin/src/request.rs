//! Docker's requests, validated: what the API layer hands the services.
//! Each is built by a `TryFrom` of the raw wire body in `api/`.

use std::net::IpAddr;

use ipnet::IpNet;
use rustnet_ipam::{HolderKind, Mac, Mode, Multicast, PortBinding};

/// RequestPool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PoolRequest {
    pub pool: Option<IpNet>,
    pub range: Option<IpNet>,
    pub v6: bool,
}

/// RequestAddress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddressRequest {
    pub pool_id: String,
    pub address: Option<IpAddr>,
    pub kind: HolderKind,
}

/// ReleaseAddress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddressRelease {
    pub pool_id: String,
    pub address: IpAddr,
}

/// CreateNetwork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetworkRequest {
    pub id: String,
    pub mode: Mode,
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
    pub internal: bool,
    pub subnet: Option<IpNet>,
    pub gateway: Option<IpNet>,
    pub subnet6: Option<IpNet>,
    pub gateway6: Option<IpNet>,
    /// `-o vni=`: the VXLAN id asked for.
    pub vni: Option<u32>,
    /// `-o rustnet.overlay=`: the overlay to bind to (set by propagation).
    pub overlay: Option<String>,
    /// `-o multicast=`: what an overlay does with broadcast and multicast.
    pub multicast: Multicast,
    /// `-o encrypted`: the overlay's VXLAN only inside WireGuard.
    pub encrypted: bool,
    /// `-o parent=`: a macvlan or ipvlan network's parent, as named on
    /// every host.
    pub parent: Option<String>,
    /// `-o host_access=`: a macvlan or ipvlan network's host shim.
    pub host_access: bool,
}

/// CreateEndpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointRequest {
    pub network_id: String,
    pub id: String,
    pub address: Option<IpNet>,
    pub address6: Option<IpNet>,
    /// The MAC Docker chose, if any; otherwise rustnet picks one.
    pub mac: Option<Mac>,
    pub ports: Vec<PortBinding>,
    /// The container's `--dns` servers.
    pub dns: Vec<IpAddr>,
}

/// What Join answers: the interface to move and the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    pub interface: String,
    pub gateway: Option<IpAddr>,
    pub gateway6: Option<IpAddr>,
    /// Host routes via the gateway: an `--internal` overlay's way to
    /// rustnet's resolver (its only way out of the network).
    pub routes: Vec<(std::net::Ipv4Addr, IpAddr)>,
}
