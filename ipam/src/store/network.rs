//! The Raft network of a one-node cluster: there is nobody to talk to.
//!
//! A node alone in its cluster never sends a Raft message; should openraft
//! ever try, the peer is reported unreachable. The gRPC transport replaces
//! this when hosts form a cluster.

use std::future::Future;

use openraft::error::{
    RPCError, ReplicationClosed, StreamingError, Unreachable as UnreachableError,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, RaftNetworkFactory, RaftNetworkV2};

use super::TypeConfig;

type Vote = openraft::alias::VoteOf<TypeConfig>;
type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;

/// A network on which every peer is unreachable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unreachable;

fn unreachable<E>() -> E
where
    E: From<UnreachableError<TypeConfig>>,
{
    E::from(UnreachableError::new(&AnyError::error(
        "this node has no peers",
    )))
}

impl RaftNetworkFactory<TypeConfig> for Unreachable {
    type Network = Unreachable;

    async fn new_client(&mut self, _target: u64, _node: &openraft::BasicNode) -> Self::Network {
        Unreachable
    }
}

impl RaftNetworkV2<TypeConfig> for Unreachable {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(unreachable())
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(unreachable())
    }
}
