//! A mock upstream for the proxy tests, and scrim itself started in process
//! on ephemeral ports, shared by the proxy test files.
#![allow(dead_code)]

pub mod pki;
pub mod process;
pub mod redis;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
    /// Which of the mock's connections it came on, counted from 0.
    pub connection: usize,
    /// How many data frames (HTTP/1.1 chunks, HTTP/2 DATA frames) the body
    /// came in.
    pub frames: usize,
}

/// An upstream that records each complete request and answers 200 after
/// `delay`. A request whose body fails (aborted) is not recorded.
pub struct Mock {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl Mock {
    pub async fn start(delay: Duration) -> Mock {
        Mock::start_with(delay, None).await
    }

    /// The same, over TLS when an acceptor is given.
    pub async fn start_with(delay: Duration, tls: Option<tokio_rustls::TlsAcceptor>) -> Mock {
        Mock::start_answering(delay, tls, |_| {
            let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
            response
                .headers_mut()
                .insert("x-upstream", "mock".parse().unwrap());
            response
        })
        .await
    }

    /// A mock whose answer to each recorded request `answer` makes.
    pub async fn start_answering(
        delay: Duration,
        tls: Option<tokio_rustls::TlsAcceptor>,
        answer: fn(&Recorded) -> Response<Full<Bytes>>,
    ) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let log = recorded.clone();
        tokio::spawn(async move {
            for connection in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let log = log.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, mut body) = request.into_parts();
                        let mut collected = Vec::new();
                        let mut frames = 0;
                        while let Some(frame) = body.frame().await {
                            let Ok(frame) = frame else {
                                let mut failed = Response::new(Full::new(Bytes::new()));
                                *failed.status_mut() = StatusCode::BAD_REQUEST;
                                return Ok::<_, Infallible>(failed);
                            };
                            if let Some(data) = frame.data_ref() {
                                frames += 1;
                                collected.extend_from_slice(data);
                            }
                        }
                        let body = Bytes::from(collected);
                        let recorded = Recorded {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                            version: parts.version,
                            connection,
                            frames,
                        };
                        let response = answer(&recorded);
                        log.lock().unwrap().push(recorded);
                        tokio::time::sleep(delay).await;
                        Ok(response)
                    }
                });
                let tls = tls.clone();
                tokio::spawn(async move {
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = match tls {
                        None => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => {
                                builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await
                            }
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
        });
        Mock { addr, recorded }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }
}

/// Meta's published example: an event whose one email hashes to
/// [`EMAIL_EVENT_HASHED`] (SHA-256 of `john_smith@gmail.com`).
pub const EMAIL_EVENT: &str = r#"{"data":[{"user_data":{"em":"John_Smith@gmail.com"}}]}"#;
pub const EMAIL_EVENT_HASHED: &str =
    "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

/// A POST of [`EMAIL_EVENT`] as JSON.
pub fn email_event_post(url: String) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(EMAIL_EVENT.as_bytes())))
        .unwrap()
}

/// The key `${SCRIM_TEST_KEY}` resolves to in [`Scrim::start`].
pub const KEY: &str = "a-test-key-that-is-long-enough-42";
/// Another, `${SCRIM_TEST_KEY_2}` there.
pub const KEY_2: &str = "another-test-key-just-as-long-43";

/// scrim in process: the proxy and the admin listener, on ephemeral ports.
pub struct Scrim {
    pub server: scrim::proxy::ServerHandle,
    pub admin: scrim::admin::AdminHandle,
}

impl Scrim {
    pub async fn start(yaml: &str) -> Scrim {
        let config = scrim::config::Config::parse(yaml, "test.yaml").unwrap();
        let env = |name: &str| match name {
            "SCRIM_TEST_KEY" => Some(KEY.into()),
            "SCRIM_TEST_KEY_2" => Some(KEY_2.into()),
            _ => None,
        };
        let policy = Arc::new(scrim::policy::compile(&config, "test.yaml", &env).unwrap());
        let metrics = Arc::new(scrim::metrics::Metrics::new());
        // The vault, when the configuration has one, as `scrim run` opens it.
        let vault = match &policy.vault {
            Some(settings) => {
                let vault = scrim::vault::Vault::open(settings, metrics.vault.clone())
                    .await
                    .unwrap();
                vault.use_policy(&policy);
                Some(Arc::new(vault))
            }
            None => None,
        };
        let token = policy.admin_token.clone();
        let proxy =
            Arc::new(scrim::proxy::Proxy::new(policy, metrics.clone()).with_vault(vault.clone()));
        let server =
            scrim::proxy::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), proxy).unwrap();
        let admin = Arc::new(scrim::admin::Admin {
            metrics,
            ready: true.into(),
            reloader: None,
            token,
            vault,
        });
        let admin =
            scrim::admin::serve(TcpListener::bind("127.0.0.1:0").await.unwrap(), admin).unwrap();
        Scrim { server, admin }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.local_addr())
    }

    /// Stops both listeners and lets what they held go (a vault's file
    /// among it), as a process that exits would.
    #[allow(dead_code)]
    pub async fn stop(self) {
        self.server.shutdown().await;
        self.admin.shutdown().await;
        // The vault's thread closes its file once the last handle is gone.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }

    pub async fn metrics(&self) -> String {
        let (status, _, body) = send(
            Request::get(format!("http://{}/metrics", self.admin.local_addr))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).unwrap()
    }
}

/// Sends one request with a fresh client; the response in full.
pub async fn send(request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// Lets a test hold a thousand and more sockets (the soft limit is often
/// 1024): raises the soft limit of open files to the hard one.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Reads from `stream` until `pending` holds a whole request head, and
/// takes it out (without its blank line), leaving what followed it. `None`
/// when the stream ends first. For raw test upstreams.
pub async fn read_head(
    stream: &mut tokio::net::TcpStream,
    pending: &mut Vec<u8>,
) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 1024];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            pending.drain(..end + 4);
            return Some(head);
        }
        match stream.read(&mut buffer).await {
            Ok(n) if n > 0 => pending.extend_from_slice(&buffer[..n]),
            _ => return None,
        }
    }
}

/// How long [`eventually`] waits: far past what any awaited condition takes
/// on a loaded machine, so that only a real failure reaches it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How often [`eventually`] checks.
const POLL: Duration = Duration::from_millis(10);

/// Waits until `check` holds, checking every 10 ms (and once more at the
/// deadline); panics naming `what` if it still does not after `timeout`.
/// For a test that waits for something, instead of a fixed sleep.
pub async fn eventually<F: FnMut() -> bool>(what: &str, timeout: Duration, mut check: F) {
    eventually_async(what, timeout, || std::future::ready(check())).await;
}

/// The same with an async check (one that asks over HTTP, say); a check
/// still running at the deadline fails as well.
pub async fn eventually_async<F, C>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> C,
    C: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(true) => return,
            Ok(false) if tokio::time::Instant::now() < deadline => {}
            _ => panic!("still not the case after {timeout:?}: {what}"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("scrim-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
