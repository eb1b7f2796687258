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
    rejections: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    body_bytes: IntCounterVec,
    config_reloads: IntCounterVec,
    consent_decisions: IntCounterVec,
    detections: IntCounterVec,
    /// What leaves, per route and field path (`GET /inventory`).
    pub inventory: Inventory,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    registry
        .register(Box::new(vec.clone()))
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    vec
}

fn histogram(registry: &Registry, name: &str, help: &str) -> HistogramVec {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
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
            body_bytes: counter(
                &registry,
                "scrim_body_bytes_total",
                "Body bytes, by route and direction (request_in, request_out, response)",
                &["route", "direction"],
            ),
            config_reloads: counter(
                &registry,
                "scrim_config_reloads_total",
                "Configuration reloads, by result",
                &["result"],
            ),
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
            unlisted: self.rewrites.with_label_values(&[name, "unlisted_drop"]),
            rejections: RejectReason::ALL
                .map(|r| self.rejections.with_label_values(&[name, r.as_str()])),
            request_duration: self.request_duration.with_label_values(&[name]),
            upstream_duration: self.upstream_duration.with_label_values(&[name]),
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
}

impl RejectReason {
    const ALL: [RejectReason; 11] = [
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
    unlisted: IntCounter,
    rejections: [IntCounter; 11],
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
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
