//! The upstream client: connections to one route's upstream, opened by
//! hyper-rustls (TCP, TLS through rustls with the web PKI roots, ALPN) and
//! kept by the worker thread that opened them.
//!
//! scrim runs one single-threaded runtime per core (`service.rs`) and builds
//! an [`Upstream`] per route and per worker, so its idle list needs no key
//! and is never contended. hyper-util's general pooled client, used before,
//! hashed its pool key twice per request, boxed its checkout and connect
//! futures, and spawned a task per HTTP/1.1 response to wait for the
//! connection to become idle again: 6% of the instructions of a proxied
//! request (`benches/instructions.sh`).
//!
//! HTTP/1.1 connections carry one request at a time. A connection goes back
//! to the idle list when its response body has been read to its end; a
//! response dropped before its end takes its connection with it. When ALPN
//! negotiates h2, one connection carries all the worker's requests to that
//! upstream. A request that a reused connection could not start (the upstream
//! closed it while it was idle) is sent again on another connection; nothing
//! else is retried, so a request the upstream may have seen is never sent
//! twice.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
// Tokio's clock, so that tests can let time pass.
use tokio::time::Instant;
use tower_service::Service;

use super::{BoxError, RequestBody};

/// How long an unused connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle HTTP/1.1 connections kept per route and worker.
const MAX_IDLE: usize = 64;

/// Opens connections: TCP with a connect timeout, then TLS for `https`.
#[derive(Clone)]
pub(crate) struct Connector(HttpsConnector<HttpConnector>);

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

impl Connector {
    /// `extra_roots` are trusted besides the web PKI: a private CA in front
    /// of a self-hosted platform, or a test CA.
    pub(crate) fn new(
        connect_timeout: Duration,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Connector {
        let tls = crate::tls::client_config(extra_roots);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        Connector(
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_all_versions()
                .wrap_connector(http),
        )
    }

    async fn connect(&self, origin: &Uri) -> Result<Stream, BoxError> {
        let mut connector = self.0.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        connector.call(origin.clone()).await
    }
}

/// One route's upstream, as seen from one worker thread.
pub(crate) struct Upstream {
    connector: Connector,
    /// Scheme and authority: what is dialed, and what HTTP/2 requests name.
    origin: Uri,
    /// The `Host` header of HTTP/1.1 requests.
    host: HeaderValue,
    idle: Arc<Mutex<Idle>>,
    /// Whether the task that closes unused connections runs (it starts with
    /// the first connection, on the worker's runtime).
    expiring: AtomicBool,
}

#[derive(Default)]
struct Idle {
    /// Oldest first; the most recently used is taken first, so that a
    /// quiet period lets the oldest ones expire.
    http1: VecDeque<(http1::SendRequest<RequestBody>, Instant)>,
    http2: Option<http2::SendRequest<RequestBody>>,
}

enum Sender {
    Http1(http1::SendRequest<RequestBody>),
    Http2(http2::SendRequest<RequestBody>),
}

impl Upstream {
    /// `upstream` is the route's upstream URL; only its scheme and authority
    /// are used here (the path is the caller's).
    pub(crate) fn new(connector: Connector, upstream: &Uri) -> Upstream {
        let mut parts = http::uri::Parts::default();
        parts.scheme = upstream.scheme().cloned();
        parts.authority = upstream.authority().cloned();
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
        // The policy only holds upstreams with a scheme and a host, so the
        // fallbacks here are never used.
        let origin = Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("http://invalid"));
        let host = upstream
            .authority()
            .map(
                |authority| match (authority.port_u16(), upstream.scheme_str()) {
                    (Some(80), Some("http")) | (Some(443), Some("https")) => authority.host(),
                    _ => authority.as_str(),
                },
            )
            .and_then(|host| HeaderValue::from_str(host).ok())
            .unwrap_or_else(|| HeaderValue::from_static("invalid"));
        Upstream {
            connector,
            origin,
            host,
            idle: Arc::default(),
            expiring: AtomicBool::new(false),
        }
    }

    /// Sends `request`, whose URI is the path and query (origin form), and
    /// returns the response head as soon as it arrives.
    pub(crate) async fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        loop {
            let (sender, reused) = self.checkout().await?;
            let sent = match sender {
                Sender::Http1(mut sender) => {
                    *request.uri_mut() = Uri::from(path.clone());
                    request
                        .headers_mut()
                        .insert(header::HOST, self.host.clone());
                    let sent = sender.try_send_request(request).await;
                    sent.map(|response| {
                        response.map(|body| UpstreamBody {
                            body,
                            release: Some(Release {
                                sender,
                                idle: Arc::downgrade(&self.idle),
                            }),
                        })
                    })
                }
                Sender::Http2(mut sender) => {
                    request.headers_mut().remove(header::HOST);
                    *request.uri_mut() = self.absolute(&path);
                    let sent = sender.try_send_request(request).await;
                    // A closed connection, or one that gave a request back
                    // unsent, is replaced: the retry below cannot meet it
                    // again.
                    if sent.as_ref().is_err_and(|e| e.message().is_some()) || sender.is_closed() {
                        self.lock().http2 = None;
                    }
                    sent.map(|response| {
                        response.map(|body| UpstreamBody {
                            body,
                            release: None,
                        })
                    })
                }
            };
            match sent {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(error.into_error().into()),
                },
            }
        }
    }

    fn absolute(&self, path: &PathAndQuery) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = self.origin.scheme().cloned();
        parts.authority = self.origin.authority().cloned();
        parts.path_and_query = Some(path.clone());
        Uri::from_parts(parts).unwrap_or_else(|_| self.origin.clone())
    }

    /// A connection ready for a request, and whether it was used before.
    async fn checkout(&self) -> Result<(Sender, bool), BoxError> {
        loop {
            let candidate = {
                let mut idle = self.lock();
                if let Some(http2) = &idle.http2 {
                    if !http2.is_closed() {
                        return Ok((Sender::Http2(http2.clone()), true));
                    }
                    idle.http2 = None;
                }
                idle.take_http1()
            };
            let Some(mut sender) = candidate else {
                // Boxed: a connection's handshake is a 6.5 KiB future. Held
                // inline, it made every request's future that large, though
                // only a new connection awaits it, and moving the request's
                // future copied it: a fifth of a proxied event's
                // instructions (`benches/instructions.sh`).
                return Ok((Box::pin(self.connect()).await?, false));
            };
            if sender.is_ready() {
                return Ok((Sender::Http1(sender), true));
            }
            // Its last response has ended; the connection is about to turn
            // idle, or to close.
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok((Sender::Http1(sender), true));
            }
        }
    }

    async fn connect(&self) -> Result<Sender, BoxError> {
        let stream = self.connector.connect(&self.origin).await?;
        if !self.expiring.swap(true, Ordering::Relaxed) {
            tokio::spawn(expire_idle(Arc::downgrade(&self.idle)));
        }
        if stream.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(stream)
                .await?;
            tokio::spawn(connection);
            let mut idle = self.lock();
            // Another request may have opened one meanwhile: share it, and
            // let this one close.
            if let Some(existing) = &idle.http2
                && !existing.is_closed()
            {
                return Ok(Sender::Http2(existing.clone()));
            }
            idle.http2 = Some(sender.clone());
            Ok(Sender::Http2(sender))
        } else {
            let (sender, connection) = http1::Builder::new().handshake(stream).await?;
            tokio::spawn(connection);
            Ok(Sender::Http1(sender))
        }
    }

    fn lock(&self) -> MutexGuard<'_, Idle> {
        lock(&self.idle)
    }
}

/// Closes the connections left unused for `IDLE_TIMEOUT` even when no
/// request comes to find them stale; ends with its `Upstream`.
async fn expire_idle(idle: Weak<Mutex<Idle>>) {
    let mut every = tokio::time::interval(IDLE_TIMEOUT / 4);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(idle) = idle.upgrade() else {
            return;
        };
        lock(&idle).expire(Instant::now());
    }
}

fn lock(idle: &Mutex<Idle>) -> MutexGuard<'_, Idle> {
    // The list stays consistent whatever panicked while holding it.
    idle.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Idle {
    /// Drops the connections idle for longer than `IDLE_TIMEOUT` (which
    /// closes them) and those the upstream closed.
    fn expire(&mut self, now: Instant) {
        self.http1.retain(|(sender, since)| {
            !sender.is_closed() && now.duration_since(*since) <= IDLE_TIMEOUT
        });
        if self.http2.as_ref().is_some_and(|h2| h2.is_closed()) {
            self.http2 = None;
        }
    }

    fn take_http1(&mut self) -> Option<http1::SendRequest<RequestBody>> {
        while let Some((sender, since)) = self.http1.pop_back() {
            if since.elapsed() > IDLE_TIMEOUT {
                // The rest are older still.
                self.http1.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put_http1(&mut self, sender: http1::SendRequest<RequestBody>) {
        let now = Instant::now();
        while self
            .http1
            .front()
            .is_some_and(|(_, since)| now.duration_since(*since) > IDLE_TIMEOUT)
        {
            self.http1.pop_front();
        }
        if !sender.is_closed() && self.http1.len() < MAX_IDLE {
            self.http1.push_back((sender, now));
        }
    }
}

/// A response body from the upstream. Reading it to its end gives its
/// HTTP/1.1 connection back for the next request.
pub(crate) struct UpstreamBody {
    body: Incoming,
    release: Option<Release>,
}

struct Release {
    sender: http1::SendRequest<RequestBody>,
    idle: Weak<Mutex<Idle>>,
}

impl UpstreamBody {
    fn release(&mut self) {
        if let Some(release) = self.release.take()
            && let Some(idle) = release.idle.upgrade()
        {
            lock(&idle).put_http1(release.sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.release(),
            Some(Ok(_)) if this.body.is_end_stream() => this.release(),
            // After an error the connection is not reused.
            Some(Err(_)) => this.release = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body without content (HEAD, 204, `Content-Length: 0`) is never
        // read; one dropped halfway leaves its connection unusable.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Answers `ok` to every request on every connection, counting them.
    async fn upstream() -> Result<(Uri, Arc<AtomicUsize>), BoxError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let uri = format!("http://{}", listener.local_addr()?).parse()?;
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    // Requests without a body: one read each is enough here.
                    while let Ok(n) = stream.read(&mut buf).await
                        && n > 0
                    {
                        count.fetch_add(1, Ordering::SeqCst);
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok((uri, seen))
    }

    fn get() -> Request<RequestBody> {
        let mut request = Request::new(Empty::new().map_err(|never| match never {}).boxed());
        *request.uri_mut() = Uri::from_static("/events");
        request
    }

    /// An idle connection whose peer has closed it, before the connection
    /// task has had a chance to notice: the request sent on it comes back
    /// unsent and goes out on a new connection, once.
    #[tokio::test]
    async fn a_request_a_stale_connection_could_not_start_goes_on_a_new_one() -> Result<(), BoxError>
    {
        let (uri, seen) = upstream().await?;
        let upstream = Upstream::new(Connector::new(Duration::from_secs(1), &[]), &uri);

        let (stale, server_io) = idle_connection().await?;
        upstream.lock().put_http1(stale);
        // Closed now; the connection task runs only when this task yields.
        drop(server_io);

        let response = upstream.send(get()).await?;
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await?.to_bytes();
        assert_eq!(&body[..], b"ok");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        Ok(())
    }

    /// Every request's future holds a send inline: a new connection's
    /// handshake (6.5 KiB) must stay behind its box, or each request copies
    /// it whenever its future moves.
    #[tokio::test]
    async fn a_send_holds_no_handshake_inline() {
        let uri = Uri::from_static("http://127.0.0.1:9");
        let upstream = Upstream::new(Connector::new(Duration::from_secs(1), &[]), &uri);
        let send = upstream.send(get());
        let size = std::mem::size_of_val(&send);
        assert!(size < 2048, "a send's future is {size} bytes");
    }

    #[tokio::test]
    async fn a_connection_whose_response_was_read_is_reused() -> Result<(), BoxError> {
        let (uri, seen) = upstream().await?;
        let upstream = Upstream::new(Connector::new(Duration::from_secs(1), &[]), &uri);
        for _ in 0..3 {
            let response = upstream.send(get()).await?;
            response.into_body().collect().await?;
            assert_eq!(upstream.lock().http1.len(), 1);
        }
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        // Dropped before its end, the connection is not kept.
        let response = upstream.send(get()).await?;
        drop(response);
        assert_eq!(upstream.lock().http1.len(), 0);
        Ok(())
    }

    /// An idle connection over an in-memory pipe, ready for a request, and
    /// the pipe's other end.
    async fn idle_connection()
    -> Result<(http1::SendRequest<RequestBody>, tokio::io::DuplexStream), BoxError> {
        let (io, peer) = tokio::io::duplex(1024);
        let (mut sender, connection) = http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(connection);
        sender.ready().await?;
        Ok((sender, peer))
    }

    // Paused time, and no network: the clock moves only when every task
    // waits on a timer.
    #[tokio::test(start_paused = true)]
    async fn connections_left_unused_are_closed() -> Result<(), BoxError> {
        let upstream = Upstream::new(
            Connector::new(Duration::from_secs(1), &[]),
            &Uri::from_static("http://127.0.0.1:9"),
        );
        let (sender, _peer) = idle_connection().await?;
        upstream.lock().put_http1(sender);
        tokio::spawn(expire_idle(Arc::downgrade(&upstream.idle)));
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        assert_eq!(upstream.lock().http1.len(), 1, "not yet");
        tokio::time::sleep(IDLE_TIMEOUT).await;
        assert_eq!(upstream.lock().http1.len(), 0, "closed without a request");
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_expire_oldest_first() -> Result<(), BoxError> {
        let mut idle = Idle::default();
        let (old, _old_peer) = idle_connection().await?;
        idle.put_http1(old);
        tokio::time::sleep(IDLE_TIMEOUT + Duration::from_secs(1)).await;
        let (young, _young_peer) = idle_connection().await?;
        idle.put_http1(young);
        assert_eq!(idle.http1.len(), 1, "the expired one went");
        assert!(idle.take_http1().is_some());
        assert!(idle.take_http1().is_none());
        Ok(())
    }
}
