//! rustls configurations, with the ring provider: the proxy listener's
//! (ALPN `h2`, then `http/1.1`) and the upstream client's (web PKI roots, plus
//! any CA a route adds).

use std::sync::Arc;

use rustls_pki_types::CertificateDer;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key, read from PEM files. `Debug` shows the
/// chain's length only.
pub struct TlsIdentity {
    pub certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

/// The listener's configuration; fails when the key does not match the
/// certificate.
pub fn server_config(identity: &TlsIdentity) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The upstream client's configuration.
pub fn client_config(extra_roots: &[CertificateDer<'static>]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        // A certificate that is not usable as a trust anchor is skipped.
        let _ = roots.add(root.clone());
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|e| unreachable!("ring supports the default protocol versions: {e}"))
}
