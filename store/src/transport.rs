//! TLS of the peer protocol, done here rather than by tonic so that both
//! ends check who the other is, and a renewed certificate is presented from
//! the next connection on.
//!
//! ```text
//!   dial:   TCP ─► TLS (client cert; the server's must chain to the CA
//!                  AND be a current member's) ─► tonic channel (h2)
//!   accept: TCP ─► TLS (this member's current cert; a client cert of the
//!                  CA, optional for Enroll) ─► tonic server; each RPC then
//!                  checks the client's fingerprint (server.rs)
//! ```
//!
//! Handshakes are bounded in time and in number, so that the one RPC open
//! to strangers (Enroll) cannot hold a member's resources.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::server::TlsStream;

use super::error::Refusal;
use super::error::TlsError;
use super::tls::{NodeCert, SERVER_NAME, fingerprint};

/// Tells whether a certificate (DER) is a current member's.
pub(crate) type MemberCheck = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once, on the accepting side.
const HANDSHAKES: usize = 64;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(roots_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(ca.map_err(|e| TlsError::Decode(e.to_string()))?)?;
    }
    Ok(roots)
}

/// Checks that a server's chain leads to one of the CAs in `roots_pem`.
pub(crate) fn server_verifier(roots_pem: &str) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots(roots_pem)?), provider())
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))
}

fn identity(
    cert: &NodeCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let bad = |e: rustls::pki_types::pem::Error| TlsError::Decode(e.to_string());
    let chain = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).map_err(bad)?;
    Ok((chain, key))
}

/// How this member dials a peer: it presents `cert`, and accepts a server
/// whose certificate chains to the CA and passes `check`.
pub(crate) fn client_config(
    cert: &NodeCert,
    check: MemberCheck,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = PeerVerifier {
        chain: Some(server_verifier(&cert.ca_pem)?),
        member: Some(check),
        provider: provider.clone(),
    };
    let (chain, key) = identity(cert)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// What this member presents to peers dialing it; client certificates of
/// the CA are checked by TLS when given (Enroll comes without one).
pub(crate) fn server_config(cert: &NodeCert) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let clients = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&cert.ca_pem)?),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let (chain, key) = identity(cert)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Dials `addr` (`host:port`) over TLS with `config`: the stream a tonic
/// channel runs on.
pub(crate) async fn dial(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(SERVER_NAME).map_err(std::io::Error::other)?;
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Accepts peers on `listener`, each with the certificate `cert` holds when
/// it connects; the TLS streams for tonic's server.
pub(crate) fn accept(
    listener: TcpListener,
    cert: watch::Receiver<Option<NodeCert>>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(HANDSHAKES);
    tokio::spawn(accept_loop(listener, cert, tx));
    futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|s| (Ok(s), rx)) },
    )
}

async fn accept_loop(
    listener: TcpListener,
    cert: watch::Receiver<Option<NodeCert>>,
    tx: mpsc::Sender<TlsStream<TcpStream>>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    let mut current: Option<(NodeCert, Arc<rustls::ServerConfig>)> = None;
    loop {
        // The server stopped (dropped its end): so does the listener.
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "peer server: accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(turn) = handshakes.clone().try_acquire_owned() else {
            continue; // too many handshakes under way: dropped
        };
        let Some(config) = config_for(&cert, &mut current) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tx = tx.clone();
        tokio::spawn(async move {
            let accepted = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                tokio_rustls::TlsAcceptor::from(config).accept(tcp),
            )
            .await;
            drop(turn);
            match accepted {
                Ok(Ok(tls)) => {
                    let _ = tx.send(tls).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "peer TLS handshake failed"),
                Err(_) => tracing::debug!("peer TLS handshake timed out"),
            }
        });
    }
}

/// The server configuration for the member's current certificate, built
/// again only when the certificate, or the CAs it trusts, changed.
fn config_for(
    cert: &watch::Receiver<Option<NodeCert>>,
    current: &mut Option<(NodeCert, Arc<rustls::ServerConfig>)>,
) -> Option<Arc<rustls::ServerConfig>> {
    let cert = cert.borrow().clone()?;
    if let Some((built_for, config)) = current.as_ref()
        && *built_for == cert
    {
        return Some(config.clone());
    }
    match server_config(&cert) {
        Ok(config) => {
            *current = Some((cert, config.clone()));
            Some(config)
        }
        Err(e) => {
            tracing::error!(error = %e, "peer server: TLS configuration");
            None
        }
    }
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
    let provider = provider();
    let anything = PeerVerifier {
        chain: None,
        member: None,
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(anything))
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

/// How this member checks a server's certificate: that its chain leads
/// to the CA (`chain`), then that it is a current member's (`member`); with
/// neither, it accepts any chain, to read it (`fetch_chain`). Handshake
/// signatures are always verified.
struct PeerVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    member: Option<MemberCheck>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerVerifier")
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if let Some(member) = &self.member
            && !member(end_entity)
        {
            let fingerprint = fingerprint(end_entity);
            return Err(rustls::Error::General(format!(
                "the peer's certificate {fingerprint} is not a current member's"
            )));
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tls::{Trust, cross_sign, issue, new_ca};
    use super::*;

    /// Whether the chain of `cert` leads to a CA in `roots_pem`.
    fn verifies(cert: &NodeCert, roots_pem: &str) -> bool {
        let chain: Vec<CertificateDer<'_>> =
            CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let verifier = server_verifier(roots_pem).unwrap();
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
            .is_ok()
    }

    #[test]
    fn during_a_rotation_a_renewed_certificate_chains_to_either_ca() {
        let day = std::time::Duration::from_secs(86400);
        let (old, new) = (new_ca().unwrap(), new_ca().unwrap());
        let before = issue(&old, &Trust::alone(&old), 1, day).unwrap();
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
        let without_cross = issue(&new, &Trust::alone(&new), 2, day).unwrap();
        assert!(!verifies(&without_cross, &old.cert_pem));
    }

    /// A member dialing a peer whose certificate is of the CA but not a
    /// current member's (a removed host's, say) refuses the handshake.
    #[tokio::test]
    async fn a_member_dials_only_a_current_members_certificate() {
        let ca = new_ca().unwrap();
        let day = Duration::from_secs(86400);
        let trust = Trust::alone(&ca);
        let ours = issue(&ca, &trust, 1, day).unwrap();
        let theirs = issue(&ca, &trust, 2, day).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (_tx, cert) = watch::channel(Some(theirs.clone()));
        let mut incoming = Box::pin(accept(listener, cert));
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut held = Vec::new();
            while let Some(Ok(stream)) = incoming.next().await {
                held.push(stream);
            }
        });
        let member = theirs.fingerprint.clone();
        let admitted: MemberCheck = Arc::new(move |der: &[u8]| fingerprint(der) == member);
        let refused: MemberCheck = Arc::new(|_| false);
        let timeout = Duration::from_secs(2);
        dial(&addr, client_config(&ours, admitted).unwrap(), timeout)
            .await
            .unwrap();
        let err = dial(&addr, client_config(&ours, refused).unwrap(), timeout)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a current member's"), "{err}");
    }
}
