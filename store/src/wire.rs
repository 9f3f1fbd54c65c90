//! What members say to each other: every message of the peer protocol
//! (serde values carried as `Payload` bytes, each tagged with the format
//! it was written in), and the one way a unary call is made.

use std::future::Future;
use std::time::Duration;

use openraft::raft::StreamAppendResult;
use rustnet_proto::Payload;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{PeerError, RemoteError};
use super::tls::NodeCert;
use super::types::TypeConfig;
use crate::{CommandResult, HostId, JoinToken, Proposal};

/// A node asking to join.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: HostId,
    pub addr: String,
    /// The cluster the joining node's state belongs to, if any.
    pub cluster: Option<String>,
}

/// A new host asking for its id and certificate: it names neither, the
/// cluster assigns both.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EnrollRequest {
    pub addr: String,
    /// The join token's secret (never its CA part).
    pub token: Option<JoinToken>,
}

/// What an enrolled host receives: the id the cluster gave it, and a
/// certificate bound to that id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EnrollReply {
    pub id: HostId,
    pub cert: NodeCert,
    /// The members' certificates, which the new host admits while it
    /// catches up (catch_up.rs).
    #[serde(default)]
    pub vouched: Vec<String>,
}

/// What a joining node learns: the cluster it is now part of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    pub cluster: String,
    /// The members' certificates, which the joining host admits while it
    /// catches up (catch_up.rs).
    #[serde(default)]
    pub vouched: Vec<String>,
}

/// A member asking the leader for a certificate of `host`: itself
/// (renewal), or a host that just enrolled through it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IssueRequest {
    pub host: HostId,
}

/// A forwarded write, as it travels: its tag and the proposal.
pub(crate) type Tagged = (u64, Proposal);

/// The leader's answer to a forwarded write, as it travels back.
pub(crate) type TaggedAnswer = (u64, Result<CommandResult, RemoteError>);

/// One answer of a replication stream, as the sending member reads it.
pub(crate) type StreamAnswer = Result<StreamAppendResult<TypeConfig>, RemoteError>;

/// `value` as a payload of this release's format.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Payload, PeerError> {
    serde_json::to_vec(value)
        .map(|data| Payload {
            data,
            format: crate::FORMAT,
        })
        .map_err(PeerError::Encode)
}

/// A payload's value, if its format is one this release reads.
pub(crate) fn decode<T: DeserializeOwned>(payload: &Payload) -> Result<T, PeerError> {
    crate::format::check("a message from a peer", payload.format)?;
    serde_json::from_slice(&payload.data).map_err(PeerError::Decode)
}

/// A gRPC request that gives up at `deadline`.
pub(crate) fn request(payload: Payload, deadline: Duration) -> tonic::Request<Payload> {
    let mut request = tonic::Request::new(payload);
    request.set_timeout(deadline);
    request
}

/// One unary call to a peer: `ask` encoded, sent by `send` with `deadline`,
/// the answer decoded; a refusal of the peer's is [`PeerError::Remote`].
pub(crate) async fn call<A, T, F, Fut>(ask: &A, deadline: Duration, send: F) -> Result<T, PeerError>
where
    A: Serialize,
    T: DeserializeOwned,
    F: FnOnce(tonic::Request<Payload>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Payload>, tonic::Status>>,
{
    let reply = send(request(encode(ask)?, deadline)).await?;
    decode::<Result<T, RemoteError>>(reply.get_ref())?.map_err(PeerError::Remote)
}
