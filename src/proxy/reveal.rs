//! Responses on their way back to the app, through a route's
//! `response_rules`: the tokens in them (the route's own vault tokens, and
//! texts its `encrypt` rules made) replaced by their values, so that the
//! business's own systems see what they sent, and only they.
//!
//! A JSON, NDJSON or form body is decoded (`Content-Encoding`; the app
//! gets it without), rewritten up to `buffer_limit` whole and sent with a
//! `Content-Length`, past it streamed, in bounded memory, like a request.
//! Any other response passes as it came: another media type, an encoding
//! scrim does not read, a `HEAD`, a status without a body (1xx, 204, 304)
//! or a part (206). So does a body that turns out not to be the document
//! its type says (an error page labelled JSON): it can only hold tokens,
//! never what they stand for. The work runs as a task of its own, so that
//! a streamed body keeps being rewritten after the head has gone; it stops
//! when the app goes, or when the upstream sends nothing for the response
//! timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use tokio::sync::oneshot;

use super::decode::Decoder;
use super::error::ProxyError;
use super::passes::Passes;
use super::{BoxError, ResponseBody};
use crate::policy::Route;
use crate::rewrite::{BodyKind, BodyRewriter, Lookups, Report};
use crate::vault::Vault;

/// Frames buffered between the rewriting task and the client connection
/// (as between a streamed request and its upstream).
const STREAM_FRAMES: usize = 16;

/// Response headers that describe the body as the upstream sent it: wrong
/// once values are put back.
const STALE: [&str; 5] = [
    "etag",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
];

/// Whether a response to `method` with `status` may carry a body to reveal.
pub(crate) fn has_body_to_reveal(method: &Method, response: &Response<ResponseBody>) -> bool {
    let status = response.status();
    *method != Method::HEAD
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
        && status != StatusCode::PARTIAL_CONTENT
}

/// The response with `route`'s `response_rules` applied to its body.
/// `stall` bounds the wait for each piece of the upstream's body.
pub(crate) async fn reveal(
    route: Arc<Route>,
    vault: Option<Arc<Vault>>,
    stall: Duration,
    response: Response<ResponseBody>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(BodyKind::from_content_type);
    let (Some(kind), Ok(decoder)) = (kind, Decoder::for_headers(response.headers())) else {
        return Ok(response);
    };
    let (head, answered) = oneshot::channel();
    tokio::spawn(async move {
        let task = Reveal {
            route: &route,
            vault,
            stall,
        };
        task.run(kind, decoder, response, head).await;
    });
    answered
        .await
        .unwrap_or_else(|_| Err(ProxyError::upstream_invalid()))
}

struct Reveal<'a> {
    route: &'a Route,
    vault: Option<Arc<Vault>>,
    stall: Duration,
}

/// Where the answer's head goes, once it is known.
type Head = oneshot::Sender<Result<Response<ResponseBody>, ProxyError>>;

/// How the buffered part of a body ended.
enum Buffered {
    /// Whole, and rewritten.
    Whole,
    /// Past `buffer_limit`: the rest streams.
    Longer,
    /// Not a document the rewriter reads: it goes on as it came.
    Unreadable(ProxyError),
}

impl Reveal<'_> {
    async fn run(
        self,
        kind: BodyKind,
        mut decoder: Decoder,
        response: Response<ResponseBody>,
        head: Head,
    ) {
        let rules = &self.route.response_rules;
        let (mut parts, mut body) = response.into_parts();
        let lookups = match &self.vault {
            Some(vault) => Lookups::new(vault.clone()),
            None => Lookups::default(),
        };
        let mut passes = Passes::new(
            BodyRewriter::new(kind, rules, Vec::new(), false).lookups(lookups),
            self.vault.as_deref(),
        );
        // What came, as it came, up to `buffer_limit` decoded: sent on
        // unchanged if the body turns out to be no document scrim reads.
        let mut original: Vec<Bytes> = Vec::new();
        let buffered = match self
            .buffer(&mut body, &mut decoder, &mut passes, &mut original)
            .await
        {
            Ok(buffered) => buffered,
            Err(error) => {
                let _ = head.send(Err(error));
                return;
            }
        };
        let unreadable = |error: &ProxyError| {
            tracing::warn!(route = %self.route.name, %error, "response not revealed: passed as it came");
        };
        match buffered {
            Buffered::Unreadable(error) => {
                unreadable(&error);
                let _ = head.send(Ok(as_it_came(parts, original, body)));
                return;
            }
            Buffered::Whole => {
                let answer = match passes.finish().await {
                    Ok((output, report, unrevealed)) => {
                        self.count(&report, unrevealed);
                        let body = Bytes::from(output.concat());
                        revealed_headers(&mut parts, &decoder);
                        parts
                            .headers
                            .insert(header::CONTENT_LENGTH, body.len().into());
                        Ok(Response::from_parts(parts, full(body)))
                    }
                    Err(error) if error.status().is_client_error() => {
                        // Cut or invalid at its end.
                        unreadable(&error);
                        Ok(as_it_came(parts, original, body))
                    }
                    Err(error) => Err(error.after_forwarding()),
                };
                let _ = head.send(answer);
                return;
            }
            Buffered::Longer => {}
        }
        drop(original);
        revealed_headers(&mut parts, &decoder);
        let (mut sender, channel) =
            http_body_util::channel::Channel::<Bytes, BoxError>::new(STREAM_FRAMES);
        if head
            .send(Ok(Response::from_parts(parts, channel.boxed())))
            .is_err()
        {
            return;
        }
        let streamed = async {
            loop {
                // What the decoder holds first (the buffered part may have
                // stopped in the middle of a frame), each decoded step
                // rewritten and its output sent before the next is
                // decoded: a compressed body inflates one step at a time.
                while let Some(piece) = decoder.next()? {
                    passes.write(piece).map_err(ProxyError::body)?;
                    for piece in passes.take_output().await? {
                        if sender.send(Frame::data(piece)).await.is_err() {
                            // The app went away.
                            return Ok(None);
                        }
                    }
                    tokio::task::yield_now().await;
                }
                for piece in passes.take_output().await? {
                    if sender.send(Frame::data(piece)).await.is_err() {
                        return Ok(None);
                    }
                }
                if decoder.is_ended() {
                    break;
                }
                match self.next_data(&mut body).await? {
                    Some(data) => decoder.push(data),
                    None => decoder.end(),
                }
            }
            let (rest, report, unrevealed) = passes.finish().await?;
            for piece in rest {
                if sender.send(Frame::data(piece)).await.is_err() {
                    return Ok(None);
                }
            }
            Ok::<_, ProxyError>(Some((report, unrevealed)))
        };
        match streamed.await {
            Ok(Some((report, unrevealed))) => self.count(&report, unrevealed),
            Ok(None) => {}
            Err(error) => {
                // The head has gone: the body breaks off, so that the app
                // never takes a cut body for a whole one.
                tracing::warn!(route = %self.route.name, %error, "response broken off while revealing");
                sender.abort(Box::new(error));
            }
        }
    }

    /// Reads and rewrites up to `buffer_limit` decoded bytes, one decoded
    /// step at a time (so that an inflating body is stopped at the limit).
    /// An error is the upstream's or the vault's; a body the rewriter
    /// cannot read is [`Buffered::Unreadable`].
    async fn buffer(
        &self,
        body: &mut ResponseBody,
        decoder: &mut Decoder,
        passes: &mut Passes<'_>,
        original: &mut Vec<Bytes>,
    ) -> Result<Buffered, ProxyError> {
        let limit = self.route.response_rules.limits.buffer_limit;
        let mut decoded = 0u64;
        loop {
            loop {
                let piece = match decoder.next() {
                    Ok(Some(piece)) => piece,
                    Ok(None) => break,
                    Err(error) => return Ok(Buffered::Unreadable(error)),
                };
                decoded += piece.len() as u64;
                if let Err(error) = passes.write(piece) {
                    return Ok(Buffered::Unreadable(ProxyError::body(error)));
                }
                if decoded > limit {
                    return Ok(Buffered::Longer);
                }
                if !decoder.is_identity() {
                    tokio::task::yield_now().await;
                }
            }
            if decoder.is_ended() {
                break;
            }
            match self.next_data(body).await? {
                Some(data) => {
                    original.push(data.clone());
                    decoder.push(data);
                }
                None => decoder.end(),
            }
        }
        // The end may still find the document cut or invalid; a vault
        // that does not answer is an error of its own.
        match passes.flush() {
            Ok(()) => Ok(Buffered::Whole),
            Err(error) => Ok(Buffered::Unreadable(ProxyError::body(error))),
        }
    }

    /// The next data frame of the upstream's body (trailers dropped),
    /// within the stall timeout.
    async fn next_data(&self, body: &mut ResponseBody) -> Result<Option<Bytes>, ProxyError> {
        loop {
            let frame = tokio::time::timeout(self.stall, body.frame())
                .await
                .map_err(|_| ProxyError::upstream_timeout())?;
            match frame {
                None => return Ok(None),
                Some(Err(error)) => return Err(ProxyError::upstream(error)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// Counts what was revealed and what was not, with the vault's
    /// metrics (a route that only reveals `encrypt` texts has none).
    fn count(&self, report: &Report, unrevealed: u64) {
        if let Some(vault) = &self.vault {
            let revealed: u64 = report.rewritten.iter().sum();
            vault.metrics().revealed.inc_by(revealed);
            vault.metrics().unrevealed.inc_by(unrevealed);
        }
    }
}

/// The headers of a body with values put back: without the encoding it is
/// no longer in, its old length and digests, and kept from shared caches.
fn revealed_headers(parts: &mut http::response::Parts, decoder: &Decoder) {
    if !decoder.is_identity() {
        parts.headers.remove(header::CONTENT_ENCODING);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    for name in STALE {
        parts.headers.remove(name);
    }
    parts.headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, no-store"),
    );
}

/// The original body, as it came (encoded as it was): what was read, then
/// the rest of it.
fn as_it_came(
    parts: http::response::Parts,
    original: Vec<Bytes>,
    rest: ResponseBody,
) -> Response<ResponseBody> {
    let read = futures_util::stream::iter(original.into_iter().map(|data| Ok(Frame::data(data))));
    let rest = http_body_util::BodyStream::new(rest);
    let body = http_body_util::StreamBody::new(futures_util::StreamExt::chain(read, rest));
    Response::from_parts(parts, BodyExt::boxed(body))
}

fn full(body: Bytes) -> ResponseBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}
