//! The egress inventory through the running proxy (issue 12, part 2): every
//! field path that left, body, query and headers, with what left of its
//! values and the route's consent decisions, at `GET /inventory` and on the
//! page at `GET /`, never a value. The page is read back from the DOM a
//! real headless Chromium renders.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;

mod support;
use support::{Mock, Scrim, send};

const EMAIL: &str = "inventory.person@example.org";

fn yaml(upstream: &str) -> String {
    format!(
        r#"routes:
  - name: meta
    match: {{path_prefix: /meta}}
    strip_prefix: true
    upstream: {upstream}
    preset: meta_capi
    default_region: US
    consent:
      signals:
        - {{select: header.x-consent, equals: denied, decision: strip_identifiers}}
        - {{select: header.x-opt-out, equals: "1", decision: block}}
"#
    )
}

fn event(i: usize) -> String {
    format!(
        r#"{{"data":[{{"event_name":"Purchase","event_time":{i},"user_data":{{"em":["{EMAIL}"],"client_ip_address":"203.0.113.{i}","fbp":"fb.1.1596403881668.1116446470"}},"custom_data":{{"value":"12.50","order_note":"call me at +1 415 555 2671"}}}}]}}"#
    )
}

async fn post(scrim: &Scrim, i: usize, extra: &[(&str, &str)]) -> http::StatusCode {
    let mut request = Request::post(scrim.url(&format!(
        "/meta/v19.0/1/events?utm_source=mail&e={}",
        EMAIL.replace('@', "%40")
    )))
    .header("content-type", "application/json")
    .header(
        "referer",
        format!("https://shop.example/thanks?email={EMAIL}"),
    );
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(event(i)))).unwrap();
    send(request).await.0
}

async fn get(scrim: &Scrim, path: &str) -> (http::StatusCode, http::HeaderMap, String) {
    let (status, headers, body) = send(
        Request::get(format!("http://{}{path}", scrim.admin.local_addr))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The inventory's fields of `route`, by path.
fn fields(inventory: &Value, route: &str) -> HashMap<String, Value> {
    let route = inventory["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("no route {route} in {inventory}"));
    route["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

/// What no inventory may show: the values that were sent.
fn assert_no_value(text: &str) {
    for needle in [
        "inventory.person",
        "example.org",
        "415 555",
        "203.0.113",
        "1116446470",
    ] {
        assert!(!text.contains(needle), "{needle} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_that_left_is_listed_with_what_left_of_it() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&yaml(&mock.url())).await;
    for i in 1..=3 {
        assert_eq!(post(&scrim, i, &[]).await, 200);
    }
    assert_eq!(post(&scrim, 4, &[("x-consent", "denied")]).await, 200);
    assert_ne!(post(&scrim, 5, &[("x-opt-out", "1")]).await, 200);
    assert_eq!(mock.requests().len(), 4);

    let (status, headers, text) = get(&scrim, "/inventory").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_no_value(&text);
    let inventory: Value = serde_json::from_str(&text).unwrap();
    let route = &inventory["routes"][0];
    assert_eq!(route["requests"], 4, "{route}");
    assert_eq!(route["consent"]["no_signal"], 3, "{route}");
    assert_eq!(route["consent"]["strip_identifiers"], 1, "{route}");
    assert_eq!(route["consent"]["block"], 1, "{route}");
    assert_eq!(route["overflow"], 0);

    let fields = fields(&inventory, "meta");
    let count = |path: &str, outcome: &str| {
        fields
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in {fields:?}"))[outcome]
            .as_u64()
            .unwrap()
    };
    // Hashed by the preset; Meta matches on the address as sent.
    assert_eq!(count("$.data[*].user_data.em[*]", "hashed"), 3);
    assert_eq!(count("$.data[*].user_data.client_ip_address", "kept"), 3);
    // The consent signal stripped the identifiers of one request.
    assert_eq!(count("$.data[*].user_data.em", "dropped"), 1);
    assert_eq!(count("$.data[*].user_data.client_ip_address", "dropped"), 1);
    assert_eq!(count("$.data[*].event_name", "kept"), 4);
    assert_eq!(count("$.data[*].custom_data.value", "kept"), 4);
    // Stray identifiers: in a note, the query and the Referer header.
    assert_eq!(count("$.data[*].custom_data.order_note", "detected"), 4);
    assert_eq!(count("query.e", "detected"), 4);
    assert_eq!(count("query.utm_source", "kept"), 4);
    assert_eq!(count("header.referer", "detected"), 4);
    assert_eq!(count("header.content-type", "kept"), 4);
    let em = &fields["$.data[*].user_data.em[*]"];
    assert!(em["first_seen"].as_str().unwrap() <= em["last_seen"].as_str().unwrap());
    assert!(em["first_seen"].as_str().unwrap().ends_with('Z'));

    let (status, headers, page) = get(&scrim, "/").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_no_value(&page);
    assert!(page.contains("$.data[*].user_data.em[*]"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_body_cannot_grow_the_inventory_past_its_cap() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&yaml(&mock.url())).await;
    let cap = scrim::rewrite::MAX_PATHS;
    for round in 0..3 {
        let members: Vec<String> = (0..cap).map(|i| format!(r#""k{round}x{i}":"v""#)).collect();
        let body = format!(
            r#"{{"data":[{{"custom_data":{{{}}}}}]}}"#,
            members.join(",")
        );
        let request = Request::post(scrim.url("/meta/v19.0/1/events"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        assert_eq!(send(request).await.0, 200);
    }
    let (_, _, text) = get(&scrim, "/inventory").await;
    let inventory: Value = serde_json::from_str(&text).unwrap();
    let route = &inventory["routes"][0];
    // One proxy in process: one shard, so one cap.
    let listed = route["fields"].as_array().unwrap().len();
    assert_eq!(listed, cap, "{route}");
    // Every value is counted, listed or not: the body's 3 × cap, and each
    // request's headers.
    let counted: u64 = route["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            scrim::rewrite::Outcome::ALL
                .iter()
                .map(|o| f[o.as_str()].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    let overflow = route["overflow"].as_u64().unwrap();
    assert!(overflow >= 2 * cap as u64, "{route}");
    assert!(counted + overflow >= 3 * cap as u64, "{route}");
}

/// The page as Chromium renders it, read back from its DOM: each row's
/// cells, by the route's section.
fn rendered_rows(url: &str) -> Vec<Vec<String>> {
    let profile = std::env::temp_dir().join(format!("scrim-chromium-{}", std::process::id()));
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs (`.ci/run` installs Debian's chromium)");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8(output.stdout).unwrap();
    // Rows of the rendered table body; cells by their tags.
    let Some(body) = dom.split("<tbody>").nth(1) else {
        panic!("no table body in the DOM: {dom}");
    };
    let body = body.split("</tbody>").next().unwrap();
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..];
                    let text = &text[..text.find("</td>").unwrap()];
                    text.replace("&amp;", "&")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_in_a_real_browser_with_every_name_escaped() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&yaml(&mock.url())).await;
    assert_eq!(post(&scrim, 1, &[]).await, 200);
    // A member name that would be markup if it were not escaped.
    let request = Request::post(scrim.url("/meta/v19.0/1/events"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"data":[{"custom_data":{"<b>x</b>":"1","a&b":"2"}}]}"#,
        )))
        .unwrap();
    assert_eq!(send(request).await.0, 200);
    let url = format!("http://{}/", scrim.admin.local_addr);
    let rows = tokio::task::spawn_blocking(move || rendered_rows(&url))
        .await
        .unwrap();
    let row = |path: &str| {
        rows.iter()
            .find(|cells| cells[0] == path)
            .unwrap_or_else(|| panic!("no row {path} in {rows:?}"))
            .clone()
    };
    // Field, kept, hashed, pseudonymized, truncated, redacted, detected,
    // dropped, first seen, last seen.
    assert_eq!(
        row("$.data[*].user_data.em[*]")[1..8],
        ["0", "1", "0", "0", "0", "0", "0"]
    );
    assert_eq!(row("$.data[*].custom_data.order_note")[6], "1");
    assert_eq!(row("header.referer")[6], "1");
    assert_eq!(row("query.utm_source")[1], "1");
    assert_eq!(row("$.data[*].user_data.em[*]").len(), 10);
    // Names hidden as in error paths, and nothing became an element.
    assert!(
        rows.iter().all(|cells| !cells[0].contains("<b>")),
        "{rows:?}"
    );
    assert_eq!(row("$.data[*].custom_data[?]")[1], "2");
}
