//! Stray identifiers through the running proxy: for every preset, a route
//! with nothing but `preset:` (scanning on by default) gets its platform's
//! fixture with identifiers planted in notes, titles, search terms and URLs
//! inside the body, in the query string and in the `Referer` header. None
//! may reach the mock upstream; the CRM presets' real emails must arrive as
//! sent.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;

mod support;
use support::{Mock, Scrim, send};

/// What is planted, and the forms in which none may arrive.
const PLANTED: &[(&str, &[&str])] = &[
    ("order_note", &["call +1 415 555 2671 after 6"]),
    ("product_title", &["Gift for planted.person@example.org"]),
    ("search_term", &["4111 1111 1111 1111"]),
    ("gift_message", &["IBAN DE89 3704 0044 0532 0130 00 thanks"]),
    ("memo", &["ssn 123-45-6789"]),
    (
        "page_url",
        &["https://shop.example/thanks?e=planted.person%40example.org&utm_source=mail"],
    ),
];

const NEEDLES: &[&str] = &[
    "415 555 2671",
    "4155552671",
    "planted.person",
    "4111 1111 1111 1111",
    "DE89 3704",
    "DE89370400440532013000",
    "123-45-6789",
];

/// Every object of the document gets the planted members (a name already
/// there keeps its value).
fn plant(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                plant(child);
            }
            for (name, texts) in PLANTED {
                map.entry(*name).or_insert_with(|| Value::from(texts[0]));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(plant),
        _ => {}
    }
}

fn fixture(preset: &str) -> Value {
    let path = format!(
        "{}/tests/data/presets/{preset}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_text(preset: &str) -> String {
    let path = format!(
        "{}/tests/data/presets/{preset}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The email fields the CRM presets keep on purpose.
fn kept_emails(preset: &str) -> &'static [&'static str] {
    match preset {
        "segment" => &["/batch/0/traits/email"],
        "klaviyo" => &["/data/attributes/profile/data/attributes/email"],
        "hubspot" => &["/inputs/0/properties/email"],
        "mailchimp" => &["/email_address"],
        _ => &[],
    }
}

#[tokio::test]
async fn no_planted_identifier_reaches_the_upstream_through_any_preset() {
    let mock = Mock::start(Duration::ZERO).await;
    let mut yaml = String::from("keys:\n  pseudonym: ${SCRIM_TEST_KEY}\nroutes:\n");
    for preset in scrim::presets::ALL {
        yaml.push_str(&format!(
            "  - name: {0}\n    match: {{path_prefix: /{0}/}}\n    strip_prefix: true\n    upstream: {1}\n    preset: {0}\n    default_region: US\n",
            preset.name,
            mock.url()
        ));
    }
    let scrim = Scrim::start(&yaml).await;
    for (i, preset) in scrim::presets::ALL.iter().enumerate() {
        // A browser preset gets a gtag.js batch, one hit per line, with the
        // identifiers planted as parameters of one more hit.
        let lines =
            preset.parse().unwrap().text_plain == Some(scrim::config::TextPlain::QueryLines);
        let (original, body, content_type) = if lines {
            let mut batch = fixture_text(preset.name);
            batch.push('\n');
            let planted: Vec<String> = PLANTED
                .iter()
                .map(|(name, texts)| {
                    format!("ep.{name}={}", scrim::percent::encode(texts[0].as_bytes()))
                })
                .collect();
            batch.push_str(&planted.join("&"));
            (Value::Null, batch, "text/plain;charset=UTF-8")
        } else {
            let original = fixture(preset.name);
            let mut body = original.clone();
            plant(&mut body);
            (original, body.to_string(), "application/json")
        };
        let request = Request::post(scrim.url(&format!(
            "/{}/collect?dl=https%3A%2F%2Fshop.example%2F%3Femail%3Dplanted.person%2540example.org&note=ssn+123-45-6789",
            preset.name
        )))
        .header("content-type", content_type)
        .header(
            "referer",
            "https://shop.example/account?email=planted.person%40example.org&tel=%2B14155552671",
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap();
        let (status, _, answer) = send(request).await;
        assert_eq!(status, 200, "{}: {answer:?}", preset.name);
        let requests = mock.requests();
        assert_eq!(requests.len(), i + 1, "{}: forwarded", preset.name);
        let arrived = &requests[i];
        let mut seen = format!("{}\n", arrived.uri);
        for (name, value) in &arrived.headers {
            seen.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        seen.push_str(&String::from_utf8_lossy(&arrived.body));
        let decoded = scrim::percent::decode(seen.as_bytes())
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_default();
        // Form encoding writes a space as `+`.
        let spaced = decoded.replace('+', " ");
        for needle in NEEDLES {
            assert!(
                !seen.contains(needle) && !decoded.contains(needle) && !spaced.contains(needle),
                "{}: {needle:?} reached the upstream:\n{seen}",
                preset.name
            );
        }
        if lines {
            continue;
        }
        let forwarded: Value = serde_json::from_slice(&arrived.body)
            .unwrap_or_else(|e| panic!("{}: forwarded body is not JSON: {e}", preset.name));
        for pointer in kept_emails(preset.name) {
            assert_eq!(
                forwarded.pointer(pointer),
                original.pointer(pointer),
                "{}: {pointer} must arrive as sent",
                preset.name
            );
        }
    }
    let metrics = scrim.metrics().await;
    assert!(
        metrics.contains(
            "scrim_detections_total{action=\"redact\",detector=\"email\",route=\"meta_capi\"}"
        ),
        "{metrics}"
    );
}
