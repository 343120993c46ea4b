//! TLS client settings for the relay socket: rustls with the ring provider, Mozilla's
//! roots from webpki-roots, plus any CA certificates in `CODING_BRIDGE_CA_FILE` (or
//! `SSL_CERT_FILE`) for a relay behind a private CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Why the relay link's TLS could not be set up.
#[derive(Debug)]
pub enum TlsError {
    CaUnreadable(PathBuf, String),
    CaEmpty(PathBuf),
    CaUnusable(PathBuf),
    Setup(rustls::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::CaUnreadable(p, e) => {
                write!(f, "cannot read the CA file {}: {e}", p.display())
            }
            TlsError::CaEmpty(p) => {
                write!(f, "the CA file {} holds no PEM certificate", p.display())
            }
            TlsError::CaUnusable(p) => write!(f, "no usable CA certificate in {}", p.display()),
            TlsError::Setup(e) => write!(f, "TLS setup failed: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Build the client configuration once per daemon.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| TlsError::CaUnreadable(path.to_path_buf(), e.to_string()))?
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(TlsError::CaEmpty(path.to_path_buf()));
        }
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::CaUnusable(path.to_path_buf()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
