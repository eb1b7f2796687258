//! The forward proxy (`forward_proxy:`), for apps that cannot change the
//! base URL they call but honour `HTTPS_PROXY`.
//!
//! A request on its listener goes through these steps, in this order:
//!
//! 1. **Accept** (`serve`): a connection slot of the process's, HTTP/1.1
//!    only (what proxy clients speak), under the proxy listener's header
//!    deadline and framing watch.
//! 2. **Client** (`access.rs`): a client outside `allow` is closed as soon
//!    as it is accepted.
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
//!    to port 80 only). A tunnel's first bytes must be a TLS ClientHello
//!    that names no claimed host: a platform reached by its address still
//!    names itself there, and is refused rather than passed unread.
//!
//! Every refusal is counted by reason and logged once with the host it
//! named, never a request's content.

mod access;
mod leaves;
mod tunnel;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;

use crate::metrics::{ForwardHandling, ForwardProxyMetrics, ForwardRefusal};
use crate::policy::{ForwardProxySettings, Others, Policy, canonical_host};
use crate::proxy::{
    Answer, ConnectionSlots, Entry, InterceptServer, Proxy, ResponseBody, ServerHandle, Upgrades,
    forward_proxy_builder, full_body, serve_answering,
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
    let builder = Arc::new(forward_proxy_builder(&settings));
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
        // A client outside `allow` is closed at once, before it could hold
        // a slot the proxy listener shares; counted, not logged (a flood
        // would flood the log).
        let allowed = forward
            .proxy
            .policy()
            .forward_proxy
            .as_ref()
            .is_some_and(|settings| access::client_allowed(settings, peer.ip()));
        if !allowed {
            forward.metrics.refused(ForwardRefusal::ClientNotAllowed);
            drop((stream, permit));
            continue;
        }
        let _ = stream.set_nodelay(true);
        let answer = ForwardAnswer {
            forward: forward.clone(),
            hold: Arc::new(Hold {
                _permit: permit,
                _alive: alive.subscribe(),
            }),
            stopped: stopped.clone(),
        };
        let (builder, stopped) = (builder.clone(), stopped.clone());
        tokio::spawn(async move {
            let opened = Instant::now();
            serve_answering(
                stream,
                &settings,
                &builder,
                answer,
                Upgrades::Allowed,
                opened,
                stopped,
            )
            .await;
        });
    }
    drop(listener);
    let grace = forward.proxy.policy().server.shutdown_grace;
    let _ = tokio::time::timeout(grace, alive.closed()).await;
}

/// The forward proxy's requests on one connection.
#[derive(Clone)]
struct ForwardAnswer {
    forward: Arc<ForwardProxy>,
    hold: Arc<Hold>,
    stopped: watch::Receiver<bool>,
}

impl Answer for ForwardAnswer {
    async fn answer(self, request: Request<Incoming>, refused: bool) -> Response<ResponseBody> {
        if refused {
            return self.forward.proxy.refuse_ambiguous();
        }
        Context {
            forward: self.forward,
            hold: self.hold,
            stopped: self.stopped,
        }
        .handle(request)
        .await
    }
}

/// One request on the forward proxy's listener, and what it may use.
struct Context {
    forward: Arc<ForwardProxy>,
    hold: Arc<Hold>,
    stopped: watch::Receiver<bool>,
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
            ForwardRefusal::SniMismatch
            | ForwardRefusal::Handshake
            | ForwardRefusal::ClaimedName => (StatusCode::BAD_REQUEST, "TLS handshake refused"),
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
            let opened = Instant::now();
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    self.intercept(TokioIo::new(upgraded), target, opened).await;
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
        let deadline = Instant::now() + policy.server.header_read_timeout;
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            // Tunnels carry TLS, and never to a claimed host: one reached
            // by an address or another name still names it in its hello.
            let mut client = TokioIo::new(upgraded);
            let Some((hello, name)) = tunnel::client_hello(&mut client, deadline).await else {
                self.refused_quietly(ForwardRefusal::Handshake, &target);
                return;
            };
            if name.is_some_and(|name| self.forward.proxy.claims(&name)) {
                self.refused_quietly(ForwardRefusal::ClaimedName, &target);
                return;
            }
            let mut server = server;
            if tokio::io::AsyncWriteExt::write_all(&mut server, &hello)
                .await
                .is_ok()
            {
                tunnel::splice(client, server, idle, grace, self.stopped.clone()).await;
            }
            drop(self.hold);
        });
        empty(StatusCode::OK)
    }

    /// Terminates the client's TLS for `target` and serves the requests
    /// inside through the routes that claim it; `opened` is when the
    /// tunnel was granted, from which the client has `header_read_timeout`
    /// for its handshake and first request.
    async fn intercept<I>(self, io: I, target: Target, opened: Instant)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let deadline = opened + self.forward.proxy.policy().server.header_read_timeout;
        let acceptor =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let Ok(Ok(start)) = tokio::time::timeout_at(deadline, acceptor).await else {
            self.refused_quietly(ForwardRefusal::Handshake, &target);
            return;
        };
        // The client must mean the host it asked a tunnel to: an address
        // is not sent as SNI, a name always is.
        let named = start.client_hello().server_name().map(canonical_host);
        let matches = match (&named, target.ip()) {
            (Some(name), _) => *name == target.host,
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
                opened,
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
        match tunnel::pass_plain(
            request,
            server,
            policy.timeouts.response,
            settings.idle_timeout,
        )
        .await
        {
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
        // One deadline for the lookup and every address tried.
        let timeout = policy.timeouts.connect;
        let reached = async {
            let addresses =
                access::resolve(target, &settings.private_destinations, timeout).await?;
            tunnel::connect(&addresses, timeout)
                .await
                .ok_or(ForwardRefusal::Unreachable)
        };
        tokio::time::timeout(timeout, reached)
            .await
            .unwrap_or(Err(ForwardRefusal::Unreachable))
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
