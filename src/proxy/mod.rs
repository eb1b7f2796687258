//! The proxy service.
//!
//! A request goes through these steps, in this order, and the order matters:
//!
//! 1. **Listener** (`server.rs`): HTTP/1.1, or HTTP/2 when the connection
//!    opens with its preface (h2c). Header size and header time are limited
//!    here, before any of the request is looked at: a slow or huge head costs
//!    one connection, never the process. Requests whose framing is ambiguous
//!    (request smuggling, `framing.rs`) are refused here too.
//! 2. **Route match** (`route.rs`): a request no route takes is answered 404
//!    and never forwarded, so scrim is not an open proxy.
//! 3. **Headers and query** (`forward.rs`): rewritten before anything is sent,
//!    because they are sent first; forwarding headers are removed here.
//! 4. **Body** (`forward.rs`, `decode.rs`): decoded (a compressed body would
//!    hide its values from the rules), then rewritten by the engine for its
//!    media type, buffered up to `buffer_limit` or streamed past it.
//! 5. **Upstream** (`upstream.rs`): connections kept per route and worker,
//!    TLS through rustls, h2 when ALPN offers it.
//! 6. **Response**: streamed back unchanged but for hop-by-hop headers.
//!
//! Errors from any step are typed ([`ProxyError`]) and become a response in
//! one place, [`Proxy::handle_from`], which also counts the request in the metrics
//! and writes its one log line.

mod budget;
mod consent;
mod decode;
mod error;
mod forward;
mod framing;
mod passes;
mod path;
mod reveal;
mod route;
mod server;
mod upstream;

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};

pub use budget::BufferBudget;
pub use error::ProxyError;
pub use route::Entry;
/// Entry points for the fuzz targets (`fuzz/`), behind the `fuzzing`
/// feature.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use super::decode::{STEP as DECODE_STEP, decode_in_pieces};
    pub use super::framing::{Followed, follow as follow_framing};
}
pub(crate) use forward::strip_hop_by_hop;
pub(crate) use server::{
    Answer, InterceptServer, Upgrades, forward_proxy_builder, serve_answering,
};
pub use server::{ConnectionSlots, ServerHandle, serve, serve_route_listener, serve_shared};

use crate::inventory::Shard;
use crate::metrics::{Metrics, RequestOutcome, RouteMetrics};
use crate::policy::consent::Decision;
use crate::policy::{Policy, Route};
use crate::rewrite::Report;
use crate::vault::Vault;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A client's request body: as it arrives, or read whole by the consent gate.
pub(crate) type ClientBody = http_body_util::Either<Incoming, Full<Bytes>>;
/// The body of a request sent upstream.
pub type RequestBody = BoxBody<Bytes, BoxError>;
/// The body of a response sent to the client.
pub type ResponseBody = BoxBody<Bytes, BoxError>;

pub(crate) fn full_body(bytes: Bytes) -> ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// What a loaded policy needs at run time: its routes with their metric
/// handles resolved and their upstream clients built.
struct Runtime {
    policy: Arc<Policy>,
    routes: Vec<RouteRuntime>,
    /// Finds the index into `routes` of the route for a request.
    index: route::RouteIndex,
    /// Whether any route matches on `host` (the host is read only then).
    by_host: bool,
    unmatched: RouteMetrics,
}

struct RouteRuntime {
    route: Arc<Route>,
    metrics: RouteMetrics,
    /// Shared with the next runtime when a reload leaves the route's
    /// upstream as it was: its idle connections stay in use.
    upstream: Arc<upstream::Upstream>,
    /// Whether the route decodes request bodies (it has body rules or reads
    /// consent signals in them): what a body reserves depends on it.
    decodes_bodies: bool,
}

impl Runtime {
    /// `previous` is the runtime it replaces, if any: a route of the same
    /// name, upstream, CAs and connect timeout keeps its connections.
    fn new(policy: Arc<Policy>, metrics: &Metrics, previous: Option<&Runtime>) -> Runtime {
        // Shared by the routes that trust the web PKI only; a route with its
        // own `ca_file` has its own.
        let web_pki = upstream::Connector::new(policy.timeouts.connect, &[]);
        let by_name: std::collections::HashMap<&str, &RouteRuntime> = previous
            .filter(|previous| previous.policy.timeouts.connect == policy.timeouts.connect)
            .map(|previous| {
                previous
                    .routes
                    .iter()
                    .map(|old| (old.route.name.as_str(), old))
                    .collect()
            })
            .unwrap_or_default();
        let kept = |route: &Route| {
            let old = by_name.get(route.name.as_str())?;
            (old.route.upstream_uri == route.upstream_uri && old.route.ca_roots == route.ca_roots)
                .then(|| old.upstream.clone())
        };
        let routes = policy
            .routes
            .iter()
            .map(|route| {
                let upstream = kept(route).unwrap_or_else(|| {
                    let connector = if route.ca_roots.is_empty() {
                        web_pki.clone()
                    } else {
                        upstream::Connector::new(policy.timeouts.connect, &route.ca_roots)
                    };
                    Arc::new(upstream::Upstream::new(connector, &route.upstream_uri))
                });
                RouteRuntime {
                    metrics: metrics.route(route),
                    upstream,
                    decodes_bodies: route.rules.has_body_rules()
                        || route
                            .consent
                            .as_ref()
                            .is_some_and(|consent| !consent.body_probes.is_empty()),
                    route: route.clone(),
                }
            })
            .collect();
        Runtime {
            index: route::RouteIndex::new(policy.routes.iter().map(|route| &**route)),
            routes,
            by_host: policy.routes.iter().any(|route| route.host.is_some()),
            unmatched: metrics.unmatched(),
            policy,
        }
    }
}

/// The proxy: the current policy (swapped atomically on reload) and the
/// metrics.
pub struct Proxy {
    runtime: ArcSwap<Runtime>,
    metrics: Arc<Metrics>,
    budget: BufferBudget,
    /// This proxy's part of the egress inventory (one proxy per worker).
    inventory: Shard,
    /// The token vault, when `vault:` is configured.
    vault: Option<Arc<Vault>>,
}

impl Proxy {
    /// A proxy with a body budget of its own (`limits.max_buffered_bytes`).
    pub fn new(policy: Arc<Policy>, metrics: Arc<Metrics>) -> Proxy {
        let budget = BufferBudget::new(policy.max_buffered_bytes);
        Proxy::with_budget(policy, metrics, budget)
    }

    /// A proxy that shares `budget` (one per process, whatever the number
    /// of workers).
    pub fn with_budget(policy: Arc<Policy>, metrics: Arc<Metrics>, budget: BufferBudget) -> Proxy {
        let runtime = Runtime::new(policy, &metrics, None);
        Proxy {
            runtime: ArcSwap::from_pointee(runtime),
            inventory: metrics.inventory.shard(),
            metrics,
            budget,
            vault: None,
        }
    }

    /// Answers `tokenize` rules from `vault` (opened once per process,
    /// shared by every worker).
    pub fn with_vault(mut self, vault: Option<Arc<Vault>>) -> Proxy {
        self.vault = vault;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.runtime.load().policy.clone()
    }

    /// Replaces the policy. Requests in flight finish on the one they
    /// started with.
    pub fn swap_policy(&self, policy: Arc<Policy>) {
        let previous = self.runtime.load_full();
        self.runtime.store(Arc::new(Runtime::new(
            policy,
            &self.metrics,
            Some(&previous),
        )));
    }

    /// Refuses a request whose framing was ambiguous (see `framing.rs`),
    /// before anything of it is looked at.
    pub(crate) fn refuse_ambiguous(&self) -> Response<ResponseBody> {
        let error = ProxyError::ambiguous_framing();
        record(&self.runtime.load().unmatched, &error);
        tracing::warn!(target: "scrim::access", status = 400u16, "request smuggling attempt refused");
        error.into_response()
    }

    /// Whether a route claims `host` (as [`canonical_host`](crate::policy::canonical_host) writes it): the
    /// forward proxy intercepts connections to it.
    pub fn claims(&self, host: &str) -> bool {
        self.runtime.load().index.claims(host)
    }

    /// Answers one request that came in on `entry`. Never fails: every
    /// error is a response.
    pub async fn handle_from(
        &self,
        request: Request<Incoming>,
        entry: Entry<'_>,
    ) -> Response<ResponseBody> {
        let runtime = self.runtime.load_full();
        let started = Instant::now();
        let method = request.method().clone();
        // For the log line once the request is gone (a clone shares the
        // bytes).
        let uri = request.uri().clone();
        let path = uri.path();
        // Refused before routing: a tunnel or an echo is no request for a
        // platform, and a dot segment would reach another path upstream
        // than the one the route was chosen for.
        let refusal = if method == http::Method::CONNECT || method == http::Method::TRACE {
            Some(ProxyError::method_not_allowed())
        } else if path::has_dot_segment(path) {
            Some(ProxyError::bad_request(
                "the path has a dot segment (`.` or `..`)",
            ))
        } else {
            None
        };
        // Refused before a route is known: counted under `route="-"`.
        let unrouted = |error| {
            refuse(
                &runtime.unmatched,
                crate::metrics::UNMATCHED,
                &method,
                path,
                error,
            )
        };
        if let Some(error) = refusal {
            return unrouted(error);
        }
        let host = if runtime.by_host && !matches!(entry, Entry::Claimed(_)) {
            route::request_host(request.uri(), request.headers())
        } else {
            None
        };
        let found = runtime.index.route_for(entry, host.as_deref(), path);
        let Some((
            RouteRuntime {
                route,
                metrics,
                upstream,
                decodes_bodies,
            },
            as_sent,
        )) = found.and_then(|found| Some((runtime.routes.get(found.index)?, found.as_sent)))
        else {
            return unrouted(ProxyError::no_route());
        };
        let upstream_path = route::upstream_path(route, path, as_sent);
        // The consent gate comes before anything is sent: a blocked request
        // costs the upstream nothing, and a stripped one is rewritten with
        // the stripped rules from its first byte.
        let mut report = Report::default();
        // How long the upstream took, once it answered.
        let mut upstream_took = None;
        let mut blocked_by = None;
        let mut decided = None;
        let timing = forward::Timing {
            body_deadline: tokio::time::Instant::now() + runtime.policy.server.body_read_timeout,
            response_timeout: runtime.policy.timeouts.response,
        };
        // Room for the body before any of it is read; held until the
        // request is answered (a streamed body has been sent whole by then).
        let reserved = if request.body().is_end_stream() {
            None
        } else {
            let limits = &route.rules.limits;
            match self
                .budget
                .reserve(request.headers(), limits, *decodes_bodies)
                .await
            {
                Ok(reservation) => Some(reservation),
                Err(error) => return refuse(metrics, &route.name, &method, path, error),
            }
        };
        let result = match consent::gate(route, metrics, request, timing.body_deadline).await {
            Ok(consent::Gate::Forward {
                rules,
                request,
                decision,
            }) => {
                report = Report::new(rules.rules.len(), false)
                    .with_fields(rules)
                    .knowing(self.inventory.known(&route.name));
                decided = decision.map(|d| d.as_str());
                let result = forward::forward(
                    route,
                    rules,
                    metrics,
                    upstream,
                    self.vault.as_ref(),
                    timing,
                    request,
                    upstream_path,
                    &mut report,
                    &mut upstream_took,
                )
                .await;
                metrics.report(rules, &report);
                result
            }
            Ok(consent::Gate::Block { status, signal }) => {
                blocked_by = Some(signal);
                let mut response = Response::new(full_body(Bytes::new()));
                *response.status_mut() = status;
                Ok(response)
            }
            Err(error) => Err(error),
        };
        let mut cause = None;
        let (response, outcome, reason) = match result {
            Ok(response) => {
                let outcome = if blocked_by.is_some() {
                    self.inventory
                        .blocked(&route.name, Decision::Block.as_str());
                    RequestOutcome::Blocked
                } else {
                    let now = std::time::SystemTime::now();
                    self.inventory.forwarded(&route.name, &report, decided, now);
                    RequestOutcome::Forwarded
                };
                metrics.request(outcome);
                (response, outcome, None)
            }
            Err(error) => {
                record(metrics, &error);
                let reason = error.to_string();
                cause = error.cause();
                let outcome = error.outcome();
                (error.into_response(), outcome, Some(reason))
            }
        };
        drop(reserved);
        let elapsed = started.elapsed();
        metrics.request_duration.observe(elapsed.as_secs_f64());
        if outcome == RequestOutcome::Forwarded
            && let Some(took) = upstream_took
        {
            let added = elapsed.saturating_sub(took);
            metrics.added_duration.observe(added.as_secs_f64());
        }
        tracing::info!(
            target: "scrim::access",
            route = route.name.as_str(),
            method = method.as_str(),
            path = &*path::for_log(path),
            status = response.status().as_u16(),
            outcome = outcome.as_str(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            rewrites = report.total_rewritten(),
            invalid = report.invalid.iter().sum::<u64>(),
            error = reason.as_deref(),
            cause = cause.as_deref(),
            consent = blocked_by,
            "request"
        );
        response
    }
}

/// Answers a request refused before anything of it was read: counted, its
/// one log line written.
fn refuse(
    metrics: &RouteMetrics,
    route: &str,
    method: &http::Method,
    path: &str,
    error: ProxyError,
) -> Response<ResponseBody> {
    record(metrics, &error);
    tracing::info!(
        target: "scrim::access",
        route,
        method = method.as_str(),
        path = &*path::for_log(path),
        status = error.status().as_u16(),
        outcome = error.outcome().as_str(),
        error = %error,
        "request"
    );
    error.into_response()
}

fn record(metrics: &RouteMetrics, error: &ProxyError) {
    metrics.request(error.outcome());
    if let Some(reason) = error.reject_reason() {
        metrics.rejection(reason);
    }
}
