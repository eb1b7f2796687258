//! The forward proxy (`forward_proxy:`), for apps that cannot change the
//! base URL they call but honour `HTTPS_PROXY`.
//!
//! A request on its listener goes through these steps, in this order:
//!
//! 1. **Accept** (`serve`): a connection slot of the process's, HTTP/1.1
//!    only (what proxy clients speak), under the proxy listener's header
//!    deadline and framing watch.
//! 2. **Client** (`access.rs`): a client outside `allow` gets 403 to every
//!    request.
//! 3. **Credentials**: with `credentials`, a request without the right
//!    `Proxy-Authorization` gets 407.
//! 4. **Target** (`access.rs`): a `CONNECT` names `host:port`, the port
//!    one of `ports`; a plain request names an absolute `http://` URL.
//!    Anything else is 400.
//! 5. **Claimed host**: a host a route claims is intercepted. A `CONNECT`
//!    is answered 200, then TLS is terminated with a certificate the CA
//!    mints for that host (`leaves.rs`; the client's SNI must name it), and
//!    the requests inside are served as on the proxy listener
//!    ([`InterceptServer`]), routed to the routes that claim the host. A
//!    plain request goes through the route the same way. Either way, the
//!    route forwards to its upstream over verified TLS, and what reaches a
//!    claimed host always went through a route: nothing to it is tunnelled.
//! 6. **Other hosts** (`tunnel.rs`): `others: deny` is 403. `others: tunnel`
//!    resolves the host, refuses it when an address is not public (unless
//!    in `private_destinations`), connects, and then passes the bytes both
//!    ways unread (a `CONNECT`) or the request as it came (a plain request,
//!    to port 80 only).
//!
//! Every refusal is counted by reason and logged once with the host it
//! named, never a request's content.

mod access;
mod leaves;
mod tunnel;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use crate::metrics::{ForwardHandling, ForwardProxyMetrics, ForwardRefusal};
use crate::policy::{ForwardProxySettings, Others, Policy};
use crate::proxy::{
    ConnectionSlots, Entry, FramingWatch, InterceptServer, Proxy, ResponseBody, ServerHandle,
    Verdicts, full_body,
};

use access::Target;
pub(crate) use leaves::Leaves;

/// What the forward proxy shares across the process: the CA's minted
/// certificates.
pub struct Certificates(Arc<Leaves>);

impl Certificates {
    /// The cache of `policy`'s `forward_proxy`, if it has one.
    pub fn for_policy(policy: &Policy, metrics: &crate::metrics::Metrics) -> Option<Certificates> {
        let settings = policy.forward_proxy.as_ref()?;
        Some(Certificates(Arc::new(Leaves::new(
            settings.authority.clone(),
            settings.certificate_cache,
            metrics.forward_proxy.clone(),
        ))))
    }
}

/// One worker's forward proxy.
pub struct ForwardProxy {
    proxy: Arc<Proxy>,
    leaves: Arc<Leaves>,
    intercept: InterceptServer,
    metrics: Arc<ForwardProxyMetrics>,
}

impl ForwardProxy {
    /// Serves through `proxy`'s routes, with certificates from
    /// `certificates` (one cache for the process).
    pub fn new(proxy: Arc<Proxy>, certificates: &Certificates) -> ForwardProxy {
        ForwardProxy {
            metrics: proxy.metrics().forward_proxy.clone(),
            intercept: InterceptServer::new(proxy.clone()),
            leaves: certificates.0.clone(),
            proxy,
        }
    }
}

/// Serves the forward proxy on `listener` until shut down, taking
/// connection slots from `slots`.
pub fn serve(
    listener: TcpListener,
    forward: Arc<ForwardProxy>,
    slots: &ConnectionSlots,
) -> std::io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(listener, forward, slots.clone(), stopped));
    Ok(ServerHandle::new(local_addr, stop, task))
}

/// What keeps a connection counted after hyper hands its socket to a
/// tunnel: its slot, and the listener's count of live connections.
struct Hold {
    _permit: OwnedSemaphorePermit,
    _alive: watch::Receiver<()>,
}

async fn accept_loop(
    listener: TcpListener,
    forward: Arc<ForwardProxy>,
    slots: ConnectionSlots,
    mut stopped: watch::Receiver<bool>,
) {
    let (alive, _) = watch::channel(());
    let settings = forward.proxy.policy().server;
    loop {
        let permit = tokio::select! {
            permit = slots.acquire() => match permit {
                Some(permit) => permit,
                None => break,
            },
            _ = stopped.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "forward proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let hold = Arc::new(Hold {
            _permit: permit,
            _alive: alive.subscribe(),
        });
        let (forward, stopped) = (forward.clone(), stopped.clone());
        tokio::spawn(async move {
            let opened = Instant::now();
            let verdicts = Verdicts::default();
            let head_buffer = settings.max_header_bytes.max(8192);
            let io = FramingWatch::new(stream, verdicts.clone(), head_buffer);
            // Requests on an HTTP/1 connection come in order: a count names
            // each one for the framing watch.
            let requests = std::sync::atomic::AtomicU64::new(0);
            let connection_stopped = stopped.clone();
            let service = service_fn(move |request| {
                let count = requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let refused = verdicts.is_refused(count);
                let context = Context {
                    forward: forward.clone(),
                    peer,
                    hold: hold.clone(),
                    stopped: connection_stopped.clone(),
                    opened,
                };
                async move {
                    let response = if refused {
                        context.forward.proxy.refuse_ambiguous()
                    } else {
                        context.handle(request).await
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(settings.header_read_timeout)
                .max_buf_size(head_buffer)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let mut stopped = stopped;
            let stopping = tokio::select! {
                _ = connection.as_mut() => false,
                _ = stopped.wait_for(|stop| *stop) => true,
            };
            if stopping {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(settings.shutdown_grace, connection).await;
            }
        });
    }
    drop(listener);
    let grace = forward.proxy.policy().server.shutdown_grace;
    let _ = tokio::time::timeout(grace, alive.closed()).await;
}

/// One request on the forward proxy's listener, and what it may use.
struct Context {
    forward: Arc<ForwardProxy>,
    peer: SocketAddr,
    hold: Arc<Hold>,
    stopped: watch::Receiver<bool>,
    opened: Instant,
}

/// A refusal: its reason (counted), status and the message the client
/// reads.
struct Refusal {
    reason: ForwardRefusal,
    status: StatusCode,
    message: &'static str,
}

impl Refusal {
    fn new(reason: ForwardRefusal) -> Refusal {
        let (status, message) = match reason {
            ForwardRefusal::ClientNotAllowed => (
                StatusCode::FORBIDDEN,
                "this address may not use the proxy (forward_proxy.allow)",
            ),
            ForwardRefusal::Credentials => (
                StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                "proxy credentials required",
            ),
            ForwardRefusal::PortNotAllowed => (
                StatusCode::FORBIDDEN,
                "the proxy does not connect to this port (forward_proxy.ports)",
            ),
            ForwardRefusal::PrivateDestination => (
                StatusCode::FORBIDDEN,
                "the host resolves to an address that is not public (forward_proxy.private_destinations)",
            ),
            ForwardRefusal::NotClaimed => (
                StatusCode::FORBIDDEN,
                "no route takes this host, and forward_proxy.others is deny",
            ),
            ForwardRefusal::BadTarget => (
                StatusCode::BAD_REQUEST,
                "the forward proxy takes CONNECT host:port, or an absolute http:// URL",
            ),
            ForwardRefusal::Unreachable => (
                StatusCode::BAD_GATEWAY,
                "the host did not resolve or did not answer",
            ),
            ForwardRefusal::SniMismatch | ForwardRefusal::Handshake => {
                (StatusCode::BAD_REQUEST, "TLS handshake refused")
            }
        };
        Refusal {
            reason,
            status,
            message,
        }
    }
}

impl Context {
    async fn handle(self, request: Request<Incoming>) -> Response<ResponseBody> {
        let policy = self.forward.proxy.policy();
        // Never met: a reload cannot remove the forward proxy (it takes a
        // restart).
        let Some(settings) = policy.forward_proxy.as_ref() else {
            return self.refuse(Refusal::new(ForwardRefusal::ClientNotAllowed), None);
        };
        if !access::client_allowed(settings, self.peer.ip()) {
            return self.refuse(Refusal::new(ForwardRefusal::ClientNotAllowed), None);
        }
        if let Some(credentials) = &settings.credentials {
            let presented = request
                .headers()
                .get(http::header::PROXY_AUTHORIZATION)
                .map(http::HeaderValue::as_bytes);
            if !credentials.accepts(presented) {
                let mut response = self.refuse(Refusal::new(ForwardRefusal::Credentials), None);
                response.headers_mut().insert(
                    http::header::PROXY_AUTHENTICATE,
                    http::HeaderValue::from_static("Basic realm=\"scrim\""),
                );
                return response;
            }
        }
        if request.method() == Method::CONNECT {
            self.connect(request, settings, &policy).await
        } else {
            self.plain(request, settings, &policy).await
        }
    }

    async fn connect(
        self,
        mut request: Request<Incoming>,
        settings: &ForwardProxySettings,
        policy: &Policy,
    ) -> Response<ResponseBody> {
        let Some(target) = Target::of_connect(request.uri()) else {
            return self.refuse(Refusal::new(ForwardRefusal::BadTarget), None);
        };
        if !settings.ports.contains(&target.port) {
            return self.refuse(Refusal::new(ForwardRefusal::PortNotAllowed), Some(&target));
        }
        let upgrade = hyper::upgrade::on(&mut request);
        if self.forward.proxy.claims(&target.host) {
            self.forward
                .metrics
                .handled(ForwardHandling::ConnectIntercepted);
            tracing::info!(target: "scrim::access", listener = "forward_proxy", host = target.host.as_str(), port = target.port, handling = "intercepted", "tunnel");
            let deadline = Instant::now() + policy.server.header_read_timeout;
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    self.intercept(TokioIo::new(upgraded), target, deadline)
                        .await;
                }
            });
            return empty(StatusCode::OK);
        }
        if settings.others == Others::Deny {
            return self.refuse(Refusal::new(ForwardRefusal::NotClaimed), Some(&target));
        }
        let server = match self.reach(&target, settings, policy).await {
            Ok(server) => server,
            Err(reason) => return self.refuse(Refusal::new(reason), Some(&target)),
        };
        self.forward
            .metrics
            .handled(ForwardHandling::ConnectTunnelled);
        tracing::info!(target: "scrim::access", listener = "forward_proxy", host = target.host.as_str(), port = target.port, handling = "tunnelled", "tunnel");
        let (idle, grace) = (settings.idle_timeout, policy.server.shutdown_grace);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                tunnel::splice(
                    TokioIo::new(upgraded),
                    server,
                    idle,
                    grace,
                    self.stopped.clone(),
                )
                .await;
            }
            drop(self.hold);
        });
        empty(StatusCode::OK)
    }

    /// Terminates the client's TLS for `target` and serves the requests
    /// inside through the routes that claim it.
    async fn intercept<I>(self, io: I, target: Target, deadline: Instant)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let Ok(Ok(start)) = tokio::time::timeout_at(deadline, acceptor).await else {
            self.refused_quietly(ForwardRefusal::Handshake, &target);
            return;
        };
        // The client must mean the host it asked a tunnel to: an address
        // is not sent as SNI, a name always is.
        let named = start
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        let matches = match (&named, target.ip()) {
            (Some(name), _) => name.trim_end_matches('.') == target.host,
            (None, Some(_)) => true,
            (None, None) => false,
        };
        if !matches {
            self.refused_quietly(ForwardRefusal::SniMismatch, &target);
            return;
        }
        let config = match self.forward.leaves.server_config(target.bare_host()) {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(host = target.host.as_str(), %error, "forward proxy: no certificate");
                self.refused_quietly(ForwardRefusal::Handshake, &target);
                return;
            }
        };
        let Ok(Ok(tls)) = tokio::time::timeout_at(deadline, start.into_stream(config)).await else {
            self.refused_quietly(ForwardRefusal::Handshake, &target);
            return;
        };
        self.forward
            .intercept
            .serve(
                tls,
                Arc::from(target.host.as_str()),
                self.opened,
                self.stopped.clone(),
            )
            .await;
        drop(self.hold);
    }

    /// A plain-HTTP proxy request (`GET http://host/path`).
    async fn plain(
        self,
        request: Request<Incoming>,
        settings: &ForwardProxySettings,
        policy: &Policy,
    ) -> Response<ResponseBody> {
        let Some(target) = Target::of_plain(request.uri()) else {
            return self.refuse(Refusal::new(ForwardRefusal::BadTarget), None);
        };
        if self.forward.proxy.claims(&target.host) {
            self.forward
                .metrics
                .handled(ForwardHandling::PlainIntercepted);
            return self
                .forward
                .proxy
                .handle_from(request, Entry::Claimed(&target.host))
                .await;
        }
        if settings.others == Others::Deny {
            return self.refuse(Refusal::new(ForwardRefusal::NotClaimed), Some(&target));
        }
        if target.port != 80 {
            return self.refuse(Refusal::new(ForwardRefusal::PortNotAllowed), Some(&target));
        }
        let server = match self.reach(&target, settings, policy).await {
            Ok(server) => server,
            Err(reason) => return self.refuse(Refusal::new(reason), Some(&target)),
        };
        self.forward.metrics.handled(ForwardHandling::PlainPassed);
        match tunnel::pass_plain(request, server, policy.timeouts.response).await {
            Ok(response) => response,
            Err(tunnel::PassError::TimedOut) => {
                let mut response = empty(StatusCode::GATEWAY_TIMEOUT);
                *response.body_mut() =
                    full_body(Bytes::from_static(b"the host did not answer in time\n"));
                response
            }
            Err(tunnel::PassError::Failed) => {
                self.refuse(Refusal::new(ForwardRefusal::Unreachable), Some(&target))
            }
        }
    }

    /// Resolves `target` and connects to it, where `settings` allow.
    async fn reach(
        &self,
        target: &Target,
        settings: &ForwardProxySettings,
        policy: &Policy,
    ) -> Result<tokio::net::TcpStream, ForwardRefusal> {
        let timeout = policy.timeouts.connect;
        let addresses = access::resolve(target, &settings.private_destinations, timeout).await?;
        tunnel::connect(&addresses, timeout)
            .await
            .ok_or(ForwardRefusal::Unreachable)
    }

    fn refuse(&self, refusal: Refusal, target: Option<&Target>) -> Response<ResponseBody> {
        self.log_refusal(refusal.reason, refusal.status, target);
        let mut response = Response::new(full_body(Bytes::from(format!(
            "scrim forward proxy: {}\n",
            refusal.message
        ))));
        *response.status_mut() = refusal.status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if refusal.status != StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            // A refused client gets no second try on this connection.
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    }

    /// A refusal after the tunnel was open: the client sees its TLS fail.
    fn refused_quietly(&self, reason: ForwardRefusal, target: &Target) {
        self.log_refusal(reason, StatusCode::BAD_REQUEST, Some(target));
    }

    fn log_refusal(&self, reason: ForwardRefusal, status: StatusCode, target: Option<&Target>) {
        self.forward.metrics.refused(reason);
        tracing::info!(
            target: "scrim::access",
            listener = "forward_proxy",
            host = target.map(|t| t.host.as_str()),
            port = target.map(|t| t.port),
            status = status.as_u16(),
            reason = reason.as_str(),
            "forward proxy refusal"
        );
    }
}

fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(full_body(Bytes::new()));
    *response.status_mut() = status;
    response
}
