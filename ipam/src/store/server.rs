//! The gRPC services a member serves to its peers: Raft's RPCs and the
//! cluster's (forwarded writes, read index, enroll, join, remove), over
//! mutual TLS. Every RPC but Enroll needs the client certificate of a
//! current member.

use std::sync::{Arc, Mutex};

use rustnet_proto::{Cluster, ClusterServer, Payload, Raft, RaftServer, SnapshotChunk};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::error::RemoteError;
use super::network::{ChunkHeader, SnapshotMessage, decode, encode};
use super::{Store, TypeConfig};
use crate::Proposal;
use crate::store::cluster::{EnrollRequest, JoinRequest};

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
        let cert = store.wait_for_cert().await;
        let (raft, cluster) = services(&store);
        let mut server = match tonic::transport::Server::builder().tls_config(cert.server_config())
        {
            Ok(builder) => builder,
            Err(e) => {
                tracing::error!(error = %e, "peer server: TLS configuration");
                return;
            }
        };
        let server = server.add_service(raft).add_service(cluster);
        // Without TCP_NODELAY a reply split over several TLS records waits
        // on the peer's delayed ACK.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(e) = server
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
        {
            tracing::error!(error = %e, "peer server stopped");
        }
    })
}

/// Lets the RPC through if its client certificate is a current member's.
fn authorize<T>(store: &Store, request: &Request<T>) -> Result<(), Status> {
    let certs = request.peer_certs();
    let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
        return Err(Status::unauthenticated(
            "a client certificate of the cluster is required",
        ));
    };
    let fingerprint = super::tls::fingerprint(leaf);
    if store.local(|s| s.admits(&fingerprint)).unwrap_or(false) {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "certificate {fingerprint} is not a current member's"
        )))
    }
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
        }),
    )
}

fn input<T: DeserializeOwned>(request: &Request<Payload>) -> Result<T, Status> {
    decode(request.get_ref()).map_err(|e| Status::invalid_argument(e.to_string()))
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

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        let reply = self
            .store
            .raft
            .append_entries(input(&request)?)
            .await
            .map_err(failed);
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
        let header: ChunkHeader = decode(&Payload { data: chunk.header })
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
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn write(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        let proposal: Proposal = input(&request)?;
        output(&self.store.write_as_leader(proposal).await)
    }

    async fn read_index(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        output(&self.store.read_index_as_leader().await)
    }

    async fn enroll(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let ask: EnrollRequest = input(&request)?;
        output(&self.store.handle_enroll(ask).await)
    }

    async fn join(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        let ask: JoinRequest = input(&request)?;
        output(&self.store.handle_join(ask).await)
    }

    async fn remove(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        authorize(&self.store, &request)?;
        let node: u64 = input(&request)?;
        output(&self.store.handle_remove(node).await)
    }
}
