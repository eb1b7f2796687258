//! Differential fuzzing of the framing watch against hyper itself.
//!
//! The input is a byte stream as a client might send it on one HTTP/1
//! connection (its first byte picks how it is cut into reads). hyper's
//! HTTP/1 server reads it over an in-memory pipe and records the target of
//! every request it hands to the service; the watch reads the same bytes.
//! Checked: for every request hyper dispatched before the first one the
//! watch refuses, the watch found the same head at the same place (so the
//! Transfer-Encoding/Content-Length decision is made on the head hyper
//! read); and the watch's verdicts do not depend on how the stream is cut.
#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use scrim::proxy::fuzzing::follow_framing;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
}

/// The request targets hyper dispatched, in order.
fn hyper_targets(stream: &[u8], piece: usize) -> Vec<Vec<u8>> {
    let seen: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let record = seen.clone();
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let (mut client, server) = tokio::io::duplex(1 << 16);
            let service = service_fn(move |request: Request<Incoming>| {
                record
                    .borrow_mut()
                    .push(request.uri().to_string().into_bytes());
                async move {
                    // Read the body, so that hyper follows its framing.
                    let _ = request.into_body().collect().await;
                    Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
                }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(server), service);
            let talk = async move {
                for part in stream.chunks(piece) {
                    if client.write_all(part).await.is_err() {
                        break;
                    }
                }
                let _ = client.shutdown().await;
                let mut sink = Vec::new();
                let _ = client.read_to_end(&mut sink).await;
            };
            let _ = tokio::join!(connection, talk);
        })
    });
    seen.take()
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(cut % 16) + 1;
    let whole = follow_framing(stream, []);
    let cut_up = follow_framing(stream, std::iter::repeat_n(piece, stream.len() / piece + 1));
    assert_eq!(whole.refused_from, cut_up.refused_from, "verdicts depend on the cut");
    assert_eq!(whole.targets, cut_up.targets, "heads depend on the cut");

    let dispatched = hyper_targets(stream, piece);
    let refused_from = whole.refused_from.unwrap_or(u64::MAX);
    for (index, target) in dispatched.iter().enumerate() {
        if index as u64 >= refused_from {
            break;
        }
        // hyper hands out the target as a `Uri`, which drops a fragment:
        // compare the watch's through the same parse.
        let watched = whole
            .targets
            .get(index)
            .and_then(|raw| hyper::Uri::try_from(raw.as_slice()).ok())
            .map(|uri| uri.to_string().into_bytes());
        assert_eq!(
            watched.as_ref(),
            Some(target),
            "request {index}: hyper read {:?}, the watch {:?}",
            String::from_utf8_lossy(target),
            whole.targets.get(index).map(|t| String::from_utf8_lossy(t)),
        );
    }
});
