//! One request through one route: headers and query rewritten, the body
//! decoded and rewritten, the upstream request sent, its response returned.
//!
//! Bodies up to the route's `buffer_limit` are rewritten whole and sent with
//! `Content-Length`. Past that, the upstream request starts with what is
//! rewritten so far and the rest streams through, in bounded memory. If the
//! body then turns out invalid, the upstream body is aborted (the upstream
//! never receives a complete request) and the client gets the 400.
//!
//! On a route with `tokenize` rules, a rewrite that meets a value the
//! vault's cache does not know leaves a question instead of a token. Such a
//! pass is never sent: the vault answers from its store (a new token is
//! durable before it is answered), and the same input is rewritten again,
//! from the last point where output was sent (a copy of the rewriter kept
//! there), with the answers. A store that does not answer is a 503, with
//! nothing sent.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

// Tokio's clock, so that tests can let time pass.
use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Frame};

use super::decode::Decoder;
use super::error::ProxyError;
use super::passes::{Passes, ask};
use super::upstream::{Upstream, UpstreamBody};
use super::{BoxError, ClientBody, RequestBody, ResponseBody};
use crate::metrics::RouteMetrics;
use crate::policy::{Limits, Route, Rules};
use crate::rewrite::{
    BodyKind, BodyRewriter, HeaderOutcome, Lookups, QueryOutcome, Report, rewrite_header,
    rewrite_query,
};
use crate::vault::Vault;

/// Frames buffered between the rewriter and the upstream connection.
const STREAM_FRAMES: usize = 16;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// plus those this proxy recomputes.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Headers that identify the app's end users by address: the standard and
/// de facto forwarding headers, and the client address headers that CDNs,
/// load balancers and meshes add in front of a site.
const FORWARDING: [&str; 20] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded",
    "forwarded-for",
    "x-original-forwarded-for",
    "true-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "cf-pseudo-ipv4",
    "fastly-client-ip",
    "akamai-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "client-ip",
    "x-envoy-external-address",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-azure-clientip",
];

/// The client hints a browser route keeps: the low-entropy ones every
/// Chromium sends unasked (brand and major version, mobile, platform).
/// Every other `Sec-CH-` header, and the hints from before that prefix,
/// tell a device apart (full versions, model, architecture, screen,
/// memory, network) and are removed.
const LOW_ENTROPY_HINTS: [&str; 3] = ["sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform"];
const LEGACY_HINTS: [&str; 7] = [
    "device-memory",
    "dpr",
    "viewport-width",
    "width",
    "downlink",
    "ect",
    "rtt",
];

/// Whether a browser route removes this request header (by its lowercase
/// name) whatever the rules say: a client hint beyond the low-entropy ones.
fn identifies_the_device(lower: &str) -> bool {
    (lower.starts_with("sec-ch-") && !LOW_ENTROPY_HINTS.contains(&lower))
        || LEGACY_HINTS.contains(&lower)
}

/// The time limits of one request.
#[derive(Clone, Copy)]
pub(crate) struct Timing {
    /// The client's body must have arrived whole by then (408 past it).
    pub(crate) body_deadline: Instant,
    /// From the request sent whole to the response head (504 past it).
    pub(crate) response_timeout: Duration,
}

/// Forwards `request` through `route`. The report counts what was rewritten,
/// even when the request is then refused.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn forward(
    route: &std::sync::Arc<Route>,
    rules: &Rules,
    metrics: &RouteMetrics,
    client: &Upstream,
    vault: Option<&std::sync::Arc<Vault>>,
    timing: Timing,
    request: Request<ClientBody>,
    upstream_path: String,
    report: &mut Report,
    upstream_took: &mut Option<std::time::Duration>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (parts, mut body) = request.into_parts();
    let mut lookups = match vault {
        Some(vault) if rules.uses_vault() => Lookups::new(vault.clone()),
        _ => Lookups::default(),
    };
    let vault_arc = vault;
    let vault = vault.map(|v| &**v);

    let mut path_and_query = upstream_path;
    if let Some(query) = parts.uri.query() {
        let rewritten = if lookups.has_vault() {
            // A pass that asked the vault counts nothing: each counts into
            // a report of its own, and the one sent is kept.
            let (outcome, attempt) = loop {
                let mut attempt = report.nested(rules.rules.len());
                let outcome = rewrite_query(rules, query, &mut attempt, &mut lookups)
                    .map_err(ProxyError::body)?;
                if !lookups.asked() {
                    break (outcome, attempt);
                }
                ask(vault, &mut lookups).await?;
            };
            report.absorb(attempt);
            outcome
        } else {
            rewrite_query(rules, query, report, &mut lookups).map_err(ProxyError::body)?
        };
        match rewritten {
            QueryOutcome::Unchanged => push_query(&mut path_and_query, query),
            QueryOutcome::Rewritten(rewritten) => push_query(&mut path_and_query, &rewritten),
        }
    }
    // Origin form: the upstream client adds what its connection needs.
    let uri = http::Uri::try_from(path_and_query)
        .map_err(|_| ProxyError::bad_request("the request path cannot be forwarded"))?;

    let rewrite_body = rules.has_body_rules() && !body.is_end_stream();
    let decoder = if rewrite_body {
        Decoder::for_headers(&parts.headers)?
    } else {
        Decoder::identity()
    };
    let kind = if rewrite_body {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Some(
            content_type
                .and_then(|value| BodyKind::for_route(value, rules))
                .ok_or_else(ProxyError::unsupported_media_type)?,
        )
    } else {
        None
    };
    let declared = declared_length(&parts.headers);
    if declared.is_some_and(|length| length > rules.limits.max_body_bytes) {
        return Err(ProxyError::body_too_large(rules.limits.max_body_bytes));
    }

    let decoded = !decoder.is_identity();
    let mut headers = if lookups.has_vault() {
        let (headers, attempt) = loop {
            let mut attempt = report.nested(rules.rules.len());
            let headers = upstream_headers(
                route,
                rules,
                &parts.headers,
                decoded,
                &mut attempt,
                &mut lookups,
            )?;
            if !lookups.asked() {
                break (headers, attempt);
            }
            ask(vault, &mut lookups).await?;
        };
        report.absorb(attempt);
        headers
    } else {
        upstream_headers(route, rules, &parts.headers, decoded, report, &mut lookups)?
    };
    // Built in place: each step of `Request::builder` moves its parts.
    let mut upstream = Request::new(());
    *upstream.method_mut() = parts.method.clone();
    *upstream.uri_mut() = uri;
    std::mem::swap(upstream.headers_mut(), &mut headers);

    let rewriter = kind.map(|kind| {
        let mut rewriter = BodyRewriter::new(kind, rules, Vec::new(), false);
        rewriter.count_fields_like(report);
        *rewriter.lookups_mut() = lookups;
        Passes::new(rewriter, vault)
    });
    let mut pipeline = Pipeline {
        rewriter,
        passthrough: Vec::new(),
        decoder,
        limits: rules.limits,
        timing,
        read: 0,
        decoded: 0,
        sent: 0,
    };
    let buffered = if body.is_end_stream() {
        Some(Vec::new())
    } else {
        pipeline.buffer(&mut body).await?
    };

    // The upstream's time starts when the request is handed to it, after
    // scrim's own work on it (the rewrite, the vault's answers).
    let (response, started) = match buffered {
        Some(mut pieces) => {
            if pipeline.rewriter.is_some() {
                let (rest, body_report) = pipeline.finish().await?;
                report.absorb(body_report);
                pieces.extend(rest);
            }
            let length: usize = pieces.iter().map(Bytes::len).sum();
            metrics.bytes_in.inc_by(pipeline.read);
            metrics.bytes_out.inc_by(length as u64);
            // A request that came without a body (a GET) goes without one.
            if length > 0 || declared.is_some() {
                upstream
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            }
            let request = upstream.map(|()| buffered_body(pieces, length));
            let started = Instant::now();
            (
                answer(timing.response_timeout, client.send(request)).await,
                started,
            )
        }
        None => {
            let (sender, channel) =
                http_body_util::channel::Channel::<Bytes, BoxError>::new(STREAM_FRAMES);
            let request = upstream.map(|()| channel.boxed());
            let first = pipeline.drain().await?;
            // Past here the rewrite overlaps the upstream's time: what
            // scrim adds to a streamed body counts only until now.
            let started = Instant::now();
            let (fed, response) =
                send_streaming(client, request, &mut pipeline, &mut body, sender, first).await;
            metrics.bytes_in.inc_by(pipeline.read);
            metrics.bytes_out.inc_by(pipeline.sent);
            let body_report = fed?;
            report.absorb(body_report);
            (response, started)
        }
    };
    let took = started.elapsed();
    metrics.upstream_duration.observe(took.as_secs_f64());
    *upstream_took = Some(took);
    let mut response = response?;
    // hyper answers 100 Continue itself and passes no other interim
    // response but 101, an upgrade: never asked for through scrim, which
    // forwards no `Upgrade`.
    if response.status().is_informational() {
        return Err(ProxyError::upstream_invalid());
    }
    response_headers(route, response.headers_mut());
    let counter = metrics.bytes_response.clone();
    let response = response.map(|body| {
        body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counter.inc_by(data.len() as u64);
            }
            frame
        })
        .map_err(|e| Box::new(e) as BoxError)
        .boxed()
    });
    if !route.response_rules.has_body_rules()
        || !super::reveal::has_body_to_reveal(&parts.method, &response)
    {
        return Ok(response);
    }
    super::reveal::reveal(
        route.clone(),
        vault_arc.cloned(),
        timing.response_timeout,
        response,
    )
    .await
}

/// Pieces up to this size are joined into one buffer before they are sent;
/// larger bodies go as their pieces (no second copy of the body is held).
const JOIN_BELOW: usize = 16 * 1024;

/// A body rewritten whole, as one buffer when small, else as the pieces the
/// rewriter produced (slices of the input for what it left unchanged).
fn buffered_body(pieces: Vec<Bytes>, length: usize) -> RequestBody {
    if length < JOIN_BELOW || pieces.len() == 1 {
        let bytes = match <[Bytes; 1]>::try_from(pieces) {
            Ok([one]) => one,
            Err(pieces) => Bytes::from(pieces.concat()),
        };
        return Full::new(bytes).map_err(|never| match never {}).boxed();
    }
    Pieces {
        remaining: length as u64,
        pieces: pieces.into(),
    }
    .boxed()
}

/// A body of known length made of pieces.
struct Pieces {
    pieces: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let piece = self.pieces.pop_front();
        if let Some(piece) = &piece {
            self.remaining -= piece.len() as u64;
        }
        Poll::Ready(piece.map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

/// The `Content-Length` a request declares, if it declares a valid one
/// (hyper has already refused conflicting ones).
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

fn push_query(path: &mut String, query: &str) {
    if !query.is_empty() {
        path.push('?');
        path.push_str(query);
    }
}

/// The upstream's answer, within `timeout`.
async fn answer(
    timeout: Duration,
    sent: impl std::future::Future<Output = Result<Response<UpstreamBody>, BoxError>>,
) -> Result<Response<UpstreamBody>, ProxyError> {
    match tokio::time::timeout(timeout, sent).await {
        Err(_) => Err(ProxyError::upstream_timeout()),
        Ok(Err(cause)) => Err(ProxyError::upstream(cause)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// How long the rest of a body is still fed to an upstream that has
/// answered before reading it whole.
const EARLY_ANSWER_GRACE: Duration = Duration::from_secs(1);

/// Sends a request whose body the pipeline streams into `sender`, and waits
/// for both. The response timeout starts once the body has been sent whole:
/// the client's upload is not the upstream's delay (that is
/// `body_read_timeout`'s), and an upstream that stops reading times out
/// frame by frame. A body that fails, or that an upstream which has already
/// answered no longer reads, is aborted, so that the upstream never sees a
/// cut body as complete.
async fn send_streaming(
    client: &Upstream,
    request: Request<RequestBody>,
    pipeline: &mut Pipeline<'_>,
    body: &mut ClientBody,
    mut sender: http_body_util::channel::Sender<Bytes, BoxError>,
    first: Vec<Bytes>,
) -> (
    Result<Report, ProxyError>,
    Result<Response<UpstreamBody>, ProxyError>,
) {
    let timeout = pipeline.timing.response_timeout;
    let mut send = std::pin::pin!(client.send(request));
    let mut response = None;
    let fed = {
        let mut feed = std::pin::pin!(pipeline.stream(body, &mut sender, first));
        let mut give_up_at = None;
        loop {
            tokio::select! {
                done = &mut feed => break Some(done),
                answered = &mut send, if response.is_none() => {
                    response = Some(answered.map_err(ProxyError::upstream));
                    give_up_at = Some(Instant::now() + EARLY_ANSWER_GRACE);
                }
                _ = tokio::time::sleep_until(give_up_at.unwrap_or_else(Instant::now)), if give_up_at.is_some() => {
                    break None;
                }
            }
        }
    };
    if matches!(fed, Some(Ok(_))) {
        // The body ends upstream.
        drop(sender);
    } else {
        sender.abort(Box::new(AbortedBody));
    }
    let response = match response {
        Some(response) => response,
        None => answer(timeout, send).await,
    };
    // An upstream that answered before the end of the body: its answer
    // stands, what was rewritten so far counted.
    (fed.unwrap_or_else(|| Ok(Report::default())), response)
}

/// The headers sent upstream: the client's, without hop-by-hop headers,
/// without forwarding headers (unless the route keeps them), without
/// `Content-Encoding` once the body is decoded, and with `header.NAME` rules
/// applied.
fn upstream_headers(
    route: &Route,
    rules: &Rules,
    incoming: &HeaderMap,
    decoded: bool,
    report: &mut Report,
    lookups: &mut Lookups,
) -> Result<HeaderMap, ProxyError> {
    let listed = connection_listed(incoming);
    let mut headers = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        let canonical = crate::policy::canonical_header_name(name.as_str());
        let lower = canonical.as_ref();
        let drop = HOP_BY_HOP.contains(&lower)
            || listed.contains(name)
            || lower == "content-length"
            || (decoded && lower == "content-encoding")
            || (!route.keep_forwarding_headers && FORWARDING.contains(&lower));
        if drop {
            continue;
        }
        // The site's own credentials (a staging site behind a password)
        // are not the platform's.
        if route.browser && (identifies_the_device(lower) || lower == "authorization") {
            continue;
        }
        if route.browser && lower == "cookie" {
            if let Some(kept) = kept_cookies(&route.keep_cookies, value) {
                headers.append(name.clone(), kept);
            }
            continue;
        }
        match rewrite_header(rules, lower, value.as_bytes(), report, lookups)
            .map_err(ProxyError::body)?
        {
            HeaderOutcome::Unchanged => {
                headers.append(name.clone(), value.clone());
            }
            HeaderOutcome::Remove => {}
            HeaderOutcome::Replace(new) => {
                if let Ok(value) = HeaderValue::from_str(&new) {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
    Ok(headers)
}

/// A browser's `Cookie` header cut to the cookies the route keeps; `None`
/// when none is left. A header that is not text keeps nothing.
fn kept_cookies(keep: &[String], value: &HeaderValue) -> Option<HeaderValue> {
    let text = value.to_str().ok()?;
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name).trim();
            keep.iter().any(|kept| kept == name)
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// The response headers the client gets: without hop-by-hop headers and
/// those the response's `Connection` lists, without a `Content-Length`
/// beside a `Transfer-Encoding` (RFC 9112 6.3: the length is wrong and must
/// go), and on a browser route without `Set-Cookie`: the platform sets no
/// identifier in the visitor's browser through the site. hyper frames the
/// response to the client itself, from its body.
fn response_headers(route: &Route, headers: &mut HeaderMap) {
    if route.browser {
        headers.remove(header::SET_COOKIE);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(headers);
}

/// Removes the headers that describe one connection: those its
/// `Connection` lists, and the hop-by-hop ones (`Host` stays).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed = connection_listed(headers);
    // The names present are looked at once, rather than each name that
    // could be looked up (a hash and a probe each): most messages have none.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let text = name.as_str();
            (text != "host" && HOP_BY_HOP.contains(&text)) || listed.contains(name)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// The header names a message's `Connection` header lists.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

/// The error an aborted upstream body carries.
#[derive(Debug)]
struct AbortedBody;

impl std::fmt::Display for AbortedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body refused by scrim")
    }
}

impl std::error::Error for AbortedBody {}

/// Reads, decodes, limits and rewrites one request body.
struct Pipeline<'r> {
    /// `None` when the route has no body rules: the body passes as it is.
    rewriter: Option<Box<Passes<'r>>>,
    passthrough: Vec<Bytes>,
    decoder: Decoder,
    limits: Limits,
    timing: Timing,
    /// Bytes read from the client.
    read: u64,
    /// Bytes after decoding.
    decoded: u64,
    /// Bytes sent upstream while streaming.
    sent: u64,
}

impl Pipeline<'_> {
    /// Reads up to `buffer_limit`. `Some(output)` when the whole body fit
    /// (the rewriter is finished by the caller), `None` when it must stream.
    async fn buffer(&mut self, body: &mut ClientBody) -> Result<Option<Vec<Bytes>>, ProxyError> {
        let mut more = true;
        loop {
            while let Some(piece) = self.decode_step().await? {
                self.feed(piece)?;
                if self.decoded > self.limits.buffer_limit {
                    return Ok(None);
                }
            }
            if !more {
                return Ok(Some(self.drain().await?));
            }
            more = self.read_more(body).await?;
        }
    }

    /// Streams the rest of the body into `sender`, starting with `first`.
    /// Each decoded step is rewritten and sent before the next one is
    /// decoded, so what is held is one step plus the channel's frames.
    async fn stream(
        &mut self,
        body: &mut ClientBody,
        sender: &mut http_body_util::channel::Sender<Bytes, BoxError>,
        first: Vec<Bytes>,
    ) -> Result<Report, ProxyError> {
        if !self.send(sender, first).await? {
            // The upstream went away; its error answers the client.
            return Ok(Report::default());
        }
        let mut more = true;
        loop {
            while let Some(piece) = self.decode_step().await? {
                self.feed(piece)?;
                let ready = self.drain().await?;
                if !self.send(sender, ready).await? {
                    return Ok(Report::default());
                }
            }
            if !more {
                break;
            }
            // The client may pause here: what it sent so far goes on.
            if let Some(rewriter) = &mut self.rewriter {
                rewriter.flush().map_err(ProxyError::body)?;
            }
            let ready = self.drain().await?;
            if !self.send(sender, ready).await? {
                return Ok(Report::default());
            }
            more = self.read_more(body).await?;
        }
        let (rest, report) = self.finish().await?;
        self.send(sender, rest).await?;
        Ok(report)
    }

    /// Ends the body: the rest of the output and the body's report.
    async fn finish(&mut self) -> Result<(Vec<Bytes>, Report), ProxyError> {
        match self.rewriter.take() {
            Some(passes) => passes
                .finish()
                .await
                .map(|(rest, report, _)| (rest, report)),
            None => Ok((std::mem::take(&mut self.passthrough), Report::default())),
        }
    }

    /// Sends pieces upstream; `false` when the upstream is gone, an error
    /// when it has taken nothing for the response timeout.
    async fn send(
        &mut self,
        sender: &mut http_body_util::channel::Sender<Bytes, BoxError>,
        pieces: Vec<Bytes>,
    ) -> Result<bool, ProxyError> {
        let stall = self.timing.response_timeout;
        // A few small pieces (a rewritten value between slices of the
        // input) go as one frame.
        let length: usize = pieces.iter().map(Bytes::len).sum();
        let pieces = if pieces.len() > 1 && length < JOIN_BELOW {
            vec![Bytes::from(pieces.concat())]
        } else {
            pieces
        };
        for piece in pieces {
            self.sent += piece.len() as u64;
            match tokio::time::timeout(stall, sender.send(Frame::data(piece))).await {
                Err(_) => return Err(ProxyError::upstream_timeout()),
                Ok(Err(_)) => return Ok(false),
                Ok(Ok(())) => {}
            }
        }
        Ok(true)
    }

    /// Reads the next frames from the client into the decoder, small ones
    /// gathered (see [`next_batch`]); `false` once the body has ended (the
    /// decoder is then told so).
    async fn read_more(&mut self, body: &mut ClientBody) -> Result<bool, ProxyError> {
        let mut batch = Vec::new();
        let more = next_batch(body, self.timing.body_deadline, &mut batch).await?;
        for data in batch {
            self.read += data.len() as u64;
            let max = self.limits.max_body_bytes;
            if self.read > max {
                return Err(ProxyError::body_too_large(max));
            }
            self.decoder.push(data);
        }
        if !more {
            self.decoder.end();
        }
        Ok(more)
    }

    /// The next decoded piece. A compressed body yields to the runtime
    /// after each step, so that one inflating body cannot hold the worker
    /// thread its connections share.
    async fn decode_step(&mut self) -> Result<Option<Bytes>, ProxyError> {
        let piece = self.decoder.next()?;
        if piece.is_some() && !self.decoder.is_identity() {
            tokio::task::yield_now().await;
        }
        Ok(piece)
    }

    fn feed(&mut self, decoded: Bytes) -> Result<(), ProxyError> {
        self.decoded += decoded.len() as u64;
        if self.decoded > self.limits.max_body_bytes {
            return Err(ProxyError::body_too_large(self.limits.max_body_bytes));
        }
        match &mut self.rewriter {
            Some(rewriter) => rewriter.write(decoded).map_err(ProxyError::body),
            None => {
                self.passthrough.push(decoded);
                Ok(())
            }
        }
    }

    /// What is ready to go upstream (once the vault has answered what the
    /// rewrite asked).
    async fn drain(&mut self) -> Result<Vec<Bytes>, ProxyError> {
        match &mut self.rewriter {
            Some(passes) => passes.take_output().await,
            None => Ok(std::mem::take(&mut self.passthrough)),
        }
    }
}

/// Frames smaller than this are gathered and joined before the body's
/// per-piece costs are paid (decoding, rewriting, a frame upstream): a
/// client sending one-byte chunks would otherwise cost a few microseconds
/// per byte, and the upstream would receive each byte as its own chunk.
/// Larger frames go on as they are: a copy of them would not pay, and an
/// HTTP/2 frame is a slice of a read buffer that other streams' frames keep
/// alive, so a copy would be held twice.
const SMALL_FRAME: usize = 2 * 1024;

/// Small frames are joined up to this many bytes.
const GATHER_UP_TO: usize = 16 * 1024;

/// How long gathered small frames wait for more before they go on, in all
/// and for the next frame: the bounded delay a trickling body pays, and
/// only such a body (one that came whole ends at once). hyper hands an
/// HTTP/1.1 body over frame by frame from its connection task, so frames
/// sent together still arrive one wake-up apart.
const GATHER_WAIT: Duration = Duration::from_millis(10);
const GATHER_GAP: Duration = Duration::from_millis(1);

/// The next data of a body, appended to `out`: one frame, or small frames
/// gathered into one piece (see [`SMALL_FRAME`] and [`GATHER_WAIT`]; never
/// past `deadline`), possibly followed by the large frame that ended the
/// gathering. `false` once the body has ended.
async fn next_batch(
    body: &mut ClientBody,
    deadline: Instant,
    out: &mut Vec<Bytes>,
) -> Result<bool, ProxyError> {
    let Some(first) = next_data(body, deadline).await? else {
        return Ok(false);
    };
    // A body that has come whole (nearly every event, sent with its
    // `Content-Length`) has nothing to gather: no timer, no wait.
    if first.len() >= SMALL_FRAME || body.is_end_stream() {
        out.push(first);
        return Ok(!body.is_end_stream());
    }
    let give_up_at = deadline.min(Instant::now() + GATHER_WAIT);
    let mut small = vec![first];
    let mut length = small[0].len();
    let mut large = None;
    let mut more = true;
    while length < GATHER_UP_TO {
        let wait_until = give_up_at.min(Instant::now() + GATHER_GAP);
        match tokio::time::timeout_at(wait_until, next_data(body, deadline)).await {
            Err(_) => break,
            Ok(Ok(Some(data))) if data.len() >= SMALL_FRAME => {
                large = Some(data);
                break;
            }
            Ok(Ok(Some(data))) => {
                length += data.len();
                small.push(data);
            }
            Ok(Ok(None)) => {
                more = false;
                break;
            }
            Ok(Err(err)) => return Err(err),
        }
    }
    if small.len() == 1 {
        out.append(&mut small);
    } else {
        // Of the exact size: a body held for its last frames costs what it
        // holds.
        let mut joined = BytesMut::with_capacity(length);
        for frame in &small {
            joined.extend_from_slice(frame);
        }
        out.push(joined.freeze());
    }
    out.extend(large);
    Ok(more)
}

/// The next data frame of a body (trailers are dropped: the rewritten body
/// is what the upstream gets).
pub(crate) async fn next_data<B>(
    body: &mut B,
    deadline: Instant,
) -> Result<Option<Bytes>, ProxyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    loop {
        // A frame that is ready (a body that came with its head, nearly
        // always) costs no timer.
        let ready =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        let frame = match ready {
            Poll::Ready(frame) => frame,
            Poll::Pending => tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| ProxyError::body_timeout())?,
        };
        match frame {
            None => return Ok(None),
            Some(Err(_)) => return Err(ProxyError::bad_body("the request body could not be read")),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_connections_headers_and_keeps_the_messages() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("host", "platform.example"),
            ("connection", "keep-alive, X-Session-Hint"),
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-session-hint", "one"),
            ("x-session-hint", "two"),
            ("content-type", "application/json"),
            ("x-request-id", "r-1"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "host", "x-request-id"]);
        assert_eq!(headers.get_all("host").iter().count(), 1);

        // Nothing to strip: nothing changes.
        let before = headers.clone();
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers, before);
    }
}
