//! Responses on their way back to the app, through a route's
//! `response_rules`: the tokens in them (the vault's, and texts `encrypt`
//! made) replaced by their values, so that the business's own systems see
//! what they sent, and only they.
//!
//! A JSON, NDJSON or form body is decoded (`Content-Encoding`; the app
//! gets it without), rewritten up to `buffer_limit` whole and sent with a
//! `Content-Length`, past it streamed, in bounded memory, like a request.
//! Any other body, or one in an encoding scrim does not read, passes as it
//! came: it can only hold tokens, never what they stand for. The work runs
//! as a task of its own, so that a streamed body keeps being rewritten
//! after the response's head has gone to the app.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, header};
use http_body_util::{BodyExt, Full};
use tokio::sync::oneshot;

use super::decode::Decoder;
use super::error::ProxyError;
use super::passes::Passes;
use super::{BoxError, ResponseBody};
use crate::policy::Route;
use crate::rewrite::{BodyKind, BodyRewriter, Lookups, Report};
use crate::vault::Vault;

/// Frames buffered between the rewriting task and the client connection.
const STREAM_FRAMES: usize = 16;

/// The response with `route`'s `response_rules` applied to its body.
pub(crate) async fn reveal(
    route: Arc<Route>,
    vault: Option<Arc<Vault>>,
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
}

/// Where the answer's head goes, once it is known.
type Head = oneshot::Sender<Result<Response<ResponseBody>, ProxyError>>;

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
        let encoding = parts.headers.get(header::CONTENT_ENCODING).cloned();
        // What came, as it came: sent on unchanged if the body turns out to
        // be no document scrim can read.
        let mut original: Vec<Bytes> = Vec::new();
        let mut decoded = 0u64;
        let mut ended = false;
        let read = async {
            while !ended && decoded <= rules.limits.buffer_limit {
                match next_data(&mut body).await? {
                    Some(data) => {
                        original.push(data.clone());
                        decoder.push(data);
                    }
                    None => {
                        decoder.end();
                        ended = true;
                    }
                }
                while let Some(piece) = decoder.next()? {
                    decoded += piece.len() as u64;
                    passes.write(piece).map_err(ProxyError::body)?;
                }
            }
            Ok::<_, ProxyError>(())
        };
        if let Err(error) = read.await {
            let _ = head.send(Err(error));
            return;
        }
        if !decoder.is_identity() {
            parts.headers.remove(header::CONTENT_ENCODING);
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        if ended {
            let whole = match passes.finish().await {
                Ok((output, report, lookups)) => {
                    self.count(&report, &lookups);
                    Ok(output)
                }
                Err(error) => Err(error),
            };
            let answer = match whole {
                Ok(output) => {
                    let body = Bytes::from(output.concat());
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, body.len().into());
                    Ok(Response::from_parts(parts, full(body)))
                }
                Err(error) if error.status().is_client_error() => {
                    // Not a document scrim reads: on as it came (it holds
                    // tokens at most, never their values).
                    tracing::warn!(route = %self.route.name, %error, "response not revealed: passed as it came");
                    Ok(as_it_came(parts, original, encoding))
                }
                Err(error) => Err(error),
            };
            let _ = head.send(answer);
            return;
        }
        let (mut sender, channel) =
            http_body_util::channel::Channel::<Bytes, BoxError>::new(STREAM_FRAMES);
        if head
            .send(Ok(Response::from_parts(parts, channel.boxed())))
            .is_err()
        {
            return;
        }
        drop(original);
        let streamed = async {
            loop {
                for piece in passes.take_output().await? {
                    if sender.send(hyper::body::Frame::data(piece)).await.is_err() {
                        return Ok(None);
                    }
                }
                match next_data(&mut body).await? {
                    Some(data) => decoder.push(data),
                    None => {
                        decoder.end();
                        while let Some(piece) = decoder.next()? {
                            passes.write(piece).map_err(ProxyError::body)?;
                        }
                        break;
                    }
                }
                while let Some(piece) = decoder.next()? {
                    passes.write(piece).map_err(ProxyError::body)?;
                }
            }
            let (rest, report, lookups) = passes.finish().await?;
            for piece in rest {
                if sender.send(hyper::body::Frame::data(piece)).await.is_err() {
                    return Ok(None);
                }
            }
            Ok::<_, ProxyError>(Some((report, lookups)))
        };
        match streamed.await {
            Ok(Some((report, lookups))) => self.count(&report, &lookups),
            Ok(None) => {}
            Err(error) => {
                // The head has gone: the body breaks off, so that the app
                // never takes a cut body for a whole one.
                tracing::warn!(route = %self.route.name, %error, "response broken off while revealing");
                sender.abort(Box::new(error));
            }
        }
    }

    /// Counts what was revealed and what was not, with the vault's
    /// metrics (a route that only reveals `encrypt` texts has none).
    fn count(&self, report: &Report, lookups: &Lookups) {
        if let Some(vault) = &self.vault {
            let revealed: u64 = report.rewritten.iter().sum();
            vault.metrics().revealed.inc_by(revealed);
            vault.metrics().unrevealed.inc_by(lookups.unrevealed());
        }
    }
}

/// The original body, with the `Content-Encoding` it came with.
fn as_it_came(
    mut parts: http::response::Parts,
    original: Vec<Bytes>,
    encoding: Option<header::HeaderValue>,
) -> Response<ResponseBody> {
    let body = Bytes::from(original.concat());
    if let Some(encoding) = encoding {
        parts.headers.insert(header::CONTENT_ENCODING, encoding);
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, body.len().into());
    Response::from_parts(parts, full(body))
}

fn full(body: Bytes) -> ResponseBody {
    Full::new(body).map_err(|never| match never {}).boxed()
}

/// The next data frame of an upstream body (trailers dropped).
async fn next_data(body: &mut ResponseBody) -> Result<Option<Bytes>, ProxyError> {
    loop {
        match body.frame().await {
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
