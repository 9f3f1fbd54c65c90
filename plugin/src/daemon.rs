//! `rustnet daemon`: bind the socket first, then open the store.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustnet_ipam::Command;
use rustnet_ipam::store::{Store, StoreConfig, StoreError, spawn_server};
use tokio::net::TcpListener;
use tokio::net::UnixListener;
use tokio::sync::watch;

use rustnet_overlay::{Iptables, Netlink, Reconciler, sysctl};

use crate::api;
use crate::config::DaemonConfig;
use crate::datapath::DataPath;
use crate::docker::Docker;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::service::{Service, Settings};
use crate::store::StoreState;

/// Runs the daemon until SIGTERM or SIGINT.
pub(crate) async fn run(config: DaemonConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.vxlan_port != crate::encryption::SEALED_VXLAN_PORT,
        "RUSTNET_VXLAN_PORT {} is the port of encrypted overlays' VXLAN (inside their tunnel): \
         pick another",
        config.vxlan_port
    );
    let listener = bind(&config.socket)?;
    tracing::info!(socket = %config.socket.display(), "listening");
    let (tx, rx) = watch::channel(StoreState::Opening);
    let id = datapath_id(&config.state_dir)?;
    let datapath = Arc::new(kernel_datapath(&id).context("set up the data path")?);
    let advertised = config.advertise_addr();
    let settings = Settings {
        defaults: config.default_pools.clone(),
        timeout: config.request_timeout(),
        mtu: config.mtu,
        vtep: Some(advertised),
        vxlan_port: config.vxlan_port,
        parents: config.parents.clone(),
    };
    tracing::info!(underlay = %advertised, mtu = ?datapath.mtu_of(advertised).await, "underlay");
    let metrics = Metrics::default();
    let timeout = settings.timeout;
    let encryption = Arc::new(
        crate::encryption::Encryption::load(&config.state_dir, config.wireguard_port)
            .map(|e| e.with_implementation(config.wireguard))
            .context("WireGuard key")?,
    );
    let mut service =
        Service::new(rx.clone(), settings, datapath, metrics.clone()).with_encryption(encryption);
    if config.names {
        service = service.with_resolver(crate::dns::Resolver::new(rx.clone()));
    }
    let service = Arc::new(service);
    let store_task = tokio::spawn(open_store(config.clone(), tx, metrics.clone()));
    tokio::spawn(rebuild(service.clone()));
    tokio::spawn(publish_tunnel_key(service.clone()));
    tokio::spawn(crate::propagate::follow_changes(service.clone()));
    let docker = Docker::new(&config.docker_socket, &config.driver_name);
    tokio::spawn(crate::propagate::propagate(service.clone(), docker.clone()));
    tokio::spawn(crate::learn::learn(service.clone(), docker));
    tokio::spawn(rustnet_ipam::memory::keep_trimmed());
    if let Some(addr) = config.metrics_addr {
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, metrics, rx, timeout).await {
                tracing::error!(%addr, error = %format!("{e:#}"), "metrics not served");
            }
        });
    }
    // A storage failure is not answered with errors forever: the daemon
    // exits non-zero, so that its supervisor (systemd, Docker for the
    // managed plugin) starts it again, or an operator sees why.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut served = tokio::spawn(serve(listener, service, async {
        tokio::select! {
            () = shutdown_signal() => {}
            _ = stop_rx => {}
        }
    }));
    // The serving task's end, once it has ended (on a signal).
    let mut joined = None;
    let failure = match store_task.await {
        Ok(Ok(store)) => {
            let stopped = tokio::select! {
                failure = store.stopped() => failure,
                result = &mut served => {
                    joined = Some(result);
                    None
                }
            };
            if stopped.is_none() {
                store.shutdown().await;
            }
            stopped
        }
        Ok(Err(failure)) => failure,
        Err(e) => Some(format!("store task: {e}")),
    };
    let joined = match joined {
        Some(joined) => joined,
        None if failure.is_some() => {
            // Docker keeps its connections open: give requests in flight a
            // moment, not forever.
            let _ = stop_tx.send(());
            match tokio::time::timeout(Duration::from_secs(2), &mut served).await {
                Ok(joined) => joined,
                Err(_) => {
                    served.abort();
                    Ok(Ok(()))
                }
            }
        }
        None => served.await,
    };
    let served = joined.unwrap_or_else(|e| Err(anyhow::anyhow!("serve: {e}")));
    if let Err(e) = std::fs::remove_file(&config.socket) {
        tracing::warn!(error = %e, "remove socket");
    }
    if let Some(failure) = failure {
        tracing::error!(error = %failure, "the state store failed; exiting so that rustnet is started again");
        anyhow::bail!("the state store failed: {failure}");
    }
    served
}

/// The real kernel of this host's network namespace, with IP forwarding
/// on (as Docker does), as data path `id`.
fn kernel_datapath(id: &str) -> Result<Reconciler<Netlink, Iptables>, rustnet_overlay::Error> {
    sysctl::enable_ip_forward()?;
    Ok(Reconciler::new(Netlink::connect(id)?, Iptables))
}

/// The id of this state directory's data path, made at its first start:
/// links rustnet made under another id (a state directory lost or
/// replaced since) are left alone while containers use them.
fn datapath_id(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("datapath-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("create {}", state_dir.display()))?;
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", state_dir.display()))?;
    let id = format!("{:016x}", rand::random::<u64>());
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(id)
}

/// Serves the plugin API on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, api::router(service))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serve plugin socket")
}

/// Binds the socket, replacing a stale one left by a killed daemon;
/// root-only, like the state behind it.
fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    // A socket that answers belongs to a running daemon: never steal it.
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        anyhow::bail!(
            "{} is served by another running rustnet daemon",
            socket.display()
        );
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove stale {}", socket.display())),
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", socket.display()))?;
    Ok(listener)
}

/// Opens the store; on failure, `Err` with the reason when the storage
/// itself failed (the daemon then exits), `Err(None)` when the failure is
/// the cluster's answer (a refused join, say: the daemon stays up to
/// report it, a restart would not change it).
async fn open_store(
    config: DaemonConfig,
    tx: watch::Sender<StoreState>,
    metrics: Metrics,
) -> Result<Store, Option<String>> {
    match start_store(&config, &metrics).await {
        Ok(store) => {
            tx.send_replace(StoreState::Open(Arc::new(store.clone())));
            Ok(store)
        }
        Err(e) => {
            let message = format!("{e:#}");
            tracing::error!(error = %message, "no state store");
            tx.send_replace(StoreState::Failed(message.clone()));
            let storage = e.chain().any(|cause| {
                matches!(
                    cause.downcast_ref::<StoreError>(),
                    Some(StoreError::Open { .. } | StoreError::Storage { .. })
                )
            });
            Err(storage.then_some(message))
        }
    }
}

/// Opens the store, serves the peer protocol, and bootstraps a one-node
/// cluster or joins the one RUSTNET_JOIN names.
async fn start_store(config: &DaemonConfig, metrics: &Metrics) -> anyhow::Result<Store> {
    let addr = SocketAddr::new(config.advertise_addr(), config.peer_port);
    let store_config = StoreConfig {
        timeout: config.request_timeout(),
        voters: config.voters,
        join_patience: Duration::from_secs(config.join_timeout_secs.max(1)),
        ..StoreConfig::new(addr.to_string())
    };
    // The state holds the join token: root only.
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("create {}", config.state_dir.display()))?;
    std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", config.state_dir.display()))?;
    let seeds: Vec<String> = config.join_addrs().into_iter().map(str::to_owned).collect();
    if !seeds.is_empty() {
        // A new host gets its id and certificate from the cluster before its
        // Raft node starts: the id is the cluster's to give.
        rustnet_ipam::store::enroll(
            &config.state_dir,
            &store_config,
            &seeds,
            config.join_token.as_ref(),
        )
        .await?;
    }
    let store = Store::open(&config.state_dir, store_config).await?;
    store.observe_writes(metrics.write_observer());
    tracing::info!(host = store.id(), state_dir = %config.state_dir.display(), "state store open");
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind peer port {addr}"))?;
    spawn_server(&store, listener, std::future::pending());
    tracing::info!(%addr, "serving peers");
    if seeds.is_empty() {
        store
            .membership()
            .bootstrap(config.join_token.as_ref())
            .await?;
    } else {
        store.membership().join(&seeds).await?;
    }
    register(&store, config).await;
    // A cluster from before join tokens gets one now.
    if let Err(e) = store.membership().ensure_join_token().await {
        tracing::warn!(error = %e, "make sure the cluster has a join token");
    }
    Ok(store)
}

/// Rebuilds the data path from the tables once the store is open: bridges
/// and firewall rules after a reboot or a crash, leftovers removed.
async fn rebuild(service: Arc<Service>) {
    loop {
        match service.reconcile(&[]).await {
            Ok(_) => {
                tracing::info!("data path rebuilt from the tables");
                return;
            }
            Err(ApiError::NoStore(e)) => {
                tracing::error!(error = %e, "no store: data path not rebuilt");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "rebuilding the data path; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// Publishes this host's WireGuard public key once the store is open,
/// unless the cluster has it already; retried while the cluster cannot
/// take it yet (a member of a release before encryption).
async fn publish_tunnel_key(service: Arc<Service>) {
    let Some(encryption) = service.encryption().cloned() else {
        return;
    };
    let mut warned = false;
    loop {
        let store = match service.store().await {
            Ok(store) => store,
            Err(ApiError::NoStore(_)) => return,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let (host, key, port) = (store.id(), encryption.public_key(), encryption.port());
        let published = store
            .local(|s| {
                s.tunnel_key(host)
                    .is_some_and(|k| k.key == key && k.port == port)
            })
            .unwrap_or(false);
        if published {
            return;
        }
        match store.write(Command::SetTunnelKey { host, key, port }).await {
            Ok(_) => {
                tracing::info!(key = %encryption.public_key(), "WireGuard key published");
                return;
            }
            Err(e) if !warned => {
                tracing::warn!(error = %e, "WireGuard key not published yet; retrying");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Records how this host is named in errors and status: its hostname and
/// advertised address. A failure only costs readability.
async fn register(store: &Store, config: &DaemonConfig) {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = format!("{} ({})", hostname.trim(), config.advertise_addr());
    let command = Command::RegisterHost {
        addr: Some(config.advertise_addr()),
        host: store.id(),
        name,
    };
    if let Err(e) = store.write(command).await {
        tracing::warn!(error = %e, "register host name");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
