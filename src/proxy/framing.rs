//! Request smuggling works by making two HTTP parsers disagree on where a
//! request ends. hyper refuses conflicting `Content-Length`s, malformed
//! chunks and a `Transfer-Encoding` other than `chunked`; a request with both
//! `Transfer-Encoding` and `Content-Length` it processes by the first alone,
//! as RFC 9112 6.1 allows, and it drops the `Content-Length` before the
//! service could see it. A proxy should refuse such a request outright, so
//! this wrapper watches the bytes of each HTTP/1 request head as hyper reads
//! them and marks the requests that carry both.
//!
//! It follows request boundaries with `httparse` (heads and chunk sizes) and
//! `Content-Length`; on anything it cannot follow it stops watching, leaving
//! the connection to hyper, which refuses malformed input itself.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which requests of a connection (counted from 0) had ambiguous framing.
#[derive(Clone, Default)]
pub(crate) struct Verdicts(Arc<Mutex<Vec<u64>>>);

impl Verdicts {
    pub(crate) fn is_ambiguous(&self, request: u64) -> bool {
        self.0
            .lock()
            .map(|list| list.contains(&request))
            .unwrap_or(true)
    }

    fn mark(&self, request: u64) {
        if let Ok(mut list) = self.0.lock() {
            list.push(request);
        }
    }
}

enum State {
    /// Collecting a request head.
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Fixed(u64),
    /// Collecting a chunk-size line.
    ChunkSize(Vec<u8>),
    /// Skipping chunk data and its CRLF.
    ChunkData(u64),
    /// Skipping trailers up to the empty line.
    Trailers(Vec<u8>),
    /// Not following any more (HTTP/2, or input hyper will refuse).
    Off,
}

/// The largest head or chunk line followed; past it, hyper refuses anyway.
const MAX_LINE: usize = 128 * 1024;

pub(crate) struct FramingWatch<T> {
    inner: T,
    state: State,
    /// A head buffer kept from request to request, for heads that arrive
    /// in pieces.
    spare: Vec<u8>,
    request: u64,
    verdicts: Verdicts,
}

impl<T> FramingWatch<T> {
    pub(crate) fn new(inner: T, verdicts: Verdicts) -> Self {
        FramingWatch {
            inner,
            state: State::Head(Vec::new()),
            spare: Vec::new(),
            request: 0,
            verdicts,
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Off);
            self.state = match state {
                State::Off => return,
                State::Fixed(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    if take == left {
                        self.next_request()
                    } else {
                        State::Fixed(left - take)
                    }
                }
                State::ChunkData(left) => {
                    let take = left.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    if take == left {
                        State::ChunkSize(Vec::new())
                    } else {
                        State::ChunkData(left - take)
                    }
                }
                State::Head(mut buffer) => {
                    // A head that arrives whole (nearly always) is read in
                    // place, without a copy.
                    let whole = buffer
                        .is_empty()
                        .then(|| {
                            memchr::memmem::find(&bytes[..bytes.len().min(MAX_LINE)], b"\r\n\r\n")
                        })
                        .flatten();
                    if let Some(at) = whole {
                        let (head, rest) = bytes.split_at(at + 4);
                        bytes = rest;
                        self.spare = buffer;
                        self.head(head)
                    } else {
                        let (line_done, used) = collect(&mut buffer, bytes, b"\r\n\r\n");
                        bytes = &bytes[used..];
                        match line_done {
                            Some(true) => {
                                let next = self.head(&buffer);
                                buffer.clear();
                                self.spare = buffer;
                                next
                            }
                            Some(false) => State::Head(buffer),
                            None => State::Off,
                        }
                    }
                }
                State::ChunkSize(mut buffer) => {
                    let (line_done, used) = collect(&mut buffer, bytes, b"\r\n");
                    bytes = &bytes[used..];
                    match line_done {
                        Some(true) => match httparse::parse_chunk_size(&buffer) {
                            Ok(httparse::Status::Complete((_, 0))) => State::Trailers(Vec::new()),
                            Ok(httparse::Status::Complete((_, size))) => {
                                State::ChunkData(size.saturating_add(2))
                            }
                            _ => State::Off,
                        },
                        Some(false) => State::ChunkSize(buffer),
                        None => State::Off,
                    }
                }
                State::Trailers(mut buffer) => {
                    // Either an empty line right away, or trailer fields
                    // ending in one.
                    let (line_done, used) = collect(&mut buffer, bytes, b"\r\n");
                    bytes = &bytes[used..];
                    match line_done {
                        Some(true) if buffer == b"\r\n" => self.next_request(),
                        Some(true) => State::Trailers(Vec::new()),
                        Some(false) => State::Trailers(buffer),
                        None => State::Off,
                    }
                }
            };
        }
    }

    fn next_request(&mut self) -> State {
        self.request += 1;
        State::Head(std::mem::take(&mut self.spare))
    }

    /// A complete head: note its framing, and follow its body.
    fn head(&mut self, head: &[u8]) -> State {
        if head.starts_with(b"PRI * HTTP/2.0") {
            return State::Off;
        }
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut fields);
        if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
            return State::Off;
        }
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut transfer_encoding = false;
        for field in request.headers.iter() {
            if field.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
                chunked = field.value.eq_ignore_ascii_case(b"chunked");
            } else if field.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(field.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
                if length.is_none() {
                    return State::Off;
                }
            }
        }
        if transfer_encoding && length.is_some() {
            self.verdicts.mark(self.request);
            // hyper closes the connection after answering this request.
            return State::Off;
        }
        match (chunked, transfer_encoding, length) {
            (true, _, _) => State::ChunkSize(Vec::new()),
            (false, true, _) => State::Off,
            (false, false, Some(0) | None) => self.next_request(),
            (false, false, Some(length)) => State::Fixed(length),
        }
    }
}

/// Appends `bytes` to `buffer` up to and including `end`. Returns whether
/// `end` was found (`None` past `MAX_LINE`) and how many bytes were used.
fn collect(buffer: &mut Vec<u8>, bytes: &[u8], end: &[u8]) -> (Option<bool>, usize) {
    // `end` may straddle the previous read: search from its possible start.
    let overlap = buffer.len().min(end.len() - 1);
    let start = buffer.len() - overlap;
    let searched = buffer.len();
    let limit = bytes.len().min(MAX_LINE + 1 - searched.min(MAX_LINE));
    buffer.extend_from_slice(&bytes[..limit]);
    match memchr::memmem::find(&buffer[start..], end) {
        Some(at) => {
            let end_at = start + at + end.len();
            buffer.truncate(end_at);
            (Some(true), end_at - searched)
        }
        None if buffer.len() > MAX_LINE => (None, limit),
        None => (Some(false), limit),
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FramingWatch<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.observe(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FramingWatch<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(stream: &[u8], piece: usize) -> Vec<u64> {
        let verdicts = Verdicts::default();
        let mut watch = FramingWatch::new((), verdicts.clone());
        for chunk in stream.chunks(piece) {
            watch.observe(chunk);
        }

        verdicts
            .0
            .lock()
            .map(|list| list.clone())
            .unwrap_or_default()
    }

    #[test]
    fn marks_the_request_with_both_framings_after_others() {
        let stream = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nhost: x\r\n\r\n\
POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n\
POST /d HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        for piece in [1, 3, 7, stream.len()] {
            assert_eq!(verdicts(stream, piece), vec![3], "piece {piece}");
        }
    }

    #[test]
    fn plain_requests_are_not_marked() {
        let stream = b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n";
        assert!(verdicts(stream, 2).is_empty());
    }
}
