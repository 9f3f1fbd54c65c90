//! The gRPC services a member serves to its peers: Raft's RPCs and the
//! cluster's (forwarded writes, read index, enroll, join, remove), over
//! mutual TLS. Every RPC but Enroll needs the client certificate of a
//! current member.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use openraft::raft::AppendEntriesRequest;
use rustnet_proto::{Cluster, ClusterServer, Payload, Raft, RaftServer, SnapshotChunk};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status, Streaming};

use super::error::RemoteError;
use super::network::{ChunkHeader, SnapshotMessage};
use super::wire::{
    EnrollRequest, IssueRequest, JoinRequest, StreamAnswer, Tagged, TaggedAnswer, decode, encode,
};
use super::{Store, TypeConfig};
use crate::{Admission, HostId, Proposal};

/// Serves `store`'s peer protocol on `listener` until `shutdown` completes,
/// from the moment the member has its certificate (a new host gets it when
/// it enrolls).
pub fn spawn_server(
    store: &Store,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let store = store.clone();
    tokio::spawn(async move {
        store.wait_for_cert().await;
        let (raft, cluster) = services(&store);
        let mut server = tonic::transport::Server::builder();
        let server = server.add_service(raft).add_service(cluster);
        // TLS is ours (transport.rs): the certificate presented is the
        // member's current one, renewed or not.
        let incoming = super::transport::accept(listener, store.cert.subscribe());
        if let Err(e) = server
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(error = %e, "peer server stopped");
        }
    })
}

/// Lets the RPC through if its client certificate is a current member's;
/// the member it names, where this replica knows (a replica still catching
/// up knows no certificate and admits any of the CA).
fn authorize<T>(store: &Store, request: &Request<T>) -> Result<Option<HostId>, Status> {
    let certs = request.peer_certs();
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
        return Err(Status::unauthenticated(
            "a client certificate of the cluster is required",
        ));
    };
    let fingerprint = super::tls::fingerprint(leaf);
    match store.admission(leaf, &fingerprint) {
        Admission::Member(host) => Ok(Some(host)),
        Admission::AnyOfTheCa => Ok(None),
        Admission::Refused => Err(not_a_member(&fingerprint)),
    }
}

/// The client certificate a stream was opened with (checked by
/// [`authorize`] first), kept to admit each of its messages again.
fn client_leaf<T>(request: &Request<T>) -> Vec<u8> {
    request
        .peer_certs()
        .as_ref()
        .and_then(|c| c.first())
        .map(|der| der.to_vec())
        .unwrap_or_default()
}

fn not_a_member(fingerprint: &str) -> Status {
    Status::permission_denied(format!(
        "certificate {fingerprint} is not a current member's"
    ))
}

/// The member an RPC comes from, which must be known: for requests that
/// act for their sender.
fn member<T>(store: &Store, request: &Request<T>) -> Result<HostId, Status> {
    authorize(store, request)?.ok_or_else(|| {
        Status::unavailable("this member has not caught up with the cluster's certificates yet")
    })
}

/// Both services of `store`, ready to add to a tonic server.
pub fn services(store: &Store) -> (RaftServer<RaftService>, ClusterServer<ClusterService>) {
    (
        RaftServer::new(RaftService {
            store: store.clone(),
            receiving: Arc::default(),
        }),
        ClusterServer::new(ClusterService {
            store: store.clone(),
            enrollments: Arc::new(EnrollGate::default()),
        }),
    )
}

fn input<T: DeserializeOwned>(request: &Request<Payload>) -> Result<T, Status> {
    decode(request.get_ref()).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Refuses a host joining with a release whose format is below the
/// cluster's: it could not read the log (a downgrade, or a host installed
/// with an old release).
fn too_old(store: &Store, request: &Request<Payload>) -> Result<(), Status> {
    let theirs = request.get_ref().format.max(crate::OLDEST_FORMAT);
    let cluster = store.cluster_format();
    if theirs >= cluster {
        return Ok(());
    }
    Err(Status::failed_precondition(format!(
        "this host runs a release of format {theirs}, and the cluster writes format {cluster}, \
         which that release cannot read: install the cluster's release (or a later one) on it \
         (downgrades are not supported)"
    )))
}

fn output<T: Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    encode(value)
        .map(Response::new)
        .map_err(|e| Status::internal(e.to_string()))
}

/// A Raft error, as the peer that asked reads it.
fn failed(e: impl std::fmt::Display) -> RemoteError {
    RemoteError::Failed(e.to_string())
}

/// Raft's RPCs, handed to the local node.
#[derive(Clone)]
pub struct RaftService {
    store: Store,
    /// The snapshot being received, piece by piece.
    receiving: Arc<Mutex<Option<Receiving>>>,
}

/// A snapshot arriving in pieces: its id and the bytes so far.
#[derive(Debug)]
struct Receiving {
    id: String,
    data: Vec<u8>,
}

impl RaftService {
    /// Adds a piece; the whole snapshot once the last one is in.
    fn receive(&self, header: &ChunkHeader, piece: Vec<u8>) -> Result<Option<Vec<u8>>, Status> {
        let mut receiving = self
            .receiving
            .lock()
            .map_err(|_| Status::internal("snapshot buffer lock poisoned"))?;
        let id = &format!("{:?}", header.meta.last_log_id);
        if header.offset == 0 {
            *receiving = Some(Receiving {
                id: id.clone(),
                data: Vec::new(),
            });
        }
        let Some(buffer) = receiving.as_mut().filter(|r| r.id == *id) else {
            return Err(Status::failed_precondition(format!(
                "snapshot {id}: piece at {} without its start",
                header.offset
            )));
        };
        if buffer.data.len() as u64 != header.offset
            || header.offset + piece.len() as u64 > header.total
        {
            let have = buffer.data.len();
            *receiving = None;
            return Err(Status::failed_precondition(format!(
                "snapshot {id}: piece at {} does not follow the {have} bytes received",
                header.offset
            )));
        }
        buffer.data.extend_from_slice(&piece);
        if buffer.data.len() as u64 == header.total {
            return Ok(receiving.take().map(|r| r.data));
        }
        Ok(None)
    }
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RaftService")
    }
}

/// The answers of a pipelined replication stream.
type Answers = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Payload, Status>> + Send>>;

impl RaftService {
    /// Hands a leader's stream of AppendEntries requests to Raft, which
    /// appends them without waiting for each to be on disk before taking
    /// the next, and answers each once it is. Every request is admitted
    /// again on arrival (a member removed meanwhile is cut off); the first
    /// refused or malformed one ends the stream with its error, after the
    /// answers to those before it.
    fn replicate(&self, leaf: Vec<u8>, inbound: Streaming<Payload>) -> Answers {
        let store = self.store.clone();
        // Shared, not copied, by the closure each message runs.
        let fingerprint: Arc<str> = super::tls::fingerprint(&leaf).into();
        let leaf: Arc<[u8]> = leaf.into();
        let ended: Arc<Mutex<Option<Status>>> = Arc::default();
        let input = {
            let (store, ended, leaf) = (store.clone(), ended.clone(), leaf.clone());
            futures::stream::unfold(inbound, move |mut inbound| {
                let (store, ended, leaf, fingerprint) = (
                    store.clone(),
                    ended.clone(),
                    leaf.clone(),
                    fingerprint.clone(),
                );
                async move {
                    let end = |status: Status| {
                        if let Ok(mut ended) = ended.lock() {
                            *ended = Some(status);
                        }
                    };
                    let payload = match inbound.message().await {
                        Ok(Some(payload)) => payload,
                        Ok(None) => return None,
                        Err(status) => {
                            end(status);
                            return None;
                        }
                    };
                    if store.admission(&leaf, &fingerprint) == Admission::Refused {
                        end(not_a_member(&fingerprint));
                        return None;
                    }
                    match decode::<AppendEntriesRequest<TypeConfig>>(&payload) {
                        Ok(request) => Some((request, inbound)),
                        Err(e) => {
                            end(Status::invalid_argument(e.to_string()));
                            None
                        }
                    }
                }
            })
        };
        let answers = store.raft.stream_append(input).map(move |answer| {
            let answer: StreamAnswer = match answer {
                Ok(result) => {
                    if result.is_ok() {
                        store.heard_from(&leaf);
                    }
                    Ok(result)
                }
                Err(fatal) => Err(failed(fatal)),
            };
            encode(&answer).map_err(|e| Status::internal(e.to_string()))
        });
        let last =
            futures::stream::once(
                async move { ended.lock().ok().and_then(|mut ended| ended.take()) },
            )
            .filter_map(|ended| async move { ended.map(Err) });
        Box::pin(answers.chain(last))
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    type AppendStreamStream = Answers;

    async fn append_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Answers>, Status> {
        authorize(&self.store, &request)?;
        let leaf = client_leaf(&request);
        Ok(Response::new(self.replicate(leaf, request.into_inner())))
    }

    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        let reply = self
            .store
            .raft
            .append_entries(input(&request)?)
            .await
            .map_err(failed);
        if reply.is_ok()
            && let Some(leaf) = request.peer_certs().as_ref().and_then(|c| c.first())
        {
            self.store.heard_from(leaf);
        }
        output(&reply)
    }

    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        output(&self.store.raft.vote(input(&request)?).await.map_err(failed))
    }

    async fn pre_vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        output(
            &self
                .store
                .raft
                .pre_vote(input(&request)?)
                .await
                .map_err(failed),
        )
    }

    async fn install_snapshot(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        let message: SnapshotMessage = input(&request)?;
        let snapshot = openraft::alias::SnapshotOf::<TypeConfig, Vec<u8>> {
            meta: message.meta,
            snapshot: message.data,
        };
        let reply = self
            .store
            .raft
            .install_full_snapshot(message.vote, snapshot)
            .await;
        output(&reply.map_err(failed))
    }

    async fn install_snapshot_chunk(
        &self,
        request: Request<SnapshotChunk>,
    ) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        self.install_chunk(request.into_inner()).await
    }
}

impl RaftService {
    async fn install_chunk(&self, chunk: SnapshotChunk) -> Result<Response<Payload>, Status> {
        let header: ChunkHeader = decode(&Payload {
            data: chunk.header,
            format: chunk.format,
        })
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let Some(data) = self.receive(&header, chunk.data)? else {
            return output(&Ok::<Option<()>, RemoteError>(None));
        };
        let snapshot = openraft::alias::SnapshotOf::<TypeConfig, Vec<u8>> {
            meta: header.meta,
            snapshot: data,
        };
        let reply = self
            .store
            .raft
            .install_full_snapshot(header.vote, snapshot)
            .await;
        output(&reply.map(Some).map_err(failed))
    }
}

/// Cluster administration and leader duties.
#[derive(Debug, Clone)]
pub struct ClusterService {
    store: Store,
    enrollments: Arc<EnrollGate>,
}

/// The largest Enroll request: a token and an address.
const MAX_ENROLL_BYTES: usize = 4096;

/// Enroll is the one RPC anyone may call: one at a time per member, at
/// most one every [`EnrollGate::SPACING`]; the rest are told to come back.
#[derive(Debug, Default)]
struct EnrollGate {
    last: Mutex<Option<std::time::Instant>>,
}

impl EnrollGate {
    const SPACING: std::time::Duration = std::time::Duration::from_millis(200);

    /// A turn to enroll, or `ResourceExhausted`. The turn is taken for the
    /// whole spacing, whether the caller had the token or not.
    fn turn(&self) -> Result<(), Status> {
        let mut last = self
            .last
            .lock()
            .map_err(|_| Status::internal("enrollment gate poisoned"))?;
        let now = std::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < Self::SPACING) {
            return Err(Status::resource_exhausted(
                "too many enrollments: try again in a moment",
            ));
        }
        *last = Some(now);
        Ok(())
    }
}

/// How many writes of one stream the leader applies at once; the stream
/// waits for one of them to end before it reads the next.
const WRITES_IN_FLIGHT: usize = 1024;

impl ClusterService {
    /// Applies the writes of a member's stream (see [`super::forward`]) as
    /// they come, each as a unary `Write` would be, and answers each once
    /// applied. Every write is admitted again on arrival (a member removed
    /// meanwhile is cut off); a refused or malformed one ends the stream
    /// with its error.
    fn apply_stream(&self, sender: HostId, leaf: Vec<u8>, inbound: Streaming<Payload>) -> Answers {
        Box::pin(Applying {
            store: self.store.clone(),
            sender,
            fingerprint: super::tls::fingerprint(&leaf),
            leaf,
            inbound: Some(inbound),
            running: futures::stream::FuturesUnordered::new(),
        })
    }
}

/// A write of the stream being applied: its tag and the leader's answer.
type Running = futures::future::BoxFuture<'static, TaggedAnswer>;

/// The answers of a member's write stream, which apply its writes as they
/// are polled: the task that sends the answers reads the writes and waits
/// for them, with no task of their own to hand them over (each hand-over
/// is a wake-up, and under load a wait in the runtime's queue).
struct Applying {
    store: Store,
    sender: HostId,
    leaf: Vec<u8>,
    fingerprint: String,
    /// `None` once the member has sent its last write, or the stream
    /// ended with an error.
    inbound: Option<Streaming<Payload>>,
    running: futures::stream::FuturesUnordered<Running>,
}

impl Applying {
    /// The next write of the stream, admitted and decoded, started.
    fn start(&self, payload: &Payload) -> Result<Running, Status> {
        if self.store.admission(&self.leaf, &self.fingerprint) == Admission::Refused {
            return Err(not_a_member(&self.fingerprint));
        }
        let (tag, mut proposal): Tagged =
            decode(payload).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Who sends it is what its certificate says, whatever it claims.
        proposal.by = Some(self.sender);
        let store = self.store.clone();
        Ok(Box::pin(async move {
            (tag, store.write_as_leader(proposal).await)
        }))
    }
}

impl futures::Stream for Applying {
    type Item = Result<Payload, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        while self.running.len() < WRITES_IN_FLIGHT {
            let Some(inbound) = self.inbound.as_mut() else {
                break;
            };
            let failure = match inbound.poll_next_unpin(cx) {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    self.inbound = None;
                    break;
                }
                Poll::Ready(Some(Ok(payload))) => match self.start(&payload) {
                    Ok(write) => {
                        self.running.push(write);
                        continue;
                    }
                    Err(status) => status,
                },
                Poll::Ready(Some(Err(status))) => status,
            };
            // Nothing more is read, and the writes still running are
            // dropped: their callers retry them. The next poll ends the
            // stream.
            self.inbound = None;
            self.running.clear();
            return Poll::Ready(Some(Err(failure)));
        }
        match self.running.poll_next_unpin(cx) {
            Poll::Ready(Some(answer)) => Poll::Ready(Some(
                encode(&answer).map_err(|e| Status::internal(e.to_string())),
            )),
            // Every write answered and none to come: the stream ends.
            Poll::Ready(None) if self.inbound.is_none() => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    type WriteStreamStream = Answers;

    async fn write_stream(
        &self,
        request: Request<Streaming<Payload>>,
    ) -> Result<Response<Answers>, Status> {
        let sender = member(&self.store, &request)?;
        let leaf = client_leaf(&request);
        Ok(Response::new(self.apply_stream(
            sender,
            leaf,
            request.into_inner(),
        )))
    }

    async fn write(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let sender = member(&self.store, &request)?;
        let mut proposal: Proposal = input(&request)?;
        // Who sends it is what its certificate says, whatever it claims.
        proposal.by = Some(sender);
        output(&self.store.write_as_leader(proposal).await)
    }

    async fn read_index(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        output(&self.store.read_index_as_leader().await)
    }

    async fn enroll(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        if request.get_ref().data.len() > MAX_ENROLL_BYTES {
            return Err(Status::invalid_argument("enrollment request too large"));
        }
        too_old(&self.store, &request)?;
        let _turn = self.enrollments.turn()?;
        let ask: EnrollRequest = input(&request)?;
        output(&self.store.membership().handle_enroll(ask).await)
    }

    async fn join(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        too_old(&self.store, &request)?;
        let sender = member(&self.store, &request)?;
        let ask: JoinRequest = input(&request)?;
        output(&self.store.membership().handle_join(ask, sender).await)
    }

    async fn issue(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let sender = member(&self.store, &request)?;
        let ask: IssueRequest = input(&request)?;
        output(&self.store.signing().handle_issue(ask, sender).await)
    }

    async fn ca_key(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let sender = member(&self.store, &request)?;
        let fingerprint: String = input(&request)?;
        output(&self.store.signing().handle_ca_key(&fingerprint, sender))
    }

    async fn version(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        member(&self.store, &request)?;
        output(&super::MemberVersion::own())
    }

    async fn remove(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        member(&self.store, &request)?;
        let node: u64 = input(&request)?;
        output(&self.store.membership().handle_remove(node).await)
    }
}
