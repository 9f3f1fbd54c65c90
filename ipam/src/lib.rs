//! rustnet's cluster-wide IP address management: the pure state machine of
//! `rustnet-ipam-core`, replicated.
//!
//! ```text
//!   Docker IPAM request ──► Command ──► Raft log (redb) ──► State::apply ──► Response
//! ```
//!
//! Layout: this crate re-exports the pure core (`State`, `Command`, the
//! tables) so callers name one crate, and adds [`store`]: the openraft node
//! (log, vote and snapshots in redb), its gRPC transport over mutual TLS
//! (tonic, rustls, rcgen), membership and enrollment. The core depends on
//! none of that; this crate depends on it.

pub mod background;
pub mod memory;
pub mod store;

pub use rustnet_ipam_core::*;
