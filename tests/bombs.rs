//! Compressed bodies that inflate far past the limits (issue 9, attack 1),
//! against `scrim run` as a process: each costs bounded memory, and while
//! four inflate at once, a small request is still answered at once.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::process::start;
use support::{Mock, PATIENCE, email_event_post, eventually, send};

const GIB: usize = 1 << 30;
const MIB: usize = 1 << 20;

/// 1 GiB of spaces (a valid JSON prefix) as brotli, 843 bytes: made once
/// with the brotli crate, quality 11, window 24 (see tests/data/bombs).
const BROTLI_BOMB: &[u8] = include_bytes!("data/bombs/spaces-1gib.json.br");

/// `total` spaces as one zlib stream, built without compressing all of
/// them: blocks of 1 MiB, each ended by a full flush (which resets the
/// dictionary, so that every block after the first is the same bytes), an
/// empty final block, and the Adler-32 of the whole, in closed form.
fn zlib_bomb(total: usize) -> Vec<u8> {
    let block = vec![b' '; MIB];
    let mut compress = flate2::Compress::new(flate2::Compression::best(), true);
    let mut deflate = |out: &mut Vec<u8>| {
        out.reserve(64 * 1024);
        compress
            .compress_vec(&block, out, flate2::FlushCompress::Full)
            .unwrap();
    };
    let mut first = Vec::new();
    deflate(&mut first);
    let mut repeated = Vec::new();
    deflate(&mut repeated);
    let mut stream = first;
    for _ in 1..total / MIB {
        stream.extend_from_slice(&repeated);
    }
    // A final fixed-Huffman block holding only its end: the bits 1, 01, 0000000.
    stream.extend_from_slice(&[0x03, 0x00]);
    let (n, c, m) = (total as u64, u64::from(b' '), 65521u64);
    let a = (1 + n * c) % m;
    let b = (n + c * (n * (n + 1) / 2 % m)) % m;
    stream.extend_from_slice(&((b << 16 | a) as u32).to_be_bytes());
    stream
}

/// `total` spaces as gzip members of 1 MiB each (RFC 1952 allows any number
/// of members; the decoder takes them as one body).
fn gzip_bomb(total: usize) -> Vec<u8> {
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    member.write_all(&vec![b' '; MIB]).unwrap();
    member.finish().unwrap().repeat(total / MIB)
}

#[test]
fn the_built_bombs_are_what_they_say() {
    let mut decoded = Vec::new();
    flate2::read::ZlibDecoder::new(&zlib_bomb(8 * MIB)[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, vec![b' '; 8 * MIB]);
    decoded.clear();
    flate2::read::MultiGzDecoder::new(&gzip_bomb(8 * MIB)[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, vec![b' '; 8 * MIB]);
    // Its first 16 MiB decode to spaces, and it goes on.
    let mut brotli = brotli::Decompressor::new(BROTLI_BOMB, 4096).take(16 * MIB as u64);
    decoded.clear();
    brotli.read_to_end(&mut decoded).unwrap();
    assert_eq!(decoded, vec![b' '; 16 * MIB]);
    assert!(zlib_bomb(GIB).len() < 2 * MIB && gzip_bomb(GIB).len() < 2 * MIB);
}

/// An upstream that takes every byte and never answers: the bombs' bodies
/// stream into it until scrim cuts them off. Its URL, and how many
/// connections it has taken so far.
fn sink() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let count = taken.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (format!("http://{addr}"), taken)
}

fn config(sink: &str, mock: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
routes:
  - name: bombs
    match: {{path_prefix: /bombs}}
    upstream: {sink}
    rules:
      - select: $.data[*].user_data.em
        action: hash
  - name: meta
    match: {{path_prefix: /meta}}
    upstream: {mock}
    rules:
      - select: $.data[*].user_data.em
        action: hash
        normalize: email
"
    )
}

fn bomb_post(url: &str, encoding: &str, body: &Bytes) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("content-encoding", encoding)
        .body(Full::new(body.clone()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_bombs_cost_bounded_memory_and_do_not_stall_others() {
    let mock = Mock::start(Duration::ZERO).await;
    let (sink, sunk) = sink();
    let scrim = start("bombs", &config(&sink, &mock.url()));
    let url = format!("http://{}/bombs/events", scrim.listen);
    eprintln!("at start: peak RSS {} KiB", scrim.peak_rss() / 1024);
    let bombs = [
        ("br", Bytes::from_static(BROTLI_BOMB)),
        ("gzip", Bytes::from(gzip_bomb(GIB))),
        ("deflate", Bytes::from(zlib_bomb(GIB))),
    ];
    for (encoding, body) in &bombs {
        let started = Instant::now();
        let (status, _, reply) = send(bomb_post(&url, encoding, body)).await;
        assert_eq!(status, 413, "{encoding}: {reply:?}");
        let peak = scrim.peak_rss();
        eprintln!(
            "{encoding}: {} bytes, 413 after {:?}, peak RSS {} KiB",
            body.len(),
            started.elapsed(),
            peak / 1024
        );
        assert!(peak < 64 * MIB as u64, "{encoding}: peak RSS {peak}");
    }

    // Four at once (both worker threads busy), and a small request among
    // them: the best of three tries is answered within 100 ms.
    let meta = format!("http://{}/meta/events", scrim.listen);
    let (status, _, _) = send(email_event_post(meta.clone())).await;
    assert_eq!(status, 200);
    let mut quickest = Duration::MAX;
    for _ in 0..3 {
        let connections = sunk.load(Ordering::SeqCst);
        let inflating: Vec<_> = (0..4)
            .map(|i| {
                let (encoding, body) = bombs[i % bombs.len()].clone();
                let request = bomb_post(&url, encoding, &body);
                tokio::spawn(send(request))
            })
            .collect();
        // The small request goes once all four are inflating: each streams
        // into a connection of its own to the sink.
        eventually("the four bombs stream to the sink", PATIENCE, || {
            sunk.load(Ordering::SeqCst) >= connections + 4
        })
        .await;
        let started = Instant::now();
        let (status, _, _) = send(email_event_post(meta.clone())).await;
        let took = started.elapsed();
        assert_eq!(status, 200);
        quickest = quickest.min(took);
        let mut finished = 0;
        for bomb in inflating {
            let (status, _, _) = bomb.await.unwrap();
            assert_eq!(status, 413);
            finished += 1;
        }
        assert_eq!(finished, 4);
        eprintln!("small request during four bombs: {took:?}");
    }
    assert!(quickest < Duration::from_millis(100), "{quickest:?}");
    assert!(scrim.peak_rss() < 64 * MIB as u64 * 2);
}
