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
use serde::{Deserialize, Serialize};

use super::db::{KEY_CERT, KEY_CLUSTER_ID, KEY_NODE_ID, KEY_VOUCHED};
use super::error::{PeerError, Refusal, RemoteError, StoreError, TlsError};
use super::tls::{NodeCert, Trust};
use super::wire::{EnrollReply, EnrollRequest, JoinReply, JoinRequest, call};
use super::{Store, StoreConfig};
use crate::{Command, HostId, JoinToken, State, check_join_token, pinned, split_token};

/// How long a member renewing under a rotated CA waits before presenting
/// its new certificate: every replica learns it meanwhile.
const RENEWAL_GRACE_ON_ROTATION: Duration = Duration::from_secs(3);

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
    /// Opens the state in `dir` (creating it on first start), starts the
    /// Raft node and its background duties. A new node is not part of any
    /// cluster until [`Store::bootstrap`] or [`Store::join`].
    pub async fn open(dir: &std::path::Path, config: StoreConfig) -> Result<Self, StoreError> {
        let store = Self::open_node(dir, config).await?;
        tokio::spawn(keep_voters(store.clone()));
        tokio::spawn(keep_cert_fresh(store.clone()));
        tokio::spawn(keep_log_compact(store.clone()));
        Ok(store)
    }

    /// Makes a fresh node a one-node cluster of its own, whose join token
    /// is `token` if given (for automated installs), else a random one; a
    /// node with state is left as it is.
    pub async fn bootstrap(&self, token: Option<&JoinToken>) -> Result<(), StoreError> {
        if self.raft.is_initialized().await.map_err(StoreError::raft)? {
            // A member from before mutual TLS gets its certificate now.
            return self.ensure_cert().await;
        }
        let members = BTreeMap::from([(self.id, BasicNode::new(self.addr()))]);
        self.raft
            .initialize(members)
            .await
            .map_err(StoreError::raft)?;
        self.set_cluster_id(&format!("{:016x}", rand::random::<u64>()))?;
        // Its only member reads this release's format.
        self.write(Command::RaiseFormat {
            format: crate::FORMAT,
        })
        .await?;
        let token = token.map_or_else(JoinToken::generate, |t| split_token(t).0);
        self.write(Command::InitJoinToken { token }).await?;
        self.ensure_cert().await
    }

    /// Gives a member without a certificate one from the cluster's CA
    /// (making the CA for a cluster that has none: a new cluster, or a
    /// one-node cluster from before mutual TLS).
    pub(crate) async fn ensure_cert(&self) -> Result<(), StoreError> {
        if self.cert().is_some() {
            return Ok(());
        }
        if self.read(|s| s.ca().is_none()).await? {
            // The key stays here (this node is the cluster's first voter);
            // the state gets the certificate only.
            let ca = super::tls::new_ca().map_err(StoreError::Certificate)?;
            self.keep_ca_key(&ca)?;
            self.write(Command::InitCa { ca: ca.public() }).await?;
        }
        self.issue_own().await
    }

    /// Issues this member a new certificate of the cluster's CA, admits it
    /// (which revokes the one before) and uses it from now on.
    async fn issue_own(&self) -> Result<(), StoreError> {
        let cert = self.issue_cert(self.id).await?;
        let admit = Command::AdmitCert {
            host: self.id,
            fingerprint: cert.fingerprint.clone(),
            issuer: Some(cert.issuer.clone()),
            not_before: Some(cert.not_before),
        };
        self.write(admit).await?;
        self.set_cert(cert)
    }

    /// Renews this member's certificate when less than a third of its
    /// lifetime is left (or it has none: a certificate from before
    /// lifetimes never expired), or when the cluster's CA is being
    /// rotated and it is of the CA before; otherwise keeps what it trusts
    /// and presents with it in step with the replicated state.
    pub(crate) async fn renew_if_due(&self) -> Result<(), StoreError> {
        let Some(cert) = self.cert() else {
            return Ok(());
        };
        let Some((ca, trust, rotating_from)) = self
            .local(|s| {
                let from = s.ca_rotation().map(|r| r.previous_fingerprint.clone());
                Some((
                    s.ca().map(|ca| ca.fingerprint.clone())?,
                    Trust::of(s)?,
                    from,
                ))
            })
            .flatten()
        else {
            return Ok(());
        };
        // A certificate from before CA rotation names no issuer.
        let legacy = cert.issuer.is_empty();
        let current = cert.issuer == ca || (legacy && rotating_from.is_none());
        let rotated = !current && (legacy || rotating_from.as_ref() == Some(&cert.issuer));
        if !current && !rotated {
            // This replica has yet to learn of the CA that issued this
            // member's certificate (it is catching up): nothing to do yet.
            return Ok(());
        }
        let left = cert.not_after.saturating_sub(super::clock::unix_now());
        let aged = cert.not_after == 0 || left <= self.config.cert_lifetime.as_secs() / 3;
        if !aged && !rotated {
            return self.keep_trust(cert, &trust);
        }
        let renewed = self.issue_cert(self.id).await?;
        self.write(Command::AdmitCert {
            host: self.id,
            fingerprint: renewed.fingerprint.clone(),
            issuer: Some(renewed.issuer.clone()),
            not_before: Some(renewed.not_before),
        })
        .await?;
        // Kept at once (a restart uses it), presented a little later: the
        // replicas learn it meanwhile, and keep admitting the one before.
        self.db
            .put_meta(super::db::KEY_CERT, &renewed)
            .map_err(StoreError::storage("keep this member's certificate"))?;
        let grace = if rotated {
            RENEWAL_GRACE_ON_ROTATION
        } else {
            Duration::from_secs((left / 3).clamp(1, 30))
        };
        tokio::time::sleep(grace).await;
        tracing::info!(cert = %renewed.fingerprint, "certificate renewed");
        self.set_cert(renewed)
    }

    /// Trusts and presents what the state says (the CAs of a rotation
    /// while it lasts, the cluster's CA alone after), with the same
    /// certificate.
    fn keep_trust(&self, cert: NodeCert, trust: &Trust) -> Result<(), StoreError> {
        let chain_pem = format!("{}\n{}", cert.leaf_pem(), trust.chain_tail_pem);
        if cert.issuer.is_empty() || (cert.ca_pem == trust.roots_pem && cert.chain_pem == chain_pem)
        {
            return Ok(());
        }
        tracing::info!("trusting the cluster's CAs as they are now");
        self.set_cert(NodeCert {
            ca_pem: trust.roots_pem.clone(),
            chain_pem,
            ..cert
        })
    }

    /// Replaces the cluster's CA (`rustnet cluster rotate-ca`): members
    /// renew their certificates under the new one within seconds, and the
    /// old one is trusted until the last has. The join token's CA pin
    /// changes with it: the new token is returned.
    pub async fn rotate_ca(&self) -> Result<JoinToken, StoreError> {
        let current = self
            .read(|s| s.ca().cloned())
            .await?
            .ok_or(StoreError::Missing("CA"))?;
        let previous = self.signing_now(&current).await?;
        let next = super::tls::new_ca().map_err(StoreError::Certificate)?;
        let cross_pem =
            super::tls::cross_sign(&previous, &next).map_err(StoreError::Certificate)?;
        tracing::info!(from = %previous.fingerprint, to = %next.fingerprint, "rotating the cluster's CA");
        // Kept here before the state names it: the other voters fetch it.
        self.keep_ca_key(&next)?;
        self.write(Command::RotateCa {
            ca: next.public(),
            cross_pem,
        })
        .await?;
        self.join_token().await
    }

    /// On the leader: retires the CA before a rotation once every member
    /// has renewed and `since` (when it was first seen so) is long enough
    /// ago for the last to present its new certificate.
    async fn retire_ca_if_done(&self, since: &mut Option<tokio::time::Instant>) {
        let finished = self
            .local(|s| {
                s.ca_rotation()
                    .filter(|r| r.pending.is_empty())
                    .map(|r| r.previous_fingerprint.clone())
            })
            .flatten();
        let Some(previous) = finished.filter(|_| self.cluster_view().state == "leader") else {
            *since = None;
            return;
        };
        let seen = *since.get_or_insert_with(tokio::time::Instant::now);
        if seen.elapsed() < RENEWAL_GRACE_ON_ROTATION * 3 {
            return;
        }
        match self.write(Command::RetireCa { previous }).await {
            Ok(_) => tracing::info!("CA rotation finished: the CA before is no longer trusted"),
            Err(e) => tracing::warn!(error = %e, "retiring the CA before"),
        }
    }

    /// Gives the cluster a join token if it has none (a new cluster, or one
    /// from before join tokens).
    pub async fn ensure_join_token(&self) -> Result<(), StoreError> {
        if self.read(|s| s.join_token().is_some()).await? {
            return Ok(());
        }
        let token = JoinToken::generate();
        self.write(Command::InitJoinToken { token }).await.map(drop)
    }

    /// The cluster's join token, in its full form: the secret and the
    /// fingerprint of the CA that a joining host checks.
    pub async fn join_token(&self) -> Result<JoinToken, StoreError> {
        self.ensure_join_token().await?;
        let (token, ca) = self
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
        self.write(Command::RotateJoinToken { token }).await?;
        self.join_token().await
    }

    /// Handles an enrollment on any member: checks the token, issues a
    /// certificate from the cluster's CA and admits it.
    pub(crate) async fn handle_enroll(
        &self,
        ask: EnrollRequest,
    ) -> Result<EnrollReply, RemoteError> {
        let (expected, has_ca) = self
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
        let id = match self.write(Command::AssignHostId { at }).await? {
            crate::Response::Host { id } => id,
            other => return Err(StoreError::Unexpected(other).into()),
        };
        let cert = self.issue_cert(id).await?;
        let admit = Command::AdmitCert {
            host: id,
            fingerprint: cert.fingerprint.clone(),
            issuer: Some(cert.issuer.clone()),
            not_before: Some(cert.not_before),
        };
        self.write(admit).await?;
        tracing::info!(node = id, addr = %ask.addr, cert = %cert.fingerprint, "enrolled a new host");
        let vouched = self.local(State::admitted_certs).unwrap_or_default();
        Ok(EnrollReply { id, cert, vouched })
    }

    /// Joins the cluster through any of `seeds` (`host:port`). A member
    /// restarting while no seed answers carries on from its own state; a
    /// fresh node fails after trying for a while; a node whose state belongs
    /// to another cluster is refused.
    pub async fn join(&self, seeds: &[String]) -> Result<(), StoreError> {
        let member = self.raft.is_initialized().await.map_err(StoreError::raft)?;
        match (member, self.cert()) {
            (false, None) => return Err(StoreError::NotEnrolled),
            (true, None) => self.ensure_cert().await.inspect_err(|e| {
                tracing::error!(
                    error = %e,
                    "this member has no certificate (its state is from before mutual TLS?) \
                     and the cluster cannot issue one; clear RUSTNET_STATE_DIR and join again"
                );
            })?,
            (_, Some(cert)) => self.check_same_ca(seeds, &cert).await?,
        }
        let ask = JoinRequest {
            node_id: self.id,
            addr: self.addr().to_owned(),
            cluster: self.cluster_id()?,
        };
        let answer = ask_seeds(self.config.join_patience, seeds, member, "join", |seed| {
            self.send_join(seed, &ask)
        })
        .await?;
        if let Some((seed, reply)) = answer {
            self.set_cluster_id(&reply.cluster)?;
            self.vouch(reply.vouched)?;
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
                    refusal: Refusal::OtherCa { node: self.id },
                });
            }
        }
        Ok(())
    }

    async fn send_join(&self, to: &str, ask: &JoinRequest) -> Result<JoinReply, PeerError> {
        let mut client = self.peers.cluster(to)?;
        call(ask, self.config.timeout, |r| client.join(r)).await
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
        if forwarding && !self.members().iter().any(|m| m.id == sender) {
            return Err(Refusal::NotItsId {
                node: ask.node_id,
                cert_of: format!("node {sender}"),
            }
            .into());
        }
        let enrolled = self
            .local(|s| s.cert_of(ask.node_id).is_some())
            .unwrap_or(false);
        if !enrolled {
            return Err(Refusal::NotEnrolled { node: ask.node_id }.into());
        }
        if let Some(leader) = self.leader_addr_if_not_me() {
            return self.send_join(&leader, &ask).await.map_err(forwarded);
        }
        let cluster = self
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
        let _one_change = self.membership.lock().await;
        let members = self.members();
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
        self.raft
            .add_learner(ask.node_id, BasicNode::new(&ask.addr), false)
            .await
            .map_err(|e| RemoteError::Failed(format!("add learner: {e}")))?;
        self.write(Command::Joined { host: ask.node_id }).await?;
        // A small state is caught up with in moments: promoted now, hosts
        // become voters in the order they joined.
        let id = ask.node_id;
        let _ = (self.raft.wait(Some(JOIN_CATCH_UP)))
            .metrics(|m| caught_up(m, id), "the learner caught up")
            .await;
        self.promote_locked().await;
        tracing::info!(node = ask.node_id, addr = %ask.addr, "node joined");
        Ok(self.join_reply(cluster))
    }

    fn join_reply(&self, cluster: String) -> JoinReply {
        JoinReply {
            cluster,
            vouched: self.local(State::admitted_certs).unwrap_or_default(),
        }
    }

    /// Removes `node` from the cluster (a dead host, or this one leaving)
    /// and frees every address, endpoint and network it held.
    pub async fn remove(&self, node: HostId) -> Result<(), StoreError> {
        self.bounded(async {
            loop {
                let outcome = match self.leader_addr_if_not_me() {
                    Some(leader) => self.send_remove(&leader, node).await.map_err(forwarded),
                    None if self.is_leader() => self.handle_remove(node).await,
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
                self.await_leader_change().await;
            }
        })
        .await
    }

    async fn send_remove(&self, to: &str, node: HostId) -> Result<(), PeerError> {
        let mut client = self.peers.cluster(to)?;
        call(&node, self.config.timeout, |r| client.remove(r)).await
    }

    /// On the leader: takes `node` out of the membership, revokes its
    /// certificate and frees what it held (ForgetHost), and rotates the
    /// join token, so that what the removed host holds is worthless.
    pub(crate) async fn handle_remove(&self, node: HostId) -> Result<(), RemoteError> {
        let _one_change = self.membership.lock().await;
        let members = self.members();
        let Some(member) = members.iter().find(|m| m.id == node) else {
            if self.local(|s| s.cert_of(node).is_some()).unwrap_or(false) {
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
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| RemoteError::Failed(e.to_string()))?;
        tracing::info!(node, "node removed from the cluster");
        self.revoke(node).await?;
        Ok(())
    }

    /// Forgets `node` (its certificate with it) and rotates the join token.
    async fn revoke(&self, node: HostId) -> Result<(), StoreError> {
        self.write(Command::ForgetHost { host: node }).await?;
        self.write(Command::RotateJoinToken {
            token: JoinToken::generate(),
        })
        .await?;
        tracing::info!(node, "certificate revoked and join token rotated");
        Ok(())
    }

    /// On the leader: promotes learners while there are fewer voters than
    /// configured.
    async fn promote_if_short(&self) {
        let _one_change = self.membership.lock().await;
        self.promote_locked().await;
    }

    async fn promote_locked(&self) {
        let members = self.members();
        let voters = members.iter().filter(|m| m.voter).count();
        let caught_up = self.caught_up();
        let learners: BTreeSet<HostId> = members
            .iter()
            .filter(|m| !m.voter && caught_up.contains(&m.id))
            .map(|m| m.id)
            .take(self.config.voters.saturating_sub(voters))
            .collect();
        if learners.is_empty() || !self.is_leader() {
            return;
        }
        match self
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
        let watch = self.raft.metrics();
        let metrics = watch.borrow_watched();
        metrics
            .replication
            .iter()
            .flatten()
            .map(|(id, _)| *id)
            .filter(|id| caught_up(&metrics, *id))
            .collect()
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
            store.promote_if_short().await;
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

/// Background duty of every member: renew its certificate before it
/// expires (checked every few seconds).
async fn keep_cert_fresh(store: Store) {
    let metrics = store.raft.metrics();
    let mut rotation_done = None;
    loop {
        if metrics.borrow_watched().state == ServerState::Shutdown {
            return;
        }
        if store.is_leader() {
            store.heard_leader();
        }
        if let Err(e) = store.keep_ca_keys().await {
            tracing::warn!(error = %e, "keeping the CA key");
        }
        if let Err(e) = store.keep_format().await {
            tracing::warn!(error = %e, "raising the cluster's format");
        }
        if let Err(e) = store.renew_if_due().await {
            tracing::warn!(error = %e, "renewing this member's certificate");
        }
        store.retire_ca_if_done(&mut rotation_done).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
