//! rustnet's replicated store: the state machine of `rustnet-ipam-core`
//! (networks, endpoints, pools, hosts, the CA) replicated with openraft
//! over gRPC between members that know each other by mutual TLS, and kept
//! on disk in redb. Nothing here knows about Docker or netlink.
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
//! it.
//!
//! One file per concern, each importing only those below it: `clock`,
//! `types`, `error`, `db`; `tls` (certificates), `transport` (handshakes),
//! `wire` (every peer message, and `call`); `log_store` and
//! `state_machine` (openraft's storage); `network` (the Raft client),
//! `catch_up`, `forward` (writes to the leader); `node` (the `Store`),
//! then `cluster` (membership), `signing` (the CA key and certificates),
//! `upgrade` (formats across members); `server` (the peer protocol's
//! server) on top. `background` and `memory` are the process's side work
//! (snapshot encoding at low priority, giving freed memory back).

// The core's types, as `crate::State` and so on, in every file.
use rustnet_ipam_core::*;

pub mod background;
mod catch_up;
mod clock;
mod cluster;
mod db;
mod error;
mod forward;
mod log_store;
pub mod memory;
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

pub use cluster::{Membership, enroll};
pub use db::Db;
pub use error::{PeerError, Refusal, RemoteError, StoreError, TlsError, Unavailable, chain};
pub use log_store::LogStore;
pub use network::{GrpcNetwork, Peers};
pub use node::{
    CERT_LIFETIME, ClusterView, Member, RaftView, SNAPSHOT_CHUNK, STATE_FILE, Store, StoreConfig,
    WriteObserver, WriteOutcome, raft_config,
};
pub use server::{ClusterService, RaftService, services, spawn_server};
pub use signing::Signing;
pub use state_machine::StateMachine;
pub use tls::{NodeCert, SERVER_NAME};
pub use types::TypeConfig;
pub use upgrade::{MemberAnswer, MemberVersion, UpgradeView};
pub use wire::{JoinReply, JoinRequest};
