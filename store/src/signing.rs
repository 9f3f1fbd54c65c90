//! Who holds the cluster CA's key, and how certificates get signed.
//!
//! ```text
//!   replicated state: the CA's certificate only (key_pem empty)
//!   each voter's db:  the CA's key (KEY_CA_KEYS), fetched from another
//!                     voter (CaKey RPC, voters only) when it lacks it
//!   learner:          no key; a certificate it needs (its own renewal, a
//!                     host enrolling through it) is issued by the leader
//!                     (Issue RPC), for itself or a freshly enrolled id only
//! ```
//!
//! A state from before kept the key in the replicated state: each voter
//! copies it into its own db, then the leader writes `SealCa`, which drops
//! it from the state (log entries and snapshots written before still hold
//! it until they are compacted away).

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;

use super::Store;
use super::db::KEY_CA_KEYS;
use super::error::{PeerError, Refusal, RemoteError, StoreError, Unavailable};
use super::tls::{NodeCert, Trust};
use super::wire::{IssueRequest, call};
use crate::{ClusterCa, Command, HostId};

/// How long a member renewing under a rotated CA waits before presenting
/// its new certificate: every replica learns it meanwhile.
const RENEWAL_GRACE_ON_ROTATION: Duration = Duration::from_secs(3);

/// CA keys this node holds, by the CA's fingerprint.
type CaKeys = BTreeMap<String, String>;

/// How many times a voter asks its peers for the CA key, and the pause
/// between rounds.
const FETCH_ROUNDS: usize = 3;
const FETCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);
/// How long one peer has to answer.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    /// The CA key and this member's certificate.
    pub fn signing(&self) -> Signing<'_> {
        Signing { store: self }
    }
}

/// The cluster's CA key (kept by the voters, never replicated) and the
/// certificates it signs: this member's (issued, renewed, trusted in step
/// with the state), other hosts' (issued by the leader), and CA rotation.
/// A view of a [`Store`].
#[derive(Debug, Clone, Copy)]
pub struct Signing<'a> {
    store: &'a Store,
}

impl Signing<'_> {
    /// Gives a member without a certificate one from the cluster's CA
    /// (making the CA for a cluster that has none: a new cluster, or a
    /// one-node cluster from before mutual TLS).
    pub(crate) async fn ensure_cert(&self) -> Result<(), StoreError> {
        if self.store.cert().is_some() {
            return Ok(());
        }
        if self.store.read(|s| s.ca().is_none()).await? {
            // The key stays here (this node is the cluster's first voter);
            // the state gets the certificate only.
            let ca = super::tls::new_ca().map_err(StoreError::Certificate)?;
            self.keep_ca_key(&ca)?;
            self.store
                .write(Command::InitCa { ca: ca.public() })
                .await?;
        }
        self.issue_own().await
    }

    /// Issues this member a new certificate of the cluster's CA, admits it
    /// (which revokes the one before) and uses it from now on.
    async fn issue_own(&self) -> Result<(), StoreError> {
        let cert = self.issue_cert(self.store.id).await?;
        let admit = Command::AdmitCert {
            host: self.store.id,
            fingerprint: cert.fingerprint.clone(),
            issuer: Some(cert.issuer.clone()),
            not_before: Some(cert.not_before),
        };
        self.store.write(admit).await?;
        self.store.set_cert(cert)
    }

    /// Renews this member's certificate when less than a third of its
    /// lifetime is left (or it has none: a certificate from before
    /// lifetimes never expired), or when the cluster's CA is being
    /// rotated and it is of the CA before; otherwise keeps what it trusts
    /// and presents with it in step with the replicated state.
    pub(crate) async fn renew_if_due(&self) -> Result<(), StoreError> {
        let Some(cert) = self.store.cert() else {
            return Ok(());
        };
        let Some((ca, trust, rotating_from)) = self
            .store
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
        let aged = cert.not_after == 0 || left <= self.store.config.cert_lifetime.as_secs() / 3;
        if !aged && !rotated {
            return self.keep_trust(cert, &trust);
        }
        let renewed = self.issue_cert(self.store.id).await?;
        self.store
            .write(Command::AdmitCert {
                host: self.store.id,
                fingerprint: renewed.fingerprint.clone(),
                issuer: Some(renewed.issuer.clone()),
                not_before: Some(renewed.not_before),
            })
            .await?;
        // Kept at once (a restart uses it), presented a little later: the
        // replicas learn it meanwhile, and keep admitting the one before.
        self.store
            .db
            .put_meta(super::db::KEY_CERT, &renewed)
            .map_err(StoreError::storage("keep this member's certificate"))?;
        let grace = if rotated {
            RENEWAL_GRACE_ON_ROTATION
        } else {
            Duration::from_secs((left / 3).clamp(1, 30))
        };
        tokio::time::sleep(grace).await;
        tracing::info!(cert = %renewed.fingerprint, "certificate renewed");
        self.store.set_cert(renewed)
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
        self.store.set_cert(NodeCert {
            ca_pem: trust.roots_pem.clone(),
            chain_pem,
            ..cert
        })
    }

    /// Replaces the cluster's CA (`rustnet cluster rotate-ca`): members
    /// renew their certificates under the new one within seconds, and the
    /// old one is trusted until the last has. The join token's CA pin
    /// changes with it: ask for the token again.
    pub async fn rotate_ca(&self) -> Result<(), StoreError> {
        let current = self
            .store
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
        self.store
            .write(Command::RotateCa {
                ca: next.public(),
                cross_pem,
            })
            .await?;
        Ok(())
    }

    /// On the leader: retires the CA before a rotation once every member
    /// has renewed and `since` (when it was first seen so) is long enough
    /// ago for the last to present its new certificate.
    async fn retire_ca_if_done(&self, since: &mut Option<tokio::time::Instant>) {
        let finished = self
            .store
            .local(|s| {
                s.ca_rotation()
                    .filter(|r| r.pending.is_empty())
                    .map(|r| r.previous_fingerprint.clone())
            })
            .flatten();
        let Some(previous) = finished.filter(|_| self.store.cluster_view().state == "leader")
        else {
            *since = None;
            return;
        };
        let seen = *since.get_or_insert_with(tokio::time::Instant::now);
        if seen.elapsed() < RENEWAL_GRACE_ON_ROTATION * 3 {
            return;
        }
        match self.store.write(Command::RetireCa { previous }).await {
            Ok(_) => tracing::info!("CA rotation finished: the CA before is no longer trusted"),
            Err(e) => tracing::warn!(error = %e, "retiring the CA before"),
        }
    }

    fn ca_keys(&self) -> Result<CaKeys, StoreError> {
        Ok(self
            .store
            .db
            .get_meta(KEY_CA_KEYS)
            .map_err(StoreError::storage("read the CA keys"))?
            .unwrap_or_default())
    }

    fn set_ca_keys(&self, keys: &CaKeys) -> Result<(), StoreError> {
        self.store
            .db
            .put_meta(KEY_CA_KEYS, keys)
            .map_err(StoreError::storage("keep the CA keys"))
    }

    /// Keeps `ca`'s key in this node's own db (a voter making a CA).
    pub(crate) fn keep_ca_key(&self, ca: &ClusterCa) -> Result<(), StoreError> {
        let mut keys = self.ca_keys()?;
        keys.insert(ca.fingerprint.clone(), ca.key_pem.clone());
        self.set_ca_keys(&keys)
    }

    /// Whether this node holds any CA key at all (for tests and status).
    pub fn holds_ca_key(&self) -> bool {
        self.ca_keys().is_ok_and(|k| !k.is_empty())
            || self
                .store
                .local(|s| s.ca().is_some_and(|ca| !ca.key_pem.is_empty()))
                .unwrap_or(false)
    }

    /// `ca` with its key, if this node holds it.
    pub(crate) fn key_of(&self, ca: &ClusterCa) -> Option<ClusterCa> {
        if !ca.key_pem.is_empty() {
            return Some(ca.clone());
        }
        let key = self.ca_keys().ok()?.remove(&ca.fingerprint)?;
        Some(ClusterCa {
            key_pem: key,
            ..ca.clone()
        })
    }

    /// `ca` with its key: held here, or (on a voter that has yet to fetch
    /// it) fetched from another voter now.
    pub(crate) async fn signing_now(&self, ca: &ClusterCa) -> Result<ClusterCa, StoreError> {
        if let Some(ca) = self.key_of(ca) {
            return Ok(ca);
        }
        if !self.store.is_voter() {
            return Err(StoreError::NoCaKey);
        }
        let key = self
            .fetch_ca_key(&ca.fingerprint)
            .await
            .ok_or(StoreError::NoCaKey)?;
        let ca = ClusterCa {
            key_pem: key,
            ..ca.clone()
        };
        self.keep_ca_key(&ca)?;
        Ok(ca)
    }

    /// A new certificate of the cluster's CA for `host`: signed here when
    /// this node holds the key, else by the leader.
    pub(crate) async fn issue_cert(&self, host: HostId) -> Result<NodeCert, StoreError> {
        let (ca, trust) = self
            .store
            .read(|s| Some((s.ca().cloned()?, Trust::of(s)?)))
            .await?
            .ok_or(StoreError::Missing("CA"))?;
        if self.key_of(&ca).is_some() || self.store.is_voter() {
            let ca = self.signing_now(&ca).await?;
            return super::tls::issue(&ca, &trust, host, self.store.config.cert_lifetime)
                .map_err(StoreError::Certificate);
        }
        let leader = self
            .store
            .leader_addr_if_not_me()
            .ok_or(StoreError::NoCaKey)?;
        self.send_issue(&leader, host).await.map_err(|e| match e {
            PeerError::Remote(RemoteError::Refused(refusal)) => StoreError::Refused {
                action: "issue a certificate",
                by: leader.clone(),
                refusal,
            },
            source => StoreError::Unavailable(Unavailable::Leader { leader, source }),
        })
    }

    async fn send_issue(&self, to: &str, host: HostId) -> Result<NodeCert, PeerError> {
        let mut client = self.store.peers.cluster(to)?;
        call(&IssueRequest { host }, self.store.config.timeout, |r| {
            client.issue(r)
        })
        .await
    }

    /// Handles a member's request for a certificate of `ask.host`: only for
    /// itself, or for an id just handed out that has none yet (as
    /// `AdmitCert` is authorised); signed here, or by the leader where
    /// this node holds no key.
    pub(crate) async fn handle_issue(
        &self,
        ask: IssueRequest,
        sender: HostId,
    ) -> Result<NodeCert, RemoteError> {
        let probe = Command::AdmitCert {
            host: ask.host,
            fingerprint: String::new(),
            issuer: None,
            not_before: None,
        };
        self.store
            .read(|s| s.authorize(sender, &probe))
            .await?
            .map_err(|_| Refusal::NotItsCert {
                by: sender,
                host: ask.host,
            })?;
        let cert = self.issue_cert(ask.host).await?;
        tracing::info!(node = ask.host, by = sender, cert = %cert.fingerprint, "issued a certificate");
        Ok(cert)
    }

    /// Hands the key of CA `fingerprint` to another voter.
    pub(crate) fn handle_ca_key(
        &self,
        fingerprint: &str,
        sender: HostId,
    ) -> Result<Option<String>, RemoteError> {
        let voter = self
            .store
            .members()
            .iter()
            .any(|m| m.id == sender && m.voter);
        if !voter {
            tracing::warn!(
                node = sender,
                "a member that is not a voter asked for the CA key"
            );
            return Err(Refusal::NotAVoter { node: sender }.into());
        }
        Ok(self.ca_keys()?.remove(fingerprint))
    }

    async fn send_ca_key(&self, to: &str, fingerprint: &str) -> Result<Option<String>, PeerError> {
        let mut client = self.store.peers.cluster(to)?;
        let timeout = self.store.config.timeout.min(FETCH_TIMEOUT);
        call(&fingerprint, timeout, |r| client.ca_key(r)).await
    }

    /// Keeps the CA key where it belongs (run every few seconds): a voter
    /// holds the current CA's key, copied from a state from before or
    /// fetched from another voter; a learner holds none; keys of CAs no
    /// longer trusted go; the leader seals a key left in the state.
    pub(crate) async fn keep_ca_keys(&self) -> Result<(), StoreError> {
        let Some((ca, previous)) = self
            .store
            .local(|s| {
                let previous = s.ca_rotation().map(|r| r.previous_fingerprint.clone());
                Some((s.ca().cloned()?, previous))
            })
            .flatten()
        else {
            return Ok(());
        };
        let mut keys = self.ca_keys()?;
        let before = keys.clone();
        if self.store.is_learner() {
            keys.clear();
        } else if self.store.is_voter() {
            keys.retain(|fp, _| *fp == ca.fingerprint || previous.as_ref() == Some(fp));
            if !ca.key_pem.is_empty() {
                keys.insert(ca.fingerprint.clone(), ca.key_pem.clone());
            } else if !keys.contains_key(&ca.fingerprint)
                && let Some(key) = self.fetch_ca_key(&ca.fingerprint).await
            {
                tracing::info!(ca = %ca.fingerprint, "holding the cluster's CA key (voter)");
                keys.insert(ca.fingerprint.clone(), key);
            }
        }
        if keys != before {
            self.set_ca_keys(&keys)?;
        }
        // Sealed once every member reads SealCa: until then members of
        // format 1, which sign with the key in the state, keep it.
        if !ca.key_pem.is_empty()
            && self.store.is_leader()
            && keys.contains_key(&ca.fingerprint)
            && self.store.admit_format(&Command::SealCa).is_ok()
        {
            self.store.write(Command::SealCa).await?;
            tracing::info!("the CA key is no longer in the replicated state: voters hold it");
        }
        Ok(())
    }

    /// The key of CA `fingerprint` from the first other voter that holds
    /// it; asked again, a few times, while some could not answer (a peer
    /// restarting, a connection to renew).
    async fn fetch_ca_key(&self, fingerprint: &str) -> Option<String> {
        for round in 0..FETCH_ROUNDS {
            if round > 0 {
                tokio::time::sleep(FETCH_PAUSE).await;
            }
            let mut unanswered = false;
            for peer in self
                .store
                .members()
                .into_iter()
                .filter(|m| m.voter && m.id != self.store.id)
            {
                match self.send_ca_key(&peer.addr, fingerprint).await {
                    Ok(Some(key)) => return Some(key),
                    Ok(None) => {}
                    Err(e) => {
                        unanswered = true;
                        tracing::debug!(peer = peer.id, error = %e, "asking for the CA key");
                    }
                }
            }
            if !unanswered {
                break;
            }
        }
        None
    }
}

/// Background duty of every member: renew its certificate before it
/// expires (checked every few seconds).
pub(crate) async fn keep_cert_fresh(store: Store) {
    let metrics = store.raft.metrics();
    let mut rotation_done = None;
    loop {
        if metrics.borrow_watched().state == ServerState::Shutdown {
            return;
        }
        if store.is_leader() {
            store.heard_leader();
        }
        if let Err(e) = store.signing().keep_ca_keys().await {
            tracing::warn!(error = %e, "keeping the CA key");
        }
        if let Err(e) = store.keep_format().await {
            tracing::warn!(error = %e, "raising the cluster's format");
        }
        if let Err(e) = store.signing().renew_if_due().await {
            tracing::warn!(error = %e, "renewing this member's certificate");
        }
        store.signing().retire_ca_if_done(&mut rotation_done).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
