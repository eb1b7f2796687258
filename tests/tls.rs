//! TLS on both sides: an upstream behind a private CA (`ca_file`), and the
//! proxy listener serving TLS with ALPN h2.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioExecutor;
use rcgen::KeyPair;
use scrim::config::Config;
use scrim::metrics::Metrics;
use scrim::policy::compile;
use scrim::proxy::{self, Proxy};
use support::pki::Pki;
use support::{EMAIL_EVENT_HASHED, Mock, email_event_post};
use tokio::net::TcpListener;

async fn scrim(yaml: &str) -> proxy::ServerHandle {
    let config = Config::parse(yaml, "tls.yaml").unwrap();
    let policy = Arc::new(compile(&config, "tls.yaml", &|_: &str| None).unwrap());
    let proxy = Arc::new(Proxy::new(policy, Arc::new(Metrics::new())));
    proxy::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), proxy).unwrap()
}

fn route(upstream: &str, extra: &str) -> String {
    format!(
        "routes:
  - name: meta
    match: {{path_prefix: /meta}}
    upstream: {upstream}
{extra}    rules:
      - select: $.data[*].user_data.em
        action: hash
        normalize: email
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_behind_a_private_ca_is_trusted_with_ca_file_only() {
    let pki = Pki::new("upstream");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let upstream = format!("https://localhost:{}", mock.addr.port());
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();

    let trusting = scrim(&route(
        &upstream,
        &format!("    ca_file: {}\n", pki.path("ca.pem")),
    ))
    .await;
    let response = client
        .request(email_event_post(format!(
            "http://{}/meta/events",
            trusting.local_addr()
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert!(
        body.contains(EMAIL_EVENT_HASHED) && !body.contains("John"),
        "{body}"
    );
    assert_eq!(
        mock.requests()[0].version,
        http::Version::HTTP_2,
        "the upstream offers h2 by ALPN"
    );

    let untrusting = scrim(&route(&upstream, "")).await;
    let response = client
        .request(email_event_post(format!(
            "http://{}/meta/events",
            untrusting.local_addr()
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), 502, "an unknown CA is not trusted");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_serves_tls_with_alpn_h2() {
    let pki = Pki::new("listener");
    let mock = Mock::start(Duration::ZERO).await;
    let yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n{}",
        pki.path("cert.pem"),
        pki.path("key.pem"),
        route(&mock.url(), "")
    );
    let server = scrim(&yaml).await;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(scrim::tls::client_config(std::slice::from_ref(&pki.ca)))
        .https_only()
        .enable_all_versions()
        .build();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let url = format!(
        "https://localhost:{}/meta/events",
        server.local_addr().port()
    );
    let response = client.request(email_event_post(url)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    response.into_body().collect().await.unwrap();
    let body = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert!(body.contains(EMAIL_EVENT_HASHED), "{body}");
}

#[test]
fn a_key_that_does_not_match_its_certificate_fails_check() {
    let pki = Pki::new("mismatch");
    let other = KeyPair::generate().unwrap();
    std::fs::write(pki.dir.join("other.pem"), other.serialize_pem()).unwrap();
    let yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n{}",
        pki.path("cert.pem"),
        pki.path("other.pem"),
        route("http://127.0.0.1:9", "")
    );
    let config = Config::parse(&yaml, "tls.yaml").unwrap();
    let err = compile(&config, "tls.yaml", &|_: &str| None)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tls.yaml:3:8: this key cannot serve that certificate"),
        "{err}"
    );
}
