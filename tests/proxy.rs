//! The proxy, in process, against a mock upstream that records what it
//! receives. Every server listens on an ephemeral port.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioExecutor;
use scrim::admin::{self, Admin};
use scrim::config::Config;
use scrim::metrics::Metrics;
use scrim::policy::compile;
use scrim::proxy::{self, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod support;
use support::{KEY, Mock, PATIENCE, Scrim, eventually, send};

fn config(upstream: &str, extra: &str) -> String {
    format!(
        "keys:
  pseudonym: ${{SCRIM_TEST_KEY}}
{extra}routes:
  - name: meta
    match: {{path_prefix: /meta}}
    strip_prefix: true
    upstream: {upstream}
    rules:
      - select: $.data[*].user_data.em
        action: hash
        normalize: email
      - select: $.data[*].user_data.ph
        action: hmac
        normalize: phone
        default_region: US
      - select: $.ip
        action: truncate_ip
      - select: query.email
        action: hash
        normalize: email
  - name: plain
    match: {{path_prefix: /plain}}
    upstream: {upstream}
"
    )
}

async fn get(url: &str) -> (StatusCode, HeaderMap, Bytes) {
    send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await
}

async fn post(
    url: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Bytes) {
    let request = Request::post(url)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap();
    send(request).await
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const EVENT: &str = r#"{"data":[{"event_name":"Purchase","user_data":{"em":" John_Smith@gmail.com","ph":"(650) 555-1212"}}],"ip":"203.0.113.77"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_arrives_rewritten() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let (status, headers, body) = post(
        &scrim.url("/meta/v21.0/123/events?email=A%40b.c&x=1"),
        "application/json",
        EVENT,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, "{\"ok\":true}");
    assert_eq!(headers.get("x-upstream").unwrap(), "mock");
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.uri,
        format!("/v21.0/123/events?email={}&x=1", sha256_hex("a@b.c"))
    );
    let body = String::from_utf8(request.body.to_vec()).unwrap();
    assert!(
        body.contains("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
        "{body}"
    );
    assert!(
        !body.contains("John") && !body.contains("555") && !body.contains("203.0.113.77"),
        "{body}"
    );
    assert!(body.contains("\"ip\":\"203.0.113.0\""), "{body}");
    assert_eq!(
        request
            .headers
            .get("content-length")
            .unwrap()
            .to_str()
            .unwrap(),
        body.len().to_string()
    );
    assert_eq!(
        request.headers.get("host").unwrap().to_str().unwrap(),
        mock.addr.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_body_arrives_rewritten() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let event = r#"{"user_data":{"em":"John_Smith@gmail.com"}}"#;
    let data: String =
        form_urlencoded::byte_serialize(serde_json::json!([event]).to_string().as_bytes())
            .collect();
    let body = format!("access_token=TOKEN&data={data}");
    let (status, _, _) = post(
        &scrim.url("/meta/v21.0/123/events"),
        "application/x-www-form-urlencoded",
        body,
    )
    .await;
    assert_eq!(status, 200);
    let received = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert!(
        received.starts_with("access_token=TOKEN&data="),
        "{received}"
    );
    assert!(!received.contains("John"), "{received}");
    assert!(
        received.contains("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
        "{received}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_body_arrives_rewritten_and_decoded() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(EVENT.as_bytes()).unwrap();
    let request = Request::post(scrim.url("/meta/events"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(gz.finish().unwrap())))
        .unwrap();
    let (status, _, _) = send(request).await;
    assert_eq!(status, 200);
    let request = &mock.requests()[0];
    assert!(request.headers.get("content-encoding").is_none());
    let body = String::from_utf8(request.body.to_vec()).unwrap();
    assert!(
        body.contains("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
        "{body}"
    );
}

/// Sends a raw HTTP/1.1 request and returns the status code.
async fn raw(addr: SocketAddr, request: &[u8], chunks: &[&[u8]]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    for chunk in chunks {
        // scrim may answer (and close) before the body is all sent.
        if stream.write_all(chunk).await.is_err() || stream.flush().await.is_err() {
            break;
        }
    }
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => {
                response.extend_from_slice(&buffer[..n]);
                if response.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_in_one_byte_chunks_arrives_rewritten() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let head = b"POST /meta/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let chunks: Vec<Vec<u8>> = EVENT
        .bytes()
        .map(|b| [b"1\r\n".as_slice(), &[b], b"\r\n"].concat())
        .collect();
    let mut parts: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    parts.push(b"0\r\n\r\n");
    assert_eq!(raw(scrim.server.local_addr(), head, &parts).await, 200);
    let body = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert!(
        body.contains("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
        "{body}"
    );
}

fn big_batch(events: usize) -> String {
    let event = r#"{"event_name":"Purchase","user_data":{"em":"Someone@Example.com","fn":"Zoë"},"custom_data":{"note":"padding padding padding padding padding padding padding padding padding padding"}}"#;
    format!("{{\"data\":[{}]}}", vec![event; events].join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_mib_body_streams_through_rewritten() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let body = big_batch(12_000);
    assert!(body.len() > 2 * 1024 * 1024);
    let (status, _, _) = post(&scrim.url("/meta/events"), "application/json", body.clone()).await;
    assert_eq!(status, 200);
    let request = &mock.requests()[0];
    assert!(
        request.headers.get("content-length").is_none(),
        "a streamed body is chunked"
    );
    let received = String::from_utf8(request.body.to_vec()).unwrap();
    assert!(!received.contains("Someone@"));
    let expected = body.replace(
        "\"Someone@Example.com\"",
        &format!("\"{}\"", sha256_hex("someone@example.com")),
    );
    assert_eq!(received, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_reach_nothing_upstream() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "limits:\n  max_body_bytes: 4000000\n")).await;
    let cases: Vec<(&str, &str, Bytes, u16)> = vec![
        (
            "/meta/events",
            "application/json",
            Bytes::from_static(b"{\"data\": [1,]}"),
            400,
        ),
        (
            "/nowhere",
            "application/json",
            Bytes::from_static(b"{}"),
            404,
        ),
        (
            "/meta/events",
            "text/plain",
            Bytes::from_static(b"em=x"),
            415,
        ),
    ];
    for (path, content_type, body, expected) in cases {
        let (status, headers, text) = post(&scrim.url(path), content_type, body).await;
        assert_eq!(
            status.as_u16(),
            expected,
            "{path} {content_type}: {}",
            String::from_utf8_lossy(&text)
        );
        if expected != 404 {
            assert_eq!(headers.get("content-type").unwrap(), "application/json");
        }
    }
    // Over the limit by its Content-Length: refused before the body is read
    // (so the body is not sent here: the refusal closes the connection).
    let head = b"POST /meta/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 4000001\r\n\r\n";
    assert_eq!(raw(scrim.server.local_addr(), head, &[]).await, 413);
    let zstd = Request::post(scrim.url("/meta/events"))
        .header("content-type", "application/json")
        .header("content-encoding", "zstd")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(send(zstd).await.0, 415);
    // Invalid only at the end of a body that already streamed for 2 MiB: the
    // upstream saw part of it, but never a complete request.
    let mut late = big_batch(12_000);
    late.push_str(" trailing");
    assert_eq!(
        post(&scrim.url("/meta/events"), "application/json", late)
            .await
            .0,
        400
    );
    // Over the limit without a Content-Length: refused while streaming.
    let head = b"POST /meta/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let filler = vec![b' '; 1 << 20];
    let chunk = [
        format!("{:x}\r\n", filler.len()).as_bytes(),
        &filler,
        b"\r\n",
    ]
    .concat();
    let mut chunks: Vec<&[u8]> = vec![b"2\r\n[ \r\n"];
    chunks.extend(std::iter::repeat_n(chunk.as_slice(), 4));
    chunks.push(b"0\r\n\r\n");
    assert_eq!(raw(scrim.server.local_addr(), head, &chunks).await, 413);
    // A negative check: time for a request that should not reach the
    // upstream to get there, were it forwarded. (The metrics below need no
    // wait: a refusal is counted before it is answered.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        mock.requests().is_empty(),
        "{:?}",
        mock.requests().iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    let metrics = scrim.metrics().await;
    assert!(
        metrics.contains("scrim_rejections_total{reason=\"no_route\",route=\"-\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("scrim_rejections_total{reason=\"unsupported_media_type\",route=\"meta\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_is_504() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let scrim = Scrim::start(&config(&dead, "")).await;
    assert_eq!(
        post(&scrim.url("/meta/events"), "application/json", EVENT)
            .await
            .0,
        502
    );

    let slow = Mock::start(Duration::from_secs(3)).await;
    let scrim = Scrim::start(&config(&slow.url(), "timeouts:\n  response: 300ms\n")).await;
    assert_eq!(
        post(&scrim.url("/meta/events"), "application/json", EVENT)
            .await
            .0,
        504
    );
    let metrics = scrim.metrics().await;
    assert!(
        metrics.contains("scrim_requests_total{outcome=\"upstream_timeout\",route=\"meta\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_pass_and_forwarding_headers_do_not() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let request = Request::get(scrim.url("/plain/status?x=1"))
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-real-ip", "198.51.100.7")
        .header("forwarded", "for=198.51.100.7")
        .header("x-app", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"{\"ok\":true}"[..]));
    let head = Request::head(scrim.url("/plain/status"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(head).await.0, 200);
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].uri.as_str()),
        ("GET", "/plain/status?x=1")
    );
    assert_eq!(requests[1].method, "HEAD");
    let headers = &requests[0].headers;
    for name in [
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "content-length",
    ] {
        assert!(headers.get(name).is_none(), "{name} arrived");
    }
    assert_eq!(headers.get("x-app").unwrap(), "kept");
    assert!(requests[0].body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_rewritten_value() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let event = r#"{"user_data":{"em":"a@b.c","ph":"+16505551212"}}"#;
    let body = format!("{{\"data\":[{}]}}", [event; 7].join(","));
    for _ in 0..3 {
        assert_eq!(
            post(&scrim.url("/meta/events"), "application/json", body.clone())
                .await
                .0,
            200
        );
    }
    let metrics = scrim.metrics().await;
    assert!(
        metrics.contains("scrim_rewrites_total{action=\"hash\",route=\"meta\"} 21"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scrim_rewrites_total{action=\"hmac\",route=\"meta\"} 21"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scrim_requests_total{outcome=\"forwarded\",route=\"meta\"} 3"),
        "{metrics}"
    );
    // Three responses of `{"ok":true}`.
    assert!(
        metrics.contains("scrim_body_bytes_total{direction=\"response\",route=\"meta\"} 33"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_works() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let request = Request::post(scrim.url("/meta/events"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(EVENT.as_bytes())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert!(
        body.contains("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_attempts_are_refused() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "")).await;
    let addr = scrim.server.local_addr();
    let cases: [&[u8]; 4] = [
        b"POST /plain/x HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\nGET /plain/smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        b"POST /plain/x HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 7\r\nconnection: close\r\n\r\nhello",
        b"POST /plain/x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"POST /plain/x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked, identity\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for (i, request) in cases.iter().enumerate() {
        let status = raw(addr, request, &[]).await;
        assert_eq!(status, 400, "case {i}");
    }
    // A negative check: give a smuggled request the time to reach the
    // upstream, were it forwarded.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_at_the_header_timeout() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "server:\n  header_read_timeout: 1s\n")).await;
    let mut stream = TcpStream::connect(scrim.server.local_addr()).await.unwrap();
    let started = std::time::Instant::now();
    let head = b"GET /plain/x HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buffer = [0u8; 256];
        // A closed connection reads as end of stream (or an error response).
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buffer)).await
        {
            let _ = n;
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the connection stayed open for the whole slow head");
    assert!(
        closed_after >= Duration::from_millis(900),
        "closed after {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}"
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_rules_under_load_and_refuses_a_bad_file() {
    let mock = Mock::start(Duration::ZERO).await;
    let dir = std::env::temp_dir().join(format!("scrim-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scrim.yaml");
    // The reloader reads secrets as `scrim run` does: from a file here.
    let key_file = dir.join("pseudonym.key");
    std::fs::write(&key_file, KEY).unwrap();
    let with_key_file =
        |yaml: String| yaml.replace("${SCRIM_TEST_KEY}", &format!("file:{}", key_file.display()));
    std::fs::write(&path, with_key_file(config(&mock.url(), ""))).unwrap();

    let config_text = std::fs::read_to_string(&path).unwrap();
    let parsed = Config::parse(&config_text, "scrim.yaml").unwrap();
    let policy =
        Arc::new(compile(&parsed, "scrim.yaml", &scrim::config::ProcessEnvironment).unwrap());
    let metrics = Arc::new(Metrics::new());
    let proxy = Arc::new(Proxy::new(policy, metrics.clone()));
    let server = proxy::serve(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        proxy.clone(),
    )
    .unwrap();
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        ready: true.into(),
        reloader: Some(Arc::new(scrim::reload::Reloader::new(
            path.clone(),
            vec![proxy],
            metrics.clone(),
        ))),
        token: None,
        vault: None,
    });
    let admin = admin::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), admin).unwrap();
    let url = format!("http://{}/meta/events", server.local_addr());

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, stop) = (url.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match post(&url, "application/json", EVENT).await.0.as_u16() {
                    200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    let reload = || async {
        let request = Request::post(format!("http://{}/reload", admin.local_addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(request).await
    };
    // Each reload comes under load: only once requests have gone through
    // since the step before.
    eventually("requests go through on the first rules", PATIENCE, || {
        mock.requests().len() >= 8
    })
    .await;
    let dropping =
        config(&mock.url(), "").replace("action: hash\n        normalize: email", "action: drop");
    std::fs::write(&path, with_key_file(dropping)).unwrap();
    assert_eq!(reload().await.0, 200);
    eventually("requests go through on the new rules", PATIENCE, || {
        let requests = mock.requests();
        let dropped = requests
            .iter()
            .filter(|r| !String::from_utf8_lossy(&r.body).contains("\"em\""));
        dropped.count() >= 8
    })
    .await;
    std::fs::write(
        &path,
        "routes:\n  - name: meta\n    match: {path_prefix: /meta}\n    upstream: nowhere\n",
    )
    .unwrap();
    let (status, _, body) = reload().await;
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("scrim.yaml:4:15: upstream must be"),
        "{body:?}"
    );
    let refused_at = mock.requests().len();
    eventually(
        "requests go through after the refused reload",
        PATIENCE,
        || mock.requests().len() >= refused_at + 8,
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (ok, failed) = client.await.unwrap();
        assert_eq!(failed, 0);
        total += ok;
    }
    assert!(total > 20, "only {total} requests");
    let last = mock.requests().pop().unwrap();
    let body = String::from_utf8(last.body.to_vec()).unwrap();
    assert!(
        !body.contains("\"em\"") && body.contains("\"ph\""),
        "the new rules apply: {body}"
    );
    let first = String::from_utf8(mock.requests()[0].body.to_vec()).unwrap();
    assert!(first.contains("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"));
    let (_, _, metrics) = get(&format!("http://{}/metrics", admin.local_addr)).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("scrim_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scrim_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_its_own_listener_takes_every_request_there_and_only_there() {
    let mock = Mock::start(Duration::ZERO).await;
    let yaml = format!(
        "{}  - name: own
    listen: 127.0.0.1:0
    upstream: {}
    rules:
      - select: $.em
        action: drop
",
        config(&mock.url(), ""),
        mock.url()
    );
    let parsed = Config::parse(&yaml, "test.yaml").unwrap();
    let env = |name: &str| (name == "SCRIM_TEST_KEY").then(|| KEY.into());
    let policy = Arc::new(compile(&parsed, "test.yaml", &env).unwrap());
    assert_eq!(policy.route_listeners(), vec!["127.0.0.1:0".to_owned()]);
    let proxy = Arc::new(Proxy::new(policy, Arc::new(Metrics::new())));
    let main = proxy::serve(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        proxy.clone(),
    )
    .unwrap();
    let own_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = proxy::serve_route_listener(own_listener, proxy, "127.0.0.1:0".to_owned()).unwrap();

    let body = r#"{"em":"a@b.c","x":1}"#;
    let url = format!("http://{}/v21.0/1/events?x=1", own.local_addr());
    assert_eq!(post(&url, "application/json", body).await.0, 200);
    let request = mock.requests().pop().unwrap();
    assert_eq!(request.uri, "/v21.0/1/events?x=1");
    assert_eq!(request.body, r#"{"x":1}"#);
    // The main listener never routes to it.
    let url = format!("http://{}/v21.0/1/events", main.local_addr());
    assert_eq!(post(&url, "application/json", body).await.0, 404);
}
