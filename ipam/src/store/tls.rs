//! Mutual TLS between members.
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

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig};

use super::error::{Refusal, TlsError};
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
    let now = super::node::unix_now();
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

/// The CA certificate a member at `addr` presents, as PEM, read from a TLS
/// handshake before anything is sent; with `pin`, refused unless its
/// fingerprint is `pin`. A host enrolls only with a CA it checked this way
/// (or, without a pin, the one it first sees).
pub(super) async fn fetch_ca(addr: &str, pin: Option<&str>) -> Result<String, TlsError> {
    let chain = fetch_chain(addr).await?;
    let ca = chain
        .last()
        .filter(|_| chain.len() > 1)
        .ok_or_else(|| TlsError::NoCa {
            addr: addr.to_owned(),
        })?;
    let seen = fingerprint(ca);
    if let Some(pin) = pin.filter(|pin| **pin != seen) {
        return Err(TlsError::Pinned(Refusal::CaPin {
            addr: addr.to_owned(),
            seen,
            pin: pin.to_owned(),
        }));
    }
    Ok(pem::encode(&pem::Pem::new("CERTIFICATE", ca.to_vec())))
}

/// Whether the member at `addr` presents a chain to one of the CAs in
/// `roots_pem` (its certificate's membership aside): `false` for a member
/// of another cluster; an error when it cannot be asked.
pub(super) async fn chains_to(addr: &str, roots_pem: &str) -> Result<bool, TlsError> {
    let chain = fetch_chain(addr).await?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Ok(false);
    };
    let verifier = super::transport::server_verifier(roots_pem)?;
    let name = ServerName::try_from(SERVER_NAME)?;
    Ok(verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .is_ok())
}

/// The certificates a member at `addr` presents, read from a TLS handshake
/// before anything is sent.
async fn fetch_chain(addr: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordChain(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| TlsError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let name = ServerName::try_from(SERVER_NAME)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|source| TlsError::Handshake {
            addr: addr.to_owned(),
            source,
        })?;
    let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
    Ok(chain.iter().map(|c| c.clone().into_owned()).collect())
}

/// Accepts the server's chain so that it can be read; the caller checks
/// the CA against its pin, and the real connection verifies everything.
#[derive(Debug)]
struct RecordChain(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for RecordChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alone(ca: &ClusterCa) -> Trust {
        Trust {
            roots_pem: ca.cert_pem.clone(),
            chain_tail_pem: ca.cert_pem.clone(),
        }
    }

    /// Whether the chain of `cert` leads to a CA in `roots_pem`.
    fn verifies(cert: &NodeCert, roots_pem: &str) -> bool {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'_>> =
            CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let verifier = super::super::transport::server_verifier(roots_pem).unwrap();
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn during_a_rotation_a_renewed_certificate_chains_to_either_ca() {
        let day = std::time::Duration::from_secs(86400);
        let (old, new) = (new_ca().unwrap(), new_ca().unwrap());
        let before = issue(&old, &alone(&old), 1, day).unwrap();
        let cross = cross_sign(&old, &new).unwrap();
        let rotating = Trust {
            roots_pem: format!("{}{}", new.cert_pem, old.cert_pem),
            chain_tail_pem: format!("{}\n{}", cross.trim_end(), new.cert_pem),
        };
        let renewed = issue(&new, &rotating, 1, day).unwrap();
        assert_eq!(renewed.issuer, new.fingerprint);
        // A member that has not applied the rotation trusts only the old
        // CA: the cross-signed certificate leads it there.
        assert!(verifies(&renewed, &old.cert_pem));
        assert!(verifies(&renewed, &new.cert_pem));
        assert!(verifies(&before, &rotating.roots_pem));
        // Once the old CA is retired, its certificates lead nowhere.
        assert!(!verifies(&before, &new.cert_pem));
        // Enrolling hosts pin the CA that comes last in the chain.
        assert!(renewed.chain_pem.ends_with(&new.cert_pem));
        let without_cross = issue(&new, &alone(&new), 2, day).unwrap();
        assert!(!verifies(&without_cross, &old.cert_pem));
    }

    #[test]
    fn issued_certificates_chain_to_the_ca_and_differ() {
        let ca = new_ca().unwrap();
        let day = std::time::Duration::from_secs(86400);
        let a = issue(&ca, &alone(&ca), 1, day).unwrap();
        let b = issue(&ca, &alone(&ca), 2, day).unwrap();
        assert!(a.not_after >= super::super::node::unix_now() + 86000);
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
