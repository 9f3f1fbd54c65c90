//! The Raft type configuration: what the log carries and what applying yields.

use crate::{Command, CommandResult};

openraft::declare_raft_types!(
    /// rustnet's Raft types: IPAM commands in, IPAM results out.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
);
