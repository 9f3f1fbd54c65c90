//! The network driver: Docker's network calls as replicated table changes,
//! followed by a reconcile of this host's data path.
//!
//! ```text
//!   CreateNetwork/CreateEndpoint/Join/Leave/Delete*
//!        │ 1. write the tables (Raft)
//!        ▼
//!   Service::reconcile ─► host_view(tables) ─► DataPath (one pass at a time)
//! ```
//!
//! A request that fails after step 1 undoes its table change, so no half-
//! built state stays behind.

use ipnet::IpNet;
use rustnet_ipam::{Command, Endpoint, Mac, Mode, Network, PortBinding};

use crate::encryption::{KEY_NOT_PUBLISHED, tunnel_mtu};
use crate::error::ApiError;
use crate::naming::{bridge_name, lan_link_name, shim_name, veth_names};
use crate::request::{EndpointRequest, Joined, NetworkRequest};
use crate::service::Service;
use crate::store::Replicated;

/// Default MTU of a bridge network, as Docker's bridge driver.
pub(crate) const DEFAULT_MTU: u32 = 1500;
/// Outer Ethernet, IPv4, UDP and VXLAN headers.
pub(crate) const VXLAN_OVERHEAD: u32 = 50;
/// The same over an IPv6 underlay (its header is 20 bytes longer).
pub(crate) const VXLAN6_OVERHEAD: u32 = 70;

/// The network-driver calls, on `service`'s store and data path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Driver<'a> {
    service: &'a Service,
}

impl<'a> Driver<'a> {
    pub(crate) fn new(service: &'a Service) -> Self {
        Self { service }
    }

    pub(crate) async fn create_network(&self, request: NetworkRequest) -> Result<(), ApiError> {
        let store = self.service.store().await?;
        let overlay = match request.mode {
            Mode::Bridge => None,
            mode => Some(
                request
                    .overlay
                    .clone()
                    .or_else(|| request.subnet.or(request.subnet6).map(|s| s.to_string()))
                    .ok_or_else(|| {
                        ApiError::Unsupported(format!("mode={mode} needs a subnet (--subnet)"))
                    })?,
            ),
        };
        if request.encrypted {
            self.check_encryption(store.as_ref()).await?;
        }
        if let Some(parent) = &request.parent {
            self.check_parent(store.as_ref(), &request, parent)?;
        }
        let lan = request.mode.is_lan();
        let network = Network {
            bridge: match (&request.bridge, lan) {
                (_, true) => shim_name(&request.id),
                (Some(bridge), false) => bridge.clone(),
                (None, false) => bridge_name(&request.id),
            },
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
            multicast: request.multicast,
            encrypted: request.encrypted,
            parent: request.parent,
            host_access: request.host_access,
        };
        let (id, bridge) = (network.id.clone(), network.bridge.clone());
        store.write(Command::CreateNetwork(network)).await?;
        if let Err(e) = self.build(&bridge, &[]).await {
            // Which host a propagated network failed on is not obvious.
            let e = match lan {
                true => {
                    let host = store.id();
                    let name = store.local(|s| s.host_name(host)).unwrap_or_default();
                    ApiError::Unsupported(format!("on host {name}: {e}"))
                }
                false => e,
            };
            // Only this host's record: a fault here must not remove an
            // overlay that works on the other hosts.
            self.undo(Command::ForgetNetwork {
                host: store.id(),
                id,
            })
            .await;
            return Err(e);
        }
        Ok(())
    }

    /// Refuses an encrypted overlay on a host whose tunnel cannot run or
    /// whose key the cluster does not have yet: it would not come up here.
    async fn check_encryption(&self, store: &dyn Replicated) -> Result<(), ApiError> {
        let refused = |why: String| {
            ApiError::Unsupported(format!(
                "an encrypted overlay cannot come up on this host: {why}"
            ))
        };
        self.service.tunnel(store, true).await.map_err(refused)?;
        let host = store.id();
        let ours = self.service.encryption().map(|e| e.public_key());
        let published = store
            .local(|s| s.tunnel_key(host).map(|k| k.key.clone()))
            .flatten();
        // A key being replaced (rotate-key under way) is not ours yet.
        if published != ours {
            return Err(refused(KEY_NOT_PUBLISHED.to_owned()));
        }
        Ok(())
    }

    /// Refuses a LAN network on a parent this host already gives another
    /// LAN network of the same mode (a different one of the cluster).
    fn check_parent(
        &self,
        store: &dyn Replicated,
        request: &NetworkRequest,
        parent: &str,
    ) -> Result<(), ApiError> {
        let parents = &self.service.settings().parents;
        let local = parents.local(parent);
        let host = store.id();
        let key = request
            .overlay
            .clone()
            .or_else(|| request.subnet.map(|s| s.to_string()));
        let taken = store
            .local(|s| {
                let tables = s.tables();
                let other = tables.networks_of(host).find(|n| {
                    n.mode == request.mode
                        && n.overlay != key
                        && n.parent.as_deref().map(|p| parents.local(p)).as_deref()
                            == Some(local.as_str())
                })?;
                let name = other
                    .overlay
                    .as_deref()
                    .and_then(|k| tables.overlay(k))
                    .and_then(|o| o.name.clone())
                    .or_else(|| other.overlay.clone())
                    .unwrap_or_else(|| other.id.clone());
                Some((name, s.host_name(host)))
            })
            .flatten();
        match taken {
            Some((name, host)) => Err(ApiError::Unsupported(format!(
                "on host {host}: parent interface {local} is already used by {} network {name}",
                request.mode
            ))),
            None => Ok(()),
        }
    }

    /// Reconciles, and fails if the network of `bridge` could not be built
    /// on this host (the other networks were).
    async fn build(&self, bridge: &str, required: &[&str]) -> Result<(), ApiError> {
        let report = self.service.reconcile(required).await?;
        match report.conflict(bridge) {
            Some(conflict) => Err(rustnet_overlay::Error::Plan(conflict.clone()).into()),
            None => Ok(()),
        }
    }

    /// `-o com.docker.network.driver.mtu`, else RUSTNET_MTU, else 1500 for
    /// a bridge and the underlay's MTU (as it is now) minus VXLAN's 50 for
    /// an overlay (70 over an IPv6 underlay), and WireGuard's 60 more for
    /// an encrypted one (80 over IPv6).
    async fn mtu_for(&self, request: &NetworkRequest) -> u32 {
        if let Some(mtu) = request.mtu.or(self.service.settings().mtu) {
            return mtu;
        }
        match (request.mode, self.service.settings().vtep) {
            (Mode::Overlay, Some(vtep)) => {
                let underlay = self.service.datapath().mtu_of(vtep).await;
                let underlay = underlay.unwrap_or(DEFAULT_MTU);
                if request.encrypted {
                    // IPv4 VXLAN inside WireGuard over the underlay.
                    return tunnel_mtu(underlay, vtep).saturating_sub(VXLAN_OVERHEAD);
                }
                let overhead = if vtep.is_ipv6() {
                    VXLAN6_OVERHEAD
                } else {
                    VXLAN_OVERHEAD
                };
                underlay.saturating_sub(overhead)
            }
            (Mode::Overlay, None) => DEFAULT_MTU - VXLAN_OVERHEAD,
            (Mode::Bridge, _) => DEFAULT_MTU,
            // The parent's (its VLAN base's, for a VLAN rustnet makes).
            (Mode::Macvlan | Mode::Ipvlan, _) => {
                let parents = &self.service.settings().parents;
                let parent = parents.local(request.parent.as_deref().unwrap_or_default());
                let datapath = self.service.datapath();
                let base = crate::lan::vlan_of(&parent).map(|v| v.base);
                match datapath.link_mtu(&parent).await {
                    Some(mtu) => mtu,
                    None => match base {
                        Some(base) => datapath.link_mtu(&base).await.unwrap_or(DEFAULT_MTU),
                        None => DEFAULT_MTU,
                    },
                }
            }
        }
    }

    pub(crate) async fn delete_network(&self, id: String) -> Result<(), ApiError> {
        let store = self.service.store().await?;
        store
            .write(Command::DeleteNetwork {
                host: store.id(),
                id,
            })
            .await?;
        self.service.reconcile(&[]).await.map(drop)
    }

    /// Records the endpoint and builds its veth pair; returns the MAC when
    /// rustnet chose it.
    pub(crate) async fn create_endpoint(
        &self,
        request: EndpointRequest,
    ) -> Result<Option<Mac>, ApiError> {
        let store = self.service.store().await?;
        let (mode, bridge) = store
            .local(|s| {
                let network = s.tables().network(&request.network_id);
                network.map(|n| (n.mode, n.bridge.clone()))
            })
            .flatten()
            .unzip();
        // An ipvlan link has its parent's MAC: none is chosen or taken.
        let ipvlan = mode == Some(Mode::Ipvlan);
        if let (true, Some(mac)) = (ipvlan, request.mac) {
            return Err(ApiError::invalid(
                "MacAddress",
                mac.to_string(),
                "an ipvlan container has its parent's MAC; --mac-address does not apply",
            ));
        }
        let chosen = request.mac.is_none() && !ipvlan;
        let endpoint = Endpoint {
            id: request.id.clone(),
            network_id: request.network_id,
            host: store.id(),
            address: request.address,
            address6: request.address6,
            mac: request.mac.unwrap_or_else(Mac::random),
            ports: request.ports,
            joined: false,
            dns: request.dns,
            container: None,
        };
        let mac = endpoint.mac;
        let bridge = bridge.unwrap_or_default();
        store.write(Command::CreateEndpoint(endpoint)).await?;
        self.service.metrics().endpoint_created(&request.id);
        if let Err(e) = self.build(&bridge, &[&request.id]).await {
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

    pub(crate) async fn delete_endpoint(&self, id: String) -> Result<(), ApiError> {
        let store = self.service.store().await?;
        store
            .write(Command::DeleteEndpoint {
                host: store.id(),
                id,
            })
            .await?;
        self.service.reconcile(&[]).await.map(drop)
    }

    /// Marks the endpoint joined, publishes its ports, and rebuilds whatever
    /// is missing (a bridge gone after a reboot).
    pub(crate) async fn join(
        &self,
        endpoint_id: String,
        ports: Vec<PortBinding>,
    ) -> Result<Joined, ApiError> {
        let store = self.service.store().await?;
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
            .await?;
        if let Err(e) = self.build(&network.bridge, &[&id]).await {
            self.undo(Command::SetJoined {
                host: store.id(),
                id,
                ports: None,
            })
            .await;
            return Err(e);
        }
        // Every host's bridge of an overlay is its gateway: with it in the
        // answer, Docker attaches no docker_gwbridge (one interface).
        let routed = !network.internal;
        let gateway = |g: Option<IpNet>| g.filter(|_| routed).map(|g| g.addr());
        // An internal overlay has no default route: its containers reach
        // the resolver (for names across hosts) by a host route to each
        // upstream, which the resolver takes and the firewall drops.
        let routes = match (network.internal, network.mode, network.gateway) {
            (true, Mode::Overlay, Some(g)) => self
                .service
                .dns_upstreams(store.as_ref())
                .await
                .into_iter()
                .map(|upstream| (upstream, g.addr()))
                .collect(),
            (_, Mode::Macvlan | Mode::Ipvlan, _) => self.lan_routes(store.as_ref(), &network).await,
            _ => Vec::new(),
        };
        // A LAN network's link, or an overlay's where the network is
        // built on macvlan links (its link is there, just made: see
        // `rustnet_overlay::Gateway::vxlan`), else the veth's container end.
        let link = lan_link_name(&endpoint.id);
        let macvlan =
            network.mode == Mode::Overlay && self.service.datapath().has_link(&link).await;
        let interface = if network.mode.is_lan() || macvlan {
            link
        } else {
            veth_names(&endpoint.id).1
        };
        Ok(Joined {
            interface,
            gateway: gateway(network.gateway),
            gateway6: gateway(network.gateway6),
            routes,
        })
    }

    /// A LAN container's way to rustnet's resolver (names across hosts):
    /// the resolver address and each upstream through this host's shim,
    /// which the parent's LAN would not bring here.
    async fn lan_routes(
        &self,
        store: &dyn Replicated,
        network: &Network,
    ) -> Vec<(std::net::Ipv4Addr, std::net::IpAddr)> {
        let shim = store
            .local(|s| crate::lan::shim_address(s, network))
            .flatten();
        let Some(shim) = shim else {
            return Vec::new();
        };
        // An upstream on the LAN itself (often its router) is reached
        // there: a route through the shim would take the gateway's direct
        // route away. Its queries reach rustnet only through the resolver
        // address (daemon.json's `dns`).
        let on_lan = |u: &std::net::Ipv4Addr| {
            network
                .subnet
                .is_some_and(|s| s.contains(&std::net::IpAddr::V4(*u)))
        };
        let mut upstreams: Vec<_> = self
            .service
            .dns_upstreams(store)
            .await
            .into_iter()
            .filter(|u| !on_lan(u))
            .collect();
        upstreams.push(crate::host_view::RESOLVER_ADDR);
        upstreams.sort_unstable();
        upstreams.dedup();
        upstreams.into_iter().map(|u| (u, shim)).collect()
    }

    pub(crate) async fn leave(&self, endpoint_id: String) -> Result<(), ApiError> {
        let store = self.service.store().await?;
        let command = Command::SetJoined {
            host: store.id(),
            id: endpoint_id,
            ports: None,
        };
        store.write(command).await?;
        self.service.reconcile(&[]).await.map(drop)
    }

    /// Reverts a table change after a failed request; reported, not
    /// raised: the request's own error is what Docker sees.
    async fn undo(&self, command: Command) {
        let what = command.to_string();
        let reverted = match self.service.store().await {
            Ok(store) => store.write(command).await.map(drop).map_err(ApiError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = reverted {
            tracing::error!(error = %e, undo = %what, "undo after a failed request");
        }
        if let Err(e) = self.service.reconcile(&[]).await {
            tracing::error!(error = %e, undo = %what, "reconcile after undoing a failed request");
        }
    }
}
