//! Time limits over a connection's life (issue 9, attacks 3, 4 and 6):
//! silent connections of every kind are closed at the header timeout, a
//! stalled body is cut at the body timeout, an upload slower than the
//! response timeout still succeeds, and `max_connections` counts the whole
//! process.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::pki::Pki;
use support::process::start;
use support::{Mock, Scrim, email_event_post, send};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);

fn config(upstream: &str, extra: &str) -> String {
    format!(
        "server:
  header_read_timeout: 1s
{extra}routes:
  - name: meta
    match: {{path_prefix: /meta}}
    upstream: {upstream}
    rules:
      - select: $.data[*].user_data.em
        action: hash
        normalize: email
"
    )
}

/// Waits until the peer closes `stream` (end of stream or an error); how
/// long from `since` that took, or `None` past `limit`.
async fn closed_after<S: AsyncRead + Unpin>(
    mut stream: S,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buffer = [0u8; 512];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(since.elapsed()),
            stream.read(&mut buffer),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(n)) if n > 0 => continue,
            Ok(_) => return Some(since.elapsed()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_of_every_kind_are_closed_at_the_header_timeout() {
    support::raise_fd_limit();
    let mock = Mock::start(Duration::ZERO).await;
    let pki = Pki::new("silent");
    let tls = format!(
        "tls: {{cert: {}, key: {}}}\n",
        pki.path("cert.pem"),
        pki.path("key.pem")
    );
    let plain = Scrim::start(&config(&mock.url(), "")).await;
    let secure = Scrim::start(&config(&mock.url(), &tls)).await;
    let limit = HEADER_TIMEOUT + Duration::from_secs(3);

    let opened = Instant::now();
    let mut silent = Vec::new();
    // 1,000 connections that send nothing at all.
    for _ in 0..1000 {
        let stream = TcpStream::connect(plain.server.local_addr()).await.unwrap();
        silent.push(tokio::spawn(closed_after(stream, opened, limit)));
    }
    // Half an HTTP/2 preface.
    for _ in 0..20 {
        let mut stream = TcpStream::connect(plain.server.local_addr()).await.unwrap();
        stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        silent.push(tokio::spawn(closed_after(stream, opened, limit)));
    }
    // TLS, silent after the handshake.
    let connector = pki.connector(&[b"h2", b"http/1.1"]);
    for _ in 0..20 {
        let tcp = TcpStream::connect(secure.server.local_addr())
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        silent.push(tokio::spawn(closed_after(stream, opened, limit)));
    }
    // HTTP/2 connections that open no stream but answer pings.
    let mut idle_h2 = Vec::new();
    for _ in 0..20 {
        let tcp = TcpStream::connect(plain.server.local_addr()).await.unwrap();
        let (sender, connection) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        )
        .await
        .unwrap();
        idle_h2.push((
            sender,
            tokio::spawn(async move {
                let _ = connection.await;
                opened.elapsed()
            }),
        ));
    }

    // Meanwhile, a client is answered at once.
    let asked = Instant::now();
    let (status, _, _) = send(email_event_post(plain.url("/meta/events"))).await;
    assert_eq!(status, 200);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        opened.elapsed() < HEADER_TIMEOUT,
        "the test opened them too slowly"
    );

    let mut latest = Duration::ZERO;
    for (i, task) in silent.into_iter().enumerate() {
        let closed = task
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("connection {i} still open"));
        assert!(
            closed >= HEADER_TIMEOUT - Duration::from_millis(50),
            "{i}: {closed:?}"
        );
        latest = latest.max(closed);
    }
    for (_sender, task) in idle_h2 {
        let closed = tokio::time::timeout(limit, task).await.unwrap().unwrap();
        latest = latest.max(closed);
    }
    eprintln!("the last silent connection closed after {latest:?}");
    assert!(
        latest < HEADER_TIMEOUT + Duration::from_millis(1500),
        "{latest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_at_its_timeout() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url(), "  body_read_timeout: 1s\n")).await;
    let head = b"POST /meta/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    // Stalled after a few bytes, and a trickle of a byte every 200 ms.
    for trickle in [false, true] {
        let mut stream = TcpStream::connect(scrim.server.local_addr()).await.unwrap();
        let started = Instant::now();
        stream.write_all(head).await.unwrap();
        stream.write_all(b"{\"data\":[").await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let trickling = tokio::spawn(async move {
            // The trickle itself: a byte, a deliberate pause, a byte, ...
            while trickle && writer.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // Held open, silent, until the test ends: a closed write half
            // would end the body instead of stalling it.
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let mut response = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut response)).await;
        trickling.abort();
        let took = started.elapsed();
        let text = String::from_utf8_lossy(&response);
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "trickle {trickle}: {text}"
        );
        assert!(
            (Duration::from_millis(900)..Duration::from_secs(3)).contains(&took),
            "trickle {trickle}: {took:?}"
        );
    }
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_slower_than_the_response_timeout_succeeds() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(
        &mock.url(),
        "  body_read_timeout: 20s\ntimeouts:\n  response: 1s\n",
    ))
    .await;
    // 600 KB, so that it streams (past buffer_limit), sent over 2.5 s.
    let event = r#"{"user_data":{"em":"John_Smith@gmail.com"},"event_name":"Purchase"}"#;
    let events = vec![event; 600_000 / event.len()].join(",");
    let body = format!("{{\"data\":[{events}]}}");
    let head = format!(
        "POST /meta/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(scrim.server.local_addr()).await.unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.as_bytes().chunks(body.len() / 10 + 1) {
        stream.write_all(piece).await.unwrap();
        // A deliberate pause: the upload is slow, past the response timeout.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(started.elapsed() > Duration::from_secs(2));
    let received = mock.requests();
    assert_eq!(received.len(), 1);
    let forwarded = String::from_utf8_lossy(&received[0].body);
    assert!(!forwarded.contains("John_Smith"));
    assert_eq!(
        forwarded.matches(support::EMAIL_EVENT_HASHED).count(),
        600_000 / event.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_counts_the_whole_process() {
    let mock = Mock::start(Duration::ZERO).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n{}",
        config(&mock.url(), "  max_connections: 4\n")
            .replace("header_read_timeout: 1s", "header_read_timeout: 2s")
    );
    let scrim = start("max-conn", &yaml);
    // Eight silent connections: the process serves four at a time, whichever
    // worker takes them, and each slot frees at its header timeout (2 s).
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..8 {
        let stream = TcpStream::connect(&scrim.listen).await.unwrap();
        silent.push(tokio::spawn(closed_after(
            stream,
            opened,
            Duration::from_secs(9),
        )));
    }
    let mut closed = Vec::new();
    for task in silent {
        closed.push(
            task.await
                .unwrap()
                .expect("a silent connection was never closed"),
        );
    }
    closed.sort();
    eprintln!("closed after {closed:?}");
    let first_round = closed
        .iter()
        .filter(|at| **at < Duration::from_secs(3))
        .count();
    assert!((1..=4).contains(&first_round), "{closed:?}");
    // And then a client gets in.
    let (status, _, _) = send(email_event_post(format!(
        "http://{}/meta/events",
        scrim.listen
    )))
    .await;
    assert_eq!(status, 200);
}

/// An upstream that reads a request head and then, by `mode`: stops
/// reading and never answers (`"silent"`), answers 401 at once without
/// reading the body (`"early"`), or answers with 8 MiB (`"big"`).
async fn stubborn_upstream(mode: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if support::read_head(&mut stream, &mut Vec::new())
                    .await
                    .is_none()
                {
                    return;
                }
                match mode {
                    "early" => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                    "big" => {
                        let body = vec![b'x'; 8 << 20];
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(&body).await;
                    }
                    _ => {}
                }
                // Deliberately holds the connection open, reading nothing
                // more, for longer than any test here.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(stream);
            });
        }
    });
    format!("http://{addr}")
}

/// Posts `size` bytes of a JSON body (past `buffer_limit`, so it streams)
/// from a task of its own; the raw response, read until the connection
/// closes or 10 s pass.
async fn post_streamed(addr: std::net::SocketAddr, size: usize) -> (String, Duration) {
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(size - 10));
    let head = format!(
        "POST /meta/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(body.as_bytes()).await;
        // Keeps the write half open past the read, deliberately: dropping it
        // would half-close the connection, and what ends the exchange must
        // be scrim's doing.
        tokio::time::sleep(Duration::from_secs(15)).await;
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut response)).await;
    let took = started.elapsed();
    writing.abort();
    (String::from_utf8_lossy(&response).into_owned(), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stops_reading_times_out_and_an_early_answer_stands() {
    let extra = "limits:\n  max_body_bytes: 67108864\ntimeouts:\n  response: 1s\n";
    let silent = Scrim::start(&config(&stubborn_upstream("silent").await, extra)).await;
    let (response, took) = post_streamed(silent.server.local_addr(), 32 << 20).await;
    assert!(response.starts_with("HTTP/1.1 504"), "{response:.200}");
    assert!(took < Duration::from_secs(8), "{took:?}");

    let early = Scrim::start(&config(&stubborn_upstream("early").await, extra)).await;
    let (response, took) = post_streamed(early.server.local_addr(), 32 << 20).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response:.200}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_no_response_is_disconnected() {
    let scrim = Scrim::start(&config(
        &stubborn_upstream("big").await,
        "  write_timeout: 1s\n",
    ))
    .await;
    let mut stream = TcpStream::connect(scrim.server.local_addr()).await.unwrap();
    stream
        .write_all(b"GET /meta/big HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Reads nothing for a while, deliberately: long enough for the socket
    // buffers to fill and the 1 s write timeout to pass. Then all there is.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut received = 0usize;
    let mut buffer = vec![0u8; 1 << 16];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received += n,
            Err(_) => break false,
        }
    };
    assert!(closed, "the connection stayed open");
    assert!(received < 8 << 20, "the whole response arrived: {received}");
}
