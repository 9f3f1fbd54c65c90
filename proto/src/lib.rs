//! rustnet's gRPC schema (tonic/prost): the Raft RPCs between members and
//! cluster administration (leader forwarding, read index, join, remove).
//! Payloads are serde-encoded bytes, keeping openraft's types out of the
//! schema.

#![allow(missing_debug_implementations, unreachable_pub)] // generated code

/// Generated from `proto/rustnet.proto`.
#[allow(clippy::too_many_lines)] // generated code
pub mod v1 {
    tonic::include_proto!("rustnet.v1");
}

pub use v1::cluster_client::ClusterClient;
pub use v1::cluster_server::{Cluster, ClusterServer};
pub use v1::raft_client::RaftClient;
pub use v1::raft_server::{Raft, RaftServer};
pub use v1::{Payload, SnapshotChunk};
