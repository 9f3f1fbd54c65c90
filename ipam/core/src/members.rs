//! Who the members are, as the replicated state knows them: the ids the
//! cluster hands out, each member's certificate, and which member may send
//! which write.
//!
//! ```text
//!   Enroll (token) ─► AssignHostId{at}: a fresh id, never handed out again,
//!                     pending until the host joins (or ENROLLMENT_WINDOW ends)
//!                  ─► AdmitCert{id}: the first certificate of that id
//!   Join           ─► Joined{id}: no longer pending
//!   remove/leave   ─► ForgetHost{id}: its certificate is gone for good
//!   rotate-ca      ─► RotateCa{new CA}: every member renews under it
//!                     (AdmitCert{issuer: new}); the CA before stays
//!                     trusted until the last has, then RetireCa
//!   forwarded write: State::authorize(by, command) before apply
//! ```
//!
//! Time never comes from a clock here: an enrollment carries the time the
//! enrolling member read, and who asks whether a certificate is admitted
//! says what time it is.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::HostId;

/// How long an enrolled host has to join before its certificate stops
/// being admitted (and its id is dropped at the next enrollment).
pub const ENROLLMENT_WINDOW_SECS: u64 = 300;

/// At most this many hosts enrolled and not yet joined: enrollment is the
/// one thing a non-member can make the cluster write.
pub const MAX_PENDING_ENROLLMENTS: usize = 16;

/// The ids the cluster has handed out and the enrollments not yet joined.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollments {
    /// The lowest id not yet handed out; it only grows.
    next_id: HostId,
    /// Hosts enrolled and not yet joined: when they enrolled (unix seconds).
    pending: BTreeMap<HostId, u64>,
}

/// A rotation of the cluster's CA under way: the CA before stays trusted
/// until every member holds a certificate of the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRotation {
    /// The certificate of the CA before (its key is not kept).
    pub previous_pem: String,
    /// SHA-256 of it, hex.
    pub previous_fingerprint: String,
    /// The new CA's certificate signed by the CA before: renewed members
    /// present it, so that a member still trusting only the CA before (one
    /// that has not yet applied the rotation) admits them.
    pub cross_pem: String,
    /// Members whose certificate is still of the CA before.
    pub pending: BTreeSet<HostId>,
}

/// What a peer's certificate says, as TLS received it (its chain to a
/// cluster CA already checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
    /// The member it names, if it names one.
    pub host: Option<HostId>,
    /// Valid from (unix seconds), if it says.
    pub not_before: Option<u64>,
}

/// Whether a peer's certificate lets it in, and as whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The certificate of this member.
    Member(HostId),
    /// This replica knows no certificate yet (a host catching up as it
    /// joins): any certificate of the cluster's CA, which TLS has checked.
    AnyOfTheCa,
    /// Not a current member's certificate.
    Refused,
}

impl Enrollments {
    /// Hands out a fresh id to a host enrolling at `at`: above every id
    /// `known` and every id handed out before. Drops enrollments older than
    /// [`ENROLLMENT_WINDOW_SECS`] first (returned, so their certificates go
    /// too); `None` when too many are still pending.
    pub(crate) fn assign(
        &mut self,
        at: u64,
        known: impl Iterator<Item = HostId>,
    ) -> (Option<HostId>, Vec<HostId>) {
        let expired: Vec<HostId> = self
            .pending
            .iter()
            .filter(|(_, since)| at.saturating_sub(**since) >= ENROLLMENT_WINDOW_SECS)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.pending.remove(id);
        }
        if self.pending.len() >= MAX_PENDING_ENROLLMENTS {
            return (None, expired);
        }
        let id = known
            .chain(self.pending.keys().copied())
            .max()
            .map_or(1, |max| max.saturating_add(1))
            .max(self.next_id)
            .max(1);
        self.next_id = id.saturating_add(1);
        self.pending.insert(id, at);
        (Some(id), expired)
    }

    /// Whether `host` enrolled and has not joined yet.
    pub(crate) fn is_pending(&self, host: HostId) -> bool {
        self.pending.contains_key(&host)
    }

    /// Whether `host`'s enrollment, if pending, is still within its window
    /// at `now`.
    pub(crate) fn in_window(&self, host: HostId, now: u64) -> bool {
        self.pending
            .get(&host)
            .is_none_or(|since| now.saturating_sub(*since) < ENROLLMENT_WINDOW_SECS)
    }

    /// `host` joined (or left): no longer pending.
    pub(crate) fn settle(&mut self, host: HostId) {
        self.pending.remove(&host);
    }

    /// How many enrollments are pending.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh_above_every_known_one_and_never_handed_out_twice() {
        let mut e = Enrollments::default();
        let (a, _) = e.assign(100, [7, 3].into_iter());
        assert_eq!(a, Some(8));
        let (b, _) = e.assign(100, [7, 3].into_iter());
        assert_eq!(b, Some(9));
        e.settle(9);
        // 9 was forgotten by every table: still never handed out again.
        let (c, _) = e.assign(100, [7].into_iter());
        assert_eq!(c, Some(10));
    }

    #[test]
    fn stale_enrollments_expire_and_pending_ones_are_bounded() {
        let mut e = Enrollments::default();
        for _ in 0..MAX_PENDING_ENROLLMENTS {
            assert!(e.assign(0, std::iter::empty()).0.is_some());
        }
        assert_eq!(e.assign(1, std::iter::empty()).0, None, "bounded");
        assert!(e.in_window(1, ENROLLMENT_WINDOW_SECS - 1));
        assert!(!e.in_window(1, ENROLLMENT_WINDOW_SECS));
        let (id, expired) = e.assign(ENROLLMENT_WINDOW_SECS, std::iter::empty());
        assert_eq!(expired.len(), MAX_PENDING_ENROLLMENTS);
        assert!(id.is_some());
        assert_eq!(e.pending(), 1);
        assert!(
            e.in_window(999, 0),
            "a settled or unknown host has no window"
        );
    }
}
