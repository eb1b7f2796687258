//! The proxy listener: accepts connections (at most `max_connections` at a
//! time in the whole process), serves HTTP/1.1 or h2c on each, closes those
//! that keep no request in flight for `header_read_timeout`, and shuts down
//! gracefully.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
// Tokio's clock, so that tests can let time pass.
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::framing::{FramingWatch, Verdicts};
use super::{BoxError, Entry, Proxy, ResponseBody};
use crate::policy::ServerSettings;

/// A running listener.
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    pub(crate) fn new(
        local_addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
    ) -> ServerHandle {
        ServerHandle {
            local_addr,
            stop,
            task,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, without waiting.
    pub fn stop_accepting(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops accepting connections, lets requests in flight finish (within
    /// the grace period), and returns when the listener is done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The connection slots of the process (`server.max_connections`), shared
/// by every worker and listener.
#[derive(Clone)]
pub struct ConnectionSlots(Arc<Semaphore>);

impl ConnectionSlots {
    pub fn new(max_connections: usize) -> ConnectionSlots {
        ConnectionSlots(Arc::new(Semaphore::new(max_connections)))
    }

    /// A slot, once one is free (`None` once closed).
    pub(crate) async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.clone().acquire_owned().await.ok()
    }
}

/// Serves `proxy` on `listener` until shut down, with slots of its own.
/// Listener settings are read from the policy at start; they do not change
/// on reload.
pub fn serve(listener: TcpListener, proxy: Arc<Proxy>) -> std::io::Result<ServerHandle> {
    let slots = ConnectionSlots::new(proxy.policy().server.max_connections);
    serve_shared(listener, proxy, None, &slots)
}

/// The same, for a route's own listener: `address` is the route's `listen`
/// as configured, and only the routes that name it take its requests.
pub fn serve_route_listener(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    address: String,
) -> std::io::Result<ServerHandle> {
    let slots = ConnectionSlots::new(proxy.policy().server.max_connections);
    serve_shared(listener, proxy, Some(address), &slots)
}

/// Serves `proxy` on `listener`, taking connection slots from `slots`;
/// `route_listener` is the route `listen` address it serves, if any.
pub fn serve_shared(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    route_listener: Option<String>,
    slots: &ConnectionSlots,
) -> std::io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let policy = proxy.policy();
    // A listener meant for TLS never falls back to plain HTTP.
    let tls = policy.tls.clone().map(TlsAcceptor::from);
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        Listener {
            proxy,
            settings: policy.server,
            builder: Arc::new(builder(&policy.server)),
            tls,
            tag: route_listener.map_or(Tag::Main, |listen| Tag::RouteListener(Arc::from(listen))),
        },
        slots.0.clone(),
        stopped,
    ));
    Ok(ServerHandle {
        local_addr,
        stop,
        task,
    })
}

/// hyper's HTTP/1 read buffer, which a request head must fit.
fn head_buffer(settings: &ServerSettings) -> usize {
    settings.max_header_bytes.max(8192)
}

fn builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // The head must fit the read buffer: this caps its size.
        .max_buf_size(head_buffer(settings))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(settings.max_concurrent_streams)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// What every connection of one listener shares.
#[derive(Clone)]
struct Listener {
    proxy: Arc<Proxy>,
    settings: ServerSettings,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    tag: Tag,
}

/// Where a connection's requests came in ([`Entry`], owned).
#[derive(Clone)]
enum Tag {
    Main,
    RouteListener(Arc<str>),
    Claimed(Arc<str>),
}

impl Tag {
    fn entry(&self) -> Entry<'_> {
        match self {
            Tag::Main => Entry::Main,
            Tag::RouteListener(listen) => Entry::RouteListener(listen),
            Tag::Claimed(host) => Entry::Claimed(host),
        }
    }
}

/// Serves the connections the forward proxy intercepts (their TLS
/// terminated) as the proxy listener serves its own: the same protocols,
/// deadlines and framing watch, each request to the routes that claim the
/// host the tunnel was opened to.
#[derive(Clone)]
pub(crate) struct InterceptServer(Listener);

impl InterceptServer {
    pub(crate) fn new(proxy: Arc<Proxy>) -> InterceptServer {
        let settings = proxy.policy().server;
        InterceptServer(Listener {
            proxy,
            settings,
            builder: Arc::new(builder(&settings)),
            tls: None,
            tag: Tag::Main,
        })
    }

    /// Serves one decrypted connection, tunnelled to `host`, until it
    /// closes; `opened` is when its tunnel was accepted.
    pub(crate) async fn serve<I>(
        &self,
        io: I,
        host: Arc<str>,
        opened: Instant,
        stopped: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let listener = Listener {
            tag: Tag::Claimed(host),
            ..self.0.clone()
        };
        serve_connection(io, &listener, opened, stopped).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Listener,
    slots: Arc<Semaphore>,
    mut stopped: watch::Receiver<bool>,
) {
    // Each connection task holds a receiver: the sender's `closed()` is
    // when the last one has finished.
    let (alive, _) = watch::channel(());
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, usually: wait, do not spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let opened = Instant::now();
        let _ = stream.set_nodelay(true);
        let (shared, stopped, alive) = (shared.clone(), stopped.clone(), alive.subscribe());
        tokio::spawn(async move {
            match shared.tls.clone() {
                None => serve_connection(stream, &shared, opened, stopped).await,
                Some(acceptor) => {
                    // The handshake counts towards the time a connection
                    // has to send its first request.
                    let deadline = opened + shared.settings.header_read_timeout;
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout_at(deadline, acceptor.accept(stream)).await
                    {
                        serve_connection(stream, &shared, opened, stopped).await;
                    }
                }
            }
            drop((permit, alive));
        });
    }
    drop(listener);
    if tokio::time::timeout(shared.settings.shutdown_grace, alive.closed())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?shared.settings.shutdown_grace, "requests still in flight at the end of the grace period");
    }
}

/// What answers the requests of a connection: the proxy, or the forward
/// proxy. `refused` is the framing watch's verdict on the request.
pub(crate) trait Answer: Clone + Send + Sync + 'static {
    fn answer(
        self,
        request: Request<Incoming>,
        refused: bool,
    ) -> impl Future<Output = Response<ResponseBody>> + Send + 'static;
}

/// The proxy's requests, routed as they came in on `tag`.
#[derive(Clone)]
struct ProxyAnswer {
    proxy: Arc<Proxy>,
    tag: Tag,
}

impl Answer for ProxyAnswer {
    async fn answer(self, request: Request<Incoming>, refused: bool) -> Response<ResponseBody> {
        if refused {
            self.proxy.refuse_ambiguous()
        } else {
            self.proxy.handle_from(request, self.tag.entry()).await
        }
    }
}

/// Serves one connection (plain or TLS) for `shared`'s proxy.
async fn serve_connection<I>(
    io: I,
    shared: &Listener,
    opened: Instant,
    stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answer = ProxyAnswer {
        proxy: shared.proxy.clone(),
        tag: shared.tag.clone(),
    };
    serve_answering(
        io,
        &shared.settings,
        &shared.builder,
        answer,
        Upgrades::Refused,
        opened,
        stopped,
    )
    .await;
}

/// Whether a connection may hand its socket over (a `CONNECT` answered
/// 2xx): only the forward proxy's may.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upgrades {
    Refused,
    Allowed,
}

/// The forward proxy's listener: HTTP/1.1 only (what proxy clients speak),
/// with the proxy listener's limits.
pub(crate) fn forward_proxy_builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    builder(settings).http1_only()
}

/// Serves one connection until it closes, the listener stops, or it has
/// had no request in flight for `header_read_timeout` (counted from
/// `opened` until its first request, whatever the protocol: hyper's own
/// header timer starts only once HTTP/1 has been chosen, and HTTP/2 has
/// none), or a response has waited `write_timeout` for the client to take
/// any of it. Every HTTP/1 request is followed by the framing watch.
pub(crate) async fn serve_answering<I, A>(
    io: I,
    settings: &ServerSettings,
    builder: &auto::Builder<TokioExecutor>,
    answer: A,
    upgrades: Upgrades,
    opened: Instant,
    stopped: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Answer,
{
    let verdicts = Verdicts::default();
    let io = FramingWatch::new(io, verdicts.clone(), head_buffer(settings));
    let activity = Arc::new(Activity::new(opened));
    // HTTP/1 requests on a connection are handled in order, so a count
    // names each one; HTTP/2 connections are never marked.
    let requests = Arc::new(AtomicU64::new(0));
    let tracked = activity.clone();
    let service = service_fn(move |request| {
        let answer = answer.clone();
        let in_flight = tracked.begin();
        let refused = verdicts.is_refused(requests.fetch_add(1, Ordering::Relaxed));
        // Only a connection that may become a tunnel tells the watch so.
        let tunnel = (upgrades == Upgrades::Allowed && request.method() == http::Method::CONNECT)
            .then(|| verdicts.clone());
        Answering {
            answer: answer.answer(request, refused),
            after: Some((tunnel, in_flight)),
        }
    });
    let io = TokioIo::new(io);
    let watch = Watch {
        activity: &activity,
        settings,
        opened,
        stopped,
    };
    // Two connection types, one watch.
    match upgrades {
        Upgrades::Refused => {
            let connection = builder.serve_connection(io, service).into_owned();
            watch
                .drive(std::pin::pin!(connection), |c| c.graceful_shutdown())
                .await;
        }
        Upgrades::Allowed => {
            let connection = builder.serve_connection_with_upgrades(io, service);
            watch
                .drive(std::pin::pin!(connection.into_owned()), |c| {
                    c.graceful_shutdown()
                })
                .await;
        }
    }
}

/// What a connection's watch reads: its activity, the listener's settings,
/// when it opened, and the listener's stop.
struct Watch<'a> {
    activity: &'a Activity,
    settings: &'a ServerSettings,
    opened: Instant,
    stopped: watch::Receiver<bool>,
}

impl Watch<'_> {
    /// Drives `connection` until it ends, closing it (`close`) when the
    /// listener stops or it stays idle, and dropping it when a client
    /// stalls a response or a close takes too long.
    async fn drive<C: Future>(self, mut connection: Pin<&mut C>, close: impl Fn(Pin<&mut C>)) {
        let Watch {
            activity,
            settings,
            opened,
            mut stopped,
        } = self;
        let idle_limit = settings.header_read_timeout;
        let mut check_at = opened + idle_limit;
        // Set once the connection has been asked to close: past it, it is
        // dropped (which closes the socket).
        let mut close_by: Option<Instant> = None;
        // Whether `close_by` already includes the shutdown grace.
        let mut extended = false;
        let write_limit = settings.write_timeout;
        loop {
            tokio::select! {
                // A connection error (a reset, a malformed request answered by
                // hyper) concerns that connection only.
                _ = connection.as_mut() => return,
                changed = stopped.changed(), if close_by.is_none() => {
                    if changed.is_err() || *stopped.borrow() {
                        close(connection.as_mut());
                        close_by = Some(Instant::now() + settings.shutdown_grace);
                        extended = true;
                    }
                }
                _ = tokio::time::sleep_until(close_by.unwrap_or(check_at)) => {
                    let now = Instant::now();
                    if let Some(at) = close_by
                        && now >= at
                    {
                        // A stream opened before the client saw an idle close
                        // gets the shutdown grace to finish, once.
                        if activity.idle_since().is_some() || extended {
                            return;
                        }
                        extended = true;
                        close_by = Some(now + settings.shutdown_grace);
                        continue;
                    }
                    if activity.write_stalled_for(now) >= write_limit {
                        // A client that reads none of its response: nothing
                        // else would end this connection.
                        return;
                    }
                    match activity.idle_since() {
                        Some(since) if now >= since + idle_limit => {
                            // Nothing in flight: closing cuts nothing short.
                            close(connection.as_mut());
                            close_by = Some(now + CLOSE_GRACE);
                        }
                        Some(since) => check_at = since + idle_limit,
                        None => check_at = now + idle_limit.min(write_limit),
                    }
                }
            }
        }
    }
}

/// How long an idle connection asked to close may take to do so.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Requests of one connection whose response has not been written whole,
/// and since when there have been none.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the end of the last response.
    idle_from_ms: AtomicU64,
    /// Response bodies being written.
    writing: AtomicUsize,
    /// Milliseconds from `opened` to the last frame a response body gave.
    wrote_at_ms: AtomicU64,
}

impl Activity {
    fn new(opened: Instant) -> Activity {
        Activity {
            opened,
            in_flight: AtomicUsize::new(0),
            idle_from_ms: AtomicU64::new(0),
            writing: AtomicUsize::new(0),
            wrote_at_ms: AtomicU64::new(0),
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long responses have been waiting for the client to take a frame
    /// (zero when none is being written).
    fn write_stalled_for(&self, now: Instant) -> Duration {
        if self.writing.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let wrote = self.opened + Duration::from_millis(self.wrote_at_ms.load(Ordering::Acquire));
        now.saturating_duration_since(wrote)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.opened + Duration::from_millis(self.idle_from_ms.load(Ordering::Acquire)))
    }
}

/// One request in flight; ends when its response body is dropped (hyper
/// drops it once written, or when the connection goes).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .idle_from_ms
            .store(self.0.millis(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, then its body tracked, and a tunnel noted when
    /// one was answered. A future of its own, not an `async` block: a block
    /// would move the answer's future (7 KiB) into itself on its first
    /// poll, a copy per request (`benches/instructions.sh`).
    struct Answering<F> {
        #[pin]
        answer: F,
        after: Option<(Option<Verdicts>, InFlight)>,
    }
}

impl<F: Future<Output = Response<ResponseBody>>> Future for Answering<F> {
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.answer.poll(cx));
        let Some((tunnel, in_flight)) = this.after.take() else {
            // The answer, an `async fn`, would have panicked first.
            unreachable!("an answer polled again after it was ready")
        };
        if let Some(verdicts) = tunnel
            && response.status().is_success()
        {
            verdicts.tunnelled();
        }
        Poll::Ready(Ok(response.map(|body| Tracked::new(body, in_flight))))
    }
}

/// A response body that keeps its request counted as in flight, and notes
/// when the client last took a frame of it.
struct Tracked {
    body: ResponseBody,
    in_flight: InFlight,
}

impl Tracked {
    fn new(body: ResponseBody, in_flight: InFlight) -> Tracked {
        let activity = &in_flight.0;
        activity
            .wrote_at_ms
            .store(activity.millis(), Ordering::Release);
        activity.writing.fetch_add(1, Ordering::AcqRel);
        Tracked { body, in_flight }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.in_flight.0.writing.fetch_sub(1, Ordering::AcqRel);
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        // hyper asks for a frame only when it can write one: each ask shows
        // that the client is taking the response (an upstream that is slow
        // to give the next frame is not the client's stall).
        let activity = &self.in_flight.0;
        activity
            .wrote_at_ms
            .store(activity.millis(), Ordering::Release);
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
