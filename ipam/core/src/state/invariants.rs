//! What must hold of the state after any sequence of commands, accepted
//! or refused: checked by the property tests and the fuzz targets.

use std::collections::BTreeSet;

use crate::State;
use crate::addr::{overlaps, to_int, usable};

impl State {
    /// The first broken invariant, if any: pools never overlap and stay
    /// referenced; every held or released address is a usable address of
    /// its pool, held at most once, never both held and released, and the
    /// released queue is no longer than the pool; every endpoint sits on a
    /// network of its own host; every overlay a network names exists, and
    /// the network has the overlay's VNI, multicast, mode and host access;
    /// every host shim's address belongs to a LAN network of its host.
    pub fn invariants(&self) -> Result<(), String> {
        let pools: Vec<_> = self.pools.values().collect();
        for (i, a) in pools.iter().enumerate() {
            if let Some(b) = pools[i + 1..].iter().find(|b| overlaps(a.subnet, b.subnet)) {
                return Err(format!("pools {} and {} overlap", a.subnet, b.subnet));
            }
        }
        for pool in &pools {
            let subnet = pool.subnet;
            if pool.refs.is_empty() || pool.refs.values().any(|&n| n == 0) {
                return Err(format!("pool {subnet} has references {:?}", pool.refs));
            }
            if let Some(range) = pool.range.filter(|r| !subnet.contains(&r.network())) {
                return Err(format!("range {range} outside pool {subnet}"));
            }
            let (lo, hi) = usable(subnet).unwrap_or((1, 0));
            let in_pool =
                |a: &std::net::IpAddr| subnet.contains(a) && (lo..=hi).contains(&to_int(*a));
            if let Some(a) = pool.addresses.keys().find(|a| !in_pool(a)) {
                return Err(format!("{a} held outside the usable addresses of {subnet}"));
            }
            let mut released = BTreeSet::new();
            for a in &pool.released {
                if !in_pool(a) || !released.insert(*a) || pool.addresses.contains_key(a) {
                    return Err(format!(
                        "{a} in {subnet}'s released queue is foreign, repeated or held"
                    ));
                }
            }
            if pool.released.len() as u128 > hi.saturating_sub(lo) + 1 {
                return Err(format!("{subnet}'s released queue outgrew the pool"));
            }
        }
        let tables = &self.tables;
        for endpoint in tables.endpoints() {
            match tables.network(&endpoint.network_id) {
                Some(n) if n.host == endpoint.host => {}
                _ => {
                    return Err(format!(
                        "endpoint {} is on no network of its host",
                        endpoint.id
                    ));
                }
            }
        }
        for n in tables.networks() {
            let Some(key) = n.overlay.as_deref() else {
                continue;
            };
            let Some(overlay) = tables.overlay(key) else {
                return Err(format!("network {} names a missing overlay", n.id));
            };
            if n.vni != Some(overlay.vni)
                || n.multicast != overlay.multicast
                || n.mode != overlay.mode
                || n.host_access != overlay.host_access
            {
                return Err(format!(
                    "network {} differs from its overlay {key} in VNI, multicast, mode or host access",
                    n.id
                ));
            }
        }
        // A host shim's address belongs to a LAN network with host access
        // of its host on that subnet, one per host and subnet.
        for pool in &pools {
            let mut shims = BTreeSet::new();
            for (address, holder) in pool.addresses.iter() {
                if holder.kind != crate::HolderKind::Shim {
                    continue;
                }
                let owned = tables.networks_of(holder.host).any(|n| {
                    n.mode.is_lan()
                        && n.host_access
                        && n.subnet.map(|s| s.trunc()) == Some(pool.subnet)
                });
                if !owned || !shims.insert(holder.host) {
                    return Err(format!(
                        "shim address {address} of host {} has no LAN network there, or is its second",
                        holder.host
                    ));
                }
            }
        }
        let fingerprints: BTreeSet<&String> = self.certs.values().collect();
        if fingerprints.len() != self.certs.len() {
            return Err(format!(
                "a certificate bound to two hosts: {:?}",
                self.certs
            ));
        }
        if let Some(rotation) = &self.ca_rotation
            && let Some(host) = rotation
                .pending
                .iter()
                .find(|h| !self.certs.contains_key(h))
        {
            return Err(format!(
                "CA rotation waits on host {host}, which has no certificate"
            ));
        }
        if self.enrollments.pending() > crate::MAX_PENDING_ENROLLMENTS {
            return Err(format!(
                "{} enrollments pending",
                self.enrollments.pending()
            ));
        }
        Ok(())
    }
}
