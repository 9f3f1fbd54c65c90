//! rustnet's cluster-wide IP address management.
//!
//! ```text
//!   Docker IPAM request ──► Command ──► Raft log (redb) ──► State::apply ──► Response
//! ```
//!
//! [`State`] is a pure, deterministic state machine: every address is chosen
//! inside [`State::apply`] from replicated state alone (no clock, no
//! randomness, no I/O), so two hosts proposing at the same time can never be
//! given the same address. [`store`] replicates it with openraft and keeps
//! log, vote and snapshots in redb.

mod addr;
mod command;
mod error;
mod network;
mod pool;
mod state;
pub mod store;
mod token;

pub use command::{Command, CommandResult, DefaultPool, HolderKind, Proposal, Response};
pub use error::IpamError;
pub use network::{
    Endpoint, FIRST_VNI, MAX_VNI, Mode, Network, NetworkError, Overlay, PortBinding, Proto, Tables,
};
pub use pool::{Holder, Pool};
pub use state::State;
pub use token::{ClusterCa, JoinToken, check as check_join_token, pinned, split as split_token};

/// Identifies a rustnet host (a Raft node) in the cluster.
pub type HostId = u64;
