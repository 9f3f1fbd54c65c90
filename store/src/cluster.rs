//! Membership: bootstrap, join through any member, removal, and keeping the
//! number of voters.
//!
//! ```text
//!   new node ──Enroll(token)──► any member: certificate (see tls.rs)
//!   new node ──Join──► any member ──(forward)──► leader: add learner (catch up),
//!                                                 promote to voter while voters < N
//!   rustnet cluster remove/leave ──► leader: remove from membership,
//!                                    then ForgetHost frees what it held
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ChangeMembers, ServerState};

use super::db::{KEY_CERT, KEY_CLUSTER_ID, KEY_NODE_ID, KEY_VOUCHED};
use super::error::{PeerError, Refusal, RemoteError, StoreError, TlsError};
use super::tls::NodeCert;
use super::wire::{EnrollReply, EnrollRequest, JoinReply, JoinRequest, call};
use super::{Store, StoreConfig};
use crate::{Command, HostId, JoinToken, State, check_join_token, pinned, split_token};

impl Store {
    /// Opens the state in `dir` (creating it on first start), starts the
    /// Raft node and its background duties. A new node is not part of any
    /// cluster until [`Membership::bootstrap`] or [`Membership::join`].
    pub async fn open(dir: &std::path::Path, config: StoreConfig) -> Result<Self, StoreError> {
        let store = Self::open_node(dir, config).await?;
        tokio::spawn(keep_voters(store.clone()));
        tokio::spawn(super::signing::keep_cert_fresh(store.clone()));
        tokio::spawn(keep_log_compact(store.clone()));
        Ok(store)
    }

    pub(super) fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.id)
    }

    /// The leader's address when another node leads.
    pub(super) fn leader_addr_if_not_me(&self) -> Option<String> {
        let watch = self.raft.metrics();
        let metrics = watch.borrow_watched();
        let leader = metrics.current_leader.filter(|l| *l != self.id)?;
        metrics
            .membership_config
            .membership()
            .nodes()
            .find(|(id, _)| **id == leader)
            .map(|(_, n)| n.addr.clone())
    }

    /// Who is in the cluster: bootstrap, joining, removal, the join token.
    pub fn membership(&self) -> Membership<'_> {
        Membership { store: self }
    }
}

/// Who is in the cluster, and how one gets in and out: bootstrap, the join
/// token, enrollment and join through any member, removal, and keeping the
/// number of voters. A view of a [`Store`].
#[derive(Debug, Clone, Copy)]
pub struct Membership<'a> {
    store: &'a Store,
}

impl Membership<'_> {
    /// Makes a fresh node a one-node cluster of its own, whose join token
    /// is `token` if given (for automated installs), else a random one; a
    /// node with state is left as it is.
    pub async fn bootstrap(&self, token: Option<&JoinToken>) -> Result<(), StoreError> {
        if self
            .store
            .raft
            .is_initialized()
            .await
            .map_err(StoreError::raft)?
        {
            // A member from before mutual TLS gets its certificate now.
            return self.store.signing().ensure_cert().await;
        }
        let members = BTreeMap::from([(self.store.id, BasicNode::new(self.store.addr()))]);
        self.store
            .raft
            .initialize(members)
            .await
            .map_err(StoreError::raft)?;
        self.store
            .set_cluster_id(&format!("{:016x}", rand::random::<u64>()))?;
        // Its only member reads this release's format.
        self.store
            .write(Command::RaiseFormat {
                format: crate::FORMAT,
            })
            .await?;
        let token = token.map_or_else(JoinToken::generate, |t| split_token(t).0);
        self.store.write(Command::InitJoinToken { token }).await?;
        self.store.signing().ensure_cert().await
    }

    /// Gives the cluster a join token if it has none (a new cluster, or one
    /// from before join tokens).
    pub async fn ensure_join_token(&self) -> Result<(), StoreError> {
        if self.store.read(|s| s.join_token().is_some()).await? {
            return Ok(());
        }
        let token = JoinToken::generate();
        self.store
            .write(Command::InitJoinToken { token })
            .await
            .map(drop)
    }

    /// The cluster's join token, in its full form: the secret and the
    /// fingerprint of the CA that a joining host checks.
    pub async fn join_token(&self) -> Result<JoinToken, StoreError> {
        self.ensure_join_token().await?;
        let (token, ca) = self
            .store
            .read(|s| {
                (
                    s.join_token().cloned(),
                    s.ca().map(|ca| ca.fingerprint.clone()),
                )
            })
            .await?;
        let token = token.ok_or(StoreError::Missing("join token"))?;
        Ok(match ca {
            Some(ca) => JoinToken::new(&pinned(&token, &ca)),
            None => token,
        })
    }

    /// Replaces the join token: hosts that joined stay members; new ones
    /// need the new token.
    pub async fn rotate_join_token(&self) -> Result<JoinToken, StoreError> {
        let token = JoinToken::generate();
        self.store.write(Command::RotateJoinToken { token }).await?;
        self.join_token().await
    }

    /// Handles an enrollment on any member: checks the token, issues a
    /// certificate from the cluster's CA and admits it.
    pub(crate) async fn handle_enroll(
        &self,
        ask: EnrollRequest,
    ) -> Result<EnrollReply, RemoteError> {
        let (expected, has_ca) = self
            .store
            .read(|s| (s.join_token().cloned(), s.ca().is_some()))
            .await?;
        if let Err(reason) = check_join_token(expected.as_ref(), ask.token.as_ref()) {
            tracing::warn!(addr = %ask.addr, %reason, "enrollment refused");
            return Err(Refusal::Token(reason).into());
        }
        if !has_ca {
            return Err(StoreError::Missing("CA").into());
        }
        let at = super::clock::unix_now();
        let id = match self.store.write(Command::AssignHostId { at }).await? {
            crate::Response::Host { id } => id,
            other => return Err(StoreError::Unexpected(other).into()),
        };
        let cert = self.store.signing().issue_cert(id).await?;
        let admit = Command::AdmitCert {
            host: id,
            fingerprint: cert.fingerprint.clone(),
            issuer: Some(cert.issuer.clone()),
            not_before: Some(cert.not_before),
        };
        self.store.write(admit).await?;
        tracing::info!(node = id, addr = %ask.addr, cert = %cert.fingerprint, "enrolled a new host");
        let vouched = self.store.local(State::admitted_certs).unwrap_or_default();
        Ok(EnrollReply { id, cert, vouched })
    }

    /// Joins the cluster through any of `seeds` (`host:port`). A member
    /// restarting while no seed answers carries on from its own state; a
    /// fresh node fails after trying for a while; a node whose state belongs
    /// to another cluster is refused.
    pub async fn join(&self, seeds: &[String]) -> Result<(), StoreError> {
        let member = self
            .store
            .raft
            .is_initialized()
            .await
            .map_err(StoreError::raft)?;
        match (member, self.store.cert()) {
            (false, None) => return Err(StoreError::NotEnrolled),
            (true, None) => self.store.signing().ensure_cert().await.inspect_err(|e| {
                tracing::error!(
                    error = %e,
                    "this member has no certificate (its state is from before mutual TLS?) \
                     and the cluster cannot issue one; clear RUSTNET_STATE_DIR and join again"
                );
            })?,
            (_, Some(cert)) => self.check_same_ca(seeds, &cert).await?,
        }
        let ask = JoinRequest {
            node_id: self.store.id,
            addr: self.store.addr().to_owned(),
            cluster: self.store.cluster_id()?,
        };
        let answer = ask_seeds(
            self.store.config.join_patience,
            seeds,
            member,
            "join",
            |seed| self.send_join(seed, &ask),
        )
        .await?;
        if let Some((seed, reply)) = answer {
            self.store.set_cluster_id(&reply.cluster)?;
            self.store.vouch(reply.vouched)?;
            tracing::info!(seed = %seed, cluster = %reply.cluster, "joined the cluster");
        }
        Ok(())
    }

    /// Refuses to join a cluster of another CA (this state dir belongs to
    /// another cluster); seeds that do not answer prove nothing.
    async fn check_same_ca(&self, seeds: &[String], cert: &NodeCert) -> Result<(), StoreError> {
        for seed in seeds {
            if let Ok(false) = super::transport::chains_to(seed, &cert.ca_pem).await {
                return Err(StoreError::Refused {
                    action: "join",
                    by: seed.clone(),
                    refusal: Refusal::OtherCa {
                        node: self.store.id,
                    },
                });
            }
        }
        Ok(())
    }

    async fn send_join(&self, to: &str, ask: &JoinRequest) -> Result<JoinReply, PeerError> {
        let mut client = self.store.peers.cluster(to)?;
        call(ask, self.store.config.timeout, |r| client.join(r)).await
    }

    /// Handles a join on this member: forwarded to the leader, which adds
    /// the node as a learner and promotes it while voters are missing.
    /// `sender` is the member whose certificate the request came with: the
    /// joining host itself, or a member forwarding its request.
    pub(crate) async fn handle_join(
        &self,
        ask: JoinRequest,
        sender: HostId,
    ) -> Result<JoinReply, RemoteError> {
        let forwarding = sender != ask.node_id;
        if forwarding && !self.store.members().iter().any(|m| m.id == sender) {
            return Err(Refusal::NotItsId {
                node: ask.node_id,
                cert_of: format!("node {sender}"),
            }
            .into());
        }
        let enrolled = self
            .store
            .local(|s| s.cert_of(ask.node_id).is_some())
            .unwrap_or(false);
        if !enrolled {
            return Err(Refusal::NotEnrolled { node: ask.node_id }.into());
        }
        if let Some(leader) = self.store.leader_addr_if_not_me() {
            return self.send_join(&leader, &ask).await.map_err(forwarded);
        }
        let cluster = self
            .store
            .cluster_id()?
            .ok_or(StoreError::Missing("cluster id"))?;
        if let Some(theirs) = ask.cluster.as_ref().filter(|c| **c != cluster) {
            return Err(Refusal::OtherCluster {
                node: ask.node_id,
                theirs: theirs.clone(),
                ours: cluster,
            }
            .into());
        }
        let _one_change = self.store.changes.lock().await;
        let members = self.store.members();
        if let Some(existing) = members.iter().find(|m| m.id == ask.node_id) {
            if existing.addr == ask.addr {
                return Ok(self.join_reply(cluster));
            }
            return Err(Refusal::IdInUse {
                node: ask.node_id,
                addr: existing.addr.clone(),
            }
            .into());
        }
        if let Some(other) = members.iter().find(|m| m.addr == ask.addr) {
            return Err(Refusal::AddrInUse {
                addr: ask.addr.clone(),
                member: other.id,
            }
            .into());
        }
        // Not waiting (more than JOIN_CATCH_UP) for it to catch up: a host
        // joining a large cluster knows its place (and the certificates it
        // is to admit meanwhile) without waiting for its snapshot, and is
        // promoted once it has caught up (keep_voters).
        self.store
            .raft
            .add_learner(ask.node_id, BasicNode::new(&ask.addr), false)
            .await
            .map_err(|e| RemoteError::Failed(format!("add learner: {e}")))?;
        self.store
            .write(Command::Joined { host: ask.node_id })
            .await?;
        // A small state is caught up with in moments: promoted now, hosts
        // become voters in the order they joined.
        let id = ask.node_id;
        let _ = (self.store.raft.wait(Some(JOIN_CATCH_UP)))
            .metrics(|m| caught_up(m, id), "the learner caught up")
            .await;
        self.promote_locked().await;
        tracing::info!(node = ask.node_id, addr = %ask.addr, "node joined");
        Ok(self.join_reply(cluster))
    }

    fn join_reply(&self, cluster: String) -> JoinReply {
        JoinReply {
            cluster,
            vouched: self.store.local(State::admitted_certs).unwrap_or_default(),
        }
    }

    /// Removes `node` from the cluster (a dead host, or this one leaving)
    /// and frees every address, endpoint and network it held.
    pub async fn remove(&self, node: HostId) -> Result<(), StoreError> {
        self.store
            .bounded(async {
                loop {
                    let outcome = match self.store.leader_addr_if_not_me() {
                        Some(leader) => self.send_remove(&leader, node).await.map_err(forwarded),
                        None if self.store.is_leader() => self.handle_remove(node).await,
                        None => Err(RemoteError::Failed("no leader".to_owned())),
                    };
                    match outcome {
                        Ok(()) => break Ok(()),
                        Err(RemoteError::Refused(refusal)) => {
                            break Err(StoreError::Refused {
                                action: "removal",
                                by: "the leader".to_owned(),
                                refusal,
                            });
                        }
                        Err(e) => tracing::debug!(error = %e, "remove: retrying"),
                    }
                    self.store.await_leader_change().await;
                }
            })
            .await
    }

    async fn send_remove(&self, to: &str, node: HostId) -> Result<(), PeerError> {
        let mut client = self.store.peers.cluster(to)?;
        call(&node, self.store.config.timeout, |r| client.remove(r)).await
    }

    /// On the leader: takes `node` out of the membership, revokes its
    /// certificate and frees what it held (ForgetHost), and rotates the
    /// join token, so that what the removed host holds is worthless.
    pub(crate) async fn handle_remove(&self, node: HostId) -> Result<(), RemoteError> {
        let _one_change = self.store.changes.lock().await;
        let members = self.store.members();
        let Some(member) = members.iter().find(|m| m.id == node) else {
            if self
                .store
                .local(|s| s.cert_of(node).is_some())
                .unwrap_or(false)
            {
                self.revoke(node).await?;
            }
            return Ok(());
        };
        if member.voter && members.iter().filter(|m| m.voter).count() == 1 {
            return Err(Refusal::LastVoter.into());
        }
        let change = if member.voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([node]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([node]))
        };
        self.store
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| RemoteError::Failed(e.to_string()))?;
        tracing::info!(node, "node removed from the cluster");
        self.revoke(node).await?;
        Ok(())
    }

    /// Forgets `node` (its certificate with it) and rotates the join token.
    async fn revoke(&self, node: HostId) -> Result<(), StoreError> {
        self.store.write(Command::ForgetHost { host: node }).await?;
        self.store
            .write(Command::RotateJoinToken {
                token: JoinToken::generate(),
            })
            .await?;
        tracing::info!(node, "certificate revoked and join token rotated");
        Ok(())
    }

    /// On the leader: promotes learners while there are fewer voters than
    /// configured.
    async fn promote_if_short(&self) {
        let _one_change = self.store.changes.lock().await;
        self.promote_locked().await;
    }

    async fn promote_locked(&self) {
        let members = self.store.members();
        let voters = members.iter().filter(|m| m.voter).count();
        let caught_up = self.caught_up();
        let learners: BTreeSet<HostId> = members
            .iter()
            .filter(|m| !m.voter && caught_up.contains(&m.id))
            .map(|m| m.id)
            .take(self.store.config.voters.saturating_sub(voters))
            .collect();
        if learners.is_empty() || !self.store.is_leader() {
            return;
        }
        match self
            .store
            .raft
            .change_membership(ChangeMembers::AddVoterIds(learners.clone()), true)
            .await
        {
            Ok(_) => tracing::info!(?learners, "promoted to voters"),
            Err(e) => tracing::warn!(error = %e, "promoting learners"),
        }
    }

    /// On the leader: the members whose log is within [`PROMOTION_LAG`]
    /// entries of its own. A learner is promoted only then: a voter still
    /// installing its snapshot would count towards the quorum without
    /// being able to answer.
    fn caught_up(&self) -> BTreeSet<HostId> {
        let watch = self.store.raft.metrics();
        let metrics = watch.borrow_watched();
        metrics
            .replication
            .iter()
            .flatten()
            .map(|(id, _)| *id)
            .filter(|id| caught_up(&metrics, *id))
            .collect()
    }
}

/// The refusal a peer error carries, if it is one: retrying cannot change it.
fn refusal(error: &PeerError) -> Option<Refusal> {
    match error {
        PeerError::Remote(RemoteError::Refused(refusal)) => Some(refusal.clone()),
        PeerError::Tls(TlsError::Pinned(refusal)) => Some(refusal.clone()),
        _ => None,
    }
}

/// A forwarded call's failure as this member answers it: the leader's
/// refusal stays one.
fn forwarded(error: PeerError) -> RemoteError {
    match error {
        PeerError::Remote(remote) => remote,
        other => RemoteError::Failed(super::error::chain(&other)),
    }
}

/// How far behind the leader's log a learner may be and still be promoted.
const PROMOTION_LAG: u64 = 100;

/// How long a join waits for the learner to catch up before it answers
/// (and leaves its promotion to keep_voters).
const JOIN_CATCH_UP: Duration = Duration::from_secs(1);

/// Whether, in the leader's `metrics`, member `id`'s log is within
/// [`PROMOTION_LAG`] entries of the leader's.
fn caught_up(metrics: &openraft::RaftMetrics<super::TypeConfig>, id: HostId) -> bool {
    let last = metrics.last_log_index.unwrap_or(0);
    metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .and_then(Option::as_ref)
        .is_some_and(|matched| matched.index + PROMOTION_LAG >= last)
}

/// Background duty of every node: compact the log into a snapshot when
/// it is due (`snapshot_due`, checked five times a second).
async fn keep_log_compact(store: Store) {
    let metrics = store.raft.metrics();
    // The applied index a snapshot was last asked for at: not asked again
    // while it is being built.
    let mut asked: Option<u64> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (state, applied, snapshot) = {
            let m = metrics.borrow_watched();
            let index = |l: &Option<openraft::alias::LogIdOf<super::TypeConfig>>| {
                l.as_ref().map(|l| l.index)
            };
            (m.state, index(&m.last_applied), index(&m.snapshot))
        };
        if state == ServerState::Shutdown {
            return;
        }
        let Some(applied) = applied else {
            continue;
        };
        let since = match snapshot.max(asked) {
            Some(base) => applied.saturating_sub(base),
            None => applied + 1,
        };
        let held = store.local(State::held_addresses).unwrap_or(0);
        if !super::state_machine::snapshot_due(since, held) {
            continue;
        }
        asked = Some(applied);
        if let Err(e) = store.raft.trigger().snapshot().await {
            tracing::warn!(error = %e, "asking for a snapshot");
        }
    }
}

/// Background duty of every node: while it leads, keep the configured
/// number of voters by promoting learners (after a join, a removal, or the
/// leader removing itself).
async fn keep_voters(store: Store) {
    let mut metrics = store.raft.metrics();
    loop {
        if metrics.borrow_watched().state == ServerState::Shutdown {
            return;
        }
        if store.is_leader() {
            store.membership().promote_if_short().await;
        }

        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        // The metrics change with every write: look at most ten times a
        // second.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks `seeds` in turn, a round a second, until one answers; returns
/// that seed and its answer. A refusal ends it at once. After a round
/// without an answer, `member` (a restarting member, which carries on
/// from its own state) gives up with `None`; anyone else keeps trying
/// for `patience` (RUSTNET_JOIN_TIMEOUT).
async fn ask_seeds<'a, T, F>(
    patience: Duration,
    seeds: &'a [String],
    member: bool,
    action: &'static str,
    ask: impl Fn(&'a str) -> F,
) -> Result<Option<(String, T)>, StoreError>
where
    F: Future<Output = Result<T, PeerError>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut last = String::from("no seed given");
    while tokio::time::Instant::now() < deadline {
        for seed in seeds {
            let error = match ask(seed).await {
                Ok(answer) => return Ok(Some((seed.clone(), answer))),
                Err(e) => e,
            };
            if let Some(refusal) = refusal(&error) {
                return Err(StoreError::Refused {
                    action,
                    by: seed.clone(),
                    refusal,
                });
            }
            last = format!("{seed}: {}", super::error::chain(&error));
        }
        if member {
            tracing::warn!(error = %last, "no seed answers; carrying on as a member from local state");
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(StoreError::NoSeedAnswered { patience, last })
}

/// Gets a new host its id and certificate through any of `seeds`, before
/// its store opens (the id is the one its Raft node will have): checks the
/// seed's CA against the token's pin (or takes the first one seen, for a
/// token without one), then asks with the token's secret. Keeps both in
/// `dir`; a state dir that has a certificate or a cluster already is left
/// as it is.
pub async fn enroll(
    dir: &std::path::Path,
    config: &StoreConfig,
    seeds: &[String],
    token: Option<&JoinToken>,
) -> Result<(), StoreError> {
    let db = super::node::open_db(dir)?;
    let enrolled: Option<NodeCert> = db
        .get_meta(KEY_CERT)
        .map_err(StoreError::storage("read this member's certificate"))?;
    let cluster: Option<String> = db
        .get_meta(KEY_CLUSTER_ID)
        .map_err(StoreError::storage("read the cluster id"))?;
    if enrolled.is_some() || cluster.is_some() {
        return Ok(());
    }
    let (secret, pin) = match token.map(split_token) {
        Some((secret, pin)) => (Some(secret), pin),
        None => (None, None),
    };
    if secret.is_some() && pin.is_none() {
        tracing::warn!("the join token names no CA: trusting the CA the seed presents");
    }
    let ask = EnrollRequest {
        addr: config.addr.clone(),
        token: secret,
    };
    let answer = ask_seeds(config.join_patience, seeds, false, "enrollment", |seed| {
        send_enroll(seed, &ask, pin.as_deref(), config.timeout)
    })
    .await?;
    let Some((seed, reply)) = answer else {
        return Ok(());
    };
    db.put_meta(KEY_NODE_ID, &reply.id)
        .map_err(StoreError::storage("keep this host's id"))?;
    db.put_meta(KEY_CERT, &reply.cert)
        .map_err(StoreError::storage("keep this member's certificate"))?;
    db.put_meta(KEY_VOUCHED, &reply.vouched)
        .map_err(StoreError::storage(
            "keep the certificates vouched for at join",
        ))?;
    tracing::info!(seed = %seed, node = reply.id, cert = %reply.cert.fingerprint, "enrolled");
    Ok(())
}

async fn send_enroll(
    to: &str,
    ask: &EnrollRequest,
    pin: Option<&str>,
    timeout: Duration,
) -> Result<EnrollReply, PeerError> {
    let ca = super::transport::fetch_ca(to, pin)
        .await
        .map_err(PeerError::Tls)?;
    let channel = super::network::tls_endpoint(to, super::tls::trust(&ca))?
        .connect()
        .await
        .map_err(PeerError::Connect)?;
    let mut client = rustnet_proto::ClusterClient::new(channel);
    call(ask, timeout, |r| client.enroll(r)).await
}
