//! What the in-process cluster tests share: nodes over real tonic on
//! 127.0.0.1, a cluster of three, allocation storms and their checks, and
//! calls made with a chosen certificate.

#![allow(dead_code, unreachable_pub)] // each test file uses part of it

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustnet_ipam_core::{Command, HolderKind, Response};
use rustnet_store::{Store, StoreConfig, StoreError, spawn_server};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const POOL: &str = "10.50.0.0/16";

pub struct Node {
    pub store: Store,
    pub dir: PathBuf,
    pub addr: String,
    pub stop: Option<oneshot::Sender<()>>,
}

pub fn config(addr: &str) -> StoreConfig {
    config_lived(addr, rustnet_store::CERT_LIFETIME)
}

/// A node's settings, with member certificates valid for `lifetime`.
pub fn config_lived(addr: &str, lifetime: Duration) -> StoreConfig {
    StoreConfig {
        timeout: Duration::from_secs(8),
        join_patience: Duration::from_secs(3),
        // Small pieces, so that every snapshot sent here takes several.
        snapshot_chunk: 16 << 10,
        cert_lifetime: lifetime,
        ..StoreConfig::new(addr)
    }
}

/// A fresh node that enrolls through `seeds` with `token` (getting its id
/// and certificate from the cluster), then opens its store and joins.
pub async fn join_fresh(
    root: &std::path::Path,
    name: &str,
    seeds: &[String],
    token: Option<&rustnet_ipam_core::JoinToken>,
) -> Result<Node, StoreError> {
    join_fresh_lived(root, name, seeds, token, rustnet_store::CERT_LIFETIME).await
}

/// [`join_fresh`], with member certificates valid for `lifetime`.
pub async fn join_fresh_lived(
    root: &std::path::Path,
    name: &str,
    seeds: &[String],
    token: Option<&rustnet_ipam_core::JoinToken>,
    lifetime: Duration,
) -> Result<Node, StoreError> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = root.join(name);
    let settings = config_lived(&addr, lifetime);
    rustnet_store::enroll(&dir, &settings, seeds, token).await?;
    let node = start_with(dir, listener, settings).await;
    node.store.membership().join(seeds).await?;
    Ok(node)
}

/// Starts `old` (killed) again on its address with `config`, from its
/// disk. Its old in-process instance still has peer connections holding
/// the database file open, so the restart runs on a copy of the directory,
/// taken after the crash: the same bytes a restarted process would see.
pub async fn restart_copy(old: &Node, config: StoreConfig) -> Node {
    restart_copy_to(old, old.dir.with_extension("restarted"), config).await
}

/// As [`restart_copy`], to the directory `copy` (a node restarted more
/// than once needs a new one each time).
pub async fn restart_copy_to(old: &Node, copy: PathBuf, config: StoreConfig) -> Node {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&old.dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    // The killed instance's accept loop lets go of the port shortly after
    // its server stopped.
    let mut attempts = 0;
    let listener = loop {
        match TcpListener::bind(&old.addr).await {
            Ok(listener) => break listener,
            Err(e) if attempts < 50 && e.kind() == std::io::ErrorKind::AddrInUse => attempts += 1,
            Err(e) => panic!("bind {}: {e}", old.addr),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    start_with(copy, listener, config).await
}

/// Opens a store in `dir` and serves it on `listener`.
pub async fn start(dir: PathBuf, listener: TcpListener) -> Node {
    let addr = listener.local_addr().unwrap().to_string();
    start_with(dir, listener, config(&addr)).await
}

/// Opens a store in `dir` with `config` and serves it on `listener`.
pub async fn start_with(dir: PathBuf, listener: TcpListener, config: StoreConfig) -> Node {
    let addr = config.addr.clone();
    // A node restarted in this process: openraft's tasks let go of the
    // database shortly after shutdown.
    let mut attempts = 0;
    let store = loop {
        match Store::open(&dir, config.clone()).await {
            Ok(store) => break store,
            Err(e) if attempts < 50 && e.to_string().contains("in use by another") => attempts += 1,
            Err(e) => panic!("open {}: {e}", dir.display()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (tx, rx) = oneshot::channel::<()>();
    spawn_server(&store, listener, async {
        let _ = rx.await;
    });
    Node {
        store,
        dir,
        addr,
        stop: Some(tx),
    }
}

pub async fn fresh(root: &std::path::Path, name: &str) -> Node {
    start(
        root.join(name),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
}

impl Node {
    /// Stops the node as a crash would: no more answers, Raft stopped.
    pub async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.store.shutdown().await;
    }
}

pub async fn cluster_of_three(root: &std::path::Path) -> Vec<Node> {
    let first = fresh(root, "n1").await;
    first.store.membership().bootstrap(None).await.unwrap();
    let token = first.store.membership().join_token().await.unwrap();
    let mut nodes = vec![first];
    for name in ["n2", "n3"] {
        let node = join_fresh(root, name, &[nodes[0].addr.clone()], Some(&token))
            .await
            .unwrap();
        nodes.push(node);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while nodes[0].store.members().iter().filter(|m| m.voter).count() < 3 {
        assert!(
            Instant::now() < deadline,
            "not 3 voters: {:?}",
            nodes[0].store.members()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    create_pool(&nodes[0].store).await;
    nodes
}

pub async fn allocate(store: &Store, name: String) -> Result<IpAddr, StoreError> {
    let command = Command::RequestAddress {
        host: store.id(),
        pool_id: POOL.to_owned(),
        address: None,
        kind: HolderKind::endpoint(name),
    };
    match store.write(command).await? {
        Response::Address { address } => Ok(address.addr()),
        other => panic!("allocation answered {other:?}"),
    }
}

/// `count` allocations from each store at once; the acknowledged addresses.
pub async fn storm(stores: &[Store], count: usize, tag: &str) -> Vec<IpAddr> {
    let mut tasks = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for i in 0..count {
            let store = store.clone();
            let name = format!("{tag}-{n}-{i}");
            tasks.push(tokio::spawn(async move { allocate(&store, name).await }));
        }
    }
    let mut acked = Vec::new();
    for task in tasks {
        if let Ok(address) = task.await.unwrap() {
            acked.push(address);
        }
    }
    acked
}

/// Every acknowledged address is held, and none twice.
pub async fn check(reader: &Store, acked: &[IpAddr]) {
    let unique: BTreeSet<IpAddr> = acked.iter().copied().collect();
    assert_eq!(unique.len(), acked.len(), "an address was handed out twice");
    let held: BTreeSet<IpAddr> = reader
        .read(|s| s.pool(POOL).unwrap().addresses.keys().copied().collect())
        .await
        .unwrap();
    let lost: Vec<&IpAddr> = unique.difference(&held).collect();
    assert!(lost.is_empty(), "acknowledged allocations lost: {lost:?}");
}

pub async fn leader(nodes: &[Node]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for (i, node) in nodes.iter().enumerate() {
            if node.stop.is_some() && node.store.cluster_view().state == "leader" {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A channel to `addr` trusting the CA `ca_pem`, presenting `identity`
/// if there is one (tonic's own TLS client).
fn channel(
    addr: &str,
    ca_pem: &str,
    identity: Option<tonic::transport::Identity>,
) -> tonic::transport::Channel {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(rustnet_store::SERVER_NAME);
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

/// A channel to `addr` presenting `cert`.
pub fn channel_as(addr: &str, cert: &rustnet_store::NodeCert) -> tonic::transport::Channel {
    channel(addr, &cert.ca_pem, Some(identity(cert)))
}

/// What one call of [`call_as`] may take: a server that leaves a call
/// unanswered fails the test here, at once, naming the call.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

pub async fn call_as(
    addr: &str,
    ca_pem: &str,
    identity: Option<tonic::transport::Identity>,
) -> Vec<Result<(), tonic::Status>> {
    use rustnet_proto::{ClusterClient, Payload, RaftClient};
    let channel = channel(addr, ca_pem, identity);
    let payload = || Payload {
        format: rustnet_ipam_core::FORMAT,
        data: b"{}".to_vec(),
    };
    let bounded = |call: &'static str, result: Result<Result<(), tonic::Status>, _>| {
        result.unwrap_or_else(|_: tokio::time::error::Elapsed| {
            panic!("{call} to {addr}: no answer within {ANSWER_WITHIN:?}")
        })
    };
    vec![
        bounded(
            "write",
            tokio::time::timeout(
                ANSWER_WITHIN,
                ClusterClient::new(channel.clone()).write(payload()),
            )
            .await
            .map(|r| r.map(drop)),
        ),
        bounded(
            "append_entries",
            tokio::time::timeout(
                ANSWER_WITHIN,
                RaftClient::new(channel.clone()).append_entries(payload()),
            )
            .await
            .map(|r| r.map(drop)),
        ),
        // A stream is refused when it opens, or (a member's, with the
        // malformed payload) in its first answer.
        bounded(
            "append_stream",
            tokio::time::timeout(ANSWER_WITHIN, async {
                match RaftClient::new(channel.clone())
                    .append_stream(futures::stream::iter([payload()]))
                    .await
                {
                    Ok(answers) => answers.into_inner().message().await.map(drop),
                    Err(status) => Err(status),
                }
            })
            .await,
        ),
        bounded(
            "write_stream",
            tokio::time::timeout(ANSWER_WITHIN, async {
                match ClusterClient::new(channel)
                    .write_stream(futures::stream::iter([payload()]))
                    .await
                {
                    Ok(answers) => answers.into_inner().message().await.map(drop),
                    Err(status) => Err(status),
                }
            })
            .await,
        ),
    ]
}

pub fn identity(cert: &rustnet_store::NodeCert) -> tonic::transport::Identity {
    tonic::transport::Identity::from_pem(&cert.chain_pem, &cert.key_pem)
}

/// Creates [`POOL`], held by `store`'s host.
pub async fn create_pool(store: &Store) {
    let pool = Command::RequestPool {
        host: store.id(),
        pool: Some(POOL.parse().unwrap()),
        range: None,
        v6: false,
        defaults: vec![],
    };
    store.write(pool).await.unwrap();
}
