//! What the planner reasons about: wanted links, seen links, operations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The link holding a network's gateway address: a Linux bridge, or for
/// an overlay a macvlan link on its VXLAN device (see [`Gateway::vxlan`]).
/// Its name is the network's on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway {
    pub name: String,
    /// The gateway addresses, with the subnet's prefix.
    pub addresses: Vec<IpNet>,
    pub mtu: u32,
    /// A fixed MAC (an overlay's gateway MAC, the same on every host);
    /// `None` leaves the kernel's choice.
    pub mac: Option<[u8; 6]>,
    /// An overlay's VXLAN device. Where no bridge of the name exists, the
    /// network is built without one: the gateway and each container are
    /// macvlan links (bridge mode) on the VXLAN device, so a frame goes
    /// between a container and the tunnel in one step, with no bridge and
    /// no veth hop. A bridge that exists (built by an earlier release)
    /// keeps serving its containers until it goes.
    pub vxlan: Option<String>,
}

/// An endpoint's port on its network: a veth pair on the gateway's bridge
/// (`host` stays on the bridge, `peer` is what Docker moves into the
/// container), or the macvlan link `link` where the gateway is a macvlan
/// link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub host: String,
    pub peer: String,
    /// The endpoint's macvlan link on the overlay's VXLAN device.
    pub link: String,
    /// The network's gateway link ([`Gateway::name`]).
    pub gateway: String,
    pub mtu: u32,
    pub mac: [u8; 6],
    /// Create it when missing (CreateEndpoint, Join). An endpoint whose
    /// pair is gone (after a reboot) is not re-created behind Docker's back.
    pub required: bool,
}

/// The VXLAN device of an overlay on this host: the parent of its gateway
/// and container links, or a port of its bridge (see [`Gateway::vxlan`]).
/// Learning is off and ARP is answered from the static neighbour entries
/// (proxy), so nothing is learned behind rustnet's back, and nothing
/// floods but to the [`Flood`] entries of an overlay with multicast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub name: String,
    pub vni: u32,
    /// This host's underlay address (the tunnel's source), IPv4 or IPv6.
    pub local: IpAddr,
    pub port: u16,
    pub mtu: u32,
    /// The network's gateway link ([`Gateway::name`]).
    pub gateway: String,
    /// The first three bytes of every gateway MAC: frames from them never
    /// leave through the device (its gateway guard, see [`Op::GuardVxlan`]).
    pub gateway_prefix: [u8; 3],
}

/// A remote endpoint seen through a VXLAN device: its MAC lives behind
/// `vtep` (static FDB entry) and its IPs have that MAC (static neighbours:
/// the VXLAN device answers ARP and neighbour solicitations with them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Remote {
    pub device: String,
    pub mac: [u8; 6],
    /// `None` on an IPv6-only overlay.
    pub ip: Option<Ipv4Addr>,
    pub ip6: Option<Ipv6Addr>,
    /// The underlay address of its host, of the local VTEP's family.
    pub vtep: IpAddr,
}

impl Remote {
    /// Its addresses, each a static neighbour entry.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ip
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.ip6.map(IpAddr::V6))
    }
}

/// A copy of every broadcast, multicast and unknown-unicast frame of an
/// overlay's VXLAN device goes to `vtep` (an all-zero FDB entry: head-end
/// replication, one entry per host with endpoints on the overlay).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Flood {
    pub device: String,
    pub vtep: IpAddr,
}

/// How a LAN network's links sit on their parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanKind {
    /// macvlan in bridge mode: a MAC of its own per link.
    Macvlan,
    /// ipvlan in L2 mode: every link has the parent's MAC.
    Ipvlan,
}

impl From<LanKind> for LinkKind {
    fn from(kind: LanKind) -> Self {
        match kind {
            LanKind::Macvlan => Self::Macvlan,
            LanKind::Ipvlan => Self::Ipvlan,
        }
    }
}

/// A network whose containers sit on a parent interface's LAN (macvlan or
/// ipvlan): no bridge, no tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan {
    /// The network's name in conflicts (its record's bridge field).
    pub name: String,
    pub kind: LanKind,
    /// The parent interface, as this host names it.
    pub parent: String,
    /// A VLAN parent rustnet creates (and removes) on `base` when missing.
    pub vlan: Option<Vlan>,
    pub mtu: u32,
    /// The host's own link on the parent, if the network has host access.
    pub shim: Option<Shim>,
    /// Each endpoint's link, which Docker moves into the container.
    pub links: Vec<LanLink>,
}

/// An 802.1Q sub-interface `name` of `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub name: String,
    pub base: String,
    pub id: u16,
}

/// The host's link on a LAN network's parent: its address (a /32 or /128
/// of the pool) and a host route to each of this host's containers, since
/// the parent itself cannot reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shim {
    pub name: String,
    pub address: IpNet,
    pub routes: Vec<IpAddr>,
}

/// An endpoint's link on a LAN network's parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanLink {
    pub name: String,
    /// A macvlan link's MAC (an ipvlan link has the parent's).
    pub mac: Option<[u8; 6]>,
    /// Create it when missing (CreateEndpoint, Join); once Docker moved it
    /// into the container it is no longer seen here, and not re-created.
    pub required: bool,
}

/// Everything this host's networks need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub gateways: Vec<Gateway>,
    pub ports: Vec<Port>,
    pub vxlans: Vec<Vxlan>,
    pub remotes: Vec<Remote>,
    pub floods: Vec<Flood>,
    pub lans: Vec<Lan>,
}

/// A kind of link, as far as the planner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Veth,
    Vxlan,
    Macvlan,
    Ipvlan,
    Vlan,
    Other,
}

/// A link seen in the host's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub kind: LinkKind,
    pub mtu: u32,
    pub up: bool,
    pub master: Option<String>,
    pub addresses: Vec<IpNet>,
    /// Created by this rustnet: its alias is [`crate::owner_alias`] of this
    /// host's data path (or the bare [`crate::OWNER_ALIAS`] of releases
    /// before data path ids).
    pub owned: bool,
    /// Created by rustnet for another data path id: under a state
    /// directory that was lost or replaced since. Never changed or deleted
    /// while it serves containers (see [`crate::plan()`]).
    pub inherited: bool,
    /// The link's own MAC, where it has one.
    pub mac: Option<[u8; 6]>,
}

/// The links of the namespace, by name, and the static FDB and neighbour
/// entries on rustnet's VXLAN devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: BTreeMap<String, Link>,
    /// (device, MAC) -> VTEP, for every MAC but the all-zero one.
    pub fdb: BTreeMap<(String, [u8; 6]), IpAddr>,
    /// The all-zero FDB entries: (device, VTEP).
    pub floods: BTreeSet<(String, IpAddr)>,
    /// (device, IP) -> MAC.
    pub neighbours: BTreeMap<(String, IpAddr), [u8; 6]>,
    /// Host routes (a /32 or /128) on rustnet's shims: (device, IP).
    pub routes: BTreeSet<(String, IpAddr)>,
    /// rustnet's VXLAN devices that have their gateway guard.
    pub guarded: BTreeSet<String>,
}

/// One kernel change. The executor performs them in order, deciding nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    CreateBridge {
        name: String,
        mtu: u32,
    },
    CreateVeth {
        host: String,
        peer: String,
        mtu: u32,
        mac: [u8; 6],
    },
    CreateVxlan {
        name: String,
        vni: u32,
        local: IpAddr,
        port: u16,
        mtu: u32,
    },
    AddFdb {
        device: String,
        mac: [u8; 6],
        vtep: IpAddr,
    },
    DelFdb {
        device: String,
        mac: [u8; 6],
        vtep: IpAddr,
    },
    /// Appends `vtep` to the device's all-zero FDB entry.
    AddFlood {
        device: String,
        vtep: IpAddr,
    },
    DelFlood {
        device: String,
        vtep: IpAddr,
    },
    AddNeighbour {
        device: String,
        ip: IpAddr,
        mac: [u8; 6],
    },
    DelNeighbour {
        device: String,
        ip: IpAddr,
        mac: [u8; 6],
    },
    SetMtu {
        link: String,
        mtu: u32,
    },
    SetMaster {
        link: String,
        master: String,
    },
    SetMac {
        link: String,
        mac: [u8; 6],
    },
    AddAddress {
        link: String,
        address: IpNet,
    },
    SetUp {
        link: String,
    },
    DeleteLink {
        name: String,
    },
    /// A macvlan (bridge mode) or ipvlan (L2) link on `parent`, down.
    CreateLan {
        name: String,
        kind: LanKind,
        parent: String,
        mac: Option<[u8; 6]>,
        mtu: u32,
    },
    CreateVlan {
        name: String,
        base: String,
        id: u16,
    },
    /// Puts the gateway guard on VXLAN device `device`: a filter on its
    /// egress that drops every frame from a MAC starting with `prefix`.
    GuardVxlan {
        device: String,
        prefix: [u8; 3],
    },
    AddRoute {
        device: String,
        ip: IpAddr,
    },
    DelRoute {
        device: String,
        ip: IpAddr,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateBridge { name, mtu } => write!(f, "create bridge {name} mtu {mtu}"),
            Self::CreateVxlan {
                name,
                vni,
                local,
                port,
                mtu,
            } => {
                write!(
                    f,
                    "create vxlan {name} vni {vni} local {local} port {port} mtu {mtu}"
                )
            }
            Self::AddFdb { device, mac, vtep } => {
                write!(f, "add fdb {} dst {vtep} on {device}", mac_text(mac))
            }
            Self::DelFdb { device, mac, vtep } => {
                write!(f, "delete fdb {} dst {vtep} on {device}", mac_text(mac))
            }
            Self::AddFlood { device, vtep } => write!(f, "add flood to {vtep} on {device}"),
            Self::DelFlood { device, vtep } => write!(f, "delete flood to {vtep} on {device}"),
            Self::AddNeighbour { device, ip, mac } => {
                write!(f, "add neighbour {ip} lladdr {} on {device}", mac_text(mac))
            }
            Self::DelNeighbour { device, ip, mac } => {
                write!(
                    f,
                    "delete neighbour {ip} lladdr {} on {device}",
                    mac_text(mac)
                )
            }
            Self::CreateVeth {
                host, peer, mtu, ..
            } => write!(f, "create veth {host}/{peer} mtu {mtu}"),
            Self::SetMtu { link, mtu } => write!(f, "set {link} mtu {mtu}"),
            Self::SetMaster { link, master } => write!(f, "set {link} master {master}"),
            Self::SetMac { link, mac } => write!(f, "set {link} address {}", mac_text(mac)),
            Self::AddAddress { link, address } => write!(f, "add {address} to {link}"),
            Self::SetUp { link } => write!(f, "set {link} up"),
            Self::DeleteLink { name } => write!(f, "delete {name}"),
            Self::CreateLan {
                name,
                kind,
                parent,
                mtu,
                ..
            } => {
                let kind = match kind {
                    LanKind::Macvlan => "macvlan",
                    LanKind::Ipvlan => "ipvlan",
                };
                write!(f, "create {kind} {name} on {parent} mtu {mtu}")
            }
            Self::CreateVlan { name, base, id } => {
                write!(f, "create vlan {name} id {id} on {base}")
            }
            Self::GuardVxlan { device, prefix } => {
                let [a, b, c] = prefix;
                write!(f, "guard {device} against {a:02x}:{b:02x}:{c:02x}")
            }
            Self::AddRoute { device, ip } => write!(f, "add route {ip} dev {device}"),
            Self::DelRoute { device, ip } => write!(f, "delete route {ip} dev {device}"),
        }
    }
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
