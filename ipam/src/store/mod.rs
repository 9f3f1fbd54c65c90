//! Replication of [`State`](crate::State) with openraft, persisted in redb.
//!
//! ```text
//!   Store::write(Command)
//!        │ client_write
//!        ▼
//!   openraft ──append──► LogStore (redb: log, vote, committed; fsync before ack)
//!        │ apply (committed entries)
//!        ▼
//!   StateMachine (State in memory; snapshots in redb)
//! ```
//!
//! The state machine itself lives in memory: on start it is restored from
//! the last snapshot and openraft re-applies the committed log after it.
//! Nothing here knows about Docker or netlink.

mod db;
mod log_store;
mod network;
mod node;
mod state_machine;
mod types;

pub use db::Db;
pub use log_store::LogStore;
pub use network::Unreachable;
pub use node::{Store, StoreError, raft_config};
pub use state_machine::StateMachine;
pub use types::TypeConfig;
