//! Who a replica admits while it may be behind on its peers' certificates.
//!
//! A replica admits a peer by the certificate its own state names for it.
//! A replica that is behind (it just enrolled and is replaying the log from
//! the start, or it was down while its peers renewed or new hosts joined)
//! would refuse the very leader it needs to catch up from: that leader's
//! certificate is in entries it has yet to apply. Until it hears from a
//! leader its state knows, such a replica also admits:
//!
//! ```text
//!   a newer certificate of a member it knows   (renewed while it was away)
//!   a certificate the cluster vouched for      (the members' certificates
//!                                               as the enroll or join reply
//!                                               listed them)
//! ```
//!
//! Nothing else: a certificate of the CA alone is not enough once the state
//! names any member (a removed host keeps one).

use std::collections::BTreeSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::tls::NodeCert;
use crate::{Admission, HostId, State};

/// What a replica that may be behind goes by.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// Whether, since it started, this node has heard from a leader its
    /// state knows (or led).
    heard_leader: AtomicBool,
    /// The members' certificate fingerprints the cluster vouched for when
    /// this node last enrolled or joined.
    vouched: RwLock<BTreeSet<String>>,
}

impl CatchUp {
    pub(crate) fn new(vouched: impl IntoIterator<Item = String>) -> Self {
        Self {
            heard_leader: AtomicBool::new(false),
            vouched: RwLock::new(vouched.into_iter().collect()),
        }
    }

    /// Whether this node has yet to hear from a leader its state knows.
    pub(crate) fn behind(&self) -> bool {
        !self.heard_leader.load(Ordering::Relaxed)
    }

    /// Marks the leader heard; true the first time. The vouched
    /// certificates are forgotten: from now on the state decides.
    pub(crate) fn hear_leader(&self) -> bool {
        let first = !self.heard_leader.swap(true, Ordering::Relaxed);
        if first && let Ok(mut vouched) = self.vouched.write() {
            vouched.clear();
        }
        first
    }

    /// Takes the certificates the cluster vouched for, unless this node
    /// has caught up already.
    pub(crate) fn vouch(&self, fingerprints: impl IntoIterator<Item = String>) {
        if self.behind()
            && let Ok(mut vouched) = self.vouched.write()
        {
            vouched.extend(fingerprints);
        }
    }

    fn vouches(&self, fingerprint: &str) -> bool {
        self.vouched
            .read()
            .is_ok_and(|vouched| vouched.contains(fingerprint))
    }
}

/// Whether the certificate `der` (with `fingerprint`) is admitted by this
/// replica: by fingerprint, or, on a replica catching up (see the module
/// comment), as a newer certificate of a member or one the cluster vouched
/// for (parsed only then: the common case is a hash and a lookup). A
/// replica catching up is one that does not know its own certificate yet,
/// or one that has not heard from a leader since it started.
pub(crate) fn admit(
    state: &State,
    id: HostId,
    own: Option<&NodeCert>,
    der: &[u8],
    fingerprint: &str,
    catch_up: &CatchUp,
) -> Admission {
    let now = super::clock::unix_now();
    match state.admission(fingerprint, now) {
        Admission::Refused if catch_up.behind() || catching_up(state, id, own) => {
            let cert = super::tls::peer_cert(der);
            if catch_up.vouches(fingerprint) {
                return cert.host.map_or(Admission::AnyOfTheCa, Admission::Member);
            }
            state.admission_of(&cert, now, true)
        }
        known => known,
    }
}

/// Whether this replica has yet to learn this member's own certificate:
/// a host that just joined, fed a snapshot older than its enrollment.
fn catching_up(state: &State, id: HostId, own: Option<&NodeCert>) -> bool {
    own.is_some_and(|cert| state.cert_of(id) != Some(cert.fingerprint.as_str()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::Command;
    use crate::tls::{Trust, issue, new_ca};

    /// A certificate of the CA for `host`, with its DER form.
    fn member(ca: &crate::ClusterCa, host: HostId) -> (NodeCert, Vec<u8>) {
        let trust = Trust {
            roots_pem: ca.cert_pem.clone(),
            chain_tail_pem: ca.cert_pem.clone(),
        };
        let cert = issue(ca, &trust, host, Duration::from_secs(86400)).unwrap();
        let der = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec();
        (cert, der)
    }

    fn admitted(state: &mut State, host: HostId, cert: &NodeCert) {
        state
            .apply(&Command::AdmitCert {
                host,
                fingerprint: cert.fingerprint.clone(),
                issuer: None,
                not_before: Some(cert.not_before),
            })
            .unwrap();
    }

    /// A new host replaying the log from the start knows the first member
    /// only; the leader, a host that joined later, is admitted because the
    /// cluster vouched for it, and only until this host caught up.
    #[test]
    fn a_replica_replaying_history_admits_the_leader_the_cluster_vouched_for() {
        let ca = new_ca().unwrap();
        let (first, _) = member(&ca, 1);
        let (leader, leader_der) = member(&ca, 3);
        let (own, _) = member(&ca, 4);
        let mut state = State::default();
        admitted(&mut state, 1, &first);
        let admission = |catch_up: &CatchUp, state: &State| {
            admit(
                state,
                4,
                Some(&own),
                &leader_der,
                &leader.fingerprint,
                catch_up,
            )
        };

        let unvouched = CatchUp::new([]);
        assert_eq!(admission(&unvouched, &state), Admission::Refused);

        let vouched = CatchUp::new([leader.fingerprint.clone()]);
        assert_eq!(admission(&vouched, &state), Admission::Member(3));

        // Caught up: its state decides, and knows no such member.
        assert!(vouched.hear_leader());
        admitted(&mut state, 4, &own);
        assert_eq!(admission(&vouched, &state), Admission::Refused);
        vouched.vouch([leader.fingerprint.clone()]);
        assert_eq!(
            admission(&vouched, &state),
            Admission::Refused,
            "vouched after catching up"
        );
    }

    /// An empty state admits any certificate of the CA (there is no member
    /// to go by yet); once it names one, another certificate of the CA
    /// alone is not enough, even on a replica catching up.
    #[test]
    fn a_certificate_of_the_ca_alone_is_enough_only_before_any_member_is_known() {
        let ca = new_ca().unwrap();
        let (first, _) = member(&ca, 1);
        let (stranger, stranger_der) = member(&ca, 9);
        let catch_up = CatchUp::new([]);
        let mut state = State::default();
        let admission = |state: &State| {
            admit(
                state,
                4,
                None,
                &stranger_der,
                &stranger.fingerprint,
                &catch_up,
            )
        };
        assert_eq!(admission(&state), Admission::AnyOfTheCa);
        admitted(&mut state, 1, &first);
        assert_eq!(admission(&state), Admission::Refused);
    }
}
