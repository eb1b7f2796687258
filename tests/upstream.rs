//! Upstream connections: kept and reused, replaced when the upstream closes
//! them, given up when a response is abandoned halfway. Every server listens
//! on an ephemeral port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod support;
use support::{EMAIL_EVENT_HASHED, Mock, Scrim, email_event_post, send};

fn config(upstream: &str) -> String {
    format!(
        "routes:
  - name: meta
    match: {{path_prefix: /}}
    upstream: {upstream}
    rules:
      - select: $.data[*].user_data.em
        action: hash
        normalize: email
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_http1_connection_carries_requests_one_after_another() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;
    for _ in 0..3 {
        let (status, _, _) = send(email_event_post(scrim.url("/events"))).await;
        assert_eq!(status, 200);
    }
    // Responses without content give their connection back as well.
    let (status, _, body) = send(
        Request::head(scrim.url("/events"))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), body.len()), (200, 0));
    let (status, _, _) = send(email_event_post(scrim.url("/events"))).await;
    assert_eq!(status, 200);

    let requests = mock.requests();
    assert_eq!(requests.len(), 5);
    assert!(
        requests.iter().all(|r| r.connection == 0),
        "connections used: {:?}",
        requests.iter().map(|r| r.connection).collect::<Vec<_>>()
    );
    assert!(requests.iter().all(|r| r.version == http::Version::HTTP_11));
    assert_eq!(
        requests[0].headers["host"],
        mock.addr.to_string(),
        "Host names the upstream"
    );
    assert!(String::from_utf8_lossy(&requests[0].body).contains(EMAIL_EVENT_HASHED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_connections_of_their_own() {
    let mock = Mock::start(Duration::from_millis(200)).await;
    let scrim = Scrim::start(&config(&mock.url())).await;
    let requests: Vec<_> = (0..4)
        .map(|_| tokio::spawn(send(email_event_post(scrim.url("/events")))))
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap().0, 200);
    }
    let mut connections: Vec<usize> = mock.requests().iter().map(|r| r.connection).collect();
    connections.sort_unstable();
    assert_eq!(connections, [0, 1, 2, 3]);
}

/// An upstream that answers every request with a keep-alive response, then
/// closes the connection without saying so: each pooled connection is stale
/// by the time the next request wants it. Returns the address and the number
/// of requests it read.
async fn closing_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    let closed = Arc::new(AtomicUsize::new(0));
    let closes = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = count.clone();
            let closes = closes.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then the body its Content-Length announces.
                let body_start = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                    if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let text = String::from_utf8_lossy(&head[..body_start]).to_ascii_lowercase();
                let length: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while head.len() < body_start + length {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                count.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Gone, without `Connection: close`.
                drop(stream);
                closes.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_upstream_closed_is_replaced_and_no_request_is_lost() {
    let (addr, seen, closed) = closing_upstream().await;
    let scrim = Scrim::start(&config(&format!("http://{addr}"))).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    for round in 0..20 {
        let response = client
            .request(email_event_post(scrim.url("/events")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {round}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        // The next request goes once the upstream has closed this one's
        // connection, as a server closing idle connections does: scrim must
        // not send it there. (Sent at the very moment of the close, a POST
        // could be lost on any proxy; none retries one it may have sent.)
        support::eventually(
            "the upstream closed the connection",
            support::PATIENCE,
            || closed.load(Ordering::SeqCst) > round,
        )
        .await;
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        20,
        "each request reached the upstream exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_abandoned_halfway_does_not_spoil_the_next_request() {
    // Sends a head announcing 1 MiB, a first part of the body, then waits.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let opened = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let first = opened.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let reply: &[u8] = if first {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\npartial"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nfull"
                    };
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let scrim = Scrim::start(&config(&format!("http://{addr}"))).await;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();

    let mut response = client
        .request(email_event_post(scrim.url("/events")))
        .await
        .unwrap();
    let first = response.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "partial");
    drop(response);

    let (status, _, body) = send(email_event_post(scrim.url("/events"))).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"full"[..]));
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "the abandoned connection is not reused"
    );
}

/// A reload that leaves a route's upstream as it was keeps its idle
/// connections: the next request goes on the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_connections_of_unchanged_upstreams() {
    let mock = support::Mock::start(Duration::ZERO).await;
    let policy = |rule: &str| {
        let yaml = format!(
            "routes:\n  - name: events\n    match: {{path_prefix: /events}}\n    upstream: {}\n    rules:\n      - select: $.data[*].user_data.em\n        action: {rule}\n",
            mock.url()
        );
        let config = scrim::config::Config::parse(&yaml, "test.yaml").unwrap();
        let env = |_: &str| None;
        Arc::new(scrim::policy::compile(&config, "test.yaml", &env).unwrap())
    };
    let metrics = Arc::new(scrim::metrics::Metrics::new());
    let proxy = Arc::new(scrim::proxy::Proxy::new(policy("hash"), metrics));
    let server = scrim::proxy::serve(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        proxy.clone(),
    )
    .unwrap();
    let url = format!("http://{}/events", server.local_addr());
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let send = async || {
        let response = client.request(email_event_post(url.clone())).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
    };
    send().await;
    proxy.swap_policy(policy("drop"));
    send().await;
    let recorded = mock.requests();
    assert_eq!(recorded.len(), 2);
    assert!(
        !String::from_utf8_lossy(&recorded[1].body).contains("\"em\""),
        "the new rules apply"
    );
    assert_eq!(
        recorded[0].connection, recorded[1].connection,
        "the same upstream connection after the reload"
    );
}
