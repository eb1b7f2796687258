//! `scrim run`: the proxy and admin listeners, and the process lifecycle.
//!
//! The proxy runs thread-per-core: one single-threaded runtime per core, each
//! with its own listening socket on the same address (`SO_REUSEPORT`, the
//! kernel spreads connections) and its own upstream connection pools. A
//! request is then served start to finish on one thread, without the
//! cross-thread wake-ups that a shared work-stealing runtime pays for each
//! hop between the client connection and the upstream connection (measured
//! with `benches/load.sh`). The policy and the metrics are shared.
//!
//! SIGTERM or SIGINT stops accepting and lets requests in flight finish
//! within the grace period; SIGHUP reloads the configuration.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::admin::{self, Admin};
use crate::forward_proxy::{self, ForwardProxy};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::proxy::{self, Proxy};
use crate::reload::Reloader;
use crate::vault::Vault;

/// Runs until a stop signal. Errors are for the operator: a file that does
/// not load, an address that cannot be bound.
pub fn run(config: PathBuf) -> Result<(), String> {
    let policy = Arc::new(Policy::load(&config).map_err(|errors| errors.to_string())?);
    for warning in &policy.warnings {
        tracing::warn!(%warning, "configuration");
    }
    let metrics = Arc::new(Metrics::new());
    let vault = open_vault(&policy, &metrics)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Per worker: the main listener, then one per route listener.
    let mut sockets: Vec<Vec<(Option<String>, std::net::TcpListener)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let addresses = std::iter::once(None).chain(policy.route_listeners().into_iter().map(Some));
    let mut listen = None;
    for address in addresses {
        let config_name = if address.is_some() {
            "route listen"
        } else {
            "listen"
        };
        let bound = reuseport_listeners(
            address.as_deref().unwrap_or(&policy.listen),
            workers,
            config_name,
        )?;
        listen.get_or_insert(bound[0].local_addr().map_err(|e| e.to_string())?);
        for (worker, socket) in sockets.iter_mut().zip(bound) {
            worker.push((address.clone(), socket));
        }
    }
    let listen = listen.ok_or("no listener")?;
    // The forward proxy's listener, one socket per worker like the others,
    // and its certificates, one cache for the process.
    let forward_sockets = match &policy.forward_proxy {
        Some(settings) => reuseport_listeners(&settings.listen, workers, "forward_proxy.listen")?
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..workers).map(|_| None).collect::<Vec<_>>(),
    };
    let listens = Listens {
        proxy: listen,
        forward_proxy: match forward_sockets.first() {
            Some(Some(socket)) => Some(socket.local_addr().map_err(|e| e.to_string())?),
            _ => None,
        },
    };
    let certificates = forward_proxy::Certificates::for_policy(&policy, &metrics).map(Arc::new);
    // One body budget for the process, like the connection slots.
    let budget = proxy::BufferBudget::new(policy.max_buffered_bytes);
    let proxies: Vec<Arc<Proxy>> = (0..workers)
        .map(|_| {
            Arc::new(
                Proxy::with_budget(policy.clone(), metrics.clone(), budget.clone())
                    .with_vault(vault.clone()),
            )
        })
        .collect();

    let (stop, stopped) = watch::channel(false);
    // One budget of connections for the whole process, whichever worker
    // and listener takes them.
    let slots = proxy::ConnectionSlots::new(policy.server.max_connections);
    let mut threads = Vec::new();
    for (index, ((listeners, forward_socket), proxy)) in sockets
        .into_iter()
        .zip(forward_sockets)
        .zip(proxies.iter().cloned())
        .enumerate()
    {
        let mut stopped = stopped.clone();
        let slots = slots.clone();
        let certificates = certificates.clone();
        let thread = std::thread::Builder::new()
            .name(format!("scrim-worker-{index}"))
            .spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a worker: {e}"))?;
                runtime.block_on(async move {
                    let mut servers = Vec::new();
                    for (address, socket) in listeners {
                        let listener = TcpListener::from_std(socket).map_err(|e| e.to_string())?;
                        let server = proxy::serve_shared(listener, proxy.clone(), address, &slots);
                        servers.push(server.map_err(|e| e.to_string())?);
                    }
                    if let (Some(socket), Some(certificates)) = (forward_socket, certificates) {
                        let listener = TcpListener::from_std(socket).map_err(|e| e.to_string())?;
                        let forward = Arc::new(ForwardProxy::new(proxy.clone(), &certificates));
                        let server = forward_proxy::serve(listener, forward, &slots);
                        servers.push(server.map_err(|e| e.to_string())?);
                    }
                    let _ = stopped.wait_for(|stop| *stop).await;
                    for server in &servers {
                        server.stop_accepting();
                    }
                    for server in servers {
                        server.shutdown().await;
                    }
                    Ok(())
                })
            })
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        threads.push(thread);
    }

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = control.block_on(control_loop(
        config, policy, metrics, proxies, vault, listens, stop,
    ));
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(message),
            Err(_) => return Err("a worker thread panicked".to_owned()),
        }
    }
    tracing::info!("stopped");
    result
}

/// The addresses the workers listen on, for the log line that says scrim
/// is serving.
struct Listens {
    proxy: SocketAddr,
    forward_proxy: Option<SocketAddr>,
}

/// The admin listener and the signals, on the main thread.
async fn control_loop(
    config: PathBuf,
    policy: Arc<Policy>,
    metrics: Arc<Metrics>,
    proxies: Vec<Arc<Proxy>>,
    vault: Option<Arc<Vault>>,
    listens: Listens,
    stop: watch::Sender<bool>,
) -> Result<(), String> {
    let stop_workers = |stop: &watch::Sender<bool>| {
        let _ = stop.send(true);
    };
    let admin_listener = match TcpListener::bind(&policy.admin_listen).await {
        Ok(listener) => listener,
        Err(error) => {
            stop_workers(&stop);
            return Err(format!(
                "cannot listen on {} (admin.listen): {error}",
                policy.admin_listen
            ));
        }
    };
    let workers = proxies.len();
    // One reloader for SIGHUP and `POST /reload` alike.
    let reloader =
        Arc::new(Reloader::new(config, proxies, metrics.clone()).with_vault(vault.clone()));
    let admin = Arc::new(Admin {
        metrics,
        ready: false.into(),
        reloader: Some(reloader.clone()),
        token: policy.admin_token.clone(),
        vault,
    });
    let admin_server = admin::serve(admin_listener, admin.clone()).map_err(|e| e.to_string())?;
    let signals = |kind: SignalKind| signal(kind).map_err(|e| format!("cannot watch signals: {e}"));
    let (mut terminate, mut interrupt, mut hangup) = (
        signals(SignalKind::terminate())?,
        signals(SignalKind::interrupt())?,
        signals(SignalKind::hangup())?,
    );
    // Rotating keys are dropped at the end of their period even when no
    // request comes to replace them (`transform::rotation`).
    let mut sweep = tokio::time::interval(std::time::Duration::from_secs(1));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let current_policy = reloader.clone();
    admin.ready.store(true, Ordering::Release);
    tracing::info!(
        listen = %listens.proxy,
        forward_proxy = listens.forward_proxy.map(tracing::field::display),
        admin = %admin_server.local_addr,
        routes = policy.routes.len(),
        workers,
        "scrim is serving"
    );
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                // Errors are logged and counted by the reloader.
                let _ = reloader.reload();
            }
            _ = sweep.tick() => {
                let now = std::time::SystemTime::now();
                for key in current_policy.policy().iter().flat_map(|policy| policy.rotating_keys()) {
                    key.forget_expired(now);
                }
            }
        }
    }
    tracing::info!(grace = ?policy.server.shutdown_grace, "stopping: finishing requests in flight");
    admin.ready.store(false, Ordering::Release);
    stop_workers(&stop);
    admin_server.shutdown().await;
    Ok(())
}

/// Opens the token vault when the configuration has one: its store must
/// answer before scrim serves, so that a route that tokenizes never starts
/// without it.
fn open_vault(policy: &Policy, metrics: &Metrics) -> Result<Option<Arc<Vault>>, String> {
    let Some(settings) = &policy.vault else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let vault = runtime
        .block_on(Vault::open(settings, metrics.vault.clone()))
        .map_err(|e| format!("vault: {e}"))?;
    vault.use_policy(policy);
    tracing::info!(store = ?settings.store, "vault open");
    Ok(Some(Arc::new(vault)))
}

/// One listening socket per worker, all on the same address. With port 0,
/// the first socket's port is used for the others.
fn reuseport_listeners(
    address: &str,
    count: usize,
    setting: &str,
) -> Result<Vec<std::net::TcpListener>, String> {
    let fail = |error: std::io::Error| format!("cannot listen on {address} ({setting}): {error}");
    let mut addr = address
        .to_socket_addrs()
        .map_err(fail)?
        .next()
        .ok_or_else(|| {
            format!("cannot listen on {address} (listen): the name resolves to no address")
        })?;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .map_err(fail)?;
        socket.set_reuse_address(true).map_err(fail)?;
        socket.set_reuse_port(true).map_err(fail)?;
        socket.set_nonblocking(true).map_err(fail)?;
        socket.bind(&addr.into()).map_err(fail)?;
        socket.listen(1024).map_err(fail)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr().map_err(fail)?;
        listeners.push(listener);
    }
    Ok(listeners)
}
