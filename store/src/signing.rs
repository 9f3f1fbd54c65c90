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

use openraft::async_runtime::WatchReceiver;

use super::Store;
use super::db::KEY_CA_KEYS;
use super::error::{PeerError, Refusal, RemoteError, StoreError, Unavailable};
use super::tls::{NodeCert, Trust};
use super::wire::{IssueRequest, call};
use crate::{ClusterCa, Command, HostId};

/// CA keys this node holds, by the CA's fingerprint.
type CaKeys = BTreeMap<String, String>;

/// How many times a voter asks its peers for the CA key, and the pause
/// between rounds.
const FETCH_ROUNDS: usize = 3;
const FETCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(300);
/// How long one peer has to answer.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    /// Whether this node is a voter of the cluster (as far as it knows).
    pub(crate) fn is_voter(&self) -> bool {
        self.named_in(|m| m.voter_ids().any(|id| id == self.id))
    }

    /// Whether this node is a learner of the cluster (as far as it knows):
    /// not merely absent from a membership it has yet to learn.
    fn is_learner(&self) -> bool {
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

    fn ca_keys(&self) -> Result<CaKeys, StoreError> {
        Ok(self
            .db
            .get_meta(KEY_CA_KEYS)
            .map_err(StoreError::storage("read the CA keys"))?
            .unwrap_or_default())
    }

    fn set_ca_keys(&self, keys: &CaKeys) -> Result<(), StoreError> {
        self.db
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
                .local(|s| s.ca().is_some_and(|ca| !ca.key_pem.is_empty()))
                .unwrap_or(false)
    }

    /// `ca` with its key, if this node holds it.
    pub(crate) fn signing(&self, ca: &ClusterCa) -> Option<ClusterCa> {
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
        if let Some(ca) = self.signing(ca) {
            return Ok(ca);
        }
        if !self.is_voter() {
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
            .read(|s| Some((s.ca().cloned()?, Trust::of(s)?)))
            .await?
            .ok_or(StoreError::Missing("CA"))?;
        if self.signing(&ca).is_some() || self.is_voter() {
            let ca = self.signing_now(&ca).await?;
            return super::tls::issue(&ca, &trust, host, self.config.cert_lifetime)
                .map_err(StoreError::Certificate);
        }
        let leader = self.leader_addr_if_not_me().ok_or(StoreError::NoCaKey)?;
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
        let mut client = self.peers.cluster(to)?;
        call(&IssueRequest { host }, self.config.timeout, |r| {
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
        self.read(|s| s.authorize(sender, &probe))
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
        let voter = self.members().iter().any(|m| m.id == sender && m.voter);
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
        let mut client = self.peers.cluster(to)?;
        let timeout = self.config.timeout.min(FETCH_TIMEOUT);
        call(&fingerprint, timeout, |r| client.ca_key(r)).await
    }

    /// Keeps the CA key where it belongs (run every few seconds): a voter
    /// holds the current CA's key, copied from a state from before or
    /// fetched from another voter; a learner holds none; keys of CAs no
    /// longer trusted go; the leader seals a key left in the state.
    pub(crate) async fn keep_ca_keys(&self) -> Result<(), StoreError> {
        let Some((ca, previous)) = self
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
        if self.is_learner() {
            keys.clear();
        } else if self.is_voter() {
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
            && self.is_leader()
            && keys.contains_key(&ca.fingerprint)
            && self.admit_format(&Command::SealCa).is_ok()
        {
            self.write(Command::SealCa).await?;
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
                .members()
                .into_iter()
                .filter(|m| m.voter && m.id != self.id)
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
