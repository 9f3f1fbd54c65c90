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
use crate::naming::{bridge_name, veth_names};
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
            Mode::Overlay => Some(
                request
                    .overlay
                    .clone()
                    .or_else(|| request.subnet.or(request.subnet6).map(|s| s.to_string()))
                    .ok_or_else(|| {
                        ApiError::Unsupported("an overlay network needs a subnet".to_owned())
                    })?,
            ),
        };
        if request.encrypted {
            self.check_encryption(store.as_ref()).await?;
        }
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
            multicast: request.multicast,
            encrypted: request.encrypted,
        };
        let (id, bridge) = (network.id.clone(), network.bridge.clone());
        store.write(Command::CreateNetwork(network)).await?;
        if let Err(e) = self.build(&bridge, &[]).await {
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

    /// Reconciles, and fails if the network of `bridge` could not be built
    /// on this host (the other networks were).
    async fn build(&self, bridge: &str, required: &[&str]) -> Result<(), ApiError> {
        let report = self.service.reconcile(required).await?;
        match report.conflict(bridge) {
            Some(conflict) => Err(rustnet_overlay::Error::Plan(conflict.clone()).into()),
            None => Ok(()),
        }
    }

    /// The bridge of this host's network `id`, from the local replica.
    fn bridge_of(store: &dyn Replicated, id: &str) -> Option<String> {
        store
            .local(|s| s.tables().network(id).map(|n| n.bridge.clone()))
            .flatten()
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
        let chosen = request.mac.is_none();
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
        let bridge = Self::bridge_of(store.as_ref(), &endpoint.network_id).unwrap_or_default();
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
            _ => Vec::new(),
        };
        Ok(Joined {
            interface: veth_names(&endpoint.id).1,
            gateway: gateway(network.gateway),
            gateway6: gateway(network.gateway6),
            routes,
        })
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
