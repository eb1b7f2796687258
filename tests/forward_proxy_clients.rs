//! Real clients through `scrim run`'s forward proxy, with no code change,
//! only environment variables or flags: Meta's business SDK for Python
//! (`facebook-business`, with `HTTPS_PROXY` and `REQUESTS_CA_BUNDLE`) and
//! `curl --proxy --cacert`. The mock Graph API, a TLS server trusted
//! through the route's `ca_file`, receives what scrim rewrote.
//!
//! The SDK comes from the package index into `target/python` (`.ci/run`
//! makes it; `SCRIM_TEST_PYTHON` names another interpreter that has it).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use sha2::Digest as _;
use support::pki::Pki;
use support::{EMAIL_EVENT, EMAIL_EVENT_HASHED, Mock, Recorded, TempDir, process};

/// What the Graph API answers an event batch.
fn graph_answer(_: &Recorded) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(
        br#"{"events_received":1,"messages":[],"fbtrace_id":"AbCdEf"}"#,
    )))
}

fn python() -> PathBuf {
    let python = std::env::var_os("SCRIM_TEST_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/python/bin/python"),
        PathBuf::from,
    );
    assert!(
        python.exists(),
        "{} is missing: run .ci/run, or `python3 -m venv target/python && target/python/bin/pip install facebook-business`",
        python.display()
    );
    python
}

/// scrim with a forward proxy whose one route claims graph.facebook.com
/// and sends to `mock`; everything else is denied, so that nothing the
/// clients send can leave another way.
fn scrim_for(name: &str, mock: &Mock, pki: &Pki, ca: &TempDir) -> process::Running {
    process::start(
        name,
        &format!(
            "listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
forward_proxy:
  listen: 127.0.0.1:0
  ca: {{cert: {}, key: {}}}
  others: deny
routes:
  - name: meta
    match: {{host: graph.facebook.com}}
    upstream: https://localhost:{}
    ca_file: {}
    preset: meta_capi
    rules:
      - {{select: '$.data[*].user_data.client_ip_address', action: truncate_ip}}
",
            ca.file(scrim::ca::CERT_FILE),
            ca.file(scrim::ca::KEY_FILE),
            mock.addr.port(),
            pki.path("ca.pem"),
        ),
    )
}

const SDK_SCRIPT: &str = r#"
import time
from facebook_business.api import FacebookAdsApi
from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.event import Event
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.user_data import UserData

FacebookAdsApi.init(access_token="test-access-token", crash_log=False)
user_data = UserData(
    emails=["Jane.Doe@Example.com"],
    client_ip_address="203.0.113.97",
    client_user_agent="Mozilla/5.0 (X11; Linux x86_64)",
)
event = Event(
    event_name="Purchase",
    event_time=int(time.time()),
    user_data=user_data,
    action_source=ActionSource.WEBSITE,
    event_source_url="https://shop.example/checkout",
)
response = EventRequest(events=[event], pixel_id="1234567890").execute()
print("events_received", response.events_received)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meta_business_sdk_sends_through_the_forward_proxy_with_two_variables() {
    let python = python();
    let pki = Pki::new("forward-sdk");
    let mock = Mock::start_answering(Duration::ZERO, Some(pki.acceptor()), graph_answer).await;
    let ca = TempDir::new("forward-sdk-ca");
    scrim::ca::init(&ca.0).unwrap();
    let scrim = scrim_for("forward-sdk", &mock, &pki, &ca);
    let proxy = format!("http://{}", scrim.forward_proxy.as_deref().unwrap());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", SDK_SCRIPT])
            .env("HTTPS_PROXY", &proxy)
            .env("REQUESTS_CA_BUNDLE", ca.file(scrim::ca::CERT_FILE))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("events_received 1"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    let uri: http::Uri = request.uri.parse().unwrap();
    assert!(uri.path().ends_with("/1234567890/events"), "{uri}");
    // A form whose `data` field holds a JSON array of events, each itself
    // a JSON string: scrim rewrote inside both.
    let body = String::from_utf8(request.body.to_vec()).unwrap();
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let data = &form.iter().find(|(name, _)| name == "data").unwrap().1;
    let email = hex(&sha2::Sha256::digest(b"jane.doe@example.com"));
    assert!(data.contains(&email), "{data}");
    assert!(
        data.contains(r#"\"client_ip_address\": \"203.0.113.0\""#),
        "{data}"
    );
    assert!(
        !data.contains("203.0.113.97") && !data.contains("Jane"),
        "{data}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sends_through_the_forward_proxy_with_its_flags() {
    let pki = Pki::new("forward-curl");
    let mock = Mock::start_answering(Duration::ZERO, Some(pki.acceptor()), graph_answer).await;
    let ca = TempDir::new("forward-curl-ca");
    scrim::ca::init(&ca.0).unwrap();
    let scrim = scrim_for("forward-curl", &mock, &pki, &ca);
    let proxy = format!("http://{}", scrim.forward_proxy.as_deref().unwrap());
    let ca_file = ca.file(scrim::ca::CERT_FILE);
    let curl = |http_version: &'static str| {
        let (proxy, ca_file) = (proxy.clone(), ca_file.clone());
        tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["--silent", "--show-error", "--fail", http_version])
                .args(["--proxy", &proxy, "--cacert", &ca_file])
                .args([
                    "-H",
                    "content-type: application/json",
                    "--data",
                    EMAIL_EVENT,
                ])
                .arg("https://graph.facebook.com/v21.0/1234567890/events")
                .output()
                .unwrap()
        })
    };
    for version in ["--http1.1", "--http2"] {
        let output = curl(version).await.unwrap();
        assert!(
            output.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("events_received"));
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    for request in requests {
        let body = String::from_utf8(request.body.to_vec()).unwrap();
        assert!(body.contains(EMAIL_EVENT_HASHED), "{body}");
        assert!(!body.contains("John_Smith"), "{body}");
    }
    // curl's own check: a host no route claims is refused (`others: deny`).
    let refused = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["--silent", "--proxy", &proxy, "--cacert", &ca_file])
            .args(["--write-out", "%{http_connect}"])
            .args(["--output", "/dev/null", "https://example.com/"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "403");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
