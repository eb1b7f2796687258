//! `scrim run`: the proxy and admin listeners, and the process lifecycle.
//! SIGTERM or SIGINT stops accepting and lets requests in flight finish
//! within the grace period; SIGHUP reloads the configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::{self, Admin};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::proxy::{self, Proxy};
use crate::reload::Reloader;

/// Runs until a stop signal. Errors are for the operator: a file that does
/// not load, an address that cannot be bound.
pub async fn run(config: PathBuf) -> Result<(), String> {
    let policy = Arc::new(Policy::load(&config).map_err(|errors| errors.to_string())?);
    let metrics = Arc::new(Metrics::new());
    let proxy = Arc::new(Proxy::new(policy.clone(), metrics.clone()));

    let bind = |address: String, what: &'static str| async move {
        TcpListener::bind(&address)
            .await
            .map_err(|error| format!("cannot listen on {address} ({what}): {error}"))
    };
    let proxy_listener = bind(policy.listen.clone(), "listen").await?;
    let admin_listener = bind(policy.admin_listen.clone(), "admin.listen").await?;

    let admin = Arc::new(Admin {
        metrics,
        ready: false.into(),
        reloader: Some(Reloader::new(config.clone(), proxy.clone())),
    });
    let server = proxy::serve(proxy_listener, proxy.clone()).map_err(|e| e.to_string())?;
    let admin_server = admin::serve(admin_listener, admin.clone()).map_err(|e| e.to_string())?;
    admin.ready.store(true, Ordering::Release);
    tracing::info!(
        listen = %server.local_addr(),
        admin = %admin_server.local_addr,
        routes = policy.routes.len(),
        "scrim is serving"
    );

    let signals = |kind: SignalKind| signal(kind).map_err(|e| format!("cannot watch signals: {e}"));
    let mut terminate = signals(SignalKind::terminate())?;
    let mut interrupt = signals(SignalKind::interrupt())?;
    let mut hangup = signals(SignalKind::hangup())?;
    let reloader = Reloader::new(config, proxy.clone());
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                // Errors are logged and counted by the reloader.
                let _ = reloader.reload();
            }
        }
    }
    tracing::info!(grace = ?policy.server.shutdown_grace, "stopping: finishing requests in flight");
    admin.ready.store(false, Ordering::Release);
    server.shutdown().await;
    admin_server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
