//! rustnet's data path: bridges, veth pairs and firewall rules.
//!
//! ```text
//!   desired (from the replicated tables) ─┐
//!                                         ├─► plan() ─► [Op] ─► Kernel (netlink)
//!   observed (links rustnet owns) ────────┘
//!   networks ─► firewall::Ruleset ─► iptables-restore (rustnet's own chains)
//! ```
//!
//! Deciding is pure ([`plan`], [`firewall`]) and unit-tested; acting is a thin
//! shell ([`Netlink`], [`Iptables`]) with no decisions of its own. Nothing
//! here knows about Raft or Docker.

pub mod firewall;
mod iptables;
mod model;
mod netlink;
mod plan;
pub mod sysctl;

pub use iptables::Iptables;
pub use model::{Bridge, Desired, Link, LinkKind, Observed, Op, Remote, Veth, Vxlan};
pub use netlink::{Kernel, Netlink};
pub use plan::{PlanError, plan};

/// The alias rustnet puts on every link it creates: how it recognises its
/// own links after a restart, whatever their names.
pub const OWNER_ALIAS: &str = "rustnet";

/// Errors of the data path, naming the interface or command involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("netlink: {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink connection: {0}")]
    Connection(#[source] std::io::Error),
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
