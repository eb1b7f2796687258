//! The edges of the request path (issue 9, attacks 7 and 8): responses
//! forwarded with their framing recomputed, methods a reverse proxy has no
//! use for, dot segments, identifiers in paths kept out of the log.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::process::start;
use support::{Mock, PATIENCE, Scrim, eventually, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that answers each request head with the raw response its
/// path names.
async fn raw_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // One request after the other on each connection.
                let mut pending = Vec::new();
                while let Some(request) = support::read_head(&mut stream, &mut pending).await {
                    let reply: &[u8] = if request.starts_with("GET /both ") {
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    } else if request.starts_with("GET /listed ") {
                        b"HTTP/1.1 200 OK\r\nconnection: x-internal, keep-alive\r\nx-internal: secret\r\nx-kept: yes\r\ncontent-length: 2\r\n\r\nok"
                    } else {
                        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
                    };
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn config(raw: &str, mock: &str) -> String {
    format!(
        "routes:
  - name: raw
    match: {{path_prefix: /raw}}
    strip_prefix: true
    upstream: {raw}
  - name: crm
    match: {{path_prefix: /crm}}
    upstream: {mock}
"
    )
}

/// The raw response to one request, read until the connection closes.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_reframed_and_cleaned() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&raw_upstream().await, &mock.url())).await;
    let addr = scrim.server.local_addr();

    // Transfer-Encoding beside Content-Length: the whole body, framed once.
    let response = exchange(
        addr,
        b"GET /raw/both HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("content-length: 3"), "{head}");
    assert_eq!(
        head.matches("content-length").count() + head.matches("transfer-encoding").count(),
        1,
        "{head}"
    );
    let decoded = if head.contains("transfer-encoding: chunked") {
        body.replace("5\r\n", "").replace("\r\n0\r\n\r\n", "")
    } else {
        body.to_owned()
    };
    assert_eq!(decoded, "hello", "{response}");

    // Headers the response's Connection lists stay behind.
    let response = exchange(
        addr,
        b"GET /raw/listed HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(response.contains("x-kept: yes"), "{response}");
    assert!(!response.contains("x-internal"), "{response}");

    // An upgrade nobody asked for is not passed on.
    let response = exchange(
        addr,
        b"GET /raw/upgrade HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_echoes_and_dot_segments_reach_nothing() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config("http://127.0.0.1:9", &mock.url())).await;
    let addr = scrim.server.local_addr();
    for request in [
        &b"CONNECT /crm/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"[..],
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\nconnection: close\r\n\r\n",
        b"TRACE /crm/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ] {
        let response = exchange(addr, request).await;
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
    }
    for path in [
        "/crm/../admin",
        "/crm/%2e%2e/%2e%2e/admin",
        "/crm/x/%2E%2E%2Fadmin",
        "/crm/./x",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let response = exchange(addr, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
    }
    let (status, _, _) = send(
        Request::get(scrim.url("/crm/v1/ok"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let reached: Vec<String> = mock.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(reached, ["/crm/v1/ok"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_in_paths_never_reach_the_log() {
    let mock = Mock::start(Duration::ZERO).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n{}",
        config("http://127.0.0.1:9", &mock.url())
    );
    let scrim = start("edges-log", &yaml);
    for path in [
        "/crm/users/jane@example.com/events",
        "/crm/users/jane%40example.com",
        "/crm/phones/+16505551212",
        "/nowhere/jane@example.com",
    ] {
        let request = Request::get(format!("http://{}{path}", scrim.listen))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send(request).await;
    }
    // Lines are written out every 100 ms: wait for the four requests' lines.
    eventually("the four requests are logged", PATIENCE, || {
        let log = scrim.log.lock().unwrap().join("\n");
        log.matches("\"message\":\"request\"").count() >= 4
    })
    .await;
    let log = scrim.log.lock().unwrap().join("\n");
    assert_eq!(log.matches("\"message\":\"request\"").count(), 4, "{log}");
    assert!(log.contains("/crm/users/[email]/events"), "{log}");
    assert!(log.contains("/crm/phones/[phone]"), "{log}");
    for secret in ["jane", "6505551212"] {
        assert!(!log.contains(secret), "{secret} in the log: {log}");
    }
    // The upstream still gets the path as sent.
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.uri == "/crm/users/jane@example.com/events")
    );
}
