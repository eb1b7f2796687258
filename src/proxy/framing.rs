//! Request smuggling works by making two HTTP parsers disagree on where a
//! request ends. hyper refuses conflicting `Content-Length`s, malformed
//! chunks and a `Transfer-Encoding` whose last coding is not `chunked`; a
//! request with both `Transfer-Encoding` and `Content-Length` it reads by the
//! first alone, as RFC 9112 6.1 allows, and it drops the `Content-Length`
//! before the service could see it. A proxy should refuse such a request
//! outright, so this wrapper watches the bytes of each HTTP/1 connection as
//! hyper reads them and marks the requests that carry both.
//!
//! The watch follows the connection exactly as hyper does, so that it
//! cannot be led to a different request boundary:
//!
//! - heads are parsed with `httparse` under hyper's own settings (its
//!   default `ParserConfig`: bare LF line ends, leading empty lines), as many
//!   times as hyper would, from the same offset;
//! - the framing headers are read as hyper's `role.rs` reads them (the last
//!   coding of each `Transfer-Encoding` line, `Content-Length` as digits);
//! - chunked bodies are followed by a copy of hyper's chunk state machine
//!   (`proto/h1/decode.rs`), byte for byte, strict CRLF included.
//!
//! When the watch cannot follow (input hyper refuses too, or anything it
//! did not foresee), it never lets go silently: every request from that one
//! on is refused and the connection closed after the refusal.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the service asks of the watch: whether request `n` of the
/// connection (counted from 0) is to be refused; and what it tells it: that
/// the connection became a tunnel (a `CONNECT` answered 2xx), whose bytes
/// are no more HTTP.
#[derive(Clone)]
pub(crate) struct Verdicts(Arc<(AtomicU64, AtomicBool)>);

const NONE_REFUSED: u64 = u64::MAX;

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts(Arc::new((
            AtomicU64::new(NONE_REFUSED),
            AtomicBool::new(false),
        )))
    }
}

impl Verdicts {
    pub(crate) fn is_refused(&self, request: u64) -> bool {
        request >= self.0.0.load(Ordering::Acquire)
    }

    /// Refuses request `from` and every later one.
    fn refuse_from(&self, from: u64) {
        self.0.0.fetch_min(from, Ordering::AcqRel);
    }

    /// The connection is a tunnel from now on: nothing more to watch.
    pub(crate) fn tunnelled(&self) {
        self.0.1.store(true, Ordering::Release);
    }

    fn is_tunnelled(&self) -> bool {
        self.0.1.load(Ordering::Acquire)
    }
}

/// hyper-util's auto builder serves HTTP/2 when a connection opens with
/// exactly this.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Header fields parsed per head: more than hyper's 100, so that the watch
/// follows every head hyper does (hyper refuses the others itself).
const MAX_FIELDS: usize = 128;

/// The head buffer capacity kept between requests.
const SPARE_KEPT: usize = 8 * 1024;

/// The states of hyper's chunked decoder, with the same names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunked {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

enum State {
    /// Collecting a request head (empty while none has begun).
    Head(Vec<u8>),
    /// Skipping this many body bytes.
    Fixed(u64),
    /// In the framing of a chunked body.
    Chunked { state: Chunked, size: u64 },
    /// Skipping chunk data (the CRLF after it is `BodyCr`).
    ChunkData(u64),
    /// An HTTP/2 connection: frames carry their lengths, nothing to watch.
    Http2,
    /// Lost: every request from the current one is refused.
    Lost,
}

pub(crate) struct FramingWatch<T> {
    inner: T,
    state: State,
    /// Heads larger than this are not followed (hyper refuses them, its
    /// read buffer being no larger).
    max_head: usize,
    /// A head buffer kept from request to request, for heads that arrive in
    /// pieces.
    spare: Vec<u8>,
    /// The request being read, counted from 0.
    request: u64,
    verdicts: Verdicts,
    /// The request target of each head followed, when fuzzing.
    #[cfg(any(test, feature = "fuzzing"))]
    targets: Option<Vec<Vec<u8>>>,
}

impl<T> FramingWatch<T> {
    pub(crate) fn new(inner: T, verdicts: Verdicts, max_head: usize) -> Self {
        FramingWatch {
            inner,
            state: State::Head(Vec::new()),
            max_head,
            spare: Vec::new(),
            request: 0,
            verdicts,
            #[cfg(any(test, feature = "fuzzing"))]
            targets: None,
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) {
        if self.verdicts.is_tunnelled() {
            return;
        }
        while !bytes.is_empty() {
            let state = std::mem::replace(&mut self.state, State::Lost);
            self.state = match state {
                State::Lost | State::Http2 => {
                    self.state = state;
                    return;
                }
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
                        State::Chunked {
                            state: Chunked::BodyCr,
                            size: 0,
                        }
                    } else {
                        State::ChunkData(left - take)
                    }
                }
                State::Chunked { state, size } => {
                    let (next, used) = self.chunked(state, size, bytes);
                    bytes = &bytes[used..];
                    next
                }
                State::Head(buffer) => {
                    let (next, used) = self.head(buffer, bytes);
                    bytes = &bytes[used..];
                    next
                }
            };
        }
    }

    /// Takes head bytes. hyper parses its whole buffer again on each read
    /// until the head is complete; this parses when a line has ended, the
    /// complete lines only, so that the outcome does not depend on how the
    /// bytes were cut into reads (an error in a line is found once the line
    /// is whole; a head is never complete before its last line is).
    fn head(&mut self, mut buffer: Vec<u8>, bytes: &[u8]) -> (State, usize) {
        // Only the first head can be the HTTP/2 preface.
        let first = self.request == 0;
        if buffer.is_empty() {
            // A head that arrives whole (nearly always) is read in place.
            // Only as far as a head may go: pipelined requests behind it
            // are not scanned once per head.
            let reach = &bytes[..bytes.len().min(self.max_head)];
            if let Some(last_line_end) = memchr::memrchr(b'\n', reach) {
                match self.parse(&bytes[..=last_line_end], first) {
                    Parsed::Complete(state, used) => return (state, used),
                    Parsed::Lost => return (self.lose(), bytes.len()),
                    Parsed::Partial => {}
                }
            }
        }
        let room = self.max_head.saturating_sub(buffer.len());
        let take = bytes.len().min(room.max(1));
        let before = buffer.len();
        buffer.extend_from_slice(&bytes[..take]);
        if let Some(last_line_end) = memchr::memrchr(b'\n', &buffer[before..]) {
            match self.parse(&buffer[..=before + last_line_end], first) {
                Parsed::Complete(state, head_len) => {
                    buffer.clear();
                    self.spare = buffer;
                    // Only this read's bytes up to the head's end are used.
                    return (state, head_len - before);
                }
                Parsed::Lost => return (self.lose(), take),
                Parsed::Partial => {}
            }
        }
        if buffer.len() >= self.max_head {
            return (self.lose(), take);
        }
        (State::Head(buffer), take)
    }

    /// Parses a head as hyper does; the state its body puts the watch in.
    fn parse(&mut self, head: &[u8], first: bool) -> Parsed {
        if first {
            if head.starts_with(H2_PREFACE) {
                return Parsed::Complete(State::Http2, head.len());
            }
            if H2_PREFACE.starts_with(head) {
                return Parsed::Partial;
            }
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut fields);
        let head_len = match request.parse(head) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Lost,
        };
        if head_len > self.max_head {
            return Parsed::Lost;
        }
        #[cfg(any(test, feature = "fuzzing"))]
        if let (Some(targets), Some(path)) = (&mut self.targets, request.path) {
            targets.push(path.as_bytes().to_vec());
        }
        let http11 = request.version == Some(1);
        // As in hyper's `role.rs`: a later `Transfer-Encoding` line decides
        // whether the body is chunked; a `Content-Length` after one is
        // ignored, one before it dropped.
        let (mut te, mut chunked, mut cl, mut length) = (false, false, false, None::<u64>);
        for field in request.headers.iter() {
            if field.name.eq_ignore_ascii_case("transfer-encoding") {
                if !http11 {
                    return Parsed::Lost;
                }
                te = true;
                chunked = last_coding_is_chunked(field.value);
            } else if field.name.eq_ignore_ascii_case("content-length") {
                cl = true;
                if te {
                    continue;
                }
                match (digits(field.value), length) {
                    (None, _) => return Parsed::Lost,
                    (Some(value), Some(before)) if value != before => return Parsed::Lost,
                    (Some(value), _) => length = Some(value),
                }
            }
        }
        if te && cl {
            // hyper reads it as chunked and closes the connection after
            // the answer; the service refuses it.
            self.verdicts.refuse_from(self.request);
            return Parsed::Complete(State::Lost, head_len);
        }
        let state = match (te, chunked, length) {
            (true, false, _) => return Parsed::Lost,
            (true, true, _) => State::Chunked {
                state: Chunked::Start,
                size: 0,
            },
            (false, _, Some(length)) if length > 0 => State::Fixed(length),
            (false, _, _) => self.next_request(),
        };
        Parsed::Complete(state, head_len)
    }

    /// Follows chunk framing as hyper's decoder does; returns the next state
    /// and the bytes used.
    fn chunked(&mut self, mut state: Chunked, mut size: u64, bytes: &[u8]) -> (State, usize) {
        use Chunked::*;
        for (at, &byte) in bytes.iter().enumerate() {
            let hex = match byte {
                b'0'..=b'9' => Some(byte - b'0'),
                b'a'..=b'f' => Some(byte - b'a' + 10),
                b'A'..=b'F' => Some(byte - b'A' + 10),
                _ => None,
            };
            state = match (state, byte) {
                (Start | Size, _) if hex.is_some() => {
                    match size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(hex.unwrap_or(0))))
                    {
                        Some(grown) => size = grown,
                        None => return (self.lose(), at + 1),
                    }
                    Size
                }
                (Size | SizeLws, b'\t' | b' ') => SizeLws,
                (Size | SizeLws, b';') => Extension,
                (Size | SizeLws | Extension, b'\r') => SizeLf,
                (Extension, b'\n') => return (self.lose(), at + 1),
                (Extension, _) => Extension,
                (SizeLf, b'\n') if size == 0 => EndCr,
                (SizeLf, b'\n') => return (State::ChunkData(size), at + 1),
                (BodyCr, b'\r') => BodyLf,
                (BodyLf, b'\n') => {
                    size = 0;
                    Start
                }
                (Trailer, b'\r') => TrailerLf,
                (Trailer, _) => Trailer,
                (TrailerLf, b'\n') => EndCr,
                (EndCr, b'\r') => EndLf,
                (EndCr, _) => Trailer,
                (EndLf, b'\n') => return (self.next_request(), at + 1),
                _ => return (self.lose(), at + 1),
            };
        }
        (State::Chunked { state, size }, bytes.len())
    }

    fn next_request(&mut self) -> State {
        self.request += 1;
        let mut spare = std::mem::take(&mut self.spare);
        // A large head once does not keep its buffer for the connection's
        // life.
        if spare.capacity() > SPARE_KEPT {
            spare = Vec::new();
        }
        State::Head(spare)
    }

    /// Gives up following: this request and every later one are refused.
    fn lose(&mut self) -> State {
        self.verdicts.refuse_from(self.request);
        State::Lost
    }
}

enum Parsed {
    /// A whole head: the state for its body, and its length.
    Complete(State, usize),
    Partial,
    Lost,
}

/// hyper's `is_chunked_`: the value is visible ASCII and its last coding
/// is `chunked`.
fn last_coding_is_chunked(value: &[u8]) -> bool {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b));
    visible
        && value
            .rsplit(|&b| b == b',')
            .next()
            .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// hyper's `from_digits`: ASCII digits only, no sign, no overflow.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
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

/// What the watch made of a byte stream: the request target of each head
/// it followed, and the first request it refused.
#[cfg(any(test, feature = "fuzzing"))]
pub struct Followed {
    pub targets: Vec<Vec<u8>>,
    pub refused_from: Option<u64>,
}

/// Runs the watch over `stream` without a connection, fed in `pieces`.
#[cfg(any(test, feature = "fuzzing"))]
pub fn follow(stream: &[u8], pieces: impl IntoIterator<Item = usize>) -> Followed {
    let verdicts = Verdicts::default();
    let mut watch = FramingWatch::new((), verdicts.clone(), 64 * 1024);
    watch.targets = Some(Vec::new());
    let mut rest = stream;
    for piece in pieces {
        let (now, later) = rest.split_at(piece.min(rest.len()));
        watch.observe(now);
        rest = later;
    }
    watch.observe(rest);
    let from = verdicts.0.0.load(Ordering::Acquire);
    Followed {
        targets: watch.targets.unwrap_or_default(),
        refused_from: (from != NONE_REFUSED).then_some(from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(stream: &[u8], piece: usize) -> Option<u64> {
        follow(stream, std::iter::repeat_n(piece, stream.len() / piece + 1)).refused_from
    }

    #[test]
    fn marks_the_request_with_both_framings_after_others() {
        let stream = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nhost: x\r\n\r\n\
POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-t: 1\r\n\r\n\
POST /d HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        for piece in [1, 3, 7, stream.len()] {
            assert_eq!(refused(stream, piece), Some(3), "piece {piece}");
        }
        let targets = follow(stream, [stream.len()]).targets;
        assert_eq!(targets, [b"/a", b"/b", b"/c", b"/d"]);
    }

    #[test]
    fn bare_line_feeds_and_coding_lists_are_followed() {
        let stream = b"POST /a HTTP/1.1\nhost: x\ntransfer-encoding: identity, chunked\n\n3\r\nabc\r\n0\r\n\r\n\
\r\nPOST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n\
POST /c HTTP/1.1\nhost: x\ncontent-length: 4\ntransfer-encoding: chunked\n\n";
        for piece in [1, 2, 5, stream.len()] {
            assert_eq!(refused(stream, piece), Some(2), "piece {piece}");
        }
    }

    #[test]
    fn plain_requests_and_http2_are_not_refused() {
        let stream = b"GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n";
        assert_eq!(refused(stream, 2), None);
        let h2 = [H2_PREFACE, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"].concat();
        assert_eq!(refused(&h2, 1), None);
    }

    /// Found by the fuzz target: a head refused whole but not in pieces.
    #[test]
    fn verdicts_do_not_depend_on_the_cut() {
        let cases: [&[u8]; 3] = [
            b"PRI * HT-P/2.0 H\0\0\0\0",
            b"GET / HTTP/1.1\r\nbad\0header",
            b"GET / HTTP/1.1\r\nbad\0header\r\n\r\n",
        ];
        for case in cases {
            let whole = refused(case, case.len());
            for piece in 1..case.len() {
                assert_eq!(refused(case, piece), whole, "{case:?} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn what_hyper_refuses_is_not_followed_further() {
        let cases: [&[u8]; 5] = [
            // Bad chunk size, bare LF in chunk framing, TE not ending in
            // chunked, TE on HTTP/1.0, two lengths.
            b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            b"POST /a HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
        ];
        for (i, case) in cases.iter().enumerate() {
            assert_eq!(refused(case, case.len()), Some(0), "case {i}");
        }
        let later = b"GET / HTTP/1.1\r\n\r\nPOST /a HTTP/1.1\r\ncontent-length: x\r\n\r\n";
        assert_eq!(refused(later, 3), Some(1));
    }
}
