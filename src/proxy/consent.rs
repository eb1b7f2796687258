//! The consent gate: after the route match, before anything is rewritten or
//! sent. A request's opt-out signal picks the rules it is rewritten with, or
//! stops it. Header and query signals cost nothing; signals in the body make
//! the route read each body whole (within `buffer_limit`) and look at it
//! first, so that the decision is known before the first byte goes out.

use bytes::{Bytes, BytesMut};
use http::{Request, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::ClientBody;
use super::decode::Decoder;
use super::error::ProxyError;
use super::forward::{declared_length, next_data};
use crate::metrics::RouteMetrics;
use crate::policy::consent::Decision;
use crate::policy::{Route, Rules};
use crate::rewrite::{BodyKind, probe};

/// What the gate decided. Returned once per request and taken apart at
/// once: boxing the request to even out the variants would cost an
/// allocation on every request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Gate<'r> {
    /// Forward, rewritten with these rules; the decision of the signal that
    /// picked them, if one did.
    Forward {
        rules: &'r Rules,
        request: Request<ClientBody>,
        decision: Option<Decision>,
    },
    /// Answer with the route's `block_status`, nothing forwarded; the label
    /// of the signal that decided, for the log.
    Block {
        status: http::StatusCode,
        signal: &'r str,
    },
}

pub(crate) async fn gate<'r>(
    route: &'r Route,
    metrics: &RouteMetrics,
    request: Request<Incoming>,
    body_deadline: Instant,
) -> Result<Gate<'r>, ProxyError> {
    let Some(consent) = &route.consent else {
        return Ok(Gate::Forward {
            rules: &route.rules,
            request: request.map(Either::Left),
            decision: None,
        });
    };
    let (decided, request) = match consent.decide(request.headers(), request.uri().query()) {
        None if !consent.body_probes.is_empty() => {
            let (parts, body) = request.into_parts();
            let limits = route.rules.limits;
            if declared_length(&parts.headers).is_some_and(|length| length > limits.max_body_bytes)
            {
                return Err(ProxyError::body_too_large(limits.max_body_bytes));
            }
            // Held whole, so bounded like a buffered body: by buffer_limit,
            // before and after decoding.
            let limit = limits.buffer_limit.min(limits.max_body_bytes);
            let raw = read_whole(body, limit, body_deadline).await?;
            let decided = if raw.is_empty() {
                None
            } else {
                let decoded = decode_whole(&parts.headers, &raw, limit)?;
                let kind = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|value| BodyKind::for_route(value, &route.rules))
                    .ok_or_else(ProxyError::unsupported_media_type)?;
                consent
                    .decide_body(|probe_rules| probe(probe_rules, kind, decoded.clone()))
                    .map_err(ProxyError::body)?
            };
            let request = Request::from_parts(parts, Either::Right(Full::new(raw)));
            (decided, request)
        }
        decided => (decided, request.map(Either::Left)),
    };
    let Some(signal) = decided else {
        return Ok(Gate::Forward {
            rules: &route.rules,
            request,
            decision: None,
        });
    };
    metrics.consent(signal);
    let decision = consent.signals[signal].decision;
    let rules = match decision {
        Decision::Block => {
            return Ok(Gate::Block {
                status: consent.block_status,
                signal: &consent.signals[signal].label,
            });
        }
        Decision::StripIdentifiers => &consent.stripped,
        // Compiled only when the preset defines it; stripping is the
        // stricter stand-in.
        Decision::LimitedDataUse => consent.limited.as_ref().unwrap_or(&consent.stripped),
    };
    Ok(Gate::Forward {
        rules,
        request,
        decision: Some(decision),
    })
}

async fn read_whole(
    mut body: Incoming,
    limit: u64,
    deadline: Instant,
) -> Result<Bytes, ProxyError> {
    let mut whole = BytesMut::new();
    while let Some(data) = next_data(&mut body, deadline).await? {
        if (whole.len() + data.len()) as u64 > limit {
            return Err(ProxyError::consent_body_too_large(limit));
        }
        whole.extend_from_slice(&data);
    }
    Ok(whole.freeze())
}

fn decode_whole(headers: &http::HeaderMap, raw: &Bytes, limit: u64) -> Result<Bytes, ProxyError> {
    let mut decoder = Decoder::for_headers(headers)?;
    if decoder.is_identity() {
        return if raw.len() as u64 > limit {
            Err(ProxyError::consent_body_too_large(limit))
        } else {
            Ok(raw.clone())
        };
    }
    // Checked at each step, so a zip bomb stops one step past the limit.
    let mut decoded = BytesMut::new();
    decoder.push(raw.clone());
    decoder.end();
    while let Some(piece) = decoder.next()? {
        if (decoded.len() + piece.len()) as u64 > limit {
            return Err(ProxyError::consent_body_too_large(limit));
        }
        decoded.extend_from_slice(&piece);
    }
    Ok(decoded.freeze())
}
