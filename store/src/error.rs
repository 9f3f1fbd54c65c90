//! The store's errors: [`StoreError`] for callers of the store, and what a
//! member answers a peer over gRPC ([`RemoteError`], [`Refusal`]).
//!
//! ```text
//!   StoreError ─ Unavailable(Unavailable)   worth retrying: no leader, no quorum, timeout
//!              ─ Rejected(IpamError)        the state machine refused the command
//!              ─ Refused { by, Refusal }    a member refused; retrying cannot change it
//!              ─ Storage / Raft / Certificate / Open   this node cannot go on
//! ```

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{HostId, IpamError, Response, TokenError};

/// Any error a lower layer hands up, kept as the source of ours.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open state in {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    /// Worth retrying: no leader yet, no quorum, a timeout.
    #[error("cluster unavailable: {0}")]
    Unavailable(#[source] Unavailable),
    /// The state machine refused the command (a conflict, an exhausted
    /// pool): the answer, not a failure of the store.
    #[error(transparent)]
    Rejected(#[from] IpamError),
    /// A member refused what this node asked; asking again cannot change it.
    #[error("{action} refused by {by}: {refusal}")]
    Refused {
        action: &'static str,
        by: String,
        #[source]
        refusal: Refusal,
    },
    /// This node's own state on disk could not be read or written.
    #[error("{what}: {source}")]
    Storage {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The Raft node failed or stopped.
    #[error("raft: {0}")]
    Raft(#[source] BoxError),
    /// Making or using a certificate failed.
    #[error("this member's certificate: {0}")]
    Certificate(#[source] TlsError),
    #[error("cannot join the cluster: no member answered within {patience:?} (last: {last})")]
    NoSeedAnswered { patience: Duration, last: String },
    #[error("this host has no certificate: it must enroll (with the join token) before it joins")]
    NotEnrolled,
    #[error("the cluster has no {0}")]
    Missing(&'static str),
    #[error(
        "this member holds no key of the cluster's CA: run it on a voter (learners hold none; \
         rustnet status shows the voters)"
    )]
    NoCaKey,
    #[error("unexpected answer of the state machine: {0:?}")]
    Unexpected(Response),
    /// The command is of a format not every member reads yet: it waits
    /// until every host runs a release that does.
    #[error(
        "{command} waits for the upgrade: it needs every member to read format {needs}, and \
         the cluster reads format {cluster} until every host runs this release \
         (rustnet status shows each member's version)"
    )]
    Upgrading {
        command: &'static str,
        needs: u32,
        cluster: u32,
    },
}

impl StoreError {
    pub(crate) fn raft(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Raft(Box::new(e))
    }

    pub(crate) fn storage(what: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Storage { what, source }
    }

    /// Whether asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Why no quorum answered.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error(
        "no answer from a quorum of the cluster within {0:?} (is a majority of the voters up and reachable?)"
    )]
    Timeout(Duration),
    #[error("state store still opening after {0:?}")]
    Opening(Duration),
    #[error("{0}")]
    Raft(#[source] BoxError),
    #[error("the leader at {leader}: {source}")]
    Leader {
        leader: String,
        #[source]
        source: PeerError,
    },
}

impl From<Unavailable> for StoreError {
    fn from(e: Unavailable) -> Self {
        Self::Unavailable(e)
    }
}

/// What a member refuses, as it travels back to the node that asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(
        "node {node} (state dir of cluster {theirs}) cannot join cluster {ours}: \
         its RUSTNET_STATE_DIR belongs to another cluster; clear it to join"
    )]
    OtherCluster {
        node: HostId,
        theirs: String,
        ours: String,
    },
    #[error(
        "node {node} cannot join: its RUSTNET_STATE_DIR belongs to another cluster \
         (another CA); clear it to join"
    )]
    OtherCa { node: HostId },
    #[error(
        "{addr} presents CA {seen}, the join token names CA {pin}: not the cluster the token is for"
    )]
    CaPin {
        addr: String,
        seen: String,
        pin: String,
    },
    #[error("node id {node} is already a member at {addr}")]
    IdInUse { node: HostId, addr: String },
    #[error(
        "{addr} already belongs to member {member}; remove it first (rustnet cluster remove {member})"
    )]
    AddrInUse { addr: String, member: HostId },
    #[error("the last voter cannot be removed")]
    LastVoter,
    #[error("the certificate of {cert_of} cannot join as node {node}")]
    NotItsId { node: HostId, cert_of: String },
    #[error(
        "node {node} has not enrolled (or its enrollment expired): enroll again with the join token"
    )]
    NotEnrolled { node: HostId },
    #[error("member {by} may not have a certificate issued for node {host}")]
    NotItsCert { by: HostId, host: HostId },
    #[error("node {node} is not a voter: only voters hold the cluster's CA key")]
    NotAVoter { node: HostId },
}

/// A member's error answer to a peer's RPC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RemoteError {
    /// Final: asking again cannot change it.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// Anything else, rendered on the far side; worth retrying.
    #[error("{0}")]
    Failed(String),
}

impl From<&StoreError> for RemoteError {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::Refused { refusal, .. } => Self::Refused(refusal.clone()),
            other => Self::Failed(chain(other)),
        }
    }
}

impl From<StoreError> for RemoteError {
    fn from(e: StoreError) -> Self {
        Self::from(&e)
    }
}

impl From<Refusal> for RemoteError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer address {addr}: {source}")]
    Address {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("this member has no certificate yet")]
    NoCertificate,
    #[error("peer table lock poisoned")]
    Poisoned,
    #[error("connect: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
    #[error("encode: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("decode: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("{0}")]
    Remote(#[source] RemoteError),
    #[error("{0}")]
    Tls(#[source] TlsError),
    #[error(transparent)]
    Format(#[from] crate::FormatError),
}

/// Why a certificate could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("CA certificate: {0}")]
    Pem(#[from] pem::PemError),
    #[error("certificate or key PEM: {0}")]
    Decode(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("server name: {0}")]
    Name(#[from] rustls::pki_types::InvalidDnsNameError),
    #[error("connect {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{addr} presents no CA certificate")]
    NoCa { addr: String },
    #[error("the CA's pin refuses it: {0}")]
    Pinned(#[source] Refusal),
}

/// The full chain of causes, "outer: inner: innermost".
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_travel_typed_and_read_whole() {
        let refusal = Refusal::Token(TokenError::Wrong);
        let wire = serde_json::to_string(&RemoteError::Refused(refusal.clone())).unwrap();
        let back: RemoteError = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, RemoteError::Refused(refusal.clone()));
        let error = StoreError::Refused {
            action: "join",
            by: "10.0.0.1:7946".into(),
            refusal,
        };
        assert!(!error.is_retryable());
        assert_eq!(
            chain(&error),
            format!("join refused by 10.0.0.1:7946: {}", TokenError::Wrong)
        );
    }

    #[test]
    fn sources_are_chained_once() {
        let error = StoreError::Storage {
            what: "write the vote",
            source: io::Error::other("disk full"),
        };
        assert_eq!(chain(&error), "write the vote: disk full");
        let error = StoreError::from(Unavailable::Timeout(Duration::from_secs(3)));
        assert!(error.is_retryable());
        assert!(chain(&error).contains("quorum"));
    }
}
