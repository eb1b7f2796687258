//! The rewriting path through the proxy (issue 10): bodies in many small
//! chunks, names an upstream may read differently, many routes, upstream
//! errors in the log.

mod support;

use std::time::Duration;

use support::{Mock, Scrim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(mock: &str) -> String {
    format!(
        "limits:
  buffer_limit: 16384
routes:
  - name: events
    match: {{path_prefix: /events}}
    upstream: {mock}
    rules:
      - select: $.em
        action: hash
      - select: $.user.em
        action: hash
"
    )
}

/// Sends `head` and then `body` as chunks of one byte each, written at once,
/// and returns the status line.
async fn send_one_byte_chunks(addr: std::net::SocketAddr, body: &[u8]) -> String {
    let mut request = b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for byte in body {
        request.extend_from_slice(b"1\r\n");
        request.push(*byte);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    response.lines().next().unwrap_or_default().to_owned()
}

fn event_with_padding(bytes: usize) -> Vec<u8> {
    format!(
        r#"{{"em":"jane@example.com","pad":"{}","user":{{"em":"joe@example.com"}}}}"#,
        "x".repeat(bytes)
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_chunks_reach_the_upstream_gathered() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;
    // Streamed (larger than buffer_limit) and buffered.
    for padding in [200_000, 8_000] {
        let body = event_with_padding(padding);
        let status = send_one_byte_chunks(scrim.server.local_addr(), &body).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "padding {padding}");
        let recorded = mock.requests().pop().unwrap();
        let text = String::from_utf8(recorded.body.to_vec()).unwrap();
        assert!(!text.contains("example.com"), "not rewritten");
        let hashed = 2 * 64 - "jane@example.com".len() - "joe@example.com".len();
        assert_eq!(text.len(), body.len() + hashed);
        if padding < 16_384 {
            // Within buffer_limit: rewritten whole, sent with its length
            // (how many reads the mock's server takes to get it is its
            // own business: under load a body over its 8 KiB first read
            // came in two).
            let length = recorded
                .headers
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(length, Some(text.len().to_string()));
            continue;
        }
        // Before: one frame per byte. Gathered for at most 10 ms at a time,
        // so even a debug build on a busy machine merges hundreds.
        let average = recorded.body.len() / recorded.frames;
        assert!(
            average >= 256,
            "{} bytes came in {} frames",
            recorded.body.len(),
            recorded.frames
        );
    }
}

/// CGI-style servers read `X_Email` as `X-Email`: header rules, the
/// forwarding headers scrim removes and the query's `;` check read names as
/// they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_read_as_upstreams_read_them() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&format!(
        "routes:
  - name: crm
    match: {{path_prefix: /crm}}
    upstream: {}
    rules:
      - select: header.x-email
        action: hash
      - select: query.email
        action: drop
",
        mock.url()
    ))
    .await;
    let request = http::Request::post(scrim.url("/crm/contacts"))
        .header("x_email", "jane@example.com")
        .header("X_Forwarded_For", "203.0.113.7")
        .header("x_real_ip", "203.0.113.7")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, _, _) = support::send(request).await;
    assert_eq!(status, 200);
    let recorded = mock.requests().pop().unwrap();
    let email = recorded.headers.get("x_email").unwrap().to_str().unwrap();
    assert_eq!(email.len(), 64, "hashed: {email}");
    assert!(recorded.headers.get("x_forwarded_for").is_none());
    assert!(recorded.headers.get("x_real_ip").is_none());

    let request = http::Request::get(scrim.url("/crm/contacts?x=1;email=jane%40example.com"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, _, body) = support::send(request).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(!String::from_utf8_lossy(&body).contains("jane"));
    assert_eq!(
        mock.requests().len(),
        1,
        "nothing more reached the upstream"
    );
}

/// Why the upstream could not be reached is in the log line of the
/// request, and not in the answer to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_error_keeps_its_cause_in_the_log_only() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let scrim = support::process::start(
        "upstream-cause",
        &format!(
            "listen: 127.0.0.1:0
admin: {{listen: 127.0.0.1:0}}
routes:
  - name: gone
    match: {{path_prefix: /gone}}
    upstream: http://{closed}
"
        ),
    );
    let request = http::Request::get(format!("http://{}/gone/x", scrim.listen))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let (status, _, body) = support::send(request).await;
    assert_eq!(status, 502);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.contains("could not be reached"), "{body}");
    assert!(!body.to_ascii_lowercase().contains("refused"), "{body}");
    let log_line = || {
        scrim
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|line| line.contains("\"status\":502"))
            .cloned()
    };
    support::eventually("the 502 is logged", support::PATIENCE, || {
        log_line().is_some()
    })
    .await;
    let line = log_line().unwrap_or_default();
    assert!(
        line.to_ascii_lowercase().contains("connection refused"),
        "{line}"
    );
}
