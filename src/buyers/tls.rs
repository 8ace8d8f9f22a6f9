//! Whom a buyer's https certificate may chain to, and why a handshake failed.
//!
//! The roots are Mozilla's, compiled in (`webpki-roots`), so a fresh machine or a slim
//! container needs no system CA files; an operator adds a private CA for buyers behind one
//! (`--buyer-ca-file`, PEM). A bad CA file is a start-up error, never a buyer call that
//! fails later for a reason nobody sees.
//!
//! rustls runs on the `ring` provider, named here rather than taken from a process-wide
//! default: no other crate in the process can change which one serves buyers.
//! Rationale for `ring`: aws-lc-rs needs cmake and a C toolchain to build; ring does not.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

use super::client::Failure;

/// Hops followed down an error's causes looking for the TLS error: hyper wraps the
/// connector's error in two or three layers; a cycle or a deep chain must not spin.
const CAUSES_MAX: usize = 16;

/// The certificate authorities buyers' certificates are checked against. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BuyerTrust {
    roots: Arc<RootCertStore>,
    /// Certificates the operator added on top of the public roots.
    added: usize,
}

/// Why a CA file cannot be used; the text never quotes the file's content.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read it: {0}")]
    Unreadable(std::io::Error),
    #[error("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    Empty,
    #[error("certificate {position} is not well-formed PEM")]
    BadPem { position: usize },
    #[error("certificate {position} cannot be a trust anchor (not an X.509 CA certificate)")]
    NotAnAnchor { position: usize },
}

impl BuyerTrust {
    /// Mozilla's roots only: every public CA a buyer's https endpoint is likely to use.
    pub fn public() -> BuyerTrust {
        BuyerTrust { roots: Arc::new(public_roots()), added: 0 }
    }

    /// The public roots plus every certificate of the PEM file at `path`.
    pub fn with_ca_file(path: &Path) -> Result<BuyerTrust, TrustError> {
        let pem = std::fs::read(path).map_err(TrustError::Unreadable)?;
        BuyerTrust::with_ca_pem(&pem)
    }

    /// The public roots plus every certificate of `pem` (at least one; other PEM sections,
    /// such as a key left in the same file, are skipped).
    pub fn with_ca_pem(pem: &[u8]) -> Result<BuyerTrust, TrustError> {
        let mut roots = public_roots();
        let mut added = 0;
        for (index, certificate) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let position = index + 1;
            let certificate = certificate.map_err(|_| TrustError::BadPem { position })?;
            roots.add(certificate).map_err(|_| TrustError::NotAnAnchor { position })?;
            added += 1;
        }
        if added == 0 {
            return Err(TrustError::Empty);
        }
        Ok(BuyerTrust { roots: Arc::new(roots), added })
    }

    /// How many certificates the operator added (0 for `public`), for the start-up log.
    pub fn added(&self) -> usize {
        self.added
    }

    /// The TLS settings of every buyer connection: these roots, TLS 1.2 and 1.3, no client
    /// certificate. ALPN is left to the connector, which offers the HTTP versions it speaks.
    pub(super) fn client_config(&self) -> ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            // Only fails for a provider without cipher suites for those versions; ring's
            // default provider has them all (a unit test builds this).
            .expect("ring's default provider supports TLS 1.2 and 1.3")
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth()
    }
}

impl Default for BuyerTrust {
    fn default() -> Self {
        BuyerTrust::public()
    }
}

fn public_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

/// The TLS failure behind a failed connect, if it was one: a fixed reason an operator can
/// act on (an unknown issuer wants `--buyer-ca-file`; an expired or misnamed certificate is
/// the buyer's to fix), never the certificate's own text.
pub(super) fn tls_failure(error: &(dyn StdError + 'static)) -> Option<Failure> {
    let mut cause = Some(error);
    for _ in 0..CAUSES_MAX {
        let current = cause?;
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(failure_of_tls(tls));
        }
        cause = next_cause(current);
    }
    None
}

/// The next cause down the chain. An `io::Error` wrapping another error says so only
/// through `get_ref` (its `source` skips the wrapped error itself), and tokio-rustls hands
/// the rustls error over exactly so.
fn next_cause<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(inner) = error.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        return Some(inner);
    }
    error.source()
}

fn failure_of_tls(error: &rustls::Error) -> Failure {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => Failure::TlsUntrusted,
        rustls::Error::InvalidCertificate(_) => Failure::TlsCertificate,
        _ => Failure::Tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn the_public_roots_build_a_client_config() {
        let trust = BuyerTrust::public();
        assert!(trust.roots.len() > 100, "Mozilla's roots: {}", trust.roots.len());
        assert_eq!(trust.added(), 0);
        let _ = trust.client_config();
    }

    #[test]
    fn a_ca_file_adds_its_certificates_and_skips_other_sections() {
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let pem = format!("{}{key}{}", ca_pem(), ca_pem());
        let trust = BuyerTrust::with_ca_pem(pem.as_bytes()).unwrap();
        assert_eq!(trust.added(), 2);
        assert_eq!(trust.roots.len(), BuyerTrust::public().roots.len() + 2);
    }

    #[test]
    fn an_empty_unreadable_or_broken_ca_file_is_refused() {
        assert!(matches!(BuyerTrust::with_ca_pem(b""), Err(TrustError::Empty)));
        assert!(matches!(BuyerTrust::with_ca_pem(b"not pem at all\n"), Err(TrustError::Empty)));
        let cut = "-----BEGIN CERTIFICATE-----\nMIIB\n";
        assert!(matches!(BuyerTrust::with_ca_pem(cut.as_bytes()), Err(TrustError::BadPem { position: 1 })));
        let junk = format!("{}-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n", ca_pem());
        assert!(matches!(BuyerTrust::with_ca_pem(junk.as_bytes()), Err(TrustError::NotAnAnchor { position: 2 })));
        let missing = BuyerTrust::with_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(matches!(missing, TrustError::Unreadable(_)), "{missing}");
    }

    #[test]
    fn tls_errors_are_found_under_the_layers_that_wrap_them() {
        let untrusted = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        // As hyper-rustls hands it over: io::Error(other, io::Error(InvalidData, rustls)).
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, untrusted);
        let wrapped = std::io::Error::other(inner);
        assert_eq!(tls_failure(&wrapped), Some(Failure::TlsUntrusted));
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(tls_failure(&expired), Some(Failure::TlsCertificate));
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(tls_failure(&std::io::Error::other(alert)), Some(Failure::Tls));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_failure(&refused), None);
    }
}
