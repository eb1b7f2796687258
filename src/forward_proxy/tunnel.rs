//! What the forward proxy passes unread (`others: tunnel`): a `CONNECT`
//! tunnel's bytes both ways, and a plain-HTTP request to a host no route
//! claims.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::proxy::ResponseBody;

/// Connects to the first of `addresses` that answers, each given half of
/// `timeout` (the caller bounds the whole).
pub(crate) async fn connect(addresses: &[SocketAddr], timeout: Duration) -> Option<TcpStream> {
    for address in addresses {
        let attempt = TcpStream::connect(address);
        if let Ok(Ok(stream)) = tokio::time::timeout(timeout / 2, attempt).await {
            let _ = stream.set_nodelay(true);
            return Some(stream);
        }
    }
    None
}

/// The most of a client's first bytes held to read its TLS ClientHello
/// (a hello is a few hundred bytes; TLS allows one of 16 KiB and more with
/// post-quantum key shares).
const MAX_HELLO: usize = 64 * 1024;

/// A tunnel's first bytes: the client's TLS ClientHello, as it came (to be
/// sent on), and the host name it asks for (SNI), as
/// [`canonical_host`](crate::policy::canonical_host) writes it. `None` when
/// the bytes are not a ClientHello, or it does not come whole by
/// `deadline`.
pub(crate) async fn client_hello<I: AsyncRead + Unpin>(
    io: &mut I,
    deadline: Instant,
) -> Option<(Vec<u8>, Option<String>)> {
    use tokio::io::AsyncReadExt as _;
    let mut acceptor = rustls::server::Acceptor::default();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at(deadline, io.read(&mut buffer)).await;
        let n = match read {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        seen.extend_from_slice(&buffer[..n]);
        if seen.len() > MAX_HELLO {
            return None;
        }
        let mut rest = &buffer[..n];
        while !rest.is_empty() {
            match acceptor.read_tls(&mut rest) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let name = accepted
                    .client_hello()
                    .server_name()
                    .map(crate::policy::canonical_host);
                return Some((seen, name));
            }
            Ok(None) => {}
            Err(_) => return None,
        }
    }
}

/// Copies bytes both ways until both sides have closed, an error, no byte
/// moving either way for `idle`, or the listener stopping (after `grace`).
pub(crate) async fn splice<C>(
    client: C,
    server: TcpStream,
    idle: Duration,
    grace: Duration,
    mut stopped: watch::Receiver<bool>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let moved = Arc::new(AtomicU64::new(0));
    let mut client = Watched::new(client, started, moved.clone());
    let mut server = Watched::new(server, started, moved.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    let mut copy = std::pin::pin!(copy);
    let mut deadline = started + idle;
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = copy.as_mut() => return,
            changed = stopped.changed(), if !stopping => {
                if changed.is_err() || *stopped.borrow() {
                    stopping = true;
                    deadline = deadline.min(Instant::now() + grace);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if stopping {
                    return;
                }
                let last = started + Duration::from_millis(moved.load(Ordering::Relaxed));
                if Instant::now() >= last + idle {
                    return;
                }
                deadline = last + idle;
            }
        }
    }
}

/// A stream that notes when bytes last came through it, in milliseconds
/// from `started`.
struct Watched<T> {
    inner: T,
    started: Instant,
    moved: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn new(inner: T, started: Instant, moved: Arc<AtomicU64>) -> Watched<T> {
        Watched {
            inner,
            started,
            moved,
        }
    }

    fn note(&self) {
        let millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved.store(millis, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.note();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The connection's headers (`crate::proxy`'s list), and a
/// `Proxy-Authenticate` meant for scrim, not the app.
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    crate::proxy::strip_hop_by_hop(headers);
    headers.remove(http::header::PROXY_AUTHENTICATE);
}

/// Why a plain request could not be passed.
pub(crate) enum PassError {
    /// The connection or the exchange failed.
    Failed,
    /// No response head within the response timeout.
    TimedOut,
}

/// Sends a plain-HTTP request, as it came but for its hop-by-hop headers,
/// on a new connection to `server`, and returns the response, whose body
/// fails when no byte of it comes for `idle`.
pub(crate) async fn pass_plain(
    mut request: Request<Incoming>,
    server: TcpStream,
    response_timeout: Duration,
    idle: Duration,
) -> Result<Response<ResponseBody>, PassError> {
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(server))
        .await
        .map_err(|_| PassError::Failed)?;
    tokio::spawn(connection);
    // Origin form: the connection is to the host already, named by `Host`.
    let origin_form = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .parse::<http::Uri>()
        .map_err(|_| PassError::Failed)?;
    // The host is the one the URL names, whatever `Host` said (RFC 9112
    // 3.2.2): the request goes nowhere else.
    let host = request
        .uri()
        .authority()
        .and_then(|authority| http::HeaderValue::from_str(authority.as_str()).ok())
        .ok_or(PassError::Failed)?;
    request.headers_mut().insert(http::header::HOST, host);
    *request.uri_mut() = origin_form;
    strip_hop_by_hop(request.headers_mut());
    let response = tokio::time::timeout(response_timeout, sender.send_request(request))
        .await
        .map_err(|_| PassError::TimedOut)?
        .map_err(|_| PassError::Failed)?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        IdleLimited::new(body, idle).boxed(),
    ))
}

/// A body that fails when no frame of it comes for `idle`: an upstream
/// that stalls mid-body holds no connection for ever.
struct IdleLimited {
    body: Incoming,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl IdleLimited {
    fn new(body: Incoming, idle: Duration) -> IdleLimited {
        IdleLimited {
            body,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl hyper::body::Body for IdleLimited {
    type Data = bytes::Bytes;
    type Error = crate::proxy::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = Instant::now() + self.idle;
                self.timer.as_mut().reset(next);
                Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(
                    "the host sent nothing for the idle timeout".into(),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
