//! rustnet's cluster-wide IP address management under one name: the pure
//! state machine of `rustnet-ipam-core` (pools, the allocator, the network
//! and endpoint tables, commands) and, as [`store`], its replication in
//! `rustnet-store` (openraft, redb, mutual-TLS gRPC). The plugin names this
//! crate only.
//!
//! ```text
//!   Docker IPAM request ──► Command ──► Raft log (redb) ──► State::apply ──► Response
//! ```

pub use rustnet_ipam_core::*;
pub use rustnet_store as store;
pub use rustnet_store::{background, memory};
