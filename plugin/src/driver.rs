//! The network driver's service: Docker's network calls as replicated
//! table changes, followed by a reconcile of this host's data path.
//!
//! ```text
//!   CreateNetwork/CreateEndpoint/Join/Leave/Delete*
//!        │ 1. write the tables (Raft)
//!        ▼
//!   host_view(tables) ─► Desired links + firewall networks
//!        │ 2. under one lock per host
//!        ▼
//!   DataPlane::apply (plan ─► netlink ops, iptables-restore)
//! ```
//!
//! A request that fails after step 1 undoes its table change, so no half-
//! built state stays behind.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use rustnet_ipam::{Command, Endpoint, HostId, Mode, Network, PortBinding, Proto, State};
use rustnet_overlay::firewall::{Network as FirewallNetwork, Published, VxlanIngress};
use rustnet_overlay::{Bridge, Desired, Remote, Veth, Vxlan};

use crate::error::ApiError;
use crate::service::Service;

/// Default MTU of a bridge network, as Docker's bridge driver.
pub const DEFAULT_MTU: u32 = 1500;
/// Outer Ethernet, IP, UDP and VXLAN headers.
pub const VXLAN_OVERHEAD: u32 = 50;

/// CreateNetwork, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
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
}

/// CreateEndpoint, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRequest {
    pub network_id: String,
    pub id: String,
    pub address: Option<IpNet>,
    pub address6: Option<IpNet>,
    /// The MAC Docker chose, if any; otherwise rustnet picks one.
    pub mac: Option<[u8; 6]>,
    pub ports: Vec<PortBinding>,
}

/// What Join answers: the interface to move and the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub interface: String,
    pub gateway: Option<IpAddr>,
    pub gateway6: Option<IpAddr>,
}

/// The bridge name of a network without com.docker.network.bridge.name.
pub fn bridge_name(network_id: &str) -> String {
    format!("rn-{}", short(network_id))
}

/// The host and container ends of an endpoint's veth pair.
pub fn veth_names(endpoint_id: &str) -> (String, String) {
    let id = short(endpoint_id);
    (format!("rnh{id}"), format!("rnc{id}"))
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// A random, locally administered, unicast MAC: not derived from the IP,
/// so a reused address never meets a stale neighbour entry.
pub fn random_mac() -> [u8; 6] {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// Where this host's VXLAN traffic goes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underlay {
    pub vtep: Option<Ipv4Addr>,
    pub port: u16,
}

/// What this host's kernel should hold for `state`: a bridge per network,
/// a VXLAN port per overlay with a static entry for every endpoint on the
/// other hosts, a veth pair per endpoint (created only for `required`
/// endpoints), and the firewall view of every network.
pub fn host_view(
    state: &State,
    host: HostId,
    required: &[&str],
    underlay: Underlay,
) -> (Desired, Vec<FirewallNetwork>) {
    let tables = state.tables();
    let mut desired = Desired::default();
    let mut firewall = Vec::new();
    for network in tables.networks_of(host) {
        let overlay = network.mode == Mode::Overlay;
        desired.bridges.push(Bridge {
            name: network.bridge.clone(),
            // An overlay's gateway is not used (egress is docker_gwbridge).
            addresses: if overlay {
                Vec::new()
            } else {
                network
                    .gateway
                    .iter()
                    .chain(&network.gateway6)
                    .copied()
                    .collect()
            },
            mtu: network.mtu,
        });
        if let (Some(key), Some(vni), Some(local)) = (&network.overlay, network.vni, underlay.vtep)
        {
            let device = vxlan_name(vni);
            desired.vxlans.push(Vxlan {
                name: device.clone(),
                vni,
                local,
                port: underlay.port,
                mtu: network.mtu,
                bridge: network.bridge.clone(),
            });
            desired.remotes.extend(remotes(state, host, key, &device));
        }
        let endpoints: Vec<&Endpoint> = tables.endpoints_of(&network.id).collect();
        for endpoint in &endpoints {
            let (host_end, peer) = veth_names(&endpoint.id);
            desired.veths.push(Veth {
                host: host_end,
                peer,
                bridge: network.bridge.clone(),
                mtu: network.mtu,
                mac: parse_mac(&endpoint.mac).unwrap_or_default(),
                required: required.contains(&endpoint.id.as_str()),
            });
        }
        if let Some(IpNet::V4(subnet)) = network.subnet {
            firewall.push(FirewallNetwork {
                bridge: network.bridge.clone(),
                subnet,
                // An overlay routes nothing itself: only traffic within it.
                internal: network.internal || overlay,
                published: endpoints
                    .iter()
                    .filter(|e| e.joined)
                    .flat_map(|e| published(e))
                    .collect(),
            });
        }
    }
    (desired, firewall)
}

/// The VXLAN device of VNI `vni`.
pub fn vxlan_name(vni: u32) -> String {
    format!("rnx{vni}")
}

/// Every endpoint of overlay `key` on the other hosts, behind their VTEPs.
fn remotes(state: &State, host: HostId, key: &str, device: &str) -> Vec<Remote> {
    let tables = state.tables();
    tables
        .bound_to(key)
        .filter(|n| n.host != host)
        .flat_map(|n| tables.endpoints_of(&n.id))
        .filter_map(|e| {
            let Some(IpAddr::V4(vtep)) = state.vtep(e.host) else {
                return None;
            };
            let Some(IpNet::V4(ip)) = e.address else {
                return None;
            };
            Some(Remote {
                device: device.to_owned(),
                mac: parse_mac(&e.mac)?,
                ip: ip.addr(),
                vtep,
            })
        })
        .collect()
}

fn published(endpoint: &Endpoint) -> Vec<Published> {
    let Some(IpNet::V4(address)) = endpoint.address else {
        return Vec::new();
    };
    endpoint
        .ports
        .iter()
        .map(|p| Published {
            proto: p.proto.to_string(),
            host_ip: match p.host_ip {
                Some(IpAddr::V4(ip)) => Some(ip),
                _ => None,
            },
            host_port: p.host_port,
            container_ip: address.addr(),
            container_port: p.container_port,
        })
        .collect()
}

impl Service {
    pub async fn create_network(&self, request: NetworkRequest) -> Result<(), ApiError> {
        let store = self.store().await?;
        let overlay = match request.mode {
            Mode::Bridge => None,
            Mode::Overlay => Some(
                request
                    .overlay
                    .clone()
                    .or_else(|| request.subnet.map(|s| s.to_string()))
                    .ok_or_else(|| {
                        ApiError::Unsupported("an overlay network needs an IPv4 subnet".to_owned())
                    })?,
            ),
        };
        let network = Network {
            bridge: request
                .bridge
                .clone()
                .unwrap_or_else(|| bridge_name(&request.id)),
            mtu: self.mtu_for(&request).await,
            id: request.id,
            host: store.id(),
            mode: request.mode,
            subnet: request.subnet,
            gateway: request.gateway,
            subnet6: request.subnet6,
            gateway6: request.gateway6,
            internal: request.internal,
            overlay,
            vni: request.vni,
        };
        let id = network.id.clone();
        store.write(Command::CreateNetwork(network)).await??;
        if let Err(e) = self.reconcile(&[]).await {
            self.undo(Command::DeleteNetwork {
                host: store.id(),
                id,
            })
            .await;
            return Err(e);
        }
        Ok(())
    }

    /// `-o com.docker.network.driver.mtu`, else RUSTNET_MTU, else 1500 for
    /// a bridge and the underlay's MTU (as it is now) minus VXLAN's 50 for
    /// an overlay.
    async fn mtu_for(&self, request: &NetworkRequest) -> u32 {
        if let Some(mtu) = request.mtu.or(self.settings().mtu) {
            return mtu;
        }
        match (request.mode, self.settings().vtep) {
            (Mode::Overlay, Some(vtep)) => {
                let underlay = self.dataplane().mtu_of(IpAddr::V4(vtep)).await;
                underlay
                    .unwrap_or(DEFAULT_MTU)
                    .saturating_sub(VXLAN_OVERHEAD)
            }
            (Mode::Overlay, None) => DEFAULT_MTU - VXLAN_OVERHEAD,
            (Mode::Bridge, _) => DEFAULT_MTU,
        }
    }

    pub async fn delete_network(&self, id: String) -> Result<(), ApiError> {
        let store = self.store().await?;
        store
            .write(Command::DeleteNetwork {
                host: store.id(),
                id,
            })
            .await??;
        self.reconcile(&[]).await
    }

    /// Records the endpoint and builds its veth pair; returns the MAC when
    /// rustnet chose it.
    pub async fn create_endpoint(
        &self,
        request: EndpointRequest,
    ) -> Result<Option<String>, ApiError> {
        let store = self.store().await?;
        let chosen = request.mac.is_none();
        let endpoint = Endpoint {
            id: request.id.clone(),
            network_id: request.network_id,
            host: store.id(),
            address: request.address,
            address6: request.address6,
            mac: format_mac(request.mac.unwrap_or_else(random_mac)),
            ports: request.ports,
            joined: false,
        };
        let mac = endpoint.mac.clone();
        store.write(Command::CreateEndpoint(endpoint)).await??;
        if let Err(e) = self.reconcile(&[&request.id]).await {
            let id = request.id;
            self.undo(Command::DeleteEndpoint {
                host: store.id(),
                id,
            })
            .await;
            return Err(e);
        }
        Ok(chosen.then_some(mac))
    }

    pub async fn delete_endpoint(&self, id: String) -> Result<(), ApiError> {
        let store = self.store().await?;
        store
            .write(Command::DeleteEndpoint {
                host: store.id(),
                id,
            })
            .await??;
        self.reconcile(&[]).await
    }

    /// Marks the endpoint joined, publishes its ports, and rebuilds whatever
    /// is missing (a bridge gone after a reboot).
    pub async fn join(
        &self,
        endpoint_id: String,
        ports: Vec<PortBinding>,
    ) -> Result<Joined, ApiError> {
        let store = self.store().await?;
        let (endpoint, network) = store
            .read(|s| {
                let endpoint = s.tables().endpoint(&endpoint_id).cloned();
                let network = endpoint
                    .as_ref()
                    .and_then(|e| s.tables().network(&e.network_id).cloned());
                (endpoint, network)
            })
            .await?;
        let (Some(endpoint), Some(network)) = (endpoint, network) else {
            return Err(rustnet_ipam::NetworkError::UnknownEndpoint { id: endpoint_id }.into());
        };
        // Docker sends the ports again with Join; older calls may not.
        let ports = match (network.internal, ports.is_empty()) {
            (true, _) => Vec::new(),
            (false, true) => endpoint.ports.clone(),
            (false, false) => ports,
        };
        let id = endpoint.id.clone();
        store
            .write(Command::SetJoined {
                host: store.id(),
                id: id.clone(),
                ports: Some(ports),
            })
            .await??;
        if let Err(e) = self.reconcile(&[&id]).await {
            self.undo(Command::SetJoined {
                host: store.id(),
                id,
                ports: None,
            })
            .await;
            return Err(e);
        }
        // An overlay answers without a gateway: Docker then attaches the
        // container to docker_gwbridge for egress and -p.
        let routed = !network.internal && network.mode == Mode::Bridge;
        let gateway = |g: Option<IpNet>| g.filter(|_| routed).map(|g| g.addr());
        Ok(Joined {
            interface: veth_names(&endpoint.id).1,
            gateway: gateway(network.gateway),
            gateway6: gateway(network.gateway6),
        })
    }

    pub async fn leave(&self, endpoint_id: String) -> Result<(), ApiError> {
        let store = self.store().await?;
        let command = Command::SetJoined {
            host: store.id(),
            id: endpoint_id,
            ports: None,
        };
        store.write(command).await??;
        self.reconcile(&[]).await
    }

    /// Makes this host's kernel match the tables; one reconcile at a time.
    pub async fn reconcile(&self, required: &[&str]) -> Result<(), ApiError> {
        let _guard = self.datapath_lock().await;
        let store = self.store().await?;
        let host = store.id();
        let underlay = self.underlay();
        let port = underlay.port;
        let (desired, firewall, ingress) = store
            .read(|s| {
                let (desired, firewall) = host_view(s, host, required, underlay);
                (desired, firewall, vxlan_ingress(s, host, port))
            })
            .await?;
        self.dataplane().apply(desired, firewall).await?;
        self.dataplane().vxlan_ingress(ingress).await?;
        Ok(())
    }

    /// Reverts a table change after a failed request; reported, not raised.
    async fn undo(&self, command: Command) {
        let result = match self.store().await {
            Ok(store) => store.write(command).await.map(drop).map_err(ApiError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result.and(self.reconcile(&[]).await) {
            tracing::error!(error = %e, "undo after a failed request");
        }
    }
}

/// Who may send VXLAN to `host`: every member's underlay address, while
/// the host has an overlay network; `None` otherwise (pure).
pub fn vxlan_ingress(state: &State, host: HostId, port: u16) -> Option<VxlanIngress> {
    let has_overlay = state
        .tables()
        .networks_of(host)
        .any(|n| n.mode == Mode::Overlay);
    has_overlay.then(|| VxlanIngress {
        port,
        members: state
            .vteps()
            .filter_map(|a| match a {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .collect(),
    })
}

/// Docker's protocol numbers (moby libnetwork/types).
pub fn proto(number: u64) -> Option<Proto> {
    match number {
        6 => Some(Proto::Tcp),
        17 => Some(Proto::Udp),
        132 => Some(Proto::Sctp),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
