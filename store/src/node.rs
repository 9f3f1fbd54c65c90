//! [`Store`]: this host's Raft node and the one door to the replicated state.
//!
//! Writes go to the leader: proposed locally when this node leads, else
//! forwarded over gRPC (openraft never forwards by itself). Reads are
//! linearizable on every node: the leader confirms its leadership (read
//! index) and a follower waits until it has applied up to the leader's
//! read index. Both are bounded by the request timeout and fail with
//! [`StoreError::Unavailable`] when no quorum answers.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::LinearizableReadError;
use openraft::{Config, Raft, ReadPolicy, ServerState, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use super::catch_up::{CatchUp, admit};
use super::clock::unix_now;
use super::db::{KEY_CERT, KEY_CLUSTER_ID, KEY_FORMAT, KEY_NODE_ID, KEY_VOUCHED};
use super::error::{PeerError, RemoteError, StoreError, Unavailable};
use super::forward::Forwarder;
use super::network::{GrpcNetwork, Peers};
use super::tls::NodeCert;
use super::wire::call;
use super::{Db, LogStore, StateMachine, TypeConfig};
use crate::{Admission, Command, CommandResult, HostId, Proposal, Response, State};

/// Raft timing: a dead leader is replaced within half a second, and a
/// member that was merely slow (starved of CPU, paused) does not unseat a
/// live one: it asks first (pre-vote), and the others, still under the
/// leader's lease, refuse.
///
/// openraft's lease is the longest election timeout: a follower's first
/// pre-vote after the leader died is refused (the others' leases run
/// until then), its second one wins, so failover takes two timeouts plus
/// the vote and the first commit: with 140-190 ms, 360-480 ms
/// (`failover-bench`, p99 over 10 kills). A heartbeat every 50 ms keeps the
/// lease (almost four heartbeats) through a loaded 2-core machine: no
/// election in `failover-bench`'s loaded run (both cores busy and
/// allocations through every member, 30 s).
pub fn raft_config() -> Result<Config, StoreError> {
    Config {
        cluster_name: "rustnet".to_owned(),
        heartbeat_interval: 50,
        election_timeout_min: 140,
        election_timeout_max: 190,
        enable_pre_vote: Some(true),
        install_snapshot_timeout: 10_000,
        // Snapshots are asked for by keep_log_compact, as often as the
        // state is large (state_machine::snapshot_due).
        snapshot_policy: SnapshotPolicy::Never,
        // After a failed replication stream, openraft waits this long
        // before the next (10, 20, 40 ... ms): at most 200 ms, so that a
        // member that comes back is caught up at once (its default grows
        // to a second), while one that stays down is asked five times a
        // second (a refused connection costs next to nothing).
        backoff: "10ms 20ms ...200ms".to_owned(),
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    }
    .validate()
    .map_err(StoreError::raft)
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// This node's peer address, `host:port`, as other members reach it.
    pub addr: String,
    /// Bound on every read and write.
    pub timeout: Duration,
    /// How many voters the cluster keeps (3 or 5); later nodes are learners.
    pub voters: usize,
    /// How long a joining node keeps trying its seeds.
    pub join_patience: Duration,
    /// The largest piece a snapshot is sent in ([`SNAPSHOT_CHUNK`] unless a
    /// test wants many pieces).
    pub snapshot_chunk: usize,
    /// How long a member certificate is valid; it is renewed when a third
    /// of that is left ([`CERT_LIFETIME`] unless a test wants it short).
    pub cert_lifetime: Duration,
}

impl StoreConfig {
    /// A node other members reach at `addr`, with the defaults: requests
    /// bounded at 10 s, 3 voters, joins tried for 5 s, snapshots sent in
    /// [`SNAPSHOT_CHUNK`] pieces, certificates of [`CERT_LIFETIME`]. Set
    /// what differs with `StoreConfig { timeout, ..StoreConfig::new(addr) }`.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            timeout: Duration::from_secs(10),
            voters: 3,
            join_patience: Duration::from_secs(5),
            snapshot_chunk: SNAPSHOT_CHUNK,
            cert_lifetime: CERT_LIFETIME,
        }
    }
}

/// Member certificates are valid for 90 days.
pub const CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// Snapshot pieces of 1 MiB: well under gRPC's 4 MiB message limit.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// How a write ended, for a [`WriteObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Committed and applied.
    Ok,
    /// Committed; the state machine refused it (an address taken, say).
    Rejected,
    /// Not known to be committed: no quorum, timed out, storage failed.
    Failed,
}

impl WriteOutcome {
    /// `ok`, `rejected` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// Told of every write through [`Store::write`]: the command's kind, how
/// it ended and how long it took (metrics).
pub type WriteObserver = Arc<dyn Fn(&'static str, WriteOutcome, Duration) + Send + Sync>;

/// This host's replica of the cluster state.
#[derive(Clone)]
pub struct Store {
    pub(crate) id: HostId,
    pub(crate) raft: Raft<TypeConfig, StateMachine>,
    pub(crate) state_machine: StateMachine,
    pub(crate) db: Db,
    pub(crate) peers: Peers,
    pub(crate) config: Arc<StoreConfig>,
    /// One membership change at a time on this node (joins, removals and
    /// promotions would otherwise collide: openraft allows one at a time).
    pub(crate) changes: Arc<tokio::sync::Mutex<()>>,
    /// This member's certificate, once it has one.
    pub(crate) cert: Arc<tokio::sync::watch::Sender<Option<NodeCert>>>,
    /// Told of every write, once set.
    pub(crate) observer: Arc<OnceLock<WriteObserver>>,
    /// Whether this node may be behind on its peers' certificates, and
    /// whom it admits meanwhile.
    pub(crate) catch_up: Arc<CatchUp>,
    /// The stream of writes to the leader.
    pub(crate) forwarder: Forwarder,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the state in `dir` (creating it on first start) and starts the
    /// Raft node, without the cluster's background duties (those are
    /// [`Store::open`]'s, in `cluster.rs`).
    pub(crate) async fn open_node(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        let db = open_db(dir)?;
        let id = node_id(&db).map_err(open_err)?;
        let state_machine = StateMachine::open(db.clone()).map_err(open_err)?;
        let cert: Option<NodeCert> = db.get_meta(KEY_CERT).map_err(open_err)?;
        let (cert, cert_rx) = tokio::sync::watch::channel(cert);
        let replica = state_machine.clone();
        let own = cert_rx.clone();
        let vouched: Option<Vec<String>> = db.get_meta(KEY_VOUCHED).map_err(open_err)?;
        let catch_up = Arc::new(CatchUp::new(vouched.unwrap_or_default()));
        let behind = catch_up.clone();
        let peers = Peers::new(
            cert_rx,
            Arc::new(move |der: &[u8]| {
                let fingerprint = super::tls::fingerprint(der);
                replica.state().is_ok_and(|applied| {
                    let own = own.borrow();
                    admit(&applied.state, id, own.as_ref(), der, &fingerprint, &behind)
                        != Admission::Refused
                })
            }),
        );
        let raft = Raft::new(
            id,
            Arc::new(raft_config()?),
            GrpcNetwork::new(peers.clone(), config.snapshot_chunk.max(1)),
            LogStore::new(db.clone()).map_err(open_err)?,
            state_machine.clone(),
        )
        .await
        .map_err(|e| match e {
            // The state on disk cannot be read back (openraft checks it as
            // it starts): the member's own storage, not the cluster.
            openraft::errors::Fatal::StorageError(e) => open_err(std::io::Error::other(e)),
            e => StoreError::raft(e),
        })?;
        let store = Self {
            id,
            raft,
            state_machine,
            db,
            peers,
            config: Arc::new(config),
            changes: Arc::default(),
            cert: Arc::new(cert),
            observer: Arc::default(),
            catch_up,
            forwarder: Forwarder::default(),
        };
        Ok(store)
    }

    /// This host's id in the cluster.
    pub fn id(&self) -> HostId {
        self.id
    }

    /// This node's peer address.
    pub fn addr(&self) -> &str {
        &self.config.addr
    }

    /// This member's certificate, if it has one yet.
    pub fn cert(&self) -> Option<NodeCert> {
        self.cert.borrow().clone()
    }

    /// Keeps `cert` as this member's (on disk, then in use).
    pub(crate) fn set_cert(&self, cert: NodeCert) -> Result<(), StoreError> {
        self.db
            .put_meta(KEY_CERT, &cert)
            .map_err(StoreError::storage("keep this member's certificate"))?;
        self.cert.send_replace(Some(cert));
        self.peers.reset();
        self.forwarder.reset();
        Ok(())
    }

    /// Waits until this member has a certificate.
    pub(crate) async fn wait_for_cert(&self) -> NodeCert {
        let mut rx = self.cert.subscribe();
        loop {
            if let Some(cert) = rx.borrow_and_update().clone() {
                return cert;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Reads the local replica, without asking the leader: for checks that
    /// must not wait on the cluster, such as who may call an RPC.
    pub fn local<T>(&self, f: impl FnOnce(&State) -> T) -> Option<T> {
        self.state_machine
            .state()
            .ok()
            .map(|applied| f(&applied.state))
    }

    /// Whether a peer presenting the certificate `der` (with
    /// `fingerprint`) is admitted now, and as whom (this replica's view,
    /// without asking the leader: who may call an RPC must not wait on the
    /// cluster).
    pub fn admission(&self, der: &[u8], fingerprint: &str) -> Admission {
        let own = self.cert();
        self.local(|s| admit(s, self.id, own.as_ref(), der, fingerprint, &self.catch_up))
            .unwrap_or(Admission::Refused)
    }

    /// A leader presenting the certificate `der` reached this node: once
    /// this replica knows that certificate as a member's (it has caught up
    /// with its peers' renewals and joins), it admits its peers by
    /// fingerprint alone. Free once it has (no hash on every
    /// AppendEntries).
    pub(crate) fn heard_from(&self, der: &[u8]) {
        if !self.catch_up.behind() {
            return;
        }
        let fingerprint = super::tls::fingerprint(der);
        let known = self
            .local(|s| matches!(s.admission(&fingerprint, unix_now()), Admission::Member(_)))
            .unwrap_or(false);
        if known {
            self.heard_leader();
        }
    }

    /// This node heard from a leader it knows, or leads: from now on it
    /// admits its peers by fingerprint alone.
    pub(crate) fn heard_leader(&self) {
        if self.catch_up.hear_leader() {
            tracing::debug!("heard from the leader: admitting peers by fingerprint alone");
            let none: Vec<String> = Vec::new();
            if let Err(e) = self.db.put_meta_lazily(KEY_VOUCHED, &none) {
                tracing::warn!(error = %e, "forgetting the certificates vouched for at join");
            }
        }
    }

    /// Admits the members' certificates the cluster vouched for (in its
    /// enroll or join reply) while this node catches up, across restarts.
    pub(crate) fn vouch(&self, fingerprints: Vec<String>) -> Result<(), StoreError> {
        if !self.catch_up.behind() || fingerprints.is_empty() {
            return Ok(());
        }
        self.db
            .put_meta(KEY_VOUCHED, &fingerprints)
            .map_err(StoreError::storage(
                "keep the certificates vouched for at join",
            ))?;
        self.catch_up.vouch(fingerprints);
        Ok(())
    }

    /// The cluster this node belongs to, once bootstrapped or joined.
    pub fn cluster_id(&self) -> Result<Option<String>, StoreError> {
        self.db
            .get_meta(KEY_CLUSTER_ID)
            .map_err(StoreError::storage("read the cluster id"))
    }

    pub(crate) fn set_cluster_id(&self, id: &str) -> Result<(), StoreError> {
        self.db
            .put_meta(KEY_CLUSTER_ID, &id)
            .map_err(StoreError::storage("keep the cluster id"))
    }

    /// Replicates `command` through the leader and returns what applying it
    /// yielded; a command the state machine refuses is
    /// [`StoreError::Rejected`].
    pub async fn write(&self, command: Command) -> Result<Response, StoreError> {
        let kind = command.kind();
        let started = Instant::now();
        let result = self.write_result(command).await;
        if let Some(observe) = self.observer.get() {
            let outcome = match &result {
                Ok(Ok(_)) => WriteOutcome::Ok,
                Ok(Err(_)) => WriteOutcome::Rejected,
                Err(_) => WriteOutcome::Failed,
            };
            observe(kind, outcome, started.elapsed());
        }
        Ok(result??)
    }

    /// Sets who is told of every write from now on (once; later calls
    /// change nothing).
    pub fn observe_writes(&self, observer: WriteObserver) {
        let _ = self.observer.set(observer);
    }

    /// Replicates `command`; the state machine's answer, whatever it is.
    async fn write_result(&self, command: Command) -> Result<CommandResult, StoreError> {
        self.admit_format(&command)?;
        // Never 0, which marks entries written before ids existed.
        let id = rand::random::<u64>().max(1);
        let proposal = Proposal::new(id, command);
        self.bounded(async {
            // A follower that knows its leader sends the write there at
            // once rather than first hearing so from its own Raft core.
            if let Some(leader) = self.leader_addr_if_not_me() {
                match self.forward_write(&leader, &proposal).await {
                    Ok(result) => return Ok(result),
                    Err(e) => tracing::debug!(%leader, error = %e, "forwarding a write; retrying"),
                }
            }
            loop {
                let error = match self.raft.client_write(proposal.clone()).await {
                    Ok(reply) => return Ok(reply.data),
                    Err(e) => e,
                };
                let Some(forward) = error.forward_to_leader() else {
                    return Err(Unavailable::Raft(Box::new(error)).into());
                };
                match forward.leader_node.as_ref().filter(|_| forward.leader_id != Some(self.id)) {
                    Some(leader) => match self.forward_write(&leader.addr, &proposal).await {
                        Ok(result) => return Ok(result),
                        Err(e) => tracing::debug!(leader = %leader.addr, error = %e, "forwarding a write; retrying"),
                    },
                    None => tracing::debug!("no leader known; waiting"),
                }
                self.await_leader_change().await;
            }
        })
        .await
    }

    /// Proposes `command` here, only if this node leads: what the leader
    /// does with a forwarded write.
    pub(crate) async fn write_as_leader(
        &self,
        proposal: Proposal,
    ) -> Result<CommandResult, RemoteError> {
        self.admit_format(&proposal.command)
            .map_err(|e| RemoteError::Failed(e.to_string()))?;
        self.raft
            .client_write(proposal)
            .await
            .map(|r| r.data)
            .map_err(|e| RemoteError::Failed(e.to_string()))
    }

    async fn forward_write(
        &self,
        leader: &str,
        proposal: &Proposal,
    ) -> Result<CommandResult, PeerError> {
        self.forwarder
            .write(&self.peers, leader, proposal, self.config.timeout)
            .await
    }

    /// Reads the state once it reflects everything committed before the
    /// call (linearizable), on leader and followers alike.
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, StoreError> {
        self.bounded(async {
            loop {
                let error = match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                };
                // One round of heartbeats that missed its deadline (a loaded
                // machine): the next may not, within the request's bound.
                if let Some(LinearizableReadError::QuorumNotEnough(_)) = error.api_error() {
                    tracing::debug!(error = %error, "read index: no quorum this round; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let Some(forward) = error.forward_to_leader() else {
                    return Err(Unavailable::Raft(Box::new(error)).into());
                };
                if let Some(leader) = forward.leader_node.as_ref().filter(|_| forward.leader_id != Some(self.id)) {
                    match self.remote_read_index(&leader.addr).await {
                        Ok(index) => {
                            let wait = self.raft.wait(None);
                            let applied = wait.applied_index_at_least(Some(index), "read index").await;
                            return applied.map(drop).map_err(|e| Unavailable::Raft(Box::new(e)).into());
                        }
                        Err(e) => tracing::debug!(leader = %leader.addr, error = %e, "read index; retrying"),
                    }
                }
                self.await_leader_change().await;
            }
        })
        .await?;
        let applied = self
            .state_machine
            .state()
            .map_err(StoreError::storage("read the state machine"))?;
        Ok(f(&applied.state))
    }

    /// The leader's read index, as the leader answers it.
    pub(crate) async fn read_index_as_leader(&self) -> Result<u64, RemoteError> {
        let read = self
            .raft
            .ensure_linearizable(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| RemoteError::Failed(e.to_string()))?;
        Ok(read.index())
    }

    async fn remote_read_index(&self, leader: &str) -> Result<u64, PeerError> {
        let mut client = self.peers.cluster(leader)?;
        call(&(), self.config.timeout, |r| client.read_index(r)).await
    }

    /// After a write or read that found no leader, or one it could not
    /// reach: returns as soon as another leader is known, or after 100 ms
    /// (a retry loop around it keeps the overall deadline). A new leader
    /// is used the moment it is elected, not at the next turn of a fixed
    /// pause.
    pub(crate) async fn await_leader_change(&self) {
        let failed = self.raft.metrics().borrow_watched().current_leader;
        let wait = self.raft.wait(Some(Duration::from_millis(100)));
        // Err: the same leader (it may have answered late) or still none
        // after 100 ms: the caller tries again.
        let _ = wait
            .metrics(
                |m| m.current_leader.is_some() && m.current_leader != failed,
                "another leader",
            )
            .await;
    }

    pub(crate) async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Unavailable::Timeout(self.config.timeout).into()),
        }
    }

    /// Waits until the Raft node stops on its own: openraft stops a node
    /// whose storage failed (a full disk, a corrupt file), and the node
    /// never recovers in place. Why it stopped; never returns while the
    /// node runs, and returns `None` for a [`Store::shutdown`].
    pub async fn stopped(&self) -> Option<String> {
        let mut metrics = self.raft.metrics();
        loop {
            let failure = {
                let m = metrics.borrow_watched();
                match &m.running_state {
                    Err(fatal) => Some(Some(fatal.to_string())),
                    Ok(()) if m.state == openraft::ServerState::Shutdown => Some(None),
                    Ok(()) => None,
                }
            };
            if let Some(failure) = failure {
                return failure;
            }
            // A core that stopped on a storage error does not always say
            // so in its metrics: ask it now and then.
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() {
                    return Some("the Raft node ended".to_owned());
                },
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if let Err(fatal) = self.raft.with_raft_state(|_| ()).await {
                        return Some(fatal.to_string());
                    }
                }
            }
        }
    }

    /// Waits until this node has applied entries beyond `seen` (at most
    /// `within`); the index applied then.
    pub async fn next_change(&self, seen: Option<u64>, within: Duration) -> Option<u64> {
        let want = seen.map_or(0, |s| s + 1);
        let wait = self.raft.wait(Some(within));
        let metrics = wait
            .applied_index_at_least(Some(want), "change")
            .await
            .ok()?;
        metrics.last_applied.map(|l| l.index)
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// The database file in a state dir.
pub const STATE_FILE: &str = "state.redb";

/// Where release 0.1 (format 1) kept it: on upgrade, the file moves to
/// [`STATE_FILE`] and a directory takes its place, so that release 0.1
/// started on this state dir again refuses to start (it cannot open a
/// directory) instead of running on state it cannot read.
const FORMAT_1_FILE: &str = "raft.redb";

/// What the directory in release 0.1's place says to whoever looks.
const FORMAT_1_NOTE: &str = "This rustnet state directory was upgraded: its state is in \
    ../state.redb, written in a format that rustnet 0.1 cannot read. Downgrades are not \
    supported: run rustnet 0.2 or later on this host.\n";

/// Opens (creating it on first start) the database in `dir`.
pub(crate) fn open_db(dir: &Path) -> Result<Db, StoreError> {
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| StoreError::Open { path, source }
    };
    std::fs::create_dir_all(dir).map_err(failed(dir))?;
    let file = dir.join(STATE_FILE);
    let format_1 = dir.join(FORMAT_1_FILE);
    if format_1.is_file() && !file.exists() {
        std::fs::rename(&format_1, &file).map_err(failed(&format_1))?;
        tracing::info!(from = %format_1.display(), to = %file.display(), "state file of release 0.1 moved");
    }
    if !format_1.exists() {
        std::fs::create_dir(&format_1).map_err(failed(&format_1))?;
        std::fs::write(format_1.join("README"), FORMAT_1_NOTE).map_err(failed(&format_1))?;
    }
    let db = Db::open(&file).map_err(failed(&file))?;
    // The file names the latest format that wrote to it (none: format 1).
    let written: u32 = db
        .get_meta(KEY_FORMAT)
        .map_err(failed(&file))?
        .unwrap_or(crate::OLDEST_FORMAT);
    crate::format::check("the state file", written)
        .map_err(|e| failed(&file)(std::io::Error::other(e)))?;
    if written < crate::FORMAT {
        db.put_meta(KEY_FORMAT, &crate::FORMAT)
            .map_err(failed(&file))?;
    }
    Ok(db)
}

/// The node id kept in the store, created once: a node's identity survives
/// its restarts. Random so that hosts bootstrapped apart never collide.
fn node_id(db: &Db) -> std::io::Result<HostId> {
    if let Some(id) = db.get_meta::<HostId>(KEY_NODE_ID)? {
        return Ok(id);
    }
    // Keep ids readable in logs and JSON-safe for scripts (< 2^53).
    let id = (rand::random::<u64>() >> 11).max(1);
    db.put_meta(KEY_NODE_ID, &id)?;
    Ok(id)
}

/// One member, as `rustnet status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: HostId,
    pub addr: String,
    pub voter: bool,
}

/// This node's Raft figures.
#[derive(Debug, Clone)]
pub struct RaftView {
    /// leader, follower, candidate, learner or shutdown.
    pub state: &'static str,
    pub term: u64,
    pub leader: Option<HostId>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    /// On the leader: each peer's replicated index.
    pub matched: Vec<(HostId, Option<u64>)>,
}

impl RaftView {
    /// On the leader: how many log entries each peer is behind.
    pub fn behind(&self) -> impl Iterator<Item = (HostId, u64)> + '_ {
        let last = self.last_log_index.unwrap_or(0);
        self.matched
            .iter()
            .map(move |(id, matched)| (*id, last.saturating_sub(matched.unwrap_or(0))))
    }
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterView {
    pub cluster: Option<String>,
    pub this: HostId,
    pub leader: Option<HostId>,
    pub state: String,
    pub term: u64,
    pub members: Vec<Member>,
}

impl Store {
    /// Every member with its address and role.
    pub fn members(&self) -> Vec<Member> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<HostId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// This node's Raft figures, for metrics.
    pub fn raft_view(&self) -> RaftView {
        let metrics = self.raft.metrics().borrow_watched().clone();
        RaftView {
            state: state_name(metrics.state),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            committed_index: metrics.local_committed.map(|l| l.index),
            applied_index: metrics.last_applied.map(|l| l.index),
            matched: metrics
                .replication
                .iter()
                .flatten()
                .map(|(id, log)| (*id, log.map(|l| l.index)))
                .collect(),
        }
    }

    /// The cluster as this node sees it, for `rustnet status`.
    pub fn cluster_view(&self) -> ClusterView {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let state = state_name(metrics.state);
        ClusterView {
            cluster: self.cluster_id().ok().flatten(),
            this: self.id,
            leader: metrics.current_leader,
            state: state.to_owned(),
            term: metrics.current_term,
            members: self.members(),
        }
    }

    /// Whether this node is a voter of the cluster (as far as it knows).
    pub(crate) fn is_voter(&self) -> bool {
        self.named_in(|m| m.voter_ids().any(|id| id == self.id))
    }

    /// Whether this node is a learner of the cluster (as far as it knows):
    /// not merely absent from a membership it has yet to learn.
    pub(crate) fn is_learner(&self) -> bool {
        self.named_in(|m| m.learner_ids().any(|id| id == self.id))
    }

    /// `named` asked of the membership this node knows, without copying it.
    fn named_in(
        &self,
        named: impl FnOnce(&openraft::Membership<HostId, openraft::BasicNode>) -> bool,
    ) -> bool {
        named(
            self.raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership(),
        )
    }
}

fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[cfg(test)]
mod tests;
