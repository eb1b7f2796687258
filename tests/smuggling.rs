//! Request smuggling (issue 9, attack 2): every way of sending a request
//! with both `Transfer-Encoding` and `Content-Length` that hyper would read
//! gets 400, and nothing of it reaches the upstream.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{Mock, Scrim};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(upstream: &str) -> String {
    format!(
        "routes:
  - name: crm
    match: {{path_prefix: /crm}}
    upstream: {upstream}
    rules:
      - select: $.email
        action: hash
        normalize: email
"
    )
}

/// Writes each piece after its pause, then reads until the connection
/// closes (or stays quiet for 2 s); the status of every response read.
async fn exchange(addr: SocketAddr, pieces: &[(Duration, &[u8])]) -> Vec<u16> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for (pause, piece) in pieces {
        // A deliberate pause: scrim reads what came before on its own (a
        // head without its body, say) before this piece arrives.
        tokio::time::sleep(*pause).await;
        // scrim may answer and close before everything is sent.
        if stream.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await
    {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

/// A name, what is sent (each piece after its pause), the statuses expected.
type Case = (&'static str, Vec<(Duration, &'static [u8])>, Vec<u16>);

const NOW: Duration = Duration::ZERO;
const LATER: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transfer_encoding_with_content_length_is_refused() {
    let mock = Mock::start(Duration::ZERO).await;
    let scrim = Scrim::start(&config(&mock.url())).await;
    let addr = scrim.server.local_addr();
    let chunked_body: &'static [u8] = b"7\r\n{\"a\":1}\r\n0\r\n\r\n";
    let cases: Vec<Case> = vec![
        (
            "bare LF head, body later (the issue's reproduction)",
            vec![
                (NOW, b"POST /crm/smuggled HTTP/1.1\nHost: a\nContent-Type: application/json\nContent-Length: 4\nTransfer-Encoding: chunked\n\n"),
                (LATER, chunked_body),
            ],
            vec![400],
        ),
        (
            "CRLF head, body later",
            vec![
                (NOW, b"POST /crm/smuggled HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"),
                (LATER, chunked_body),
            ],
            vec![400],
        ),
        (
            "head in pieces with bare LF",
            vec![
                (NOW, b"POST /crm/smuggled HTTP/1.1\nHost: a\nContent-"),
                (LATER, b"Length: 4\nTransfer-Encoding: chu"),
                (LATER, b"nked\nContent-Type: application/json\n\n"),
                (NOW, chunked_body),
            ],
            vec![400],
        ),
        (
            "after a request with Transfer-Encoding: identity, chunked",
            vec![
                (NOW, b"POST /crm/first HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nTransfer-Encoding: identity, chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n"),
                (LATER, b"POST /crm/smuggled HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"),
                (NOW, chunked_body),
            ],
            vec![200, 400],
        ),
        (
            "after a request with Transfer-Encoding: gzip, chunked, bare LF",
            vec![
                (NOW, b"POST /crm/first HTTP/1.1\nHost: a\nContent-Type: application/json\nTransfer-Encoding: gzip, chunked\n\n7\r\n{\"a\":1}\r\n0\r\n\r\n"),
                (LATER, b"POST /crm/smuggled HTTP/1.1\nHost: a\nContent-Type: application/json\nTransfer-Encoding: chunked\nContent-Length: 4\n\n"),
                (LATER, chunked_body),
            ],
            vec![200, 400],
        ),
        (
            "pipelined behind a plain request",
            vec![(
                NOW,
                b"POST /crm/first HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}\
POST /crm/smuggled HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\n\
POST /crm/smuggled HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
            )],
            vec![200, 400],
        ),
    ];
    for (name, pieces, expected) in &cases {
        let statuses = exchange(addr, pieces).await;
        assert_eq!(&statuses, expected, "{name}");
    }
    // The three firsts are in (each was answered); a negative check: time
    // for a smuggled request to reach the upstream, were it forwarded.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reached: Vec<String> = mock.requests().into_iter().map(|r| r.uri).collect();
    assert!(
        reached.iter().all(|uri| uri == "/crm/first"),
        "reached the upstream: {reached:?}"
    );
    assert_eq!(reached.len(), 3, "{reached:?}");
}
