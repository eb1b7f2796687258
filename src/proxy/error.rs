//! The proxy's errors. Leaf errors are typed here and turned into a response
//! in one place ([`ProxyError::into_response`]), so every refusal has the
//! same shape: a status, and a JSON body naming the reason (never a value).

use std::fmt;

use bytes::Bytes;
use http::{Response, StatusCode, header};

use super::ResponseBody;
use crate::metrics::{RejectReason, RequestOutcome};
use crate::rewrite;

/// Why a request was not (completely) forwarded.
#[derive(Debug)]
pub struct ProxyError {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    NoRoute,
    BodyTooLarge {
        limit: u64,
    },
    /// Over `buffer_limit` on a route that reads consent signals in bodies.
    ConsentBodyTooLarge {
        limit: u64,
    },
    UnsupportedMediaType,
    UnsupportedEncoding,
    Body(rewrite::Error),
    /// The body could not be read or decoded (a client reset, a corrupt gzip
    /// stream).
    BadBody(&'static str),
    /// The request cannot be forwarded as it is.
    BadRequest(&'static str),
    /// The body did not arrive whole within `server.body_read_timeout`.
    BodyTimeout,
    /// `limits.max_buffered_bytes` is spent.
    Overloaded,
    /// The token vault's store did not answer (down, or slower than
    /// `vault.timeout`); the cause is for the log.
    VaultUnavailable(crate::vault::StoreError),
    /// The upstream answered, but the vault could not put the values back
    /// into its answer: not the client's to retry (the upstream has done
    /// what was asked), so a 502 without `Retry-After`.
    RevealUnavailable(crate::vault::StoreError),
    /// Framing that lets two parties disagree on where the request ends.
    AmbiguousFraming,
    /// `CONNECT` and `TRACE` have no place on a reverse proxy.
    MethodNotAllowed,
    /// The upstream answered with what cannot be forwarded (an upgrade the
    /// client did not ask for).
    UpstreamInvalid,
    /// The upstream could not be reached or broke off; the cause (DNS, TLS,
    /// refused) is for the log, never for the client.
    Upstream(super::BoxError),
    UpstreamTimeout,
}

impl ProxyError {
    pub(crate) fn no_route() -> Self {
        ProxyError {
            kind: Kind::NoRoute,
        }
    }
    pub(crate) fn body_too_large(limit: u64) -> Self {
        ProxyError {
            kind: Kind::BodyTooLarge { limit },
        }
    }
    pub(crate) fn consent_body_too_large(limit: u64) -> Self {
        ProxyError {
            kind: Kind::ConsentBodyTooLarge { limit },
        }
    }
    pub(crate) fn unsupported_media_type() -> Self {
        ProxyError {
            kind: Kind::UnsupportedMediaType,
        }
    }
    pub(crate) fn unsupported_encoding() -> Self {
        ProxyError {
            kind: Kind::UnsupportedEncoding,
        }
    }
    pub(crate) fn body(error: rewrite::Error) -> Self {
        ProxyError {
            kind: Kind::Body(error),
        }
    }
    pub(crate) fn bad_body(reason: &'static str) -> Self {
        ProxyError {
            kind: Kind::BadBody(reason),
        }
    }
    pub(crate) fn bad_request(reason: &'static str) -> Self {
        ProxyError {
            kind: Kind::BadRequest(reason),
        }
    }
    pub(crate) fn ambiguous_framing() -> Self {
        ProxyError {
            kind: Kind::AmbiguousFraming,
        }
    }
    pub(crate) fn overloaded() -> Self {
        ProxyError {
            kind: Kind::Overloaded,
        }
    }
    pub(crate) fn vault_unavailable(cause: crate::vault::StoreError) -> Self {
        ProxyError {
            kind: Kind::VaultUnavailable(cause),
        }
    }
    /// This error, met after the request was forwarded (while revealing
    /// its response).
    pub(crate) fn after_forwarding(self) -> Self {
        match self.kind {
            Kind::VaultUnavailable(cause) => ProxyError {
                kind: Kind::RevealUnavailable(cause),
            },
            _ => self,
        }
    }
    pub(crate) fn body_timeout() -> Self {
        ProxyError {
            kind: Kind::BodyTimeout,
        }
    }
    pub(crate) fn method_not_allowed() -> Self {
        ProxyError {
            kind: Kind::MethodNotAllowed,
        }
    }
    pub(crate) fn upstream_invalid() -> Self {
        ProxyError {
            kind: Kind::UpstreamInvalid,
        }
    }
    pub(crate) fn upstream(cause: super::BoxError) -> Self {
        ProxyError {
            kind: Kind::Upstream(cause),
        }
    }

    /// For the log: what lies behind an upstream error, each cause in the
    /// chain once (`client error (Connect): tcp connect error: Connection
    /// refused (os error 111)`). Not in the response: it describes scrim's
    /// network, not the client's request.
    pub(crate) fn cause(&self) -> Option<String> {
        if let Kind::VaultUnavailable(cause) | Kind::RevealUnavailable(cause) = &self.kind {
            return Some(cause.to_string());
        }
        let Kind::Upstream(cause) = &self.kind else {
            return None;
        };
        let mut text = cause.to_string();
        let mut source = cause.source();
        while let Some(error) = source {
            let part = error.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            source = error.source();
        }
        Some(text)
    }
    pub(crate) fn upstream_timeout() -> Self {
        ProxyError {
            kind: Kind::UpstreamTimeout,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::NoRoute => StatusCode::NOT_FOUND,
            Kind::BodyTooLarge { .. } | Kind::ConsentBodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Kind::UnsupportedMediaType | Kind::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Kind::Body(_) | Kind::BadBody(_) | Kind::BadRequest(_) | Kind::AmbiguousFraming => {
                StatusCode::BAD_REQUEST
            }
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::Overloaded | Kind::VaultUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Upstream(_) | Kind::UpstreamInvalid | Kind::RevealUnavailable(_) => {
                StatusCode::BAD_GATEWAY
            }
            Kind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn outcome(&self) -> RequestOutcome {
        match self.kind {
            Kind::Upstream(_) | Kind::UpstreamInvalid | Kind::RevealUnavailable(_) => {
                RequestOutcome::UpstreamError
            }
            Kind::UpstreamTimeout => RequestOutcome::UpstreamTimeout,
            _ => RequestOutcome::Rejected,
        }
    }

    /// The reason label, for requests refused by scrim itself.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        Some(match &self.kind {
            Kind::NoRoute => RejectReason::NoRoute,
            Kind::BodyTooLarge { .. } | Kind::ConsentBodyTooLarge { .. } => {
                RejectReason::BodyTooLarge
            }
            Kind::UnsupportedMediaType => RejectReason::UnsupportedMediaType,
            Kind::UnsupportedEncoding => RejectReason::UnsupportedEncoding,
            Kind::Body(e) if e.is_too_deep() => RejectReason::TooDeep,
            Kind::Body(e) if e.is_too_large() => RejectReason::ValueTooLarge,
            Kind::Body(e) if e.is_rejected() => RejectReason::RejectedValue,
            Kind::Body(_) => RejectReason::InvalidBody,
            Kind::BadBody(_)
            | Kind::BadRequest(_)
            | Kind::AmbiguousFraming
            | Kind::MethodNotAllowed => RejectReason::BadRequest,
            Kind::BodyTimeout => RejectReason::BodyTimeout,
            Kind::Overloaded => RejectReason::Overloaded,
            Kind::VaultUnavailable(_) => RejectReason::VaultUnavailable,
            Kind::RevealUnavailable(_) => return None,
            Kind::Upstream(_) | Kind::UpstreamTimeout | Kind::UpstreamInvalid => return None,
        })
    }

    /// Whether nothing more may be read from the connection after this
    /// answer: where the request ends is in doubt (ambiguous framing), or
    /// its body was not read whole (timed out, or never read for want of
    /// room).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self.kind,
            Kind::AmbiguousFraming | Kind::BodyTimeout | Kind::Overloaded
        )
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut response = Response::new(super::full_body(Bytes::from(body)));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        if matches!(self.kind, Kind::Overloaded | Kind::VaultUnavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if self.closes_connection() {
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::NoRoute => f.write_str("no route matches this request"),
            Kind::BodyTooLarge { limit } => write!(f, "body larger than {limit} bytes"),
            Kind::ConsentBodyTooLarge { limit } => write!(
                f,
                "body larger than {limit} bytes: this route reads consent signals in the body, so it takes bodies whole, up to buffer_limit"
            ),
            Kind::UnsupportedMediaType => f.write_str(
                "unsupported media type: this route rewrites JSON, NDJSON and form bodies (UTF-8)",
            ),
            Kind::UnsupportedEncoding => f.write_str(
                "unsupported Content-Encoding: gzip, deflate, br and identity are accepted",
            ),
            Kind::Body(error) => write!(f, "invalid body: {error}"),
            Kind::BadBody(reason) => write!(f, "invalid body: {reason}"),
            Kind::BadRequest(reason) => write!(f, "bad request: {reason}"),
            Kind::AmbiguousFraming => f.write_str(
                "ambiguous request framing: Transfer-Encoding with Content-Length, or a Transfer-Encoding other than chunked",
            ),
            Kind::Overloaded => f.write_str(
                "too many request bodies held at once (limits.max_buffered_bytes): retry shortly",
            ),
            Kind::VaultUnavailable(_) => f.write_str(
                "the token vault is unavailable: nothing was forwarded; retry shortly",
            ),
            Kind::RevealUnavailable(_) => f.write_str(
                "the upstream answered, but the token vault is unavailable to reveal its answer: do not retry blindly, the request was forwarded",
            ),
            Kind::BodyTimeout => {
                f.write_str("the request body did not arrive in time (server.body_read_timeout)")
            }
            Kind::MethodNotAllowed => {
                f.write_str("method not allowed: CONNECT and TRACE are not forwarded")
            }
            Kind::UpstreamInvalid => f.write_str(
                "the upstream answered with an interim or upgrade response the client did not ask for",
            ),
            Kind::Upstream(_) => f.write_str("the upstream could not be reached"),
            Kind::UpstreamTimeout => f.write_str("the upstream did not answer in time"),
        }
    }
}

impl std::error::Error for ProxyError {}
