//! rustnet's data path: bridges, veth pairs, VXLAN, FDB and neighbour
//! entries, firewall rules.
//!
//! ```text
//!   Want (from the replicated tables)
//!     │ Reconciler::begin().apply(want)        one pass at a time
//!     ├─ links:    Kernel::observe ─► plan(desired, observed) ─► [Op] ─► Kernel::apply
//!     └─ firewall: Firewall::apply (rustnet's own chains), sysctls, VXLAN ingress
//! ```
//!
//! Layout: `model` is what the planner reasons about, `plan` the pure
//! planner, `firewall` the pure rule model; `reconcile` is the loop that
//! ties them to the two side-effect traits, [`Kernel`] (implemented by
//! [`Netlink`]) and [`Firewall`] (implemented by [`Iptables`] and
//! `sysctl`); `fake` holds recording fakes of both for tests. Deciding is
//! pure and unit-tested; acting is a thin shell with no decisions of its
//! own. Nothing here knows about Raft or Docker.

pub mod fake;
pub mod firewall;
pub mod firewall6;
mod guard;
mod iptables;
mod model;
mod netlink;
mod plan;
mod reconcile;
pub mod sysctl;
pub mod tunnel;

pub use iptables::Iptables;
pub use model::{
    Desired, Flood, Gateway, Lan, LanKind, LanLink, Link, LinkKind, Observed, Op, Port, Remote,
    Shim, Vlan, Vxlan,
};
pub use netlink::{Kernel, Netlink};
pub use plan::{Conflict, PlanError, plan, plan_isolated};
pub use reconcile::{Firewall, Pass, Reconciler, Report, Want};

/// The alias rustnet puts on every link it creates, followed by the data
/// path's id: how it recognises its own links after a restart, whatever
/// their names, and tells them from those made under a state directory
/// that was lost or replaced since.
pub const OWNER_ALIAS: &str = "rustnet";

/// The alias of the links data path `id` creates.
pub fn owner_alias(id: &str) -> String {
    format!("{OWNER_ALIAS} {id}")
}

/// Whose a link with `alias` is, seen by data path `id` (pure): (owned,
/// inherited). The bare [`OWNER_ALIAS`] of older releases counts as owned.
pub fn ownership(alias: &str, id: &str) -> (bool, bool) {
    match alias.strip_prefix(OWNER_ALIAS) {
        Some("") => (true, false),
        Some(rest) => match rest.strip_prefix(' ') {
            Some(other) if other == id => (true, false),
            Some(_) => (false, true),
            None => (false, false),
        },
        None => (false, false),
    }
}

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
