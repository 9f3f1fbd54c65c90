//! rustnet's macvlan and ipvlan networks on this host, purely from the
//! tables: which interface each uses as its parent here, and the links the
//! kernel should hold for them.
//!
//! ```text
//!   parent (eth0, or eth0.50 made by rustnet)
//!     ├── rnm<endpoint>   one per container, moved into it by Docker
//!     └── rns<network>    the host shim: a pool address (/32) and a host
//!                         route to each of this host's containers, which
//!                         the parent itself cannot reach; the containers'
//!                         name queries come to rustnet's resolver through it
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use rustnet_ipam::{Endpoint, Mode, Network, State};
use rustnet_overlay::{Lan, LanKind, LanLink, Shim, Vlan};

use crate::naming::lan_link_name;

/// The longest interface name Linux takes.
const MAX_NAME: usize = 15;

/// `RUSTNET_PARENTS`: this host's interface for a parent the networks name
/// otherwise (`eth0=ens5,eth1=ens6`), for hosts whose LAN interfaces are
/// named differently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Parents(BTreeMap<String, String>);

impl Parents {
    /// This host's interface for the network's `parent`: mapped by its
    /// whole name, else by its VLAN base (`eth0.50` with `eth0=ens5` is
    /// `ens5.50`), else the name itself.
    pub(crate) fn local(&self, parent: &str) -> String {
        if let Some(mapped) = self.0.get(parent) {
            return mapped.clone();
        }
        match parent.split_once('.') {
            Some((base, id)) if self.0.contains_key(base) => format!("{}.{id}", self.0[base]),
            _ => parent.to_owned(),
        }
    }
}

impl FromStr for Parents {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((name, local)) = item.split_once('=') else {
                return Err(format!("{item:?}: expected NAME=IFACE"));
            };
            for part in [name, local] {
                interface_name(part).map_err(|why| format!("{item:?}: {why}"))?;
            }
            map.insert(name.to_owned(), local.to_owned());
        }
        Ok(Self(map))
    }
}

impl fmt::Display for Parents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&items.join(","))
    }
}

/// Checks that `name` can be a Linux interface's name.
pub(crate) fn interface_name(name: &str) -> Result<(), String> {
    let bad = |c: char| c == '/' || c == ':' || c.is_whitespace();
    if name.is_empty() || name.len() > MAX_NAME || name.contains(bad) || name == "." {
        return Err(format!(
            "{name:?} is not an interface name (1 to {MAX_NAME} characters, no '/', ':' or spaces)"
        ));
    }
    Ok(())
}

/// The VLAN a parent named `base.id` is (an id from 1 to 4094), which
/// rustnet creates on `base` when it is missing.
pub(crate) fn vlan_of(parent: &str) -> Option<Vlan> {
    let (base, id) = parent.rsplit_once('.')?;
    let id: u16 = id.parse().ok().filter(|id| (1..=4094).contains(id))?;
    (!base.is_empty()).then(|| Vlan {
        name: parent.to_owned(),
        base: base.to_owned(),
        id,
    })
}

/// What this host's kernel should hold for its LAN `network`: the parent
/// (a VLAN rustnet makes where it is one), a link per endpoint (created
/// only for `required` ones: Docker moves it into the container), and the
/// shim with a route to each container, with host access.
pub(crate) fn desired(
    state: &State,
    network: &Network,
    endpoints: &[&Endpoint],
    required: &[&str],
    parents: &Parents,
) -> Lan {
    let parent = parents.local(network.parent.as_deref().unwrap_or_default());
    let kind = match network.mode {
        Mode::Ipvlan => LanKind::Ipvlan,
        _ => LanKind::Macvlan,
    };
    let shim = shim_address(state, network).map(|address| Shim {
        name: network.bridge.clone(),
        address: IpNet::from(address),
        routes: endpoints
            .iter()
            .flat_map(|e| {
                e.ipv4()
                    .map(IpAddr::V4)
                    .into_iter()
                    .chain(e.ipv6().map(IpAddr::V6))
            })
            .collect(),
    });
    Lan {
        name: network.bridge.clone(),
        kind,
        vlan: vlan_of(&parent),
        parent,
        mtu: network.mtu,
        shim,
        links: endpoints
            .iter()
            .map(|e| LanLink {
                name: lan_link_name(&e.id),
                mac: (kind == LanKind::Macvlan).then(|| e.mac.octets()),
                required: required.contains(&e.id.as_str()),
            })
            .collect(),
    }
}

/// The address of this host's shim on `network`, where it has host access.
pub(crate) fn shim_address(state: &State, network: &Network) -> Option<IpAddr> {
    let subnet = network.subnet.filter(|_| network.host_access)?;
    state.shim_of(network.host, subnet)
}

#[cfg(test)]
mod tests {
    use rustnet_ipam::{Command, Mac};

    use super::*;

    #[test]
    fn parents_map_whole_names_and_vlan_bases() {
        let parents: Parents = "eth0=ens5, lan=ens6.7".parse().unwrap();
        assert_eq!(parents.local("eth0"), "ens5");
        assert_eq!(parents.local("eth0.50"), "ens5.50");
        assert_eq!(parents.local("lan"), "ens6.7");
        assert_eq!(parents.local("eth1"), "eth1");
        assert_eq!(parents.to_string(), "eth0=ens5,lan=ens6.7");
        assert_eq!("".parse::<Parents>().unwrap(), Parents::default());
        assert_eq!(
            "eth0".parse::<Parents>().unwrap_err(),
            "\"eth0\": expected NAME=IFACE"
        );
        assert!("eth0=a/b".parse::<Parents>().is_err());
        assert!("eth0=sixteen-chars-xx".parse::<Parents>().is_err());
    }

    #[test]
    fn a_dotted_parent_with_a_vlan_id_is_a_vlan() {
        assert_eq!(
            vlan_of("eth0.50"),
            Some(Vlan {
                name: "eth0.50".into(),
                base: "eth0".into(),
                id: 50
            })
        );
        for plain in ["eth0", "eth0.0", "eth0.4095", ".50", "eth0.x"] {
            assert_eq!(vlan_of(plain), None, "{plain}");
        }
    }

    #[test]
    fn a_lan_network_has_a_link_per_endpoint_and_a_shim_routing_to_them() {
        let mut state = State::default();
        let subnet = "192.168.50.0/24";
        state
            .apply(&Command::RequestPool {
                host: 1,
                pool: subnet.parse().ok(),
                range: None,
                v6: false,
                defaults: vec![],
            })
            .unwrap();
        let network = Network {
            bridge: "rnsnet1".into(),
            ..rustnet_ipam_core::fixture::macvlan("net1", 1, subnet)
        };
        state
            .apply(&Command::CreateNetwork(network.clone()))
            .unwrap();
        let endpoint = Endpoint {
            address: "192.168.50.9/24".parse().ok(),
            mac: Mac([2, 0, 0, 0, 0, 9]),
            ..rustnet_ipam_core::fixture::endpoint("ep1", "net1", 1)
        };
        let parents: Parents = "eth0=ens5".parse().unwrap();
        let lan = desired(&state, &network, &[&endpoint], &["ep1"], &parents);
        assert_eq!(lan.parent, "ens5");
        assert_eq!(lan.vlan, None);
        assert_eq!(
            lan.shim,
            Some(Shim {
                name: "rnsnet1".into(),
                address: "192.168.50.1/32".parse().unwrap(),
                routes: vec!["192.168.50.9".parse().unwrap()],
            })
        );
        assert_eq!(
            lan.links,
            vec![LanLink {
                name: "rnmep1".into(),
                mac: Some([2, 0, 0, 0, 0, 9]),
                required: true,
            }]
        );
        // ipvlan links keep the parent's MAC; no host access, no shim.
        let ipvlan = Network {
            mode: Mode::Ipvlan,
            host_access: false,
            ..network
        };
        let lan = desired(&state, &ipvlan, &[&endpoint], &[], &Parents::default());
        assert_eq!((lan.kind, lan.shim), (LanKind::Ipvlan, None));
        assert_eq!(lan.links[0].mac, None);
        assert!(!lan.links[0].required);
    }
}
