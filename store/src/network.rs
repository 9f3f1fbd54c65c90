//! The Raft network over gRPC: one cached tonic channel per peer, openraft
//! messages as serde-encoded payloads, openraft's deadlines honoured.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::network::stream_append_sequential;
use openraft::raft::StreamAppendResult;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, OptionalSend, RaftNetworkFactory, RaftNetworkV2};
use rustnet_proto::{ClusterClient, Payload, RaftClient, SnapshotChunk};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::TypeConfig;
use super::error::{PeerError, RemoteError};
use super::tls::NodeCert;
use super::transport::{MemberCheck, client_config, dial};
use super::wire::{StreamAnswer, decode, encode};

type Vote = openraft::alias::VoteOf<TypeConfig>;
type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;
type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;

/// How long to wait for a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One lazily connected channel per peer address, shared by every client;
/// mutual TLS with this member's certificate (transport.rs).
#[derive(Clone)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    cert: tokio::sync::watch::Receiver<Option<NodeCert>>,
    /// Whether a peer's certificate is a current member's.
    check: MemberCheck,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").finish_non_exhaustive()
    }
}

impl Peers {
    pub(crate) fn new(
        cert: tokio::sync::watch::Receiver<Option<NodeCert>>,
        check: MemberCheck,
    ) -> Self {
        Self {
            channels: Arc::default(),
            cert,
            check,
        }
    }

    /// The channel to `addr` (`host:port`), created on first use; none
    /// before this member has its certificate.
    pub fn channel(&self, addr: &str) -> Result<Channel, PeerError> {
        let mut channels = self.channels.lock().map_err(|_| PeerError::Poisoned)?;
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let config = match self.cert.borrow().as_ref() {
            Some(cert) => client_config(cert, self.check.clone()).map_err(PeerError::Tls)?,
            None => return Err(PeerError::NoCertificate),
        };
        let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|source| {
            PeerError::Address {
                addr: addr.to_owned(),
                source,
            }
        })?;
        let target = addr.to_owned();
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(
            move |_: tonic::transport::Uri| {
                let (target, config) = (target.clone(), config.clone());
                async move {
                    dial(&target, config, CONNECT_TIMEOUT)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            },
        ));
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Forgets every channel (after a new certificate).
    pub fn reset(&self) {
        if let Ok(mut channels) = self.channels.lock() {
            channels.clear();
        }
    }

    pub fn raft(&self, addr: &str) -> Result<RaftClient<Channel>, PeerError> {
        self.channel(addr).map(RaftClient::new)
    }

    pub fn cluster(&self, addr: &str) -> Result<ClusterClient<Channel>, PeerError> {
        self.channel(addr).map(ClusterClient::new)
    }
}

/// An endpoint for `addr` over TLS with `tls`.
pub(crate) fn tls_endpoint(addr: &str, tls: ClientTlsConfig) -> Result<Endpoint, PeerError> {
    let address = |source| PeerError::Address {
        addr: addr.to_owned(),
        source,
    };
    Endpoint::from_shared(format!("https://{addr}"))
        .map_err(address)?
        .tls_config(tls)
        .map_err(address)
        .map(|e| e.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

/// The factory openraft asks for a client per peer.
#[derive(Debug, Clone)]
pub struct GrpcNetwork {
    peers: Peers,
    chunk: usize,
}

impl GrpcNetwork {
    /// Snapshots go out in pieces of at most `chunk` bytes.
    pub fn new(peers: Peers, chunk: usize) -> Self {
        Self { peers, chunk }
    }
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        PeerClient {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            chunk: self.chunk,
            sequential: false,
        }
    }
}

/// Raft RPCs to one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    target: u64,
    addr: String,
    peers: Peers,
    chunk: usize,
    /// The peer answered that it has no AppendStream (an older member):
    /// replicate to it one AppendEntries at a time.
    sequential: bool,
}

/// A whole snapshot in one message: what members from before chunked
/// snapshots send; still accepted.
#[derive(Serialize, serde::Deserialize)]
pub(crate) struct SnapshotMessage {
    pub(crate) vote: Vote,
    pub(crate) meta: SnapshotMeta,
    pub(crate) data: Vec<u8>,
}

/// The header of one snapshot piece: the piece's bytes start at `offset`
/// of `total`; the last piece has `offset + len == total`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct ChunkHeader {
    pub(crate) vote: Vote,
    pub(crate) meta: SnapshotMeta,
    pub(crate) offset: u64,
    pub(crate) total: u64,
}

fn unreachable(e: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::new(&AnyError::error(e.to_string()))
}

impl PeerClient {
    /// Sends `message` on `rpc` and decodes the peer's
    /// `Result<Resp, RemoteError>` answer.
    async fn call_with<M, Resp, F, Fut>(
        &self,
        message: M,
        ttl: Duration,
        rpc: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Resp: DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Payload>, tonic::Status>>,
    {
        let reply = self.send(message, ttl, rpc).await?.map_err(|status| {
            tracing::debug!(peer = self.target, addr = %self.addr, %status, "raft rpc failed");
            self.unreachable(status.message())
        })?;
        let answer: Result<Resp, RemoteError> =
            decode(reply.get_ref()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    /// Sends `message` on `rpc`: the peer's reply or its status.
    async fn send<M, F, Fut>(
        &self,
        message: M,
        ttl: Duration,
        rpc: F,
    ) -> Result<Result<tonic::Response<Payload>, tonic::Status>, RPCError<TypeConfig>>
    where
        F: FnOnce(RaftClient<Channel>, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Payload>, tonic::Status>>,
    {
        let client = self
            .peers
            .raft(&self.addr)
            .map_err(|e| RPCError::Unreachable(unreachable(e)))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(ttl);
        Ok(rpc(client, request).await)
    }

    /// A whole snapshot in one message, as members of format 1 take it
    /// (they have no InstallSnapshotChunk): its data as plain JSON, the
    /// snapshot format they read.
    async fn whole_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
        ttl: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let state = super::state_machine::decode_state(&snapshot.snapshot).map_err(streaming)?;
        let message = SnapshotMessage {
            vote,
            meta: snapshot.meta,
            data: serde_json::to_vec(&state).map_err(streaming)?,
        };
        tracing::info!(
            peer = self.target,
            bytes = message.data.len(),
            "sending a whole snapshot (the peer is of format 1)"
        );
        let reply = self
            .send(
                encode(&message).map_err(streaming)?,
                ttl,
                |mut c, r| async move { c.install_snapshot(r).await },
            )
            .await
            .map_err(streaming)?
            .map_err(streaming)?;
        // Members of format 1 answer `Result<_, String>`.
        let answer: Result<SnapshotResponse<TypeConfig>, String> =
            decode(reply.get_ref()).map_err(streaming)?;
        answer.map_err(streaming)
    }

    /// Sends one serde payload on `rpc` and decodes the peer's
    /// `Result<Resp, RemoteError>` answer.
    async fn call<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        ttl: Duration,
        rpc: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, tonic::Request<Payload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Payload>, tonic::Status>>,
    {
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_with(payload, ttl, rpc).await
    }

    /// The peer could not be reached, and why.
    fn unreachable(&self, why: impl std::fmt::Display) -> RPCError<TypeConfig> {
        RPCError::Unreachable(unreachable(format!(
            "peer {} at {}: {why}",
            self.target, self.addr
        )))
    }

    /// Opens the pipelined replication stream: every request goes out as
    /// openraft makes it, without waiting for the answer to the one
    /// before, and the answers come back in order. While requests are
    /// unanswered, the peer must answer one within `ttl`, or the stream
    /// fails (openraft then opens another).
    async fn open_stream(
        &mut self,
        input: impl Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + 'static,
        ttl: Duration,
    ) -> Result<Answers<'static>, RPCError<TypeConfig>> {
        // openraft backs off (after a failed stream) before it hands out
        // the first request: opening the stream only then keeps a peer
        // that refuses it from being asked again at once, in a loop.
        let mut input = Box::pin(input);
        let Some(first) = input.next().await else {
            return Ok(Box::pin(futures::stream::empty()));
        };
        let input = futures::stream::once(async move { first }).chain(input);
        let mut client = self
            .peers
            .raft(&self.addr)
            .map_err(|e| self.unreachable(e))?;
        let sent = Arc::new(AtomicU64::new(0));
        let outbound = {
            let sent = sent.clone();
            input.map(move |request| {
                sent.fetch_add(1, Ordering::Relaxed);
                // Our own types always encode; an empty payload would end
                // the stream at the peer, visibly, rather than skip one.
                encode(&request).unwrap_or_default()
            })
        };
        let inbound = match tokio::time::timeout(ttl, client.append_stream(outbound)).await {
            Err(_) => return Err(self.unreachable(format!("no answer within {ttl:?}"))),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                tracing::info!(
                    peer = self.target,
                    "peer has no pipelined replication: one AppendEntries at a time"
                );
                self.sequential = true;
                return Err(self.unreachable(status.message()));
            }
            Ok(Err(status)) => return Err(self.unreachable(status.message())),
            Ok(Ok(response)) => response.into_inner(),
        };
        let peer = self.clone();
        let answers = futures::stream::unfold(Some((inbound, 0u64)), move |state| {
            let (sent, peer) = (sent.clone(), peer.clone());
            async move {
                let (mut inbound, received) = state?;
                let next = loop {
                    let asked = sent.load(Ordering::Relaxed) > received;
                    match tokio::time::timeout(ttl, inbound.message()).await {
                        Ok(next) => break next,
                        // Nothing was asked: an idle stream.
                        Err(_) if !asked => {}
                        Err(_) => {
                            let why = format!("no answer within {ttl:?}");
                            return Some((Err(peer.unreachable(why)), None));
                        }
                    }
                };
                let payload = match next {
                    Ok(Some(payload)) => payload,
                    Ok(None) => return None,
                    Err(status) => {
                        return Some((Err(peer.unreachable(status.message())), None));
                    }
                };
                match decode::<StreamAnswer>(&payload) {
                    Ok(Ok(result)) => {
                        let more = result.is_ok().then_some((inbound, received + 1));
                        Some((Ok(result), more))
                    }
                    Ok(Err(remote)) => {
                        Some((Err(RPCError::Network(NetworkError::new(&remote))), None))
                    }
                    Err(e) => Some((Err(RPCError::Network(NetworkError::new(&e))), None)),
                }
            }
        });
        Ok(Box::pin(answers))
    }
}

/// How long a replication stream may go without an answer while requests
/// are unanswered (and how long it may take to open). Longer than one
/// AppendEntries' deadline: a follower catching up appends and applies
/// thousands of entries, and a new connection's handshake comes first. A
/// follower that has died resets the connection at once; heartbeats, sent
/// apart from the stream, keep their own deadline.
const STREAM_PATIENCE: Duration = Duration::from_secs(1);

/// The answers of a replication stream, as openraft takes them.
type Answers<'s> = BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>;

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Vec<u8>;

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<Answers<'s>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        // A stream of at most one request is openraft's heartbeat, every
        // 100 ms to every follower: one AppendEntries costs less than
        // opening a stream for it.
        let single = input.size_hint().1.is_some_and(|most| most <= 1);
        if self.sequential || single {
            return stream_append_sequential(self, input, option);
        }
        let patience = option.hard_ttl().max(STREAM_PATIENCE);
        Box::pin(async move { self.open_stream(input, patience).await })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            c.vote(r).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            c.pre_vote(r).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let data = &snapshot.snapshot;
        let total = data.len() as u64;
        tracing::info!(peer = self.target, bytes = total, "sending a snapshot");
        let mut offset = 0usize;
        loop {
            let end = data.len().min(offset + self.chunk);
            let header = ChunkHeader {
                vote,
                meta: snapshot.meta.clone(),
                offset: offset as u64,
                total,
            };
            let chunk = SnapshotChunk {
                header: encode(&header).map_err(streaming)?.data,
                data: data.get(offset..end).unwrap_or_default().to_vec(),
                format: crate::FORMAT,
            };
            let reply = self
                .send(chunk, option.hard_ttl(), |mut c, r| async move {
                    c.install_snapshot_chunk(r).await
                })
                .await
                .map_err(streaming)?;
            let reply = match reply {
                Err(status) if status.code() == tonic::Code::Unimplemented && offset == 0 => {
                    let ttl = option.hard_ttl();
                    return self.whole_snapshot(vote, snapshot, ttl).await;
                }
                other => other.map_err(|status| streaming(self.unreachable(status.message())))?,
            };
            let answer: Option<SnapshotResponse<TypeConfig>> =
                decode::<Result<_, RemoteError>>(reply.get_ref())
                    .map_err(streaming)?
                    .map_err(streaming)?;
            if end >= data.len() {
                return answer.ok_or_else(|| streaming("the peer did not install the snapshot"));
            }
            offset = end;
        }
    }
}

fn streaming(e: impl std::fmt::Display) -> StreamingError<TypeConfig> {
    StreamingError::Network(NetworkError::new(&AnyError::error(e.to_string())))
}
