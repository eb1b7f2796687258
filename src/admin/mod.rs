//! The admin listener: `/metrics`, `/healthz`, `/readyz`, the egress
//! inventory (`/inventory` as JSON, `/` as a page), `POST /reload`. It
//! is separate from the proxy listener (and on loopback by default) so that
//! it is never exposed where the proxy is. `GET` endpoints stay open for
//! scrapers and probes; `POST` endpoints change the process and require the
//! bearer token `keys.admin` when one is set (a listener beyond loopback
//! must have one, see `policy::compile`). The vault API (`/vault/*`,
//! `vault.rs`) is off unless `keys.admin` is set, and then needs the token
//! on every call.

pub mod client;
mod vault;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::inventory::render_page;
use crate::metrics::Metrics;
use crate::policy::AdminToken;
use crate::reload::Reloader;

/// State the admin endpoints report.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    /// Set once the configuration is loaded and the listeners are up.
    pub ready: AtomicBool,
    /// What `POST /reload` calls; `None` when there is no file to reload.
    pub reloader: Option<Arc<Reloader>>,
    /// The bearer token `POST` endpoints require, when set. Read at start:
    /// changing `keys.admin` takes a restart.
    pub token: Option<AdminToken>,
    /// The token vault, for `/vault/*` (which also need `token`).
    pub vault: Option<Arc<crate::vault::Vault>>,
}

/// A running admin listener.
pub struct AdminHandle {
    pub local_addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminHandle {
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub fn serve(listener: TcpListener, admin: Arc<Admin>) -> std::io::Result<AdminHandle> {
    let local_addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
                _ = stopped.changed() => break,
            };
            let admin = admin.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let admin = admin.clone();
                async move {
                    if request.uri().path().starts_with("/vault/") {
                        return Ok::<_, Infallible>(vault::respond(&admin, request).await);
                    }
                    Ok(respond(&admin, &request))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(AdminHandle {
        local_addr,
        stop,
        task,
    })
}

fn typed(body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    // Counts of what this business sends where: not for caches.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn respond(admin: &Admin, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            // What `/readyz` would answer, read when scraped.
            let ready = admin.ready.load(Ordering::Acquire);
            admin.metrics.ready.set(i64::from(ready));
            let mut response = Response::new(Full::new(Bytes::from(admin.metrics.render())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        (&Method::GET, "/inventory") => {
            let json = admin.metrics.inventory.snapshot().to_json().to_string();
            typed(json, "application/json")
        }
        (&Method::GET, "/") => {
            let page = render_page(&admin.metrics.inventory.snapshot());
            typed(page, "text/html; charset=utf-8")
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if admin.ready.load(Ordering::Acquire) => {
            text(StatusCode::OK, "ready\n")
        }
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        (&Method::POST, _)
            if admin.token.as_ref().is_some_and(|token| {
                !token.accepts(
                    request
                        .headers()
                        .get(header::AUTHORIZATION)
                        .map(|v| v.as_bytes()),
                )
            }) =>
        {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "unauthorized: POST endpoints need Authorization: Bearer <keys.admin>\n",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"scrim admin\""),
            );
            response
        }
        (&Method::POST, "/reload") => match &admin.reloader {
            None => text(StatusCode::NOT_FOUND, "no configuration file to reload\n"),
            Some(reloader) => match reloader.reload() {
                Ok(()) => text(StatusCode::OK, "reloaded\n"),
                Err(errors) => {
                    let mut response = Response::new(Full::new(Bytes::from(format!("{errors}\n"))));
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                    response
                }
            },
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: GET /, /inventory, /metrics, /healthz, /readyz, /vault/stats; POST /reload, /vault/reveal, /vault/erase\n",
        ),
    }
}
