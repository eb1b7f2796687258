//! The upstream client: pooled connections (hyper-util), TLS through rustls
//! with the web PKI roots, HTTP/2 when the platform offers it by ALPN.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::RequestBody;

pub(crate) type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, RequestBody>;

/// Builds the client. `extra_roots` are trusted besides the web PKI: a
/// private CA in front of a self-hosted platform, or a test CA.
pub(crate) fn client(
    connect_timeout: Duration,
    extra_roots: &[rustls::pki_types::CertificateDer<'static>],
) -> UpstreamClient {
    let tls = crate::tls::client_config(extra_roots);
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(https)
}
