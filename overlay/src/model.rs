//! What the planner reasons about: wanted links, seen links, operations.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;

/// A Linux bridge a network needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub name: String,
    /// The gateway addresses, with the subnet's prefix.
    pub addresses: Vec<IpNet>,
    pub mtu: u32,
}

/// A veth pair of an endpoint: `host` stays on the bridge, `peer` is what
/// Docker moves into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    pub host: String,
    pub peer: String,
    pub bridge: String,
    pub mtu: u32,
    pub mac: [u8; 6],
    /// Create it when missing (CreateEndpoint, Join). An endpoint whose
    /// pair is gone (after a reboot) is not re-created behind Docker's back.
    pub required: bool,
}

/// Everything this host's networks need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub bridges: Vec<Bridge>,
    pub veths: Vec<Veth>,
}

/// A kind of link, as far as the planner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    Veth,
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
    /// Created by rustnet (carries [`crate::OWNER_ALIAS`]).
    pub owned: bool,
}

/// The links of the namespace, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub links: BTreeMap<String, Link>,
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
    SetMtu {
        link: String,
        mtu: u32,
    },
    SetMaster {
        link: String,
        master: String,
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
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CreateBridge { name, mtu } => write!(f, "create bridge {name} mtu {mtu}"),
            Self::CreateVeth {
                host, peer, mtu, ..
            } => write!(f, "create veth {host}/{peer} mtu {mtu}"),
            Self::SetMtu { link, mtu } => write!(f, "set {link} mtu {mtu}"),
            Self::SetMaster { link, master } => write!(f, "set {link} master {master}"),
            Self::AddAddress { link, address } => write!(f, "add {address} to {link}"),
            Self::SetUp { link } => write!(f, "set {link} up"),
            Self::DeleteLink { name } => write!(f, "delete {name}"),
        }
    }
}
