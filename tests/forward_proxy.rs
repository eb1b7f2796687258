//! The forward proxy in process: `CONNECT` to a claimed host intercepted
//! (HTTP/1.1 and h2 inside the tunnel) and rewritten on its way to a TLS
//! mock trusted through the route's `ca_file`; other hosts tunnelled byte
//! for byte or refused; and each refusal that keeps it from being an open
//! proxy.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use scrim::forward_proxy::{Certificates, ForwardProxy};
use scrim::metrics::Metrics;
use scrim::proxy::{ConnectionSlots, Proxy, ServerHandle};
use support::pki::Pki;
use support::{EMAIL_EVENT, EMAIL_EVENT_HASHED, Mock, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

/// The proxy credentials `${PROXY_CREDENTIALS}` resolves to.
const CREDENTIALS: &str = "shop-app:a-long-enough-proxy-password";

/// A forward proxy in process, with the CA it mints with.
struct Forward {
    addr: SocketAddr,
    handle: ServerHandle,
    metrics: Arc<Metrics>,
    ca: CertificateDer<'static>,
    _dir: TempDir,
}

impl Forward {
    /// `yaml` is everything but `forward_proxy:`'s `ca`, which is made
    /// here: it goes in place of `CA`.
    async fn start(yaml: &str) -> Forward {
        let dir = TempDir::new("forward-proxy");
        let cert = scrim::ca::init(&dir.0).unwrap();
        let ca_yaml = format!(
            "{{cert: {}, key: {}}}",
            cert.display(),
            dir.0.join(scrim::ca::KEY_FILE).display()
        );
        let yaml = yaml.replace("CA", &ca_yaml);
        let config = scrim::config::Config::parse(&yaml, "forward.yaml").unwrap();
        let env = |name: &str| match name {
            "PROXY_CREDENTIALS" => Some(CREDENTIALS.into()),
            _ => None,
        };
        let policy = Arc::new(scrim::policy::compile(&config, "forward.yaml", &env).unwrap());
        let metrics = Arc::new(Metrics::new());
        let certificates = Certificates::for_policy(&policy, &metrics).unwrap();
        let proxy = Arc::new(Proxy::new(policy, metrics.clone()));
        let forward = Arc::new(ForwardProxy::new(proxy, &certificates));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle =
            scrim::forward_proxy::serve(listener, forward, &ConnectionSlots::new(100)).unwrap();
        Forward {
            addr: handle.local_addr(),
            handle,
            metrics,
            ca: CertificateDer::from_pem_file(&cert).unwrap(),
            _dir: dir,
        }
    }

    /// A metric's value, `name{labels}` as Prometheus writes it.
    fn metric(&self, series: &str) -> u64 {
        let text = String::from_utf8(self.metrics.render()).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |value| value.parse().unwrap())
    }

    /// Opens a tunnel: the proxy's status and the connection.
    async fn connect(&self, target: &str, extra_headers: &str) -> (u16, TcpStream) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream
            .write_all(
                format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra_headers}\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let head = read_response_head(&mut stream).await;
        (status_of(&head), stream)
    }

    /// A TLS client through a tunnel to `target`, trusting the CA and
    /// naming `name`, offering `alpn`.
    async fn tls(&self, target: &str, name: &str, alpn: &[u8]) -> TlsStream<TcpStream> {
        let (status, stream) = self.connect(target, "").await;
        assert_eq!(status, 200);
        tls_over(stream, &self.ca, name, alpn).await.unwrap()
    }
}

async fn tls_over(
    stream: TcpStream,
    ca: &CertificateDer<'static>,
    name: &str,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    support::pki::connector(ca, &[alpn])
        .connect(ServerName::try_from(name.to_owned()).unwrap(), stream)
        .await
}

/// Reads a response head byte by byte (nothing of what follows it).
async fn read_response_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await.unwrap() {
            0 => break,
            _ => head.push(byte[0]),
        }
    }
    String::from_utf8(head).unwrap()
}

fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("not a response head: {head:?}"))
}

/// Sends `request` over an HTTP/1.1 or h2 connection on `io`, as ALPN
/// chose; the status, headers and body.
async fn send_over(
    io: TlsStream<TcpStream>,
    request: Request<Full<Bytes>>,
) -> (u16, http::HeaderMap, Bytes) {
    let h2 = io.get_ref().1.alpn_protocol() == Some(b"h2");
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

/// The path of a URI the mock recorded (absolute over h2).
fn path_of(uri: &str) -> String {
    uri.parse::<http::Uri>().unwrap().path().to_owned()
}

fn event_post(uri: &str, host: &str) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(EMAIL_EVENT.as_bytes())))
        .unwrap()
}

/// A route that claims `graph.facebook.com` by `match.host` and sends to
/// `mock` over TLS trusted through `ca_file`.
fn meta_route(mock: &Mock, pki: &Pki) -> String {
    format!(
        "  - name: meta
    match: {{host: graph.facebook.com}}
    upstream: https://localhost:{}
    ca_file: {}
    preset: meta_capi
",
        mock.addr.port(),
        pki.path("ca.pem")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_a_claimed_host_is_intercepted_and_rewritten_over_http1_and_h2() {
    let pki = Pki::new("forward-intercept");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let forward = Forward::start(&format!(
        "forward_proxy:\n  ca: CA\nroutes:\n{}",
        meta_route(&mock, &pki)
    ))
    .await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let tls = forward
            .tls("graph.facebook.com:443", "graph.facebook.com", alpn)
            .await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
        let uri = if alpn == b"h2" {
            "https://graph.facebook.com/v21.0/1234/events"
        } else {
            "/v21.0/1234/events"
        };
        let (status, headers, _) = send_over(tls, event_post(uri, "graph.facebook.com")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-upstream"], "mock");
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        let body = String::from_utf8(request.body.to_vec()).unwrap();
        assert!(body.contains(EMAIL_EVENT_HASHED), "{body}");
        assert!(!body.contains("John_Smith"), "{body}");
        assert_eq!(path_of(&request.uri), "/v21.0/1234/events");
    }
    // Counted and logged as the proxy listener's requests are.
    assert_eq!(
        forward.metric(r#"scrim_requests_total{outcome="forwarded",route="meta"}"#),
        2
    );
    assert_eq!(
        forward.metric(r#"scrim_rewrites_total{action="hash",route="meta"}"#),
        2
    );
    assert_eq!(
        forward.metric(
            r#"scrim_forward_proxy_requests_total{handling="intercepted",method="connect"}"#
        ),
        2
    );
    forward.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_claimed_as_an_upstream_takes_paths_as_sent_and_is_never_tunnelled() {
    let pki = Pki::new("forward-upstream-claim");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let port = mock.addr.port();
    // The route claims `localhost` by its upstream, whose base path is
    // `/api`: an app calling the platform itself sends `/api/...`.
    let forward = Forward::start(&format!(
        "forward_proxy:
  ca: CA
  ports: [{port}]
  private_destinations: [127.0.0.0/8, '::1']
routes:
  - name: platform
    match: {{path_prefix: /platform}}
    strip_prefix: true
    upstream: https://localhost:{port}/api
    ca_file: {}
    rules:
      - {{select: '$.data[*].user_data.em', action: hash, normalize: email}}
",
        pki.path("ca.pem")
    ))
    .await;
    let target = format!("localhost:{port}");
    let tls = forward.tls(&target, "localhost", b"http/1.1").await;
    let (status, _, _) = send_over(tls, event_post("/api/v1/events", "localhost")).await;
    assert_eq!(status, 200);
    // A path outside the upstream's base: no route, and nothing passes.
    let tls = forward.tls(&target, "localhost", b"http/1.1").await;
    let (status, _, _) = send_over(tls, event_post("/other", "localhost")).await;
    assert_eq!(status, 404);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(path_of(&requests[0].uri), "/api/v1/events");
    let body = String::from_utf8(requests[0].body.to_vec()).unwrap();
    assert!(body.contains(EMAIL_EVENT_HASHED), "{body}");
}

/// A TCP server that sends back what it reads, over TLS when given an
/// acceptor; how many bytes it has read.
async fn echo_server(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tls, seen) = (tls.clone(), counted.clone());
            tokio::spawn(async move {
                let echo = |mut stream: Box<dyn Stream>| async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                                if stream.write_all(&buffer[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                };
                match tls {
                    None => echo(Box::new(stream)).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            echo(Box::new(stream)).await;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

fn tunnel_config(others: &str, port: u16) -> String {
    format!(
        "forward_proxy:
  ca: CA
  others: {others}
  ports: [443, {port}]
  private_destinations: [127.0.0.1/32]
routes:
  - {{name: meta, match: {{host: graph.facebook.com}}, upstream: 'https://graph.facebook.com'}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_another_host_is_tunnelled_byte_for_byte_or_denied() {
    // The host's own certificate, which only a tunnel passes: an
    // intercepted connection would get one of scrim's CA.
    let pki = Pki::new("forward-tunnel");
    let (echo, _) = echo_server(Some(pki.acceptor())).await;
    let forward = Forward::start(&tunnel_config("tunnel", echo.port())).await;
    let (status, stream) = forward.connect(&echo.to_string(), "").await;
    assert_eq!(status, 200);
    let ca = CertificateDer::from_pem_file(pki.path("ca.pem")).unwrap();
    let tls = tls_over(stream, &ca, "localhost", b"http/1.1")
        .await
        .unwrap();
    // Every byte value, and more than one read's worth.
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (mut reader, mut writer) = tokio::io::split(tls);
    let (written, received) = tokio::join!(
        async {
            writer.write_all(&sent).await.unwrap();
            writer.flush().await.unwrap();
        },
        async {
            let mut received = vec![0u8; sent.len()];
            reader.read_exact(&mut received).await.unwrap();
            received
        }
    );
    let () = written;
    assert!(
        received == sent,
        "{} bytes back of {}",
        received.len(),
        sent.len()
    );
    assert_eq!(
        forward
            .metric(r#"scrim_forward_proxy_requests_total{handling="tunnelled",method="connect"}"#),
        1
    );

    let denying = Forward::start(&tunnel_config("deny", echo.port())).await;
    let (status, _) = denying.connect(&echo.to_string(), "").await;
    assert_eq!(status, 403);
    assert_eq!(
        denying.metric(r#"scrim_forward_proxy_refusals_total{reason="not_claimed"}"#),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_carries_tls_and_never_to_a_claimed_name() {
    let (echo, seen) = echo_server(None).await;
    let forward = Forward::start(&tunnel_config("tunnel", echo.port())).await;
    // Bytes that are no TLS ClientHello.
    let (status, mut stream) = forward.connect(&echo.to_string(), "").await;
    assert_eq!(status, 200);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(answer.is_empty());
    // TLS naming a claimed host, through a tunnel to an address: the app
    // would reach the platform unread.
    let (status, stream) = forward.connect(&echo.to_string(), "").await;
    assert_eq!(status, 200);
    let refused = tls_over(stream, &forward.ca, "graph.facebook.com", b"h2").await;
    assert!(refused.is_err());
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(
        forward.metric(r#"scrim_forward_proxy_refusals_total{reason="handshake"}"#),
        1
    );
    assert_eq!(
        forward.metric(r#"scrim_forward_proxy_refusals_total{reason="claimed_name"}"#),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_is_not_an_open_proxy() {
    let (echo, _) = echo_server(None).await;
    let route = "routes:\n  - {name: meta, match: {host: graph.facebook.com}, upstream: 'https://graph.facebook.com'}\n";
    let open = Forward::start(&format!(
        "forward_proxy:\n  ca: CA\n  ports: [443, {}]\n{route}",
        echo.port()
    ))
    .await;
    // A port outside `ports`.
    let (status, _) = open.connect("graph.facebook.com:25", "").await;
    assert_eq!(status, 403);
    assert_eq!(
        open.metric(r#"scrim_forward_proxy_refusals_total{reason="port_not_allowed"}"#),
        1
    );
    // Loopback, private and link-local addresses, by address or by name,
    // on an allowed port.
    for target in [
        echo.to_string(),
        format!("localhost:{}", echo.port()),
        "10.0.0.1:443".to_owned(),
        "169.254.169.254:443".to_owned(),
        "[::1]:443".to_owned(),
    ] {
        let (status, _) = open.connect(&target, "").await;
        assert_eq!(status, 403, "{target}");
    }
    assert_eq!(
        open.metric(r#"scrim_forward_proxy_refusals_total{reason="private_destination"}"#),
        5
    );
    // Not a target.
    let (status, _) = open.connect("graph.facebook.com", "").await;
    assert_eq!(status, 400);

    // A client outside `allow` (this one is on loopback) is closed before
    // it can send anything.
    let elsewhere = Forward::start(&format!(
        "forward_proxy:\n  ca: CA\n  allow: [10.0.0.0/8]\n{route}"
    ))
    .await;
    let mut stream = TcpStream::connect(elsewhere.addr).await.unwrap();
    let _ = stream
        .write_all(b"CONNECT graph.facebook.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = [0u8; 64];
    let read = stream.read(&mut answer).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(
        elsewhere.metric(r#"scrim_forward_proxy_refusals_total{reason="client_not_allowed"}"#),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_are_required_when_set() {
    use base64::Engine as _;
    let pki = Pki::new("forward-credentials");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let forward = Forward::start(&format!(
        "keys:\n  proxy: ${{PROXY_CREDENTIALS}}\nforward_proxy:\n  ca: CA\n  credentials: proxy\nroutes:\n{}",
        meta_route(&mock, &pki)
    ))
    .await;
    let basic = |credentials: &str| {
        format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    };
    for (headers, expected) in [
        (String::new(), 407),
        (basic("shop-app:wrong"), 407),
        (basic("shop-app"), 407),
        ("Proxy-Authorization: Bearer x\r\n".to_owned(), 407),
        (basic(CREDENTIALS), 200),
    ] {
        let mut stream = TcpStream::connect(forward.addr).await.unwrap();
        stream
            .write_all(
                format!("CONNECT graph.facebook.com:443 HTTP/1.1\r\nHost: x\r\n{headers}\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let head = read_response_head(&mut stream).await;
        assert_eq!(status_of(&head), expected, "{headers}");
        if expected == 407 {
            assert!(
                head.to_ascii_lowercase()
                    .contains("proxy-authenticate: basic realm=\"scrim\""),
                "{head}"
            );
        } else {
            let tls = tls_over(stream, &forward.ca, "graph.facebook.com", b"h2")
                .await
                .unwrap();
            let (status, _, _) = send_over(
                tls,
                event_post(
                    "https://graph.facebook.com/v21.0/1/events",
                    "graph.facebook.com",
                ),
            )
            .await;
            assert_eq!(status, 200);
        }
    }
    assert_eq!(mock.requests().len(), 1);
    assert_eq!(
        forward.metric(r#"scrim_forward_proxy_refusals_total{reason="credentials"}"#),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_naming_another_host_is_refused() {
    let pki = Pki::new("forward-sni");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let forward = Forward::start(&format!(
        "forward_proxy:\n  ca: CA\nroutes:\n{}",
        meta_route(&mock, &pki)
    ))
    .await;
    let (status, stream) = forward.connect("graph.facebook.com:443", "").await;
    assert_eq!(status, 200);
    let refused = tls_over(stream, &forward.ca, "www.facebook.com", b"h2").await;
    assert!(refused.is_err());
    assert_eq!(
        forward.metric(r#"scrim_forward_proxy_refusals_total{reason="sni_mismatch"}"#),
        1
    );
    // No certificate was minted for either name.
    assert_eq!(
        forward.metric("scrim_forward_proxy_certificates_minted_total"),
        0
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_certificate_is_minted_per_host_however_many_connections() {
    let pki = Pki::new("forward-mint");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let forward = Arc::new(
        Forward::start(&format!(
            "forward_proxy:\n  ca: CA\nroutes:\n{}",
            meta_route(&mock, &pki)
        ))
        .await,
    );
    let connections: Vec<_> = (0..24)
        .map(|_| {
            let forward = forward.clone();
            tokio::spawn(async move {
                let tls = forward
                    .tls("graph.facebook.com:443", "graph.facebook.com", b"http/1.1")
                    .await;
                send_over(tls, event_post("/v21.0/1/events", "graph.facebook.com"))
                    .await
                    .0
            })
        })
        .collect();
    for connection in connections {
        assert_eq!(connection.await.unwrap(), 200);
    }
    assert_eq!(mock.requests().len(), 24);
    assert_eq!(
        forward.metric("scrim_forward_proxy_certificates_minted_total"),
        1
    );
    assert_eq!(forward.metric("scrim_forward_proxy_certificates_cached"), 1);
}

/// Writes a raw request and reads the whole response (the proxy closes or
/// the body ends by its length).
async fn raw_exchange(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_response_head(&mut stream).await;
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    (status_of(&head), String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_proxy_requests_are_routed_the_same_way() {
    let pki = Pki::new("forward-plain");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let forward = Forward::start(&format!(
        "forward_proxy:\n  ca: CA\n  others: deny\nroutes:\n{}",
        meta_route(&mock, &pki)
    ))
    .await;
    let post = |url: &str| {
        format!(
            "POST {url} HTTP/1.1\r\nHost: graph.facebook.com\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{EMAIL_EVENT}",
            EMAIL_EVENT.len()
        )
    };
    let (status, _) = raw_exchange(
        forward.addr,
        &post("http://graph.facebook.com/v21.0/1/events"),
    )
    .await;
    assert_eq!(status, 200);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(path_of(&requests[0].uri), "/v21.0/1/events");
    assert!(
        String::from_utf8(requests[0].body.to_vec())
            .unwrap()
            .contains(EMAIL_EVENT_HASHED)
    );
    // Another host, with `others: deny`; an origin-form request.
    let (status, _) = raw_exchange(forward.addr, &post("http://example.com/x")).await;
    assert_eq!(status, 403);
    let (status, message) = raw_exchange(forward.addr, &post("/v21.0/1/events")).await;
    assert_eq!(status, 400);
    assert!(message.contains("CONNECT host:port"), "{message}");
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_to_a_claimed_host_is_refused_never_passed_unread() {
    let pki = Pki::new("forward-grpc");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let forward = Forward::start(&format!(
        "forward_proxy:\n  ca: CA\nroutes:\n{}",
        meta_route(&mock, &pki)
    ))
    .await;
    let tls = forward
        .tls("graph.facebook.com:443", "graph.facebook.com", b"h2")
        .await;
    // A gRPC call's framing: a flag, a length, then protobuf bytes.
    let mut framed = vec![0u8, 0, 0, 0, 12];
    framed.extend_from_slice(b"\x0a\x0ajohn@x.com");
    let request = Request::post("https://graph.facebook.com/google.ads.v17.Service/Upload")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(framed)))
        .unwrap();
    let (status, _, _) = send_over(tls, request).await;
    assert_eq!(status, 415);
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_tunnel_gets_its_own_time_for_a_first_request() {
    let pki = Pki::new("forward-tunnel-time");
    let mock = Mock::start_with(Duration::ZERO, Some(pki.acceptor())).await;
    let forward = Forward::start(&format!(
        "server: {{header_read_timeout: 2s}}\nforward_proxy:\n  ca: CA\nroutes:\n{}",
        meta_route(&mock, &pki)
    ))
    .await;
    // A client slow to ask for its tunnel, then slow to use it: each wait
    // is within the deadline, both together are not.
    let mut stream = TcpStream::connect(forward.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stream
        .write_all(b"CONNECT graph.facebook.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response_head(&mut stream).await), 200);
    let tls = tls_over(stream, &forward.ca, "graph.facebook.com", b"http/1.1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, _) = send_over(tls, event_post("/v21.0/1/events", "graph.facebook.com")).await;
    assert_eq!(status, 200);
}

/// A large answer, for a client that does not read it.
fn large_answer(_: &support::Recorded) -> http::Response<Full<Bytes>> {
    http::Response::new(Full::new(Bytes::from(vec![b'x'; 16 << 20])))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_disconnected_from_the_forward_proxy_too() {
    let pki = Pki::new("forward-stall");
    let mock = Mock::start_answering(Duration::ZERO, Some(pki.acceptor()), large_answer).await;
    let forward = Forward::start(&format!(
        "server: {{header_read_timeout: 1s, write_timeout: 1s}}\nforward_proxy:\n  ca: CA\nroutes:\n{}",
        meta_route(&mock, &pki)
    ))
    .await;
    // A small receive buffer, so that the kernel cannot take the whole
    // answer for the client (loopback buffers grow to 32 MiB here).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut stream = socket.connect(forward.addr).await.unwrap();
    stream
        .write_all(
            format!(
                "POST http://graph.facebook.com/v21.0/1/events HTTP/1.1\r\nHost: graph.facebook.com\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{EMAIL_EVENT}",
                EMAIL_EVENT.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(support::PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the connection was closed");
    assert!(
        received.len() < 16 << 20,
        "{} bytes: the whole answer",
        received.len()
    );
}
