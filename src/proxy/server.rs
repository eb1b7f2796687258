//! The proxy listener: accepts connections (at most `max_connections` at a
//! time), serves HTTP/1.1 or h2c on each, and shuts down gracefully.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::Proxy;
use super::framing::{FramingWatch, Verdicts};
use crate::policy::ServerSettings;

/// A running listener.
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
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

/// Serves `proxy` on `listener` until shut down. Listener settings are read
/// from the policy at start; they do not change on reload.
pub fn serve(listener: TcpListener, proxy: Arc<Proxy>) -> std::io::Result<ServerHandle> {
    serve_listener(listener, proxy, None)
}

/// The same, for a route's own listener: `address` is the route's `listen`
/// as configured, and only the routes that name it take its requests.
pub fn serve_route_listener(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    address: String,
) -> std::io::Result<ServerHandle> {
    serve_listener(listener, proxy, Some(Arc::from(address)))
}

fn serve_listener(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tag: Option<Arc<str>>,
) -> std::io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let policy = proxy.policy();
    // A listener meant for TLS never falls back to plain HTTP.
    let tls = match &policy.tls {
        None => None,
        Some(identity) => Some(TlsAcceptor::from(Arc::new(
            crate::tls::server_config(identity)
                .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?,
        ))),
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        proxy,
        policy.server,
        tls,
        tag,
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
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

async fn accept_loop(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    settings: ServerSettings,
    tls: Option<TlsAcceptor>,
    tag: Option<Arc<str>>,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = Arc::new(builder(&settings));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(settings.max_connections));
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
        let _ = stream.set_nodelay(true);
        let (proxy, builder, tls, tag, watcher) = (
            proxy.clone(),
            builder.clone(),
            tls.clone(),
            tag.clone(),
            graceful.watcher(),
        );
        let handshake_timeout = settings.header_read_timeout;
        let max_head = head_buffer(&settings);
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, proxy, tag, &builder, max_head, watcher).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request head.
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await
                    {
                        serve_connection(stream, proxy, tag, &builder, max_head, watcher).await;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?settings.shutdown_grace, "requests still in flight at the end of the grace period");
    }
}

/// Serves one connection (plain or TLS) until it closes.
async fn serve_connection<I>(
    io: I,
    proxy: Arc<Proxy>,
    tag: Option<Arc<str>>,
    builder: &auto::Builder<TokioExecutor>,
    max_head: usize,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let verdicts = Verdicts::default();
    let io = FramingWatch::new(io, verdicts.clone(), max_head);
    // HTTP/1 requests on a connection are handled in order, so a count
    // names each one; HTTP/2 connections are never marked.
    let requests = Arc::new(AtomicU64::new(0));
    let service = service_fn(move |request| {
        let (proxy, tag) = (proxy.clone(), tag.clone());
        let refused = verdicts.is_refused(requests.fetch_add(1, Ordering::Relaxed));
        async move {
            let response = if refused {
                proxy.refuse_ambiguous()
            } else {
                proxy.handle_from(request, tag.as_deref()).await
            };
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(io), service);
    // A connection error (a reset, a malformed request answered by hyper)
    // concerns that connection only.
    let _ = watcher.watch(connection.into_owned()).await;
}
