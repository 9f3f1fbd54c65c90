//! rustnet's replicated state machine, pure: no async runtime, no I/O.
//!
//! ```text
//!   Command ──► State::apply_once ──► CommandResult (Response | IpamError)
//!                 ├─ pools: Pool (addresses and their holders, released queue)
//!                 ├─ tables: Tables (networks, endpoints, overlays)
//!                 └─ hosts, VTEPs, join token, cluster CA, admitted certificates
//! ```
//!
//! Layout: `state` is the machine and the only place that changes it;
//! `pool` and `addr` are the allocator and its address arithmetic;
//! `network` holds the network and endpoint tables; `command` the commands
//! and answers that travel through Raft; `error` why a command is refused;
//! `token` the join token and CA records; `mac` the MAC type; `fixture`
//! (feature `fixtures`) builders for tests. Every address
//! is chosen inside [`State::apply`] from replicated state alone (no clock,
//! no randomness, no I/O), so two hosts proposing at the same time can
//! never be given the same address. The crate `rustnet-ipam` replicates
//! this machine with openraft and keeps it in redb; nothing here knows it.

mod addr;
mod command;
mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixture;
pub mod format;
mod mac;
mod members;
mod network;
mod pool;
mod recent;
mod state;
mod token;

/// Keeps the entries of a persistent map that `keep` accepts (imbl's
/// `OrdMap` has no `retain`): the others are found first, then removed.
pub(crate) fn retain<K: Ord + Clone, V: Clone>(
    map: &mut imbl::OrdMap<K, V>,
    mut keep: impl FnMut(&K, &V) -> bool,
) {
    let gone: Vec<K> = map
        .iter()
        .filter(|(k, v)| !keep(k, v))
        .map(|(k, _)| k.clone())
        .collect();
    for key in gone {
        map.remove(&key);
    }
}

pub use command::{Command, CommandResult, DefaultPool, HolderKind, Proposal, Response};
pub use error::IpamError;
pub use format::{FORMAT, FormatError, OLDEST_FORMAT};
pub use mac::{Mac, MacError};
pub use members::{
    Admission, CaRotation, ENROLLMENT_WINDOW_SECS, Enrollments, MAX_PENDING_ENROLLMENTS, PeerCert,
};
pub use network::{
    Container, Endpoint, FIRST_VNI, MAX_VNI, Mode, Multicast, Network, NetworkError, Overlay,
    PortBinding, Proto, Tables,
};
pub use pool::{Holder, Pool};
pub use state::{MAX_TUNNEL_SLOT, State, TunnelKey};
pub use token::{
    ClusterCa, JoinToken, TokenError, check as check_join_token, pinned, split as split_token,
};

/// Identifies a rustnet host (a Raft node) in the cluster.
pub type HostId = u64;
