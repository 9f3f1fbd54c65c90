//! The network and endpoint tables: what Docker created through rustnet's
//! network driver, kept in the replicated state because Docker never
//! replays CreateNetwork after a restart (moby controller.go).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::HostId;

/// How a network reaches its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// A Linux bridge on one host.
    Bridge,
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
    /// The container interface's MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Published ports, active while the endpoint is joined.
    pub ports: Vec<PortBinding>,
    /// Between Join and Leave: the container is running on it.
    pub joined: bool,
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
}

/// The tables, changed only through [`crate::State::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tables {
    networks: BTreeMap<String, Network>,
    endpoints: BTreeMap<String, Endpoint>,
}

impl Tables {
    /// Every network of `host`.
    pub fn networks_of(&self, host: HostId) -> impl Iterator<Item = &Network> {
        self.networks.values().filter(move |n| n.host == host)
    }

    pub fn network(&self, id: &str) -> Option<&Network> {
        self.networks.get(id)
    }

    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.get(id)
    }

    /// Every endpoint of network `id`.
    pub fn endpoints_of<'a>(&'a self, network_id: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints
            .values()
            .filter(move |e| e.network_id == network_id)
    }

    /// Records a network; the same request again is a no-op.
    pub(crate) fn create_network(&mut self, network: &Network) -> Result<(), NetworkError> {
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

    /// Forgets a network and its endpoints. Docker deletes its own record
    /// whatever the driver answers, so this always succeeds.
    pub(crate) fn delete_network(&mut self, host: HostId, id: &str) {
        if self.networks.get(id).is_some_and(|n| n.host == host) {
            self.networks.remove(id);
            self.endpoints.retain(|_, e| e.network_id != id);
        }
    }

    /// Records an endpoint; the same request again is a no-op.
    pub(crate) fn create_endpoint(&mut self, endpoint: &Endpoint) -> Result<(), NetworkError> {
        match self.networks.get(&endpoint.network_id) {
            Some(n) if n.host == endpoint.host => {}
            _ => {
                return Err(NetworkError::UnknownNetwork {
                    id: endpoint.network_id.clone(),
                });
            }
        }
        if let Some(existing) = self.endpoints.get(&endpoint.id) {
            return if existing == endpoint {
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

    /// Drops every network and endpoint of `host`.
    pub(crate) fn forget(&mut self, host: HostId) {
        self.networks.retain(|_, n| n.host != host);
        self.endpoints.retain(|_, e| e.host != host);
    }

    pub(crate) fn delete_endpoint(&mut self, host: HostId, id: &str) {
        if self.endpoints.get(id).is_some_and(|e| e.host == host) {
            self.endpoints.remove(id);
        }
    }

    /// Marks an endpoint joined (with its published ports) or left.
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
            id: id.into(),
            host: 1,
            mode: Mode::Bridge,
            bridge: bridge.into(),
            subnet: Some("10.0.42.0/24".parse().unwrap()),
            gateway: Some("10.0.42.1/24".parse().unwrap()),
            subnet6: None,
            gateway6: None,
            mtu: 1500,
            internal: false,
        }
    }

    fn endpoint(id: &str, network_id: &str) -> Endpoint {
        Endpoint {
            id: id.into(),
            network_id: network_id.into(),
            host: 1,
            address: Some("10.0.42.2/24".parse().unwrap()),
            address6: None,
            mac: "02:00:00:00:00:01".into(),
            ports: vec![],
            joined: false,
        }
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
}
