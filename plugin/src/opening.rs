//! Which pools this host's Docker is creating a network on (pure).
//!
//! Docker asks for an `--aux-address` by value with no options. It asks
//! for a container's address with options, the MAC among them, since
//! rustnet's IPAM says it requires MACs; a Docker that loaded the IPAM
//! before it said so (an upgrade without a dockerd restart) asks for a
//! container's `--ip` exactly as for an aux address. So an address by
//! value with no options is taken as an aux address (shared by every host
//! that creates a network on the subnet) only while the host's Docker
//! creates the network: shortly after this host requested the pool, and
//! before any container's request on it. Any later one is a container's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rustnet_ipam::HolderKind;

/// How long after its pool request a network's creation may still ask for
/// aux addresses (each request is one commit: milliseconds, but a loaded
/// cluster may take longer).
const WINDOW: Duration = Duration::from_secs(5);

/// The pools this host requested lately, and when.
#[derive(Debug, Default)]
pub(crate) struct Openings {
    since: HashMap<String, Instant>,
}

impl Openings {
    /// This host's Docker was just handed `pool_id`: a network is being
    /// created on it.
    pub(crate) fn opened(&mut self, pool_id: &str, now: Instant) {
        self.since
            .retain(|_, at| now.saturating_duration_since(*at) < WINDOW);
        self.since.insert(pool_id.to_owned(), now);
    }

    /// The pool was released: its creation is over.
    pub(crate) fn closed(&mut self, pool_id: &str) {
        self.since.remove(pool_id);
    }

    /// What an address request on `pool_id` holds its address as: `kind`
    /// as the request reads, but an aux address where the network is being
    /// created. A container's request ends the creation.
    pub(crate) fn kind(&mut self, pool_id: &str, kind: HolderKind, now: Instant) -> HolderKind {
        let creating = self
            .since
            .get(pool_id)
            .is_some_and(|at| now.saturating_duration_since(*at) < WINDOW);
        match kind {
            HolderKind::Static if creating => HolderKind::Aux,
            HolderKind::Endpoint { .. } => {
                self.since.remove(pool_id);
                kind
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "10.99.0.0/24";

    #[test]
    fn an_address_by_value_while_creating_is_an_aux_address() {
        let t0 = Instant::now();
        let mut o = Openings::default();
        o.opened(POOL, t0);
        let soon = t0 + Duration::from_millis(20);
        assert_eq!(o.kind(POOL, HolderKind::Gateway, soon), HolderKind::Gateway);
        assert_eq!(o.kind(POOL, HolderKind::Static, soon), HolderKind::Aux);
        assert_eq!(o.kind(POOL, HolderKind::Static, soon), HolderKind::Aux);
        // Another pool is not being created.
        assert_eq!(
            o.kind("10.0.0.0/24", HolderKind::Static, soon),
            HolderKind::Static
        );
    }

    #[test]
    fn a_container_or_time_ends_the_creation() {
        let t0 = Instant::now();
        let mut o = Openings::default();
        o.opened(POOL, t0);
        let name = HolderKind::endpoint("web");
        assert_eq!(o.kind(POOL, name.clone(), t0), name);
        assert_eq!(o.kind(POOL, HolderKind::Static, t0), HolderKind::Static);

        o.opened(POOL, t0);
        let late = t0 + WINDOW;
        assert_eq!(o.kind(POOL, HolderKind::Static, late), HolderKind::Static);

        o.opened(POOL, t0);
        o.closed(POOL);
        assert_eq!(o.kind(POOL, HolderKind::Static, t0), HolderKind::Static);
    }

    #[test]
    fn old_openings_are_dropped() {
        let t0 = Instant::now();
        let mut o = Openings::default();
        o.opened("10.0.1.0/24", t0);
        o.opened(POOL, t0 + WINDOW);
        assert_eq!(o.since.len(), 1);
    }
}
