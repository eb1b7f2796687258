//! One memory budget for the process (issue 9, attack 5): 500 HTTP/1.1
//! connections and 8 HTTP/2 connections of 256 streams, each holding a
//! body of 256 KiB less one byte (the rest never comes), cost scrim
//! `limits.max_buffered_bytes` plus a fixed overhead, not one body each;
//! the requests past the budget get 503 with `Retry-After`.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::Mock;
use support::process::start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;
const BUDGET: u64 = 32 * MIB;
/// Growth above the process at rest besides the budget, for this scenario:
/// hyper's read buffer of each HTTP/1.1 connection (up to 64 KiB: 31 MiB
/// for 500), each HTTP/2 connection's flow-control window and stream state
/// (about 3 MiB: 24 MiB for 8), about a tenth of the budget (a held body
/// costs some 5% more than its bytes), and the allocator's slack, which
/// differs between machines: measured 58 MiB on one (114 MiB peak, 24 at
/// rest) and 74 MiB on another (133 MiB peak, 27 at rest). Without the
/// budget, 500 held bodies alone cost some 320 MB.
const OVERHEAD: u64 = 96 * MIB;
const BODY: usize = 256 * 1024;

/// A JSON body of `BODY` bytes, cut one byte short.
fn almost_whole() -> Vec<u8> {
    let mut body = format!("{{\"pad\":\"{}\"}}", "x".repeat(BODY - 10)).into_bytes();
    body.truncate(BODY - 1);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_bodies_cost_the_budget_not_one_body_each() {
    support::raise_fd_limit();
    let mock = Mock::start(Duration::ZERO).await;
    let yaml = format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
limits:
  max_buffered_bytes: {BUDGET}
server:
  body_read_timeout: 30s
routes:
  - name: meta
    match: {{path_prefix: /meta}}
    upstream: {}
    rules:
      - select: $.email
        action: hash
",
        mock.url()
    );
    let scrim = start("budget", &yaml);
    let at_rest = scrim.peak_rss();
    let body = Bytes::from(almost_whole());
    let head = format!(
        "POST /meta/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {BODY}\r\n\r\n"
    );

    // 500 HTTP/1.1 connections.
    let mut held = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(&scrim.listen).await.unwrap();
        let (head, body) = (head.clone(), body.clone());
        answers.push(tokio::spawn(async move {
            stream.write_all(head.as_bytes()).await.unwrap();
            let _ = stream.write_all(&body).await;
            let mut response = vec![0u8; 512];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            (
                String::from_utf8_lossy(&response[..read]).into_owned(),
                stream,
            )
        }));
    }
    // 8 HTTP/2 connections of 256 streams.
    let mut senders = Vec::new();
    for _ in 0..8 {
        let tcp = TcpStream::connect(&scrim.listen).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        for _ in 0..256 {
            let (mut feed, channel) =
                http_body_util::channel::Channel::<Bytes, hyper::Error>::new(2);
            let request = Request::post(format!("http://{}/meta/events", scrim.listen))
                .header("content-type", "application/json")
                .header("content-length", BODY)
                .body(channel.boxed())
                .unwrap();
            let mut sender = sender.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let response = sender.send_request(request);
                let _ = feed.send(Frame::data(body)).await;
                // Held open, the last byte never sent.
                let _ = response.await;
                drop(feed);
            });
        }
        senders.push(sender);
    }
    let started = Instant::now();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for answer in answers {
        let (response, stream) = answer.await.unwrap();
        let status = response.get(9..12).unwrap_or("held").to_owned();
        if status == "503" {
            assert!(
                response.to_ascii_lowercase().contains("retry-after: 1"),
                "{response}"
            );
        }
        *statuses.entry(status).or_default() += 1;
        held.push(stream);
    }
    let peak = scrim.peak_rss();
    eprintln!(
        "after {:?}: HTTP/1.1 answers {statuses:?}; peak RSS {} KiB (at rest {} KiB, budget {} KiB)",
        started.elapsed(),
        peak / 1024,
        at_rest / 1024,
        BUDGET / 1024
    );
    assert!(
        statuses.get("503").copied().unwrap_or(0) > 300,
        "{statuses:?}"
    );
    assert!(
        peak.saturating_sub(at_rest) < BUDGET + OVERHEAD,
        "peak RSS {} KiB, at rest {} KiB",
        peak / 1024,
        at_rest / 1024
    );
    assert!(mock.requests().is_empty());
}
