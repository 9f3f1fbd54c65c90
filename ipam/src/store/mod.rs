//! Replication of [`State`](crate::State) with openraft over gRPC,
//! persisted in redb.
//!
//! ```text
//!   Store::write(Command) ──(not leader: gRPC Cluster.Write)──► leader
//!        │ client_write
//!        ▼
//!   openraft ──append──► LogStore (redb: log, vote, committed; fsync before ack)
//!        │        └──────► peers (gRPC Raft.AppendEntries, one channel each)
//!        │ apply (committed entries)
//!        ▼
//!   StateMachine (State in memory; snapshots in redb)
//! ```
//!
//! The state machine itself lives in memory: on start it is restored from
//! the last snapshot and openraft re-applies the committed log that follows
//! it. Nothing here knows about Docker or netlink.

mod catch_up;
mod clock;
mod cluster;
mod db;
mod error;
mod forward;
mod log_store;
mod network;
mod node;
mod server;
mod signing;
mod state_machine;
mod tls;
mod transport;
mod types;
mod upgrade;
mod wire;

pub use cluster::{ClusterView, Member, RaftView, enroll};
pub use db::Db;
pub use error::{PeerError, Refusal, RemoteError, StoreError, TlsError, Unavailable, chain};
pub use log_store::LogStore;
pub use network::{GrpcNetwork, Peers};
pub use node::{
    CERT_LIFETIME, SNAPSHOT_CHUNK, STATE_FILE, Store, StoreConfig, WriteObserver, WriteOutcome,
    raft_config,
};
pub use server::{ClusterService, RaftService, services, spawn_server};
pub use state_machine::StateMachine;
pub use tls::{NodeCert, SERVER_NAME};
pub use types::TypeConfig;
pub use upgrade::{MemberAnswer, MemberVersion, UpgradeView};
pub use wire::{JoinReply, JoinRequest};
