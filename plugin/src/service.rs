//! The service layer: typed requests in, replicated commands out.
//!
//! The store opens in the background, so the socket answers (and Docker can
//! register the plugin) within a second of start whatever the cluster is
//! doing; requests that need the store wait for it, bounded in time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rustnet_ipam::store::{Store, StoreError};
use rustnet_ipam::{Command, DefaultPool, Response};
use rustnet_overlay::{Report, Want};
use tokio::sync::watch;

use crate::datapath::DataPath;
use crate::dns::{Resolver, resolv};
use crate::encryption::Encryption;
use crate::error::ApiError;
use crate::host_view::{DnsView, Underlay, dns_upstreams, host_view};
use crate::metrics::Metrics;
use crate::request::{AddressRelease, AddressRequest, PoolRequest};
use crate::status::{Rotation, Status, Tls};
use crate::store::{Replicated, StoreState, open_store, raft};

/// This host's settings the service uses.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Pools for networks created without --subnet.
    pub defaults: Vec<DefaultPool>,
    /// Bound on waiting for the store.
    pub timeout: Duration,
    /// RUSTNET_MTU: the MTU of networks that do not set one.
    pub mtu: Option<u32>,
    /// This host's underlay address (VXLAN source), if IPv4.
    pub vtep: Option<std::net::IpAddr>,
    /// RUSTNET_VXLAN_PORT.
    pub vxlan_port: u16,
    /// RUSTNET_PARENTS: this host's interfaces for LAN networks' parents.
    pub parents: crate::lan::Parents,
}

/// How long a pass's view may be taken as still applied: a pass runs at
/// least this often after changes that do not concern this host (and the
/// idle pass every few seconds), so the kernel's drift (a link or a rule
/// removed by something else) is repaired.
const UNCHANGED_REPASS: std::time::Duration = std::time::Duration::from_secs(4);

/// The plugin's service: the replicated store, this host's data path and
/// its settings. The IPAM calls are here; the network driver's are in
/// `driver.rs`, on top of this.
#[derive(Debug)]
pub(crate) struct Service {
    store: watch::Receiver<StoreState>,
    settings: Settings,
    datapath: Arc<dyn DataPath>,
    /// Names across hosts for overlay containers (off: `None`).
    resolver: Option<Arc<Resolver>>,
    /// This host's WireGuard key and tunnel (none: no encrypted overlays).
    encryption: Option<Arc<Encryption>>,
    /// The last errors met, for `rustnet status`.
    pub(crate) recent: crate::recent::Recent,
    /// What the last successful pass applied, and when.
    applied: std::sync::Mutex<Option<(Want, std::time::Instant)>>,
    /// The local Docker engine's version, once it has told it.
    engine: std::sync::Mutex<Option<String>>,
    /// The pools this host's Docker is creating a network on.
    openings: std::sync::Mutex<crate::opening::Openings>,
    metrics: Metrics,
}

impl Service {
    pub(crate) fn new(
        store: watch::Receiver<StoreState>,
        settings: Settings,
        datapath: Arc<dyn DataPath>,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            settings,
            datapath,
            resolver: None,
            encryption: None,
            recent: crate::recent::Recent::default(),
            applied: std::sync::Mutex::new(None),
            engine: std::sync::Mutex::new(None),
            openings: std::sync::Mutex::default(),
            metrics,
        }
    }

    /// Notes the local Docker engine's version.
    pub(crate) fn set_engine(&self, version: String) {
        let mut engine = crate::lock(&self.engine);
        if engine.as_deref() != Some(version.as_str()) {
            tracing::info!(%version, "docker engine");
            *engine = Some(version);
        }
    }

    /// Answers overlay containers' DNS queries with `resolver`.
    pub(crate) fn with_resolver(mut self, resolver: Arc<Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Carries encrypted overlays through `encryption`'s tunnel.
    pub(crate) fn with_encryption(mut self, encryption: Arc<Encryption>) -> Self {
        self.encryption = Some(encryption);
        self
    }

    pub(crate) fn encryption(&self) -> Option<&Arc<Encryption>> {
        self.encryption.as_ref()
    }

    /// Starts the tunnel if the cluster has an encrypted overlay (or
    /// `needed`, for one being created here); its address, or why
    /// encrypted overlays cannot come up on this host.
    pub(crate) async fn tunnel(
        &self,
        store: &dyn Replicated,
        needed: bool,
    ) -> Result<Option<std::net::Ipv4Addr>, String> {
        let Some(encryption) = &self.encryption else {
            return if needed {
                Err("this rustnet runs without encryption".to_owned())
            } else {
                Ok(None)
            };
        };
        let wanted = needed || store.local(crate::encryption::wanted).unwrap_or(false);
        let Some(vtep) = self.settings.vtep.filter(|_| wanted) else {
            return Ok(None);
        };
        // Running: nothing to read (every pass asks).
        if let Some(address) = encryption.address().await {
            return Ok(Some(address));
        }
        let host = store.id();
        let Some(address) = store
            .local(|s| crate::encryption::tunnel_address_of(s, host))
            .flatten()
        else {
            return Err(crate::encryption::KEY_NOT_PUBLISHED.to_owned());
        };
        let mtu = self
            .datapath
            .mtu_of(vtep)
            .await
            .unwrap_or(crate::encryption::DEFAULT_UNDERLAY_MTU);
        encryption.ensure(address, vtep, mtu).await.map(Some)
    }

    /// Makes the tunnel's peers the other members with keys, as `store`
    /// knows them, if the tunnel runs.
    async fn follow_peers(&self, store: &dyn Replicated) {
        let (Some(encryption), Some(vtep)) = (&self.encryption, self.settings.vtep) else {
            return;
        };
        if encryption.address().await.is_none() {
            return;
        }
        let host = store.id();
        let peers = store
            .local(|s| crate::encryption::tunnel_peers(s, host, vtep))
            .unwrap_or_default();
        if let Err(e) = encryption.set_peers(&peers).await {
            tracing::warn!(error = %e, "WireGuard peers");
            self.recent.record("encryption", &e);
        }
    }

    /// Replaces this host's WireGuard key: kept on disk first, then
    /// published (the peers take the new public key as they apply it),
    /// then used by the tunnel, which starts a handshake with every peer
    /// at once; the new public key.
    pub(crate) async fn rotate_tunnel_key(&self) -> Result<String, ApiError> {
        let encryption = self.encryption.as_ref().ok_or_else(|| {
            ApiError::Unsupported("this rustnet runs without encryption".to_owned())
        })?;
        let store = self.store().await?;
        let next = encryption.next_key().map_err(|e| {
            ApiError::Unsupported(format!("cannot keep a new WireGuard key: {e:#}"))
        })?;
        let (host, key, port) = (store.id(), encryption.public_key(), encryption.port());
        store
            .write(Command::SetTunnelKey {
                host,
                key: key.clone(),
                port,
            })
            .await?;
        encryption
            .use_key(next)
            .await
            .map_err(ApiError::Unsupported)?;
        tracing::info!(%key, "WireGuard key rotated");
        Ok(key)
    }

    /// Where what happens is counted.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where this host's VXLAN traffic goes from, with the tunnel's
    /// address while the tunnel runs.
    pub(crate) async fn underlay(&self) -> Underlay {
        let tunnel = match &self.encryption {
            Some(encryption) => encryption.address().await,
            None => None,
        };
        Underlay {
            vtep: self.settings.vtep,
            port: self.settings.vxlan_port,
            tunnel,
        }
    }

    pub(crate) fn datapath(&self) -> &dyn DataPath {
        self.datapath.as_ref()
    }

    /// Makes this host's kernel match the tables, creating the veth pairs
    /// of the `required` endpoints; one pass at a time, each reading the
    /// tables once the pass before it is done, linearizably (through the
    /// leader), so that a request's own write is in them.
    pub(crate) async fn reconcile(&self, required: &[&str]) -> Result<Report, ApiError> {
        let seen = std::sync::Mutex::new(None);
        let want = async {
            let store = self.store().await?;
            let host = store.id();
            if let Err(e) = self.tunnel(store.as_ref(), false).await {
                self.recent.record("encryption", &e);
            }
            self.follow_peers(store.as_ref()).await;
            let underlay = self.underlay().await;
            let dns = self.dns_ports(store.as_ref()).await;
            let want = store
                .read(|s| host_view(s, host, required, underlay, &dns, &self.settings.parents))
                .await?;
            *crate::lock(&seen) = Some(want.clone());
            Ok(want)
        };
        let started = std::time::Instant::now();
        let report = self.datapath.reconcile(Box::pin(want)).await;
        if let (Ok(_), Some(want)) = (&report, crate::lock(&seen).take()) {
            *crate::lock(&self.applied) = Some((want, std::time::Instant::now()));
        }
        let firewall = report.as_ref().is_ok_and(|r| r.firewall);
        self.metrics
            .reconcile(report.is_ok(), firewall, started.elapsed());
        match &report {
            Ok(report) => {
                for conflict in &report.conflicts {
                    self.recent.record(
                        &format!("network {}", conflict.bridge),
                        &conflict.error.to_string(),
                    );
                }
            }
            Err(e) => self
                .recent
                .record("reconcile", &rustnet_ipam::store::chain(e)),
        }
        report
    }

    /// [`Service::reconcile`] after a replicated change, unless the change
    /// leaves this host's view as the last pass applied it (in this host's
    /// replica, without asking the leader) and that pass is recent: most
    /// changes of a large cluster concern other hosts, and a pass for each
    /// would cost the leader a read per member and change. `None`: skipped.
    pub(crate) async fn reconcile_after_change(&self) -> Result<Option<Report>, ApiError> {
        let store = self.store().await?;
        let host = store.id();
        let underlay = self.underlay().await;
        let dns = self.dns_ports(store.as_ref()).await;
        let view = store.local(|s| host_view(s, host, &[], underlay, &dns, &self.settings.parents));
        let unchanged = crate::lock(&self.applied)
            .as_ref()
            .is_some_and(|(want, at)| {
                view.as_ref() == Some(want) && at.elapsed() < UNCHANGED_REPASS
            });
        if unchanged {
            // The peers may change while the view does not (a host without
            // endpoints here removed, or publishing its key): a removed
            // host stops being a peer at once. A pass follows them itself.
            self.follow_peers(store.as_ref()).await;
            return Ok(None);
        }
        self.reconcile(&[]).await.map(Some)
    }

    /// The upstreams of this host's overlay containers, each with the port
    /// the resolver takes its queries on, and the resolver address.
    async fn dns_ports(&self, store: &dyn Replicated) -> DnsView {
        let Some(resolver) = &self.resolver else {
            return DnsView::default();
        };
        let servers = resolv::Servers::of_host();
        // The IPv6 resolver address too while a network here has IPv6.
        let (upstreams, ipv6) = store
            .local(|s| {
                let ipv6 = s
                    .tables()
                    .networks_of(store.id())
                    .any(|n| n.subnet6.is_some());
                (dns_upstreams(s, store.id(), &servers.routed()), ipv6)
            })
            .unwrap_or_default();
        DnsView {
            ports: resolver.ensure(&upstreams).await,
            resolver: Some(resolver.resolver_address(&servers, ipv6).await),
            legacy: resolver.legacy_sources(),
        }
    }

    /// Notes the overlay containers with a legacy second interface (from
    /// the learner); the data path follows when that changed.
    pub(crate) async fn note_legacy(&self, legacy: crate::dns::Legacy) {
        let Some(resolver) = &self.resolver else {
            return;
        };
        if resolver.set_legacy(legacy)
            && let Err(e) = self.reconcile(&[]).await
        {
            tracing::warn!(error = %e, "reconcile for legacy interfaces");
        }
    }

    /// The addresses whose queries the resolver takes now: every upstream
    /// and the resolver address.
    pub(crate) async fn dns_upstreams(&self, store: &dyn Replicated) -> Vec<std::net::Ipv4Addr> {
        let view = self.dns_ports(store).await;
        let own = view.resolver.map(|r| r.addr);
        view.ports.into_keys().chain(own).collect()
    }

    /// The open store, waiting (bounded) while it opens.
    pub(crate) async fn store(&self) -> Result<Arc<dyn Replicated>, ApiError> {
        open_store(&self.store, self.settings.timeout).await
    }

    /// The open store's Raft cluster, for what only a cluster has.
    pub(crate) async fn cluster(&self) -> Result<Store, ApiError> {
        Ok(raft(self.store().await?.as_ref())?.clone())
    }

    async fn apply(&self, command: impl FnOnce(u64) -> Command) -> Result<Response, ApiError> {
        let store = self.store().await?;
        let command = command(store.id());
        tracing::debug!(%command, "proposing");
        Ok(store.write(command).await?)
    }

    pub(crate) async fn request_pool(
        &self,
        request: PoolRequest,
    ) -> Result<(String, IpNet), ApiError> {
        let defaults = self.defaults_for(request.v6).await?;
        let response = self
            .apply(|host| Command::RequestPool {
                host,
                pool: request.pool,
                range: request.range,
                v6: request.v6,
                defaults,
            })
            .await?;
        match response {
            Response::Pool { pool_id, subnet } => {
                crate::lock(&self.openings).opened(&pool_id, Instant::now());
                Ok((pool_id, subnet))
            }
            other => Err(unexpected(&other)),
        }
    }

    /// The default pools a pool request takes from: the settings', and for
    /// IPv6, where the settings name no IPv6 pool, the cluster's unique
    /// local /48 (a store in memory has no cluster, so none).
    async fn defaults_for(&self, v6: bool) -> Result<Vec<DefaultPool>, ApiError> {
        let mut defaults = self.settings.defaults.clone();
        let configured = defaults.iter().any(|d| matches!(d.base, IpNet::V6(_)));
        if v6 && !configured {
            let store = self.store().await?;
            if let Some(id) = store.raft().and_then(|r| r.cluster_id().ok().flatten()) {
                defaults.push(DefaultPool::cluster_ula(&id));
            }
        }
        Ok(defaults)
    }

    pub(crate) async fn release_pool(&self, pool_id: String) -> Result<(), ApiError> {
        crate::lock(&self.openings).closed(&pool_id);
        self.apply(|host| Command::ReleasePool { host, pool_id })
            .await
            .map(drop)
    }

    pub(crate) async fn request_address(&self, request: AddressRequest) -> Result<IpNet, ApiError> {
        let kind = crate::lock(&self.openings).kind(&request.pool_id, request.kind, Instant::now());
        let response = self
            .apply(|host| Command::RequestAddress {
                host,
                pool_id: request.pool_id,
                address: request.address,
                kind,
            })
            .await?;
        match response {
            Response::Address { address } => Ok(address),
            other => Err(unexpected(&other)),
        }
    }

    pub(crate) async fn release_address(&self, release: AddressRelease) -> Result<(), ApiError> {
        self.apply(|host| Command::ReleaseAddress {
            host,
            pool_id: release.pool_id,
            address: release.address,
        })
        .await
        .map(drop)
    }

    /// This host, its networks and every pool, for `rustnet status`.
    pub(crate) async fn status(&self) -> Result<Status, ApiError> {
        let store = self.store().await?;
        let host = store.id();
        let engine = crate::lock(&self.engine).clone();
        let names_on = self.resolver.is_some();
        let (view, ca, rotation, names) = store
            .read(|state| {
                let ca = state.ca().map(|ca| ca.fingerprint.clone());
                let rotation = state.ca_rotation().map(|r| Rotation {
                    from: r.previous_fingerprint.clone(),
                    waiting_for: r.pending.clone(),
                });
                let names = names_on
                    .then(|| crate::dns::setting::names_view(state, host, engine.as_deref()));
                (crate::status::view(state, host), ca, rotation, names)
            })
            .await?;
        let mut status = Status {
            view,
            tls: Tls {
                ca,
                certificate: None,
                ca_rotation: rotation,
            },
            errors: self.recent.list(),
            names,
            ..Status::default()
        };
        if let Some(encryption) = &self.encryption {
            status.encryption = Some(encryption.status().await);
        }
        // What only a cluster has (a store in memory has none of it).
        if let Some(raft) = store.raft() {
            status.cluster = raft.cluster_view();
            status.replication = raft
                .raft_view()
                .behind()
                .map(|(id, n)| (id.to_string(), n))
                .collect();
            status.tls.certificate = raft.cert().map(|c| c.fingerprint);
            status.upgrade = raft.upgrade_view().await;
        }
        Ok(status)
    }

    /// Removes `node` from the cluster and frees what it held.
    pub(crate) async fn remove_node(&self, node: u64) -> Result<(), ApiError> {
        Ok(self.cluster().await?.membership().remove(node).await?)
    }
}

fn unexpected(response: &Response) -> ApiError {
    StoreError::Unexpected(response.clone()).into()
}
