//! A load generator for `benches/load.sh`'s forward-proxy row, which wrk
//! cannot make (it speaks no proxy protocol): CONNECTIONS kept-alive
//! HTTP/1.1 connections each POST a body as fast as the answers come, for
//! SECONDS, and the requests per second are printed. With `--connect
//! HOST:PORT --ca FILE`, each connection first opens a `CONNECT` tunnel
//! through ADDRESS (the forward proxy) and speaks TLS inside it, trusting
//! FILE; without, it speaks plain HTTP to ADDRESS, so that both paths are
//! measured by the same client.
//!
//! `cargo run --release --example connect_load -- ADDRESS SECONDS CONNECTIONS BODY_FILE PATH [--connect HOST:PORT --ca FILE]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    address: String,
    seconds: u64,
    connections: usize,
    body: Bytes,
    path: String,
    tunnel: Option<(String, Arc<rustls::ClientConfig>)>,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "connect_load ADDRESS SECONDS CONNECTIONS BODY_FILE PATH [--connect HOST:PORT --ca FILE]";
    if args.len() != 5 && args.len() != 9 {
        return Err(usage.to_owned());
    }
    let number = |text: &str| text.parse::<u64>().map_err(|_| usage.to_owned());
    let tunnel = if args.len() == 9 {
        let (target, ca) = match (&args[5][..], &args[7][..]) {
            ("--connect", "--ca") => (args[6].clone(), &args[8]),
            _ => return Err(usage.to_owned()),
        };
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls_pki_types::CertificateDer::from_pem_file(ca).map_err(|e| e.to_string())?;
        roots.add(ca).map_err(|e| e.to_string())?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some((target, Arc::new(config)))
    } else {
        None
    };
    Ok(Options {
        address: args[0].clone(),
        seconds: number(&args[1])?,
        connections: number(&args[2])? as usize,
        body: Bytes::from(std::fs::read(&args[3]).map_err(|e| e.to_string())?),
        path: args[4].clone(),
        tunnel,
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One connection, ready for requests: through a tunnel and TLS, or plain.
async fn open(options: &Options) -> Result<(Sender, String), String> {
    let mut stream = TcpStream::connect(&options.address)
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let Some((target, config)) = &options.tunnel else {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        return Ok((sender, options.address.clone()));
    };
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.map_err(|e| e.to_string())? == 0 {
            return Err("the proxy closed the connection".to_owned());
        }
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(format!("CONNECT: {}", String::from_utf8_lossy(&head)));
    }
    let host = target
        .rsplit_once(':')
        .map_or(target.as_str(), |(host, _)| host);
    let name =
        rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok((sender, target.clone()))
}

async fn run(options: Arc<Options>, until: Instant, done: Arc<AtomicU64>) -> Result<(), String> {
    let (mut sender, host) = open(&options).await?;
    while Instant::now() < until {
        let request = http::Request::post(&options.path)
            .header("host", &host)
            .header("content-type", "application/json")
            .body(Full::new(options.body.clone()))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("status {status}"));
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let options = Arc::new(options()?);
    // Two threads, as `wrk -t2` in the same script.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let until = started + Duration::from_secs(options.seconds);
        let tasks: Vec<_> = (0..options.connections)
            .map(|_| tokio::spawn(run(options.clone(), until, done.clone())))
            .collect();
        for task in tasks {
            task.await.map_err(|e| e.to_string())??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!("{:.0}", done.load(Ordering::Relaxed) as f64 / elapsed);
        Ok(())
    })
}
