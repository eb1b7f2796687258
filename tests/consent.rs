//! Consent through the running proxy: opt-out signals (`Sec-GPC: 1`, a
//! header the app sets, a query parameter) and the decisions `block` and
//! `strip_identifiers`, against a mock upstream that records what arrives.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use scrim::config::Config;
use scrim::policy::compile;
use serde_json::Value;

mod support;
use support::{Mock, Scrim, send};

async fn post(
    scrim: &Scrim,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Bytes) {
    let mut request = Request::post(scrim.url(path)).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (status, _, body) = send(
        request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await;
    (status, body)
}

/// A Meta route (preset, GPC by default) and a TikTok route whose GPC blocks
/// and where the app's own header and Google's `gcs` also decide.
fn config(upstream: &str) -> String {
    format!(
        r#"routes:
  - name: meta
    match: {{path_prefix: /meta}}
    strip_prefix: true
    upstream: {upstream}
    preset: meta_capi
    default_region: US
  - name: tiktok
    match: {{path_prefix: /tiktok}}
    strip_prefix: true
    upstream: {upstream}
    preset: tiktok_events
    consent:
      gpc: block
      block_status: 202
      signals:
        - {{select: header.x-consent, equals: denied, decision: block}}
        - {{select: query.gcs, equals: G100, decision: strip_identifiers}}
      identifiers: ["$.data[*].page.referrer"]
  - name: ga4
    match: {{path_prefix: /ga4}}
    strip_prefix: true
    upstream: {upstream}
    preset: ga4_mp
    limits: {{buffer_limit: 4096, max_body_bytes: 8192}}
    consent:
      signals:
        - {{select: "$.consent.ad_user_data", equals: DENIED, decision: strip_identifiers}}
        - {{select: "$.events[*].params.opt_out", equals: "true", decision: block}}
  - name: meta-ldu
    match: {{path_prefix: /meta-ldu}}
    strip_prefix: true
    upstream: {upstream}
    preset: meta_capi
    default_region: US
    consent:
      gpc: limited_data_use
"#
    )
}

const META: &str = r#"{"data":[{"event_name":"Purchase","event_time":1764400000,"user_data":{"em":"john_smith@gmail.com","ph":"(650)555-1212","client_ip_address":"203.0.113.77","client_user_agent":"Mozilla/5.0","fbp":"fb.1.1558571054389.1098115397"},"custom_data":{"value":12.5,"currency":"usd"}}]}"#;

const TIKTOK: &str = r#"{"event_source":"web","event_source_id":"C1","data":[{"event":"CompletePayment","event_time":1764400000,"user":{"email":"jane@example.com","ip":"203.0.113.77","ttclid":"E.C.P.x"},"page":{"url":"https://shop.example/","referrer":"https://mail.example/?u=jane"},"properties":{"value":3}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpc_on_a_strip_identifiers_route_forwards_no_identifier() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;

    // Without the signal, the preset's rewriting only.
    let (status, _) = post(&scrim, "/meta/v21.0/1/events", &[], META).await;
    assert_eq!(status, 200);
    // With it, every identifier field goes; the event itself stays.
    let (status, _) = post(&scrim, "/meta/v21.0/1/events", &[("sec-gpc", "1")], META).await;
    assert_eq!(status, 200);

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let plain: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        plain["data"][0]["user_data"]["client_ip_address"],
        "203.0.113.77"
    );
    let stripped: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(stripped["data"][0]["user_data"], serde_json::json!({}));
    assert_eq!(stripped["data"][0]["event_name"], "Purchase");
    assert_eq!(stripped["data"][0]["custom_data"]["value"], 12.5);
    let body = String::from_utf8(requests[1].body.to_vec()).unwrap();
    for identifier in ["john_smith", "203.0.113", "fb.1.", "Mozilla", "62a14e44"] {
        assert!(!body.contains(identifier), "{identifier} arrived: {body}");
    }

    let metrics = scrim.metrics().await;
    assert!(
        metrics.contains(r#"scrim_consent_decisions_total{decision="strip_identifiers",route="meta",signal="gpc"} 1"#),
        "{metrics}"
    );
    // The dropped identifiers are counted as rewrites too.
    assert!(
        metrics.contains(r#"scrim_rewrites_total{action="drop",route="meta"} 5"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_signal_reaches_nothing_upstream() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;

    let (status, body) = post(
        &scrim,
        "/tiktok/open_api/v1.3/event/track/",
        &[("sec-gpc", "1")],
        TIKTOK,
    )
    .await;
    assert_eq!(status, 202);
    assert!(body.is_empty());
    let (status, _) = post(
        &scrim,
        "/tiktok/open_api/v1.3/event/track/",
        &[("x-consent", " Denied ")],
        TIKTOK,
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        mock.requests().is_empty(),
        "a blocked request was forwarded"
    );

    // Not an opt-out value: forwarded, rewritten by the preset.
    let (status, _) = post(
        &scrim,
        "/tiktok/open_api/v1.3/event/track/",
        &[("x-consent", "granted"), ("sec-gpc", "0")],
        TIKTOK,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(mock.requests().len(), 1);

    let metrics = scrim.metrics().await;
    for expected in [
        r#"scrim_consent_decisions_total{decision="block",route="tiktok",signal="gpc"} 1"#,
        r#"scrim_consent_decisions_total{decision="block",route="tiktok",signal="header.x-consent"} 1"#,
        r#"scrim_requests_total{outcome="blocked",route="tiktok"} 2"#,
        r#"scrim_requests_total{outcome="forwarded",route="tiktok"} 1"#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_signal_strips_the_preset_and_route_identifiers() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;
    let (status, _) = post(
        &scrim,
        "/tiktok/open_api/v1.3/event/track/?gcs=G100",
        &[],
        TIKTOK,
    )
    .await;
    assert_eq!(status, 200);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].uri, "/open_api/v1.3/event/track/?gcs=G100");
    let event: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let event = &event["data"][0];
    assert_eq!(event["user"], serde_json::json!({}));
    assert_eq!(
        event["page"],
        serde_json::json!({"url": "https://shop.example/"})
    );
    assert_eq!(event["properties"]["value"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_data_use_flags_every_event_for_meta() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;
    // Two events, one of which the app already flagged (differently).
    let body = r#"{"data":[{"event_name":"Purchase","user_data":{"em":"john_smith@gmail.com"}},{"event_name":"Lead","data_processing_options":[],"user_data":{}}]}"#;
    let (status, _) = post(
        &scrim,
        "/meta-ldu/v21.0/1/events",
        &[("sec-gpc", "1")],
        body,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(&scrim, "/meta-ldu/v21.0/1/events", &[], body).await;
    assert_eq!(status, 200);

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let flagged = String::from_utf8(requests[0].body.to_vec()).unwrap();
    assert_eq!(
        flagged,
        format!(
            r#"{{"data":[{{"event_name":"Purchase","user_data":{{"em":"{}"}},"data_processing_options":["LDU"],"data_processing_options_country":0,"data_processing_options_state":0}},{{"event_name":"Lead","user_data":{{}},"data_processing_options":["LDU"],"data_processing_options_country":0,"data_processing_options_state":0}}]}}"#,
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
        )
    );
    // Without the signal: no flags.
    let plain: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert!(plain["data"][0].get("data_processing_options").is_none());

    let metrics = scrim.metrics().await;
    for expected in [
        r#"scrim_consent_decisions_total{decision="limited_data_use",route="meta-ldu",signal="gpc"} 1"#,
        // Two events flagged, and the app's own flag replaced.
        r#"scrim_rewrites_total{action="add_members",route="meta-ldu"} 3"#,
        r#"scrim_rewrites_total{action="hash",route="meta-ldu"} 2"#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in {metrics}"
        );
    }
}

const GA4: &str = r#"{"client_id":"1.2","user_id":"cust-42","consent":{"ad_user_data":"DENIED","ad_personalization":"DENIED"},"user_data":{"sha256_email_address":"jane@example.com"},"events":[{"name":"purchase","params":{"value":3}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_in_the_body_decides_before_anything_is_sent() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;

    // GA4's own consent field: identifiers removed.
    let (status, _) = post(
        &scrim,
        "/ga4/mp/collect?measurement_id=G-1&api_secret=s",
        &[],
        GA4,
    )
    .await;
    assert_eq!(status, 200);
    // The same, gzip-compressed: read through the encoding.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, GA4.as_bytes()).unwrap();
    let compressed = gz.finish().unwrap();
    let request = Request::post(scrim.url("/ga4/mp/collect"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(compressed)))
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, 200, "{body:?}");
    // Granted: the preset's hashing only.
    let granted = GA4.replace(
        "\"ad_user_data\":\"DENIED\"",
        "\"ad_user_data\":\"GRANTED\"",
    );
    let (status, _) = post(&scrim, "/ga4/mp/collect", &[], &granted).await;
    assert_eq!(status, 200);
    // An event parameter that blocks.
    let opted_out = granted.replace("\"value\":3", "\"value\":3,\"opt_out\":true");
    let (status, _) = post(&scrim, "/ga4/mp/collect", &[], &opted_out).await;
    assert_eq!(status, 204);
    // Too large to be read whole: refused, never forwarded.
    let padded = GA4.replace(
        "\"value\":3",
        &format!("\"value\":3,\"pad\":\"{}\"", "x".repeat(5000)),
    );
    let (status, body) = post(&scrim, "/ga4/mp/collect", &[], &padded).await;
    assert_eq!(status, 413);
    assert!(
        String::from_utf8_lossy(&body).contains("reads consent signals in the body"),
        "{body:?}"
    );

    // Over max_body_bytes by its Content-Length: refused before it is read.
    let huge = GA4.replace(
        "\"value\":3",
        &format!("\"value\":3,\"pad\":\"{}\"", "x".repeat(9000)),
    );
    let (status, body) = post(&scrim, "/ga4/mp/collect", &[], &huge).await;
    assert_eq!(status, 413);
    assert!(
        String::from_utf8_lossy(&body).contains("body larger than 8192 bytes\""),
        "{body:?}"
    );

    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    for stripped in &requests[..2] {
        let body: Value = serde_json::from_slice(&stripped.body).unwrap();
        assert!(
            body.get("user_data").is_none() && body.get("user_id").is_none(),
            "{body}"
        );
        assert_eq!(body["events"][0]["params"]["value"], 3);
        assert!(stripped.headers.get("content-encoding").is_none());
    }
    let granted: Value = serde_json::from_slice(&requests[2].body).unwrap();
    assert_eq!(
        granted["user_data"]["sha256_email_address"],
        "8c87b489ce35cf2e2f39f80e282cb2e804932a56a213983eeeb428407d43b52d"
    );

    let metrics = scrim.metrics().await;
    for expected in [
        r#"scrim_consent_decisions_total{decision="strip_identifiers",route="ga4",signal="$.consent.ad_user_data"} 2"#,
        r#"scrim_consent_decisions_total{decision="block",route="ga4",signal="$.events[*].params.opt_out"} 1"#,
        r#"scrim_rejections_total{reason="body_too_large",route="ga4"} 2"#,
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in {metrics}"
        );
    }
}

#[test]
fn limited_data_use_needs_a_preset_that_has_it() {
    let yaml = "routes:\n  - name: tt\n    match: {path_prefix: /}\n    upstream: https://x.example\n    preset: tiktok_events\n    consent: {gpc: limited_data_use}\n";
    let config = Config::parse(yaml, "t.yaml").unwrap();
    let env = |_: &str| None;
    let errors = compile(&config, "t.yaml", &env).unwrap_err().to_string();
    assert!(
        errors.contains("t.yaml:6:20: `limited_data_use` needs a preset that defines it"),
        "{errors}"
    );
}

#[test]
fn strip_identifiers_without_identifiers_is_a_config_error() {
    let yaml = "routes:\n  - name: app\n    match: {path_prefix: /}\n    upstream: https://x.example\n    consent:\n      signals:\n        - {select: header.x-consent, equals: denied, decision: strip_identifiers}\n";
    let config = Config::parse(yaml, "t.yaml").unwrap();
    let env = |_: &str| None;
    let errors = compile(&config, "t.yaml", &env).unwrap_err().to_string();
    assert!(
        errors.contains("t.yaml:7:64: `strip_identifiers` needs identifier fields"),
        "{errors}"
    );

    let yaml = "routes:\n  - name: app\n    match: {path_prefix: /}\n    upstream: https://x.example\n    consent:\n      signals:\n        - {select: \"$.consent[\", equals: denied, decision: forget}\n";
    let config = Config::parse(yaml, "t.yaml").unwrap();
    let errors = compile(&config, "t.yaml", &env).unwrap_err().to_string();
    assert!(errors.contains("t.yaml:7:20: bad selector"), "{errors}");
    assert!(
        errors.contains(
            "unknown consent decision `forget`; expected one of block, strip_identifiers, limited_data_use"
        ),
        "{errors}"
    );
}

/// A member that appears twice is read at both places, as the rewriter
/// reads it: an opt-out in the first `consent` decides even when a later
/// one grants (a reader that keeps the last member, as serde_json's map
/// does, forwarded the identifiers; a platform may read the first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_in_a_repeated_member_decides() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;
    let granted = GA4.replace(
        "\"ad_user_data\":\"DENIED\"",
        "\"ad_user_data\":\"GRANTED\"",
    );
    let repeated = format!(
        "{{\"consent\":{{\"ad_user_data\":\"DENIED\"}},{}",
        &granted[1..]
    );
    let (status, _) = post(&scrim, "/ga4/mp/collect", &[], &repeated).await;
    assert_eq!(status, 200);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let forwarded = String::from_utf8_lossy(&requests[0].body);
    assert!(
        !forwarded.contains("user_data\":{") && !forwarded.contains("cust-42"),
        "{forwarded}"
    );
    assert!(forwarded.contains("\"value\":3"), "{forwarded}");
}

/// Signals whose selectors overlap each find their value: one that selects
/// the same value as a later one, and one that selects inside a string
/// another selects whole. (Read in one pass, a value went to the last rule
/// that selects it, so the first signal never decided.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_body_signals_each_decide() {
    let mock = Mock::start(Duration::ZERO).await;
    let yaml = format!(
        r#"routes:
  - name: ga4
    match: {{path_prefix: /}}
    upstream: {}
    preset: ga4_mp
    consent:
      signals:
        - {{select: "$.consent.ad_user_data", equals: DENIED, decision: block}}
        - {{select: "$..ad_user_data", equals: DENIED, decision: strip_identifiers}}
        - {{select: "$.prefs", equals: "none", decision: strip_identifiers}}
        - {{select: "$.prefs.ads", equals: "off", decision: block}}
"#,
        mock.url()
    );
    let scrim = Scrim::start(&yaml).await;
    let (status, _) = post(&scrim, "/mp/collect", &[], GA4).await;
    assert_eq!(status, 204, "the first signal blocks");
    let inside = GA4.replace(
        "\"client_id\":\"1.2\"",
        "\"client_id\":\"1.2\",\"prefs\":\"{\\\"ads\\\":\\\"off\\\"}\"",
    );
    let inside = inside.replace(
        "\"ad_user_data\":\"DENIED\"",
        "\"ad_user_data\":\"GRANTED\"",
    );
    let (status, _) = post(&scrim, "/mp/collect", &[], &inside).await;
    assert_eq!(status, 204, "a signal inside a string another selects");
    assert!(mock.requests().is_empty());
}
