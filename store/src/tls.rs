//! Mutual TLS between members: the certificates (the CA, issuing, cross-
//! signing, fingerprints); transport.rs makes and checks the handshakes.
//!
//! ```text
//!   bootstrap: CA (in the replicated state) ─► certificate for itself
//!   new host ──TLS, CA pinned by the token──► any member: Enroll(token)
//!            ◄── certificate for the new host, its fingerprint admitted
//!   every other RPC: client certificate of the CA, and its fingerprint a
//!   current member's (a removed host's is no longer admitted)
//! ```
//!
//! All members share one DNS name in their certificates, [`SERVER_NAME`]:
//! peers are found by address, and who they are is the fingerprint.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig};

use super::error::TlsError;
use crate::{ClusterCa, HostId};

/// The name every member's certificate carries and every client checks.
pub const SERVER_NAME: &str = "rustnet";

/// A member's own certificate: its key, its certificate followed by the
/// CA's (the chain it presents), and the CA it trusts. Its `Debug` hides
/// the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCert {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
    /// SHA-256 of the certificate (DER), hex.
    pub fingerprint: String,
    /// When it expires (unix seconds); 0 for a certificate from before
    /// lifetimes, which is renewed at once.
    #[serde(default)]
    pub not_after: u64,
    /// The fingerprint of the CA that issued it; empty for a certificate
    /// from before CA rotation.
    #[serde(default)]
    pub issuer: String,
    /// When it became valid (unix seconds); 0 for one from before.
    #[serde(default)]
    pub not_before: u64,
}

impl NodeCert {
    /// The member's own certificate, the first of its chain.
    pub(crate) fn leaf_pem(&self) -> &str {
        const END: &str = "-----END CERTIFICATE-----";
        self.chain_pem
            .find(END)
            .map_or(&self.chain_pem, |i| &self.chain_pem[..i + END.len()])
    }
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A client that trusts members of the CA `ca_pem` and presents no
/// certificate of its own (a host enrolling).
pub(super) fn trust(ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(SERVER_NAME)
}

/// SHA-256 of `der`, hex.
pub(super) fn fingerprint(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "rustnet cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A new cluster CA (ECDSA P-256).
pub(super) fn new_ca() -> Result<ClusterCa, TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok(ClusterCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        fingerprint: fingerprint(cert.der()),
    })
}

/// The new CA `next`'s certificate signed by `previous`: a member that
/// trusts only `previous` admits a chain through it.
pub(super) fn cross_sign(previous: &ClusterCa, next: &ClusterCa) -> Result<String, TlsError> {
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&previous.key_pem)?);
    let key = KeyPair::from_pem(&next.key_pem)?;
    Ok(ca_params()?.signed_by(&key, &issuer)?.pem())
}

/// What a member trusts and presents with a certificate of the cluster's
/// CA: every CA it trusts (PEM), and what follows its certificate in the
/// chain it presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trust {
    pub(crate) roots_pem: String,
    pub(crate) chain_tail_pem: String,
}

impl Trust {
    /// From the replicated state: the cluster's CA; during a rotation the
    /// CA before as well, and the chain goes through the cross-signed
    /// certificate (last comes the CA itself, which enrolling hosts pin).
    pub(crate) fn of(state: &crate::State) -> Option<Self> {
        let ca = state.ca()?;
        Some(Self {
            roots_pem: state.trusted_cas()?,
            chain_tail_pem: match state.ca_rotation() {
                Some(r) => format!("{}\n{}", r.cross_pem.trim_end(), ca.cert_pem),
                None => ca.cert_pem.clone(),
            },
        })
    }

    /// `ca` alone, as a cluster with no rotation under way trusts it.
    #[cfg(test)]
    pub(crate) fn alone(ca: &ClusterCa) -> Self {
        Self {
            roots_pem: ca.cert_pem.clone(),
            chain_tail_pem: ca.cert_pem.clone(),
        }
    }
}

/// A certificate of `ca` for member `host`, with a new key, valid for
/// `lifetime` (from an hour ago, for clocks a little behind).
pub(super) fn issue(
    ca: &ClusterCa,
    trust: &Trust,
    host: HostId,
    lifetime: std::time::Duration,
) -> Result<NodeCert, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("rustnet member {host}"));
    let now = super::clock::unix_now();
    let not_after = now.saturating_add(lifetime.as_secs());
    // An hour back, for clocks a little behind.
    let not_before = now.saturating_sub(3600);
    params.not_before = timestamp(not_before)?;
    params.not_after = timestamp(not_after)?;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, &issuer)?;
    Ok(NodeCert {
        ca_pem: trust.roots_pem.clone(),
        chain_pem: format!("{}{}", cert.pem(), trust.chain_tail_pem),
        key_pem: key.serialize_pem(),
        fingerprint: fingerprint(cert.der()),
        not_after,
        issuer: ca.fingerprint.clone(),
        not_before,
    })
}

/// What the certificate `der` says of its member: its fingerprint, the
/// host its name gives and when it became valid (`None` where it does
/// not parse: then only its fingerprint counts).
pub(crate) fn peer_cert(der: &[u8]) -> crate::PeerCert {
    let parsed = x509_parser::parse_x509_certificate(der).ok();
    let cert = parsed.as_ref().map(|(_, c)| c);
    let host = cert.and_then(|c| {
        let cn = c.subject().iter_common_name().next()?.as_str().ok()?;
        cn.strip_prefix("rustnet member ")?.parse().ok()
    });
    let not_before = cert.and_then(|c| u64::try_from(c.validity().not_before.timestamp()).ok());
    crate::PeerCert {
        fingerprint: fingerprint(der),
        host,
        not_before,
    }
}

fn timestamp(unix: u64) -> Result<time::OffsetDateTime, TlsError> {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| TlsError::Decode(format!("time {unix} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_chain_to_the_ca_and_differ() {
        let ca = new_ca().unwrap();
        let day = std::time::Duration::from_secs(86400);
        let a = issue(&ca, &Trust::alone(&ca), 1, day).unwrap();
        let b = issue(&ca, &Trust::alone(&ca), 2, day).unwrap();
        assert!(a.not_after >= super::super::clock::unix_now() + 86000);
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(a.chain_pem.ends_with(&ca.cert_pem));
        assert!(!format!("{a:?} {ca:?}").contains("PRIVATE KEY"));
        assert!(a.chain_pem.starts_with(a.leaf_pem()));
        let der = pem::parse(a.leaf_pem()).unwrap();
        let peer = peer_cert(der.contents());
        assert_eq!(peer.fingerprint, a.fingerprint);
        assert_eq!(peer.host, Some(1));
        assert_eq!(peer.not_before, Some(a.not_before));
        assert_eq!(peer_cert(b"not a certificate").host, None);
        assert_eq!(a.leaf_pem().matches("BEGIN CERTIFICATE").count(), 1);
        let other = new_ca().unwrap();
        assert_ne!(other.fingerprint, ca.fingerprint);
    }
}
