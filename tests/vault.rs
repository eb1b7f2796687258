//! The token vault through the running proxy, with the embedded store:
//! `tokenize` (convergent, durable before forwarding, every format, in
//! bodies, queries and headers, buffered and streamed) and `encrypt`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{Mock, Scrim, TempDir, send};

fn config(vault_path: &str, upstream: &str, buffer_limit: u32) -> String {
    format!(
        r#"
keys:
  vault: ${{SCRIM_TEST_KEY}}
  pseudonym: ${{SCRIM_TEST_KEY}}
vault:
  path: {vault_path}
limits:
  buffer_limit: {buffer_limit}
routes:
  - name: crm
    match: {{path_prefix: /crm}}
    strip_prefix: true
    upstream: {upstream}
    rules:
      - select: $.contacts[*].email
        action: tokenize
        normalize: email
      - select: $.contacts[*].phone
        action: tokenize
        format: digits
        length: 18
      - select: $.contacts[*].customer_id
        action: tokenize
        format: uuid
        namespace: customers
      - select: $.contacts[*].note
        action: encrypt
        prefix: enc_
      - select: query.email
        action: tokenize
        normalize: email
      - select: header.x-customer
        action: tokenize
        format: uuid
        namespace: customers
"#
    )
}

async fn post(scrim: &Scrim, path: &str, body: String) -> (http::StatusCode, Bytes) {
    let (status, _, body) = send(
        Request::post(scrim.url(path))
            .header("content-type", "application/json")
            .header("x-customer", "C-1001")
            .body(Full::new(Bytes::from(body)))
            .unwrap(),
    )
    .await;
    (status, body)
}

fn contacts_of(body: &[u8]) -> Vec<serde_json::Value> {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value["contacts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn values_become_tokens_that_converge_and_never_carry_the_value() {
    let dir = TempDir::new("vault-tokens");
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&dir.file("vault.redb"), &mock.url(), 262_144)).await;
    let body = r#"{"contacts":[
        {"email":"Jane.Doe@Example.com","phone":"+14155552671","customer_id":"C-1001","note":"likes rye"},
        {"email":"jane.doe@example.com ","phone":"+14155552671","customer_id":"C-1002","note":"likes rye"},
        {"email":"john@example.com","phone":"","customer_id":null,"note":"allergic to nuts"}]}"#;
    let (status, _) = post(
        &scrim,
        "/crm/contacts?email=JANE.DOE%40example.com&x=1",
        body.to_owned(),
    )
    .await;
    assert_eq!(status, 200);
    let received = mock.requests();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    let text = String::from_utf8(sent.body.to_vec()).unwrap();
    for value in [
        "Jane",
        "jane",
        "john",
        "4155552671",
        "C-1001",
        "C-1002",
        // Whole phrases: a random token may hold a short word.
        "likes rye",
        "allergic to nuts",
    ] {
        assert!(
            !text.contains(value),
            "{value} reached the upstream: {text}"
        );
        assert!(!sent.uri.contains(value), "{value} in {}", sent.uri);
    }
    let contacts = contacts_of(&sent.body);
    let email = |i: usize| contacts[i]["email"].as_str().unwrap().to_owned();
    assert!(
        email(0).starts_with("tok_") && email(0).len() == 26,
        "{}",
        email(0)
    );
    assert_eq!(email(0), email(1), "one normalized address, one token");
    assert_ne!(email(0), email(2));
    // The query's address is the same value in the same namespace.
    assert!(
        sent.uri.contains(&format!("email={}", email(0))),
        "{}",
        sent.uri
    );
    assert!(sent.uri.ends_with("&x=1"), "{}", sent.uri);

    let phone = contacts[0]["phone"].as_str().unwrap();
    assert_eq!(phone.len(), 18);
    assert!(phone.bytes().all(|b| b.is_ascii_digit()), "{phone}");
    assert_eq!(contacts[1]["phone"], contacts[0]["phone"]);
    assert_eq!(contacts[2]["phone"], "", "an empty value stays empty");

    let customer = contacts[0]["customer_id"].as_str().unwrap();
    assert!(uuid_shaped(customer), "{customer}");
    assert_ne!(contacts[1]["customer_id"], contacts[0]["customer_id"]);
    assert!(contacts[2]["customer_id"].is_null());
    // The header's value is the same as the body's, in the namespace they
    // share.
    assert_eq!(sent.headers["x-customer"].to_str().unwrap(), customer);

    let note = contacts[0]["note"].as_str().unwrap();
    assert!(note.starts_with("enc_"), "{note}");
    assert_eq!(
        contacts[1]["note"], contacts[0]["note"],
        "encrypt is deterministic"
    );

    // A second request: the same values get the same tokens (from the
    // cache now), a new one a new token.
    let again = r#"{"contacts":[{"email":"JANE.DOE@EXAMPLE.COM"},{"email":"new@example.com"}]}"#;
    let (status, _) = post(&scrim, "/crm/contacts", again.to_owned()).await;
    assert_eq!(status, 200);
    let second = contacts_of(&mock.requests()[1].body);
    assert_eq!(second[0]["email"].as_str().unwrap(), email(0));
    assert_ne!(second[1]["email"].as_str().unwrap(), email(0));

    let metrics = scrim.metrics().await;
    assert!(
        metrics.contains("scrim_vault_tokens_issued_total 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"scrim_rewrites_total{action="tokenize",route="crm"}"#),
        "{metrics}"
    );
}

fn uuid_shaped(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

/// A body past `buffer_limit` streams, and values first seen in its later
/// parts still become tokens, the same as in a small body, with nothing
/// of them sent.
#[tokio::test]
async fn a_streamed_body_is_tokenized_like_a_buffered_one() {
    let dir = TempDir::new("vault-stream");
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&dir.file("vault.redb"), &mock.url(), 4096)).await;
    let mut body = String::from(r#"{"contacts":["#);
    for i in 0..400 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"email":"user{}@example.com","pad":"{}"}}"#,
            i % 150,
            "x".repeat(40)
        ));
    }
    body.push_str("]}");
    let (status, _) = post(&scrim, "/crm/bulk", body).await;
    assert_eq!(status, 200);
    let sent = &mock.requests()[0];
    let text = String::from_utf8(sent.body.to_vec()).unwrap();
    assert!(
        !text.contains("@example.com"),
        "an address reached the upstream"
    );
    let contacts = contacts_of(&sent.body);
    assert_eq!(contacts.len(), 400);
    let mut tokens: HashMap<usize, String> = HashMap::new();
    for (i, contact) in contacts.iter().enumerate() {
        let token = contact["email"].as_str().unwrap().to_owned();
        assert!(token.starts_with("tok_"), "{token}");
        let first = tokens.entry(i % 150).or_insert_with(|| token.clone());
        assert_eq!(*first, token, "user{} got two tokens", i % 150);
    }
    let distinct: std::collections::HashSet<_> = tokens.values().collect();
    assert_eq!(distinct.len(), 150);

    // The small body of one of them gets the token the stream gave.
    let (status, _) = post(
        &scrim,
        "/crm/one",
        r#"{"contacts":[{"email":"user7@example.com"}]}"#.to_owned(),
    )
    .await;
    assert_eq!(status, 200);
    let one = contacts_of(&mock.requests()[1].body);
    assert_eq!(one[0]["email"].as_str().unwrap(), tokens[&7]);
}

/// Tokens are durable: a vault opened again on the same file gives the
/// same values the same tokens.
#[tokio::test]
async fn tokens_outlive_the_process_that_made_them() {
    let dir = TempDir::new("vault-durable");
    let path = dir.file("vault.redb");
    let mock = Mock::start(Duration::ZERO).await;
    let body = r#"{"contacts":[{"email":"jane@example.com"}]}"#;
    let first = {
        let scrim = Scrim::start(&config(&path, &mock.url(), 262_144)).await;
        assert_eq!(post(&scrim, "/crm/a", body.to_owned()).await.0, 200);
        scrim.stop().await;
        contacts_of(&mock.requests()[0].body)[0]["email"].clone()
    };
    let scrim = Scrim::start(&config(&path, &mock.url(), 262_144)).await;
    assert_eq!(post(&scrim, "/crm/a", body.to_owned()).await.0, 200);
    assert_eq!(contacts_of(&mock.requests()[1].body)[0]["email"], first);
}

async fn admin_call(
    scrim: &Scrim,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (http::StatusCode, serde_json::Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", scrim.admin.local_addr))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let (status, _, body) = send(
        request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await;
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn with_admin(config: &str) -> String {
    config.replacen("keys:\n", "keys:\n  admin: ${SCRIM_TEST_KEY}\n", 1)
}

/// The admin API reveals tokens to the bearer of `keys.admin` only, and an
/// erasure kills a token for good: it no longer reveals, and the value
/// gets a new, unrelated token.
#[tokio::test]
async fn the_admin_api_reveals_to_its_bearer_and_erasure_is_final() {
    let dir = TempDir::new("vault-admin");
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&with_admin(&config(
        &dir.file("vault.redb"),
        &mock.url(),
        262_144,
    )))
    .await;
    let body = r#"{"contacts":[{"email":"Jane@Example.com","note":"likes rye"},{"email":"john@example.com"}]}"#;
    assert_eq!(post(&scrim, "/crm/a", body.to_owned()).await.0, 200);
    let sent = contacts_of(&mock.requests()[0].body);
    let jane = sent[0]["email"].as_str().unwrap().to_owned();
    let john = sent[1]["email"].as_str().unwrap().to_owned();
    let note = sent[0]["note"].as_str().unwrap().to_owned();
    let reveal = format!(r#"{{"tokens":["{jane}","{note}","tok_unknown"]}}"#);

    for token in [None, Some("wrong-token-wrong-token-wrong")] {
        let (status, answer) = admin_call(&scrim, "POST", "/vault/reveal", token, &reveal).await;
        assert_eq!(status, 401);
        assert!(!answer.to_string().contains("jane"), "{answer}");
        assert_eq!(
            admin_call(&scrim, "GET", "/vault/stats", token, "").await.0,
            401
        );
    }
    let key = support::KEY;
    let (status, answer) = admin_call(&scrim, "POST", "/vault/reveal", Some(key), &reveal).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["values"],
        serde_json::json!(["jane@example.com", "likes rye", null])
    );

    let (status, stats) = admin_call(&scrim, "GET", "/vault/stats", Some(key), "").await;
    assert_eq!(status, 200);
    // Two addresses, and the customer id in the `x-customer` header.
    assert_eq!(stats["tokens"], 3, "{stats}");
    assert_eq!(stats["store"], "embedded");

    // Erased by value (as the customer writes it), and by token.
    let (status, erased) = admin_call(
        &scrim,
        "POST",
        "/vault/erase",
        Some(key),
        r#"{"values":["JANE@example.com"]}"#,
    )
    .await;
    assert_eq!(
        (status.as_u16(), &erased["erased"]),
        (200, &serde_json::json!(1))
    );
    let (status, erased) = admin_call(
        &scrim,
        "POST",
        "/vault/erase",
        Some(key),
        &format!(r#"{{"tokens":["{john}"]}}"#),
    )
    .await;
    assert_eq!(
        (status.as_u16(), &erased["erased"]),
        (200, &serde_json::json!(1))
    );
    let both = format!(r#"{{"tokens":["{jane}","{john}"]}}"#);
    let (_, answer) = admin_call(&scrim, "POST", "/vault/reveal", Some(key), &both).await;
    assert_eq!(answer["values"], serde_json::json!([null, null]));

    assert_eq!(post(&scrim, "/crm/a", body.to_owned()).await.0, 200);
    let again = contacts_of(&mock.requests()[1].body);
    assert_ne!(again[0]["email"].as_str().unwrap(), jane);
    assert_ne!(again[1]["email"].as_str().unwrap(), john);

    let (status, _) = admin_call(
        &scrim,
        "POST",
        "/vault/erase",
        Some(key),
        r#"{"values":["a"],"tokens":["b"]}"#,
    )
    .await;
    assert_eq!(status, 400);
    let metrics = scrim.metrics().await;
    assert!(
        metrics.contains(
            r#"scrim_vault_admin_requests_total{call="reveal",outcome="unauthorized"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("scrim_vault_erasures_total 2"),
        "{metrics}"
    );
}

/// Without `keys.admin` the vault API is not there at all.
#[tokio::test]
async fn the_admin_api_is_off_without_an_admin_key() {
    let dir = TempDir::new("vault-off");
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&dir.file("vault.redb"), &mock.url(), 262_144)).await;
    for token in [None, Some(support::KEY)] {
        let (status, answer) = admin_call(
            &scrim,
            "POST",
            "/vault/reveal",
            token,
            r#"{"tokens":["tok_x"]}"#,
        )
        .await;
        assert_eq!(status, 404, "{answer}");
        assert_eq!(
            admin_call(&scrim, "GET", "/vault/stats", token, "").await.0,
            404
        );
    }
}

/// What the mock CRM stores: each record as it received it (tokens only),
/// by path.
static CRM: std::sync::Mutex<Vec<(String, Bytes)>> = std::sync::Mutex::new(Vec::new());

/// A CRM that keeps what is posted and answers a GET with it: as JSON, or
/// gzip-encoded when the query asks (`?gzip`), or with a token it never
/// got added (`?unknown`), or as NDJSON, twice, past `buffer_limit` in
/// size (`?many`).
fn crm(request: &support::Recorded) -> http::Response<Full<Bytes>> {
    let (path, query) = request.uri.split_once('?').unwrap_or((&request.uri, ""));
    let mut store = CRM.lock().unwrap();
    if request.method == "POST" {
        store.push((path.to_owned(), request.body.clone()));
        return http::Response::builder()
            .status(201)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let record = store
        .iter()
        .rev()
        .find(|(p, _)| p == path)
        .map(|(_, body)| body.clone())
        .unwrap_or_default();
    let response = http::Response::builder().header("content-type", "application/json");
    match query {
        "gzip" => {
            use std::io::Write as _;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&record).unwrap();
            response
                .header("content-encoding", "gzip")
                .body(Full::new(Bytes::from(encoder.finish().unwrap())))
                .unwrap()
        }
        "unknown" => {
            let mut value: serde_json::Value = serde_json::from_slice(&record).unwrap();
            value["contacts"][0]["email"] = "tok_AAAAAAAAAAAAAAAAAAAAAA".into();
            value["contacts"][0]["owner"] = "tok_AAAAAAAAAAAAAAAAAAAAAA".into();
            response
                .body(Full::new(Bytes::from(value.to_string())))
                .unwrap()
        }
        "html" => {
            // An error page labelled JSON, larger than buffer_limit.
            let page = format!("<html>{}</html>", "x".repeat(20_000));
            response
                .status(502)
                .body(Full::new(Bytes::from(page)))
                .unwrap()
        }
        "other" => {
            // A token of another route's namespace.
            let body = format!(
                r#"{{"contacts":[{{"email":"{}"}}]}}"#,
                std::str::from_utf8(
                    &store
                        .iter()
                        .find(|(p, _)| p == "/other")
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default()
                )
                .unwrap()
            );
            response.body(Full::new(Bytes::from(body))).unwrap()
        }
        "many" | "many-gzip" => {
            let line = String::from_utf8(record.to_vec())
                .unwrap()
                .replace('\n', "");
            let body = format!("{line}\n").repeat(200);
            let response = http::Response::builder().header("content-type", "application/x-ndjson");
            if query == "many" {
                return response.body(Full::new(Bytes::from(body))).unwrap();
            }
            use std::io::Write as _;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(body.as_bytes()).unwrap();
            response
                .header("content-encoding", "gzip")
                .body(Full::new(Bytes::from(encoder.finish().unwrap())))
                .unwrap()
        }
        _ => response.body(Full::new(record)).unwrap(),
    }
}

fn reveal_config(vault_path: &str, upstream: &str) -> String {
    format!(
        r#"
keys:
  vault: ${{SCRIM_TEST_KEY}}
  pseudonym: ${{SCRIM_TEST_KEY}}
vault:
  path: {vault_path}
limits:
  buffer_limit: 8192
routes:
  - name: crm
    match: {{path_prefix: /crm}}
    strip_prefix: true
    upstream: {upstream}
    rules:
      - select: $.contacts[*].email
        action: tokenize
        normalize: email
      - select: $.contacts[*].phone
        action: tokenize
        normalize: phone
        default_region: US
        format: digits
      - select: $.contacts[*].note
        action: encrypt
    response_rules:
      - select: $..email
        action: reveal
      - select: $..phone
        action: reveal
      - select: $..note
        action: reveal
      - select: $..owner
        action: reveal
"#
    )
}

async fn get(scrim: &Scrim, path: &str) -> (http::StatusCode, http::HeaderMap, Bytes) {
    send(
        Request::get(scrim.url(path))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
}

/// An app reads back, through scrim, a record a CRM keeps with tokens only,
/// and gets the values: plain, gzip-encoded and streamed; a token the vault
/// does not know passes as it came.
#[tokio::test]
async fn an_app_reads_its_values_back_from_a_crm_that_holds_tokens() {
    let dir = TempDir::new("vault-reveal");
    let mock = Mock::start_answering(Duration::ZERO, None, crm).await;
    let scrim = Scrim::start(&reveal_config(&dir.file("vault.redb"), &mock.url())).await;
    let record = r#"{"contacts":[{"email":"Jane.Doe@Example.com","phone":"(415) 555-2671","note":"gluten-free","id":7}]}"#;
    let (status, _, _) = send(
        Request::post(scrim.url("/crm/contacts/7"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(record.as_bytes())))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let stored = mock.requests()[0].body.clone();
    let stored_text = String::from_utf8(stored.to_vec()).unwrap();
    assert!(
        !stored_text.contains("Jane.Doe")
            && !stored_text.contains("gluten-free")
            && !stored_text.contains("555-2671")
    );

    let expected = serde_json::json!({"contacts":[{"email":"jane.doe@example.com","phone":"+14155552671","note":"gluten-free","id":7}]});
    let (status, headers, body) = get(&scrim, "/crm/contacts/7").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        expected
    );
    assert_eq!(
        headers["content-length"].to_str().unwrap(),
        body.len().to_string()
    );

    let (status, headers, body) = get(&scrim, "/crm/contacts/7?gzip").await;
    assert_eq!(status, 200);
    assert!(
        headers.get("content-encoding").is_none(),
        "the app gets it decoded"
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        expected
    );

    let (status, _, body) = get(&scrim, "/crm/contacts/7?unknown").await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["contacts"][0]["email"], "tok_AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(answer["contacts"][0]["owner"], "tok_AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(answer["contacts"][0]["phone"], "+14155552671");

    // Past buffer_limit, streamed; and so, gzip-encoded.
    for many in ["many", "many-gzip"] {
        let (status, headers, body) = get(&scrim, &format!("/crm/contacts/7?{many}")).await;
        assert_eq!(status, 200);
        assert!(headers.get("content-length").is_none());
        assert!(headers.get("content-encoding").is_none());
        let lines: Vec<&[u8]> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 200, "{many}");
        for line in lines {
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(line).unwrap(),
                expected
            );
        }
    }

    // Not JSON although labelled so, past buffer_limit: on as it came.
    let (status, _, body) = get(&scrim, "/crm/contacts/7?html").await;
    assert_eq!(status, 502);
    assert!(body.starts_with(b"<html>") && body.len() == 20_013);
    // A HEAD has no body to reveal.
    let head = Request::head(scrim.url("/crm/contacts/7"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(head).await;
    assert_eq!((status.as_u16(), body.len()), (200, 0));

    let metrics = scrim.metrics().await;
    assert!(
        metrics.contains(r#"scrim_vault_reveals_total{result="unknown"} 2"#),
        "{metrics}"
    );
}

/// A route reveals the tokens of its own namespaces only: a token another
/// route made stays a token, whoever puts it into the response.
#[tokio::test]
async fn a_route_reveals_only_its_own_tokens() {
    let dir = TempDir::new("vault-namespaces");
    let mock = Mock::start_answering(Duration::ZERO, None, crm).await;
    let ads = format!(
        "routes:\n  - name: ads\n    match: {{path_prefix: /ads}}\n    strip_prefix: true\n    upstream: {}\n    rules:\n      - select: $.email\n        action: tokenize\n        normalize: email\n",
        mock.url()
    );
    let config = reveal_config(&dir.file("vault.redb"), &mock.url()).replace("routes:\n", &ads);
    let scrim = Scrim::start(&config).await;
    let post = Request::post(scrim.url("/ads/x"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"email":"jane@example.com"}"#,
        )))
        .unwrap();
    assert_eq!(send(post).await.0, 201);
    let sent: serde_json::Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    let token = sent["email"].as_str().unwrap().to_owned();
    CRM.lock()
        .unwrap()
        .push(("/other".to_owned(), Bytes::from(token.clone())));
    let (status, _, body) = get(&scrim, "/crm/contacts/9?other").await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["contacts"][0]["email"], token.as_str());
}

/// A new `keys.vault`, the old one listed under `previous_keys`: values
/// tokenized before still reveal and keep their tokens, new ones are sealed
/// under the new key; without the old key the vault refuses to open.
#[tokio::test]
async fn a_rotated_vault_key_keeps_old_tokens_readable() {
    let dir = TempDir::new("vault-rotation");
    let path = dir.file("vault.redb");
    let mock = Mock::start(Duration::ZERO).await;
    let old = with_admin(&config(&path, &mock.url(), 262_144));
    let key = support::KEY;
    let body = r#"{"contacts":[{"email":"jane@example.com"}]}"#;
    let (token, old_id) = {
        let scrim = Scrim::start(&old).await;
        assert_eq!(post(&scrim, "/crm/a", body.to_owned()).await.0, 200);
        let (_, stats) = admin_call(&scrim, "GET", "/vault/stats", Some(key), "").await;
        scrim.stop().await;
        let token = contacts_of(&mock.requests()[0].body)[0]["email"]
            .as_str()
            .unwrap()
            .to_owned();
        (token, stats["key_id"].as_str().unwrap().to_owned())
    };
    let rotated = old
        .replace(
            "  vault: ${SCRIM_TEST_KEY}\n",
            "  vault: ${SCRIM_TEST_KEY_2}\n  vault_2025: ${SCRIM_TEST_KEY}\n",
        )
        .replace(
            "vault:\n  path:",
            "vault:\n  previous_keys: [vault_2025]\n  path:",
        );
    let scrim = Scrim::start(&rotated).await;
    let reveal = format!(r#"{{"tokens":["{token}"]}}"#);
    let (_, answer) = admin_call(&scrim, "POST", "/vault/reveal", Some(key), &reveal).await;
    assert_eq!(answer["values"], serde_json::json!(["jane@example.com"]));
    let (_, stats) = admin_call(&scrim, "GET", "/vault/stats", Some(key), "").await;
    assert_ne!(stats["key_id"].as_str().unwrap(), old_id);
    assert_eq!(post(&scrim, "/crm/a", body.to_owned()).await.0, 200);
    assert_eq!(
        contacts_of(&mock.requests()[1].body)[0]["email"],
        token.as_str()
    );
    let fresh = r#"{"contacts":[{"email":"john@example.com"}]}"#;
    assert_eq!(post(&scrim, "/crm/a", fresh.to_owned()).await.0, 200);
    let john = contacts_of(&mock.requests()[2].body)[0]["email"]
        .as_str()
        .unwrap()
        .to_owned();
    scrim.stop().await;

    // Without the old key, the vault's fingerprint key (now sealed under
    // the new one) still opens, and so do values sealed under the new key;
    // those sealed under the old key no longer do.
    let without_old = old.replace(
        "  vault: ${SCRIM_TEST_KEY}\n",
        "  vault: ${SCRIM_TEST_KEY_2}\n",
    );
    let scrim = Scrim::start(&without_old).await;
    let both = format!(r#"{{"tokens":["{token}","{john}"]}}"#);
    let (_, answer) = admin_call(&scrim, "POST", "/vault/reveal", Some(key), &both).await;
    assert_eq!(
        answer["values"],
        serde_json::json!([null, "john@example.com"])
    );
}

mod passes {
    //! `tokenize` through the rewriter with a cache that knows some values:
    //! a pass asks for the others, the answers make the next pass ask
    //! nothing, and the result is the same however the body is cut.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use proptest::prelude::*;
    use scrim::policy::{Limits, OnInvalid, Rules, Unlisted};
    use scrim::rewrite::{
        Answers, BodyKind, BodyRewriter, Fingerprint, Lookups, Question, Secret, Token, VaultCache,
    };
    use scrim::transform::{Action, Normalizer, TokenFormat, Tokenize};

    /// A cache holding the tokens of `known` fingerprints; a token is
    /// `tok_` and the fingerprint's first bytes, so that the expected
    /// output can be told in advance.
    struct Fake {
        known: Mutex<HashMap<Fingerprint, Token>>,
    }

    fn fingerprint(namespace: &str, value: &str) -> Fingerprint {
        use sha2::Digest;
        sha2::Sha256::digest(format!("{namespace}\0{value}")).into()
    }

    fn token_of(fingerprint: &Fingerprint) -> Token {
        let hex: String = fingerprint[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("tok_{hex}").into()
    }

    impl VaultCache for Fake {
        fn fingerprint(&self, namespace: &str, normalized: &str) -> Fingerprint {
            fingerprint(namespace, normalized)
        }
        fn token(&self, fingerprint: &Fingerprint) -> Option<Token> {
            self.known.lock().unwrap().get(fingerprint).cloned()
        }
        fn value(&self, _: &str) -> Option<Secret> {
            None
        }
    }

    fn rewrite(rules: &Rules, lookups: Lookups, chunks: &[Bytes]) -> (Vec<u8>, Lookups) {
        let mut rewriter =
            BodyRewriter::new(BodyKind::Json, rules, Vec::new(), false).lookups(lookups);
        for chunk in chunks {
            rewriter.write(chunk.clone()).unwrap();
        }
        let (out, _, lookups) = rewriter.finish_with_lookups().unwrap();
        (out.concat(), lookups)
    }

    const EMAILS: [&str; 5] = ["a@x.io", "B@x.io", "b@x.io", "c\\u0040x.io", "d@x.io"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn every_value_gets_its_token_however_the_body_is_cut(
            picks in proptest::collection::vec((0usize..5, "[a-z ]{0,30}"), 1..40),
            known in proptest::collection::vec(any::<bool>(), 5),
            cut in 1usize..64,
        ) {
            let rule = Arc::new(Tokenize {
                namespace: "crm".to_owned(),
                format: TokenFormat::Opaque { prefix: "tok_".to_owned() },
                ttl: None,
                normalizer: Normalizer::Email,
            });
            let rules = Rules::build(
                [("$[*].email".to_owned(), Action::Tokenize(rule.clone()), OnInvalid::Drop)],
                Unlisted::Keep,
                Limits::default(),
            ).unwrap();
            let normalized = |i: usize| EMAILS[i].replace("\\u0040", "@").to_lowercase();
            let fake = Arc::new(Fake { known: Mutex::new(HashMap::new()) });
            for (i, is_known) in known.iter().enumerate() {
                if *is_known {
                    let fp = fingerprint("crm", &normalized(i));
                    fake.known.lock().unwrap().insert(fp, token_of(&fp));
                }
            }
            let body: Vec<String> = picks
                .iter()
                .map(|(i, pad)| format!(r#"{{"email":"{}","pad":"{pad}"}}"#, EMAILS[*i]))
                .collect();
            let body = Bytes::from(format!("[{}]", body.join(",")));
            let expected: Vec<String> = picks
                .iter()
                .map(|(i, pad)| format!(r#"{{"email":"{}","pad":"{pad}"}}"#, token_of(&fingerprint("crm", &normalized(*i)))))
                .collect();
            let expected = format!("[{}]", expected.join(","));
            let chunks: Vec<Bytes> = (0..body.len()).step_by(cut).map(|at| body.slice(at..(at + cut).min(body.len()))).collect();

            let (first, mut asked) = rewrite(&rules, Lookups::new(fake.clone()), &chunks);
            let questions = asked.take_questions();
            let cached: std::collections::HashSet<String> =
                (0..EMAILS.len()).filter(|i| known[*i]).map(normalized).collect();
            let any_unknown = picks.iter().any(|(i, _)| !cached.contains(&normalized(*i)));
            prop_assert_eq!(questions.is_empty(), !any_unknown);
            if questions.is_empty() {
                prop_assert_eq!(String::from_utf8(first).unwrap(), expected);
                return Ok(());
            }
            // The store answers (and its answers are not in the cache yet).
            let mut answers = Answers::default();
            for question in questions {
                let Question::Token { fingerprint, value, .. } = question else { panic!("a token question") };
                prop_assert_eq!(fingerprint, self::fingerprint("crm", &value));
                answers.tokens.insert(fingerprint, token_of(&fingerprint));
            }
            // The cache forgets what it knew: the next pass must not need it.
            fake.known.lock().unwrap().clear();
            let (second, mut again) = rewrite(&rules, asked.answered(answers), &chunks);
            prop_assert!(!again.asked(), "a pass with its answers asked again");
            prop_assert!(again.take_questions().is_empty());
            prop_assert_eq!(String::from_utf8(second).unwrap(), expected);
        }
    }
}
