//! The Prometheus registry, and the handles scrim counts with. Every label
//! value comes from the configuration (route names) or from a fixed enum
//! (outcomes, actions, reasons), never from request data. Handles are
//! resolved once per route when a policy is loaded ([`RouteMetrics`]), so
//! that the request path only does atomic adds.

use crate::inventory::Inventory;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::detect::Detector;
use crate::policy::{Route, Rules};
use crate::rewrite::Report;
use crate::transform::ActionKind;

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "-";

/// How a request ended, for `scrim_requests_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Forwarded, and the upstream answered (whatever its status).
    Forwarded,
    /// Answered by scrim with a 4xx; nothing complete reached the upstream.
    Rejected,
    /// The upstream could not be reached (502).
    UpstreamError,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// Answered by scrim on a consent decision (`block`); nothing forwarded.
    Blocked,
}

impl RequestOutcome {
    const ALL: [RequestOutcome; 5] = [
        RequestOutcome::Forwarded,
        RequestOutcome::Rejected,
        RequestOutcome::UpstreamError,
        RequestOutcome::UpstreamTimeout,
        RequestOutcome::Blocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Forwarded => "forwarded",
            RequestOutcome::Rejected => "rejected",
            RequestOutcome::UpstreamError => "upstream_error",
            RequestOutcome::UpstreamTimeout => "upstream_timeout",
            RequestOutcome::Blocked => "blocked",
        }
    }
}

/// Every metric family scrim exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    rewrites: IntCounterVec,
    invalid_values: IntCounterVec,
    invalid_by_rule: IntCounterVec,
    rejections: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    added_duration: HistogramVec,
    body_bytes: IntCounterVec,
    config_reloads: IntCounterVec,
    /// 1 unless the last reload failed (the file is then not what runs).
    config_reload_successful: prometheus::IntGauge,
    consent_decisions: IntCounterVec,
    detections: IntCounterVec,
    /// What leaves, per route and field path (`GET /inventory`).
    pub inventory: Inventory,
    /// The token vault's handles.
    pub vault: std::sync::Arc<VaultMetrics>,
    /// The forward proxy's handles.
    pub forward_proxy: std::sync::Arc<ForwardProxyMetrics>,
    /// 1 while scrim serves (what `GET /readyz` answers 200 to).
    pub ready: prometheus::IntGauge,
}

/// Why the forward proxy refused a request or a tunnel, for
/// `scrim_forward_proxy_refusals_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardRefusal {
    /// The client's address is outside `allow` (its connection closed
    /// as soon as accepted).
    ClientNotAllowed,
    /// `Proxy-Authorization` missing or wrong.
    Credentials,
    /// A `CONNECT` to a port outside `ports` (or a plain request to one
    /// other than 80).
    PortNotAllowed,
    /// The destination resolves to a loopback, private or link-local
    /// address outside `private_destinations`.
    PrivateDestination,
    /// A host no route claims, with `others: deny`.
    NotClaimed,
    /// Not a `CONNECT` target or an absolute `http://` URL.
    BadTarget,
    /// The host did not resolve, or no address of it answered.
    Unreachable,
    /// The client's TLS named another host (SNI) than its `CONNECT`.
    SniMismatch,
    /// The client's TLS handshake failed or took too long, or a tunnel's
    /// first bytes were no TLS ClientHello.
    Handshake,
    /// A tunnel's TLS named (SNI) a host a route claims: reached by
    /// another name or an address, it would pass unread.
    ClaimedName,
}

impl ForwardRefusal {
    const ALL: [ForwardRefusal; 10] = [
        ForwardRefusal::ClientNotAllowed,
        ForwardRefusal::Credentials,
        ForwardRefusal::PortNotAllowed,
        ForwardRefusal::PrivateDestination,
        ForwardRefusal::NotClaimed,
        ForwardRefusal::BadTarget,
        ForwardRefusal::Unreachable,
        ForwardRefusal::SniMismatch,
        ForwardRefusal::Handshake,
        ForwardRefusal::ClaimedName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ForwardRefusal::ClientNotAllowed => "client_not_allowed",
            ForwardRefusal::Credentials => "credentials",
            ForwardRefusal::PortNotAllowed => "port_not_allowed",
            ForwardRefusal::PrivateDestination => "private_destination",
            ForwardRefusal::NotClaimed => "not_claimed",
            ForwardRefusal::BadTarget => "bad_target",
            ForwardRefusal::Unreachable => "unreachable",
            ForwardRefusal::SniMismatch => "sni_mismatch",
            ForwardRefusal::Handshake => "handshake",
            ForwardRefusal::ClaimedName => "claimed_name",
        }
    }
}

/// What the forward proxy let through, for
/// `scrim_forward_proxy_requests_total{method, handling}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardHandling {
    /// A `CONNECT` to a claimed host: TLS terminated, requests rewritten.
    ConnectIntercepted,
    /// A `CONNECT` elsewhere, tunnelled unread (`others: tunnel`).
    ConnectTunnelled,
    /// A plain-HTTP request to a claimed host, through its route.
    PlainIntercepted,
    /// A plain-HTTP request elsewhere, passed as it came.
    PlainPassed,
}

/// The forward proxy's handles, resolved once.
pub struct ForwardProxyMetrics {
    handled: [IntCounter; 4],
    refusals: [IntCounter; 10],
    /// Certificates minted for intercepted hosts.
    pub certificates_minted: IntCounter,
    /// Certificates kept in the cache.
    pub certificates_cached: prometheus::IntGauge,
}

impl ForwardProxyMetrics {
    fn new(registry: &Registry) -> ForwardProxyMetrics {
        let handled = counter(
            registry,
            "scrim_forward_proxy_requests_total",
            "Requests the forward proxy let through, by method (connect, plain) and handling (intercepted: through a route; tunnelled or passed: unread, `others: tunnel`)",
            &["method", "handling"],
        );
        let refusals = counter(
            registry,
            "scrim_forward_proxy_refusals_total",
            "Requests and tunnels the forward proxy refused, by reason",
            &["reason"],
        );
        let cached = gauge(
            registry,
            "scrim_forward_proxy_certificates_cached",
            "Certificates minted for intercepted hosts and kept for reuse",
        );
        ForwardProxyMetrics {
            handled: [
                ("connect", "intercepted"),
                ("connect", "tunnelled"),
                ("plain", "intercepted"),
                ("plain", "passed"),
            ]
            .map(|(method, handling)| handled.with_label_values(&[method, handling])),
            refusals: ForwardRefusal::ALL.map(|r| refusals.with_label_values(&[r.as_str()])),
            certificates_minted: counter(
                registry,
                "scrim_forward_proxy_certificates_minted_total",
                "Certificates the forward proxy's CA minted (one per intercepted host, again when one expires or leaves the cache)",
                &[],
            )
            .with_label_values::<&str>(&[]),
            certificates_cached: cached,
        }
    }

    pub fn handled(&self, handling: ForwardHandling) {
        self.handled[handling as usize].inc();
    }

    pub fn refused(&self, reason: ForwardRefusal) {
        self.refusals[reason as usize].inc();
    }
}

/// The token vault's operations on its store, for
/// `scrim_vault_store_duration_seconds{operation}` and
/// `scrim_vault_store_errors_total{operation}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOperation {
    Issue,
    Lookup,
    Erase,
    Stats,
}

impl StoreOperation {
    const ALL: [StoreOperation; 4] = [
        StoreOperation::Issue,
        StoreOperation::Lookup,
        StoreOperation::Erase,
        StoreOperation::Stats,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreOperation::Issue => "issue",
            StoreOperation::Lookup => "lookup",
            StoreOperation::Erase => "erase",
            StoreOperation::Stats => "stats",
        }
    }
}

/// The admin vault API's calls, for `scrim_vault_admin_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminCall {
    Reveal,
    Erase,
    Stats,
}

impl AdminCall {
    pub const ALL: [AdminCall; 3] = [AdminCall::Reveal, AdminCall::Erase, AdminCall::Stats];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminCall::Reveal => "reveal",
            AdminCall::Erase => "erase",
            AdminCall::Stats => "stats",
        }
    }
}

/// How an admin vault call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminOutcome {
    Ok,
    Unauthorized,
    BadRequest,
    Unavailable,
}

impl AdminOutcome {
    const ALL: [AdminOutcome; 4] = [
        AdminOutcome::Ok,
        AdminOutcome::Unauthorized,
        AdminOutcome::BadRequest,
        AdminOutcome::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminOutcome::Ok => "ok",
            AdminOutcome::Unauthorized => "unauthorized",
            AdminOutcome::BadRequest => "bad_request",
            AdminOutcome::Unavailable => "unavailable",
        }
    }
}

/// The token vault's handles, resolved once.
pub struct VaultMetrics {
    pub tokens_issued: IntCounter,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub revealed: IntCounter,
    pub unrevealed: IntCounter,
    pub erased: IntCounter,
    /// By [`StoreOperation`].
    store_duration: [Histogram; 4],
    store_errors: [IntCounter; 4],
    /// By [`AdminCall`], then [`AdminOutcome`].
    admin: [[IntCounter; 4]; 3],
}

impl VaultMetrics {
    fn new(registry: &Registry) -> VaultMetrics {
        let single = |name: &str, help: &str| {
            counter(registry, name, help, &[]).with_label_values::<&str>(&[])
        };
        let reveals = counter(
            registry,
            "scrim_vault_reveals_total",
            "Tokens looked up to reveal (responses and the admin API), by result (revealed, unknown: not a token, erased or expired)",
            &["result"],
        );
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "scrim_vault_store_duration_seconds",
                "Time the vault's store took, by operation",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
            &["operation"],
        )
        .unwrap_or_else(|e| unreachable!("scrim_vault_store_duration_seconds: {e}"));
        registry
            .register(Box::new(duration.clone()))
            .unwrap_or_else(|e| unreachable!("scrim_vault_store_duration_seconds: {e}"));
        let errors = counter(
            registry,
            "scrim_vault_store_errors_total",
            "Vault store operations that failed or timed out, by operation",
            &["operation"],
        );
        let admin = counter(
            registry,
            "scrim_vault_admin_requests_total",
            "Calls of the admin vault API, by call and outcome",
            &["call", "outcome"],
        );
        VaultMetrics {
            tokens_issued: single(
                "scrim_vault_tokens_issued_total",
                "New tokens the vault made (values seen for the first time)",
            ),
            cache_hits: single(
                "scrim_vault_cache_hits_total",
                "Vault lookups answered from memory",
            ),
            cache_misses: single(
                "scrim_vault_cache_misses_total",
                "Vault lookups that went to the store",
            ),
            revealed: reveals.with_label_values(&["revealed"]),
            unrevealed: reveals.with_label_values(&["unknown"]),
            erased: single(
                "scrim_vault_erasures_total",
                "Mappings erased (a value's token made unrevealable for good)",
            ),
            store_duration: StoreOperation::ALL
                .map(|op| duration.with_label_values(&[op.as_str()])),
            store_errors: StoreOperation::ALL.map(|op| errors.with_label_values(&[op.as_str()])),
            admin: AdminCall::ALL.map(|call| {
                AdminOutcome::ALL
                    .map(|outcome| admin.with_label_values(&[call.as_str(), outcome.as_str()]))
            }),
        }
    }

    pub fn store(&self, operation: StoreOperation, seconds: f64, ok: bool) {
        self.store_duration[operation as usize].observe(seconds);
        if !ok {
            self.store_errors[operation as usize].inc();
        }
    }

    pub fn admin(&self, call: AdminCall, outcome: AdminOutcome) {
        self.admin[call as usize][outcome as usize].inc();
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(vec.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    vec
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::IntGauge {
    let gauge = prometheus::IntGauge::new(name, help)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(gauge.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    gauge
}

fn histogram(registry: &Registry, name: &str, help: &str) -> HistogramVec {
    // From 50 µs: what scrim adds to a request is a fraction of a
    // millisecond, and a quantile is only as fine as the buckets around it.
    let buckets = vec![
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let vec = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["route"])
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(vec.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    vec
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new("scrim_build_info", "scrim's version, as a label"),
            &["version"],
        )
        .unwrap_or_else(|e| unreachable!("scrim_build_info: {e}"));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(build_info))
            .unwrap_or_else(|e| unreachable!("scrim_build_info: {e}"));
        Metrics {
            requests: counter(
                &registry,
                "scrim_requests_total",
                "Requests, by route and outcome",
                &["route", "outcome"],
            ),
            rewrites: counter(
                &registry,
                "scrim_rewrites_total",
                "Values rewritten, by route and action",
                &["route", "action"],
            ),
            invalid_values: counter(
                &registry,
                "scrim_invalid_values_total",
                "Values a rule could not handle (then dropped, redacted or rejected), by route and action",
                &["route", "action"],
            ),
            invalid_by_rule: counter(
                &registry,
                "scrim_invalid_values_by_rule_total",
                "Values a rule could not handle, by route and rule (its selector as configured)",
                &["route", "rule"],
            ),
            rejections: counter(
                &registry,
                "scrim_rejections_total",
                "Requests refused, by route and reason",
                &["route", "reason"],
            ),
            request_duration: histogram(
                &registry,
                "scrim_request_duration_seconds",
                "Time from request to response headers",
            ),
            upstream_duration: histogram(
                &registry,
                "scrim_upstream_duration_seconds",
                "Time the upstream took to answer",
            ),
            added_duration: histogram(
                &registry,
                "scrim_added_duration_seconds",
                "Time scrim added to a forwarded request: from request to response headers, less the upstream's time",
            ),
            body_bytes: counter(
                &registry,
                "scrim_body_bytes_total",
                "Body bytes, by route and direction (request_in, request_out, response)",
                &["route", "direction"],
            ),
            config_reloads: {
                let reloads = counter(
                    &registry,
                    "scrim_config_reloads_total",
                    "Configuration reloads, by result",
                    &["result"],
                );
                // Both at 0 from the start: a first failure is an increase.
                for result in ["ok", "error"] {
                    reloads.with_label_values(&[result]);
                }
                reloads
            },
            config_reload_successful: {
                let successful = gauge(
                    &registry,
                    "scrim_config_last_reload_successful",
                    "1 unless the last configuration reload failed (then the file is not the configuration that runs)",
                );
                successful.set(1);
                successful
            },
            consent_decisions: counter(
                &registry,
                "scrim_consent_decisions_total",
                "Requests an opt-out signal decided, by route, signal and decision",
                &["route", "signal", "decision"],
            ),
            detections: counter(
                &registry,
                "scrim_detections_total",
                "Identifiers the route's scan found in values no rule selects, by route, detector and action",
                &["route", "detector", "action"],
            ),
            vault: std::sync::Arc::new(VaultMetrics::new(&registry)),
            forward_proxy: std::sync::Arc::new(ForwardProxyMetrics::new(&registry)),
            ready: gauge(
                &registry,
                "scrim_ready",
                "1 while scrim serves requests (GET /readyz answers 200), 0 while it starts or stops",
            ),
            registry,
            inventory: Inventory::new(),
        }
    }

    /// Resolves the handles of one route.
    pub fn route(&self, route: &Route) -> RouteMetrics {
        // Every rule set a request of the route may be rewritten with.
        let mut rule_sets = vec![&route.rules];
        if let Some(consent) = &route.consent {
            rule_sets.push(&consent.stripped);
            rule_sets.extend(&consent.limited);
        }
        let mut metrics = self.route_named(&route.name, &rule_sets);
        if let Some(consent) = &route.consent {
            metrics.consent = consent
                .signals
                .iter()
                .map(|signal| {
                    self.consent_decisions.with_label_values(&[
                        route.name.as_str(),
                        signal.label.as_str(),
                        signal.decision.as_str(),
                    ])
                })
                .collect();
        }
        metrics
    }

    /// Handles for requests that matched no route.
    pub fn unmatched(&self) -> RouteMetrics {
        self.route_named(UNMATCHED, &[])
    }

    fn route_named(&self, name: &str, rule_sets: &[&Rules]) -> RouteMetrics {
        // By action kind, resolved for the kinds the route uses only.
        let by_kind = |family: &IntCounterVec| {
            let mut counters: Vec<Option<IntCounter>> = vec![None; ActionKind::COUNT];
            for rule in rule_sets.iter().flat_map(|rules| &rules.rules) {
                let kind = rule.action.kind();
                counters[kind as usize]
                    .get_or_insert_with(|| family.with_label_values(&[name, kind.as_str()]));
            }
            counters
        };
        RouteMetrics {
            requests: RequestOutcome::ALL
                .map(|o| self.requests.with_label_values(&[name, o.as_str()])),
            rewrites: by_kind(&self.rewrites),
            invalid: by_kind(&self.invalid_values),
            invalid_by_rule: rule_sets
                .iter()
                .flat_map(|rules| &rules.rules)
                .map(|rule| {
                    let counter = self
                        .invalid_by_rule
                        .with_label_values(&[name, rule.selector.as_str()]);
                    (rule.selector.clone(), counter)
                })
                .collect(),
            unlisted: self.rewrites.with_label_values(&[name, "unlisted_drop"]),
            rejections: RejectReason::ALL
                .map(|r| self.rejections.with_label_values(&[name, r.as_str()])),
            request_duration: self.request_duration.with_label_values(&[name]),
            upstream_duration: self.upstream_duration.with_label_values(&[name]),
            added_duration: self.added_duration.with_label_values(&[name]),
            bytes_in: self.body_bytes.with_label_values(&[name, "request_in"]),
            bytes_out: self.body_bytes.with_label_values(&[name, "request_out"]),
            bytes_response: self.body_bytes.with_label_values(&[name, "response"]),
            consent: Vec::new(),
            detections: rule_sets
                .first()
                .and_then(|rules| rules.scan.as_ref())
                .map(|scan| {
                    // By `Detector as usize`: every detector, so that the
                    // index is the detector's whichever are enabled.
                    let mut all = Detector::ALL;
                    all.sort_by_key(|d| *d as usize);
                    all.iter()
                        .map(|d| {
                            self.detections.with_label_values(&[
                                name,
                                d.as_str(),
                                scan.action.as_str(),
                            ])
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn reload(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.config_reload_successful.set(i64::from(ok));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on a malformed family, which the
        // registry does not produce.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Why scrim refused a request, for `scrim_rejections_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    NoRoute,
    BodyTooLarge,
    UnsupportedMediaType,
    UnsupportedEncoding,
    InvalidBody,
    TooDeep,
    ValueTooLarge,
    RejectedValue,
    BadRequest,
    BodyTimeout,
    Overloaded,
    VaultUnavailable,
}

impl RejectReason {
    const ALL: [RejectReason; 12] = [
        RejectReason::NoRoute,
        RejectReason::BodyTooLarge,
        RejectReason::UnsupportedMediaType,
        RejectReason::UnsupportedEncoding,
        RejectReason::InvalidBody,
        RejectReason::TooDeep,
        RejectReason::ValueTooLarge,
        RejectReason::RejectedValue,
        RejectReason::BadRequest,
        RejectReason::BodyTimeout,
        RejectReason::Overloaded,
        RejectReason::VaultUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoRoute => "no_route",
            RejectReason::BodyTooLarge => "body_too_large",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::UnsupportedEncoding => "unsupported_encoding",
            RejectReason::InvalidBody => "invalid_body",
            RejectReason::TooDeep => "too_deep",
            RejectReason::ValueTooLarge => "value_too_large",
            RejectReason::RejectedValue => "rejected_value",
            RejectReason::BadRequest => "bad_request",
            RejectReason::BodyTimeout => "body_timeout",
            RejectReason::Overloaded => "overloaded",
            RejectReason::VaultUnavailable => "vault_unavailable",
        }
    }
}

/// The handles of one route, resolved when the policy was loaded.
pub struct RouteMetrics {
    requests: [IntCounter; 5],
    /// By action kind.
    rewrites: Vec<Option<IntCounter>>,
    /// By action kind.
    invalid: Vec<Option<IntCounter>>,
    /// By the rule's selector (a configuration's selectors, each once).
    invalid_by_rule: std::collections::HashMap<String, IntCounter>,
    unlisted: IntCounter,
    rejections: [IntCounter; 12],
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub added_duration: Histogram,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub bytes_response: IntCounter,
    /// By consent signal index.
    consent: Vec<IntCounter>,
    /// By `Detector as usize`; empty when the route does not scan.
    detections: Vec<IntCounter>,
}

impl RouteMetrics {
    pub fn request(&self, outcome: RequestOutcome) {
        self.requests[outcome as usize].inc();
    }

    /// Counts a decision of the route's consent signal `signal`.
    pub fn consent(&self, signal: usize) {
        if let Some(counter) = self.consent.get(signal) {
            counter.inc();
        }
    }

    pub fn rejection(&self, reason: RejectReason) {
        self.rejections[reason as usize].inc();
    }

    /// Adds what one rewrite with `rules` changed.
    pub fn report(&self, rules: &Rules, report: &Report) {
        let counts = [
            (&self.rewrites, &report.rewritten),
            (&self.invalid, &report.invalid),
        ];
        for (counters, per_rule) in counts {
            for (rule, n) in rules.rules.iter().zip(per_rule) {
                if *n > 0
                    && let Some(Some(counter)) = counters.get(rule.action.kind() as usize)
                {
                    counter.inc_by(*n);
                }
            }
        }
        // Looked up only when a value was invalid: rare, and a platform's
        // change of shape is then named down to the rule.
        for (rule, n) in rules.rules.iter().zip(&report.invalid) {
            if *n > 0
                && let Some(counter) = self.invalid_by_rule.get(&rule.selector)
            {
                counter.inc_by(*n);
            }
        }
        if report.unlisted_dropped > 0 {
            self.unlisted.inc_by(report.unlisted_dropped);
        }
        for (counter, n) in self.detections.iter().zip(report.detections) {
            if n > 0 {
                counter.inc_by(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A first failed reload is an increase of a series that was there,
    /// and the gauge says so until a reload succeeds.
    #[test]
    fn reload_results_are_exported_from_the_start() {
        let metrics = Metrics::new();
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("scrim_config_reloads_total{result=\"error\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("scrim_config_last_reload_successful 1"),
            "{text}"
        );
        metrics.reload(false);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("scrim_config_reloads_total{result=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("scrim_config_last_reload_successful 0"),
            "{text}"
        );
        metrics.reload(true);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("scrim_config_last_reload_successful 1"),
            "{text}"
        );
    }

    #[test]
    fn families_are_exported_with_fixed_labels() {
        let metrics = Metrics::new();
        let unmatched = metrics.unmatched();
        unmatched.request(RequestOutcome::Rejected);
        unmatched.rejection(RejectReason::NoRoute);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("scrim_requests_total{outcome=\"rejected\",route=\"-\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("scrim_rejections_total{reason=\"no_route\",route=\"-\"} 1"),
            "{text}"
        );
        assert!(text.contains("scrim_build_info{version="), "{text}");
    }
}
