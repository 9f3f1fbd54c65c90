//! The Raft type configuration: what the log carries and what applying yields.

use crate::{CommandResult, Proposal};

openraft::declare_raft_types!(
    /// rustnet's Raft types: IPAM commands in, IPAM results out.
    pub TypeConfig:
        D = Proposal,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
);
