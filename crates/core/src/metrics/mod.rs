//! Every metric family in one place (docs/spec.md §5), in the classic Prometheus text format.
//!
//! Each server has its own registry (tests run several servers in one process). Label
//! values come only from fixed sets — transports, decisions, reasons, store operations,
//! revocation kinds and sources, provider names from the configuration — never from a
//! request: no token, user or tenant id can become a label. The per-request handles are
//! resolved once at start, so recording a decision is a few atomic adds.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::reason::Reason;

pub mod openmetrics;

use openmetrics::Exemplar;

/// Latency buckets from 50 µs to 1 s (docs/spec.md §5, issue 6).
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Check,
    Revoke,
    Status,
    Ping,
    /// The replay guard of logout tokens and security events (one `jti`, once).
    FirstUse,
}

impl StoreOp {
    pub const ALL: [StoreOp; 5] = [
        StoreOp::Check,
        StoreOp::Revoke,
        StoreOp::Status,
        StoreOp::Ping,
        StoreOp::FirstUse,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            StoreOp::Check => "check",
            StoreOp::Revoke => "revoke",
            StoreOp::Status => "status",
            StoreOp::Ping => "ping",
            StoreOp::FirstUse => "first_use",
        }
    }
}

/// Outcome slots per transport: allow, allow while the store failed (fail-open), then
/// one per deny reason.
const OUTCOMES: usize = 3 + Reason::ALL.len();

struct PerTransport {
    decisions: Vec<IntCounter>,
    duration: Histogram,
}

struct PerOp {
    ok: IntCounter,
    error: IntCounter,
    timeout: IntCounter,
    duration: Histogram,
}

pub struct Metrics {
    registry: Registry,
    transports: [PerTransport; 2],
    ops: [PerOp; 5],
    /// `[verified|revocation][hit|miss]`
    cache: [[IntCounter; 2]; 2],
    revocations: IntCounterVec,
    pub invalidation_events: IntCounter,
    pub invalidation_gaps: IntCounter,
    pub invalidation_unreadable: IntCounter,
    pub subscription_up: IntGauge,
    jwks_refresh: IntCounterVec,
    status_list_fetches: IntCounterVec,
    reloads: IntCounterVec,
    tls_handshake_failures: IntCounterVec,
    tls_reloads: IntCounterVec,
    tls_not_after: IntGaugeVec,
    /// The latest sampled check's trace per transport and decision-latency bucket (the
    /// last slot is `+Inf`), for the OpenMetrics rendering.
    exemplars: [Box<[parking_lot::Mutex<Option<Exemplar>>]>; 2],
}

/// Which local cache a lookup went to.
#[derive(Debug, Clone, Copy)]
pub enum CacheKind {
    /// Verified tokens by SHA-256.
    Verified,
    /// Revocation answers.
    Revocation,
}

impl Metrics {
    /// Registers every family. The names are fixed and distinct, so an error here is a
    /// bug (a duplicate or malformed name) and start-up stops on it rather than serving
    /// without the metric.
    pub fn new(providers: &[&str]) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);

        let decisions = IntCounterVec::new(
            Opts::new(
                "tokengate_decisions_total",
                "Authorization decisions by transport, decision and reason.",
            ),
            &["transport", "decision", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tokengate_decision_duration_seconds",
                "Time to reach a decision, from request facts to answer.",
            )
            .buckets(BUCKETS.to_vec()),
            &["transport"],
        )?;
        let per_transport = |t: Transport| {
            let mut v = Vec::with_capacity(OUTCOMES);
            v.push(decisions.with_label_values(&[t.as_str(), "allow", "none"]));
            v.push(decisions.with_label_values(&[t.as_str(), "allow", "store_unavailable"]));
            v.push(decisions.with_label_values(&[t.as_str(), "allow", "status_list_unavailable"]));
            for r in Reason::ALL {
                v.push(decisions.with_label_values(&[t.as_str(), "deny", r.as_str()]));
            }
            PerTransport {
                decisions: v,
                duration: duration.with_label_values(&[t.as_str()]),
            }
        };
        let transports = [
            per_transport(Transport::Grpc),
            per_transport(Transport::Http),
        ];

        let store_requests = IntCounterVec::new(
            Opts::new(
                "tokengate_store_requests_total",
                "Calls to the revocation store by operation and result.",
            ),
            &["op", "result"],
        )?;
        let store_duration = HistogramVec::new(
            HistogramOpts::new(
                "tokengate_store_duration_seconds",
                "Latency of revocation store calls.",
            )
            .buckets(BUCKETS.to_vec()),
            &["op"],
        )?;
        let per_op = |op: StoreOp| PerOp {
            ok: store_requests.with_label_values(&[op.as_str(), "ok"]),
            error: store_requests.with_label_values(&[op.as_str(), "error"]),
            timeout: store_requests.with_label_values(&[op.as_str(), "timeout"]),
            duration: store_duration.with_label_values(&[op.as_str()]),
        };
        let ops = StoreOp::ALL.map(per_op);

        let cache_requests = IntCounterVec::new(
            Opts::new(
                "tokengate_cache_requests_total",
                "Local cache lookups by cache and result.",
            ),
            &["cache", "result"],
        )?;
        let cache = ["verified", "revocation"]
            .map(|c| ["hit", "miss"].map(|r| cache_requests.with_label_values(&[c, r])));

        let revocations = IntCounterVec::new(
            Opts::new(
                "tokengate_revocations_total",
                "Revocations written, by kind and source.",
            ),
            &["kind", "source"],
        )?;
        for kind in crate::revocation::Kind::ALL {
            for source in [
                "logout",
                "logout-all",
                "admin",
                "oauth",
                "backchannel",
                "ssf",
            ] {
                revocations.with_label_values(&[kind.as_str(), source]);
            }
        }
        let invalidation_events = IntCounter::new(
            "tokengate_invalidation_events_total",
            "Invalidation events applied to the local cache (from any replica).",
        )?;
        let invalidation_gaps = IntCounter::new(
            "tokengate_invalidation_gaps_total",
            "Times the event stream was interrupted and cached not-revoked answers were dropped.",
        )?;
        let invalidation_unreadable = IntCounter::new(
            "tokengate_invalidation_unreadable_total",
            "Invalidation messages no event could be read from; each drops the cached not-revoked answers.",
        )?;
        let subscription_up = IntGauge::new(
            "tokengate_invalidation_subscription_up",
            "1 while the invalidation event subscription is connected.",
        )?;
        let jwks_refresh = IntCounterVec::new(
            Opts::new(
                "tokengate_jwks_refresh_total",
                "JWKS fetches by provider and result.",
            ),
            &["provider", "result"],
        )?;
        for p in providers {
            for r in ["ok", "error"] {
                jwks_refresh.with_label_values(&[p, r]);
            }
        }
        let status_list_fetches = IntCounterVec::new(
            Opts::new(
                "tokengate_status_list_fetches_total",
                "Token Status List fetches by provider and result (ok, unreachable, invalid, too_large).",
            ),
            &["provider", "result"],
        )?;
        for p in providers {
            for r in crate::status::FETCH_RESULTS {
                status_list_fetches.with_label_values(&[p, r]);
            }
        }
        let reloads = IntCounterVec::new(
            Opts::new(
                "tokengate_config_reloads_total",
                "Configuration reloads by result.",
            ),
            &["result"],
        )?;
        for r in ["ok", "error"] {
            reloads.with_label_values(&[r]);
        }
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "tokengate_tls_handshake_failures_total",
                "TLS handshakes that failed (plaintext, untrusted or refused client certificates, timeouts), by listener.",
            ),
            &["listener"],
        )?;
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "tokengate_tls_reloads_total",
                "Changed certificate files read again, by listener and result (error: the previous certificate stays in use).",
            ),
            &["listener", "result"],
        )?;
        let tls_not_after = IntGaugeVec::new(
            Opts::new(
                "tokengate_tls_certificate_not_after_seconds",
                "Expiry (Unix time) of the certificate each TLS listener serves.",
            ),
            &["listener"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("tokengate_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        reg(Box::new(decisions))?;
        reg(Box::new(duration))?;
        reg(Box::new(store_requests))?;
        reg(Box::new(store_duration))?;
        reg(Box::new(cache_requests))?;
        reg(Box::new(revocations.clone()))?;
        reg(Box::new(invalidation_events.clone()))?;
        reg(Box::new(invalidation_gaps.clone()))?;
        reg(Box::new(invalidation_unreadable.clone()))?;
        reg(Box::new(subscription_up.clone()))?;
        reg(Box::new(jwks_refresh.clone()))?;
        reg(Box::new(status_list_fetches.clone()))?;
        reg(Box::new(reloads.clone()))?;
        reg(Box::new(tls_handshake_failures.clone()))?;
        reg(Box::new(tls_reloads.clone()))?;
        reg(Box::new(tls_not_after.clone()))?;
        reg(Box::new(build_info))?;
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            registry,
            transports,
            ops,
            cache,
            revocations,
            invalidation_events,
            invalidation_gaps,
            invalidation_unreadable,
            subscription_up,
            jwks_refresh,
            status_list_fetches,
            reloads,
            tls_handshake_failures,
            tls_reloads,
            tls_not_after,
            exemplars: [(); 2].map(|()| {
                (0..=BUCKETS.len())
                    .map(|_| parking_lot::Mutex::new(None))
                    .collect()
            }),
        })
    }

    /// Keeps `trace_id` as the exemplar of the decision-latency bucket `took` falls in
    /// (a sampled check; unsampled ones have no trace to link to). Never waits: when
    /// another check is writing the same bucket, this one is skipped.
    pub fn exemplar(&self, t: Transport, took: Duration, trace_id: [u8; 16]) {
        let value = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(BUCKETS.len());
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if let Some(mut slot) = self.exemplars[t as usize]
            .get(bucket)
            .and_then(|m| m.try_lock())
        {
            *slot = Some(Exemplar {
                trace_id,
                value,
                timestamp,
            });
        }
    }

    /// A TLS listener starts serving `not_after` (Unix time): its series appear at zero.
    pub fn tls_listener(&self, listener: &str, not_after: i64) {
        self.tls_handshake_failures.with_label_values(&[listener]);
        for r in ["ok", "error"] {
            self.tls_reloads.with_label_values(&[listener, r]);
        }
        self.tls_not_after
            .with_label_values(&[listener])
            .set(not_after);
    }

    pub fn tls_handshake_failed(&self, listener: &str) {
        self.tls_handshake_failures
            .with_label_values(&[listener])
            .inc();
    }

    /// Changed files were read again; `not_after` is the new certificate's expiry when
    /// they were accepted.
    pub fn tls_reload(&self, listener: &str, not_after: Option<i64>) {
        let result = if not_after.is_some() { "ok" } else { "error" };
        self.tls_reloads
            .with_label_values(&[listener, result])
            .inc();
        if let Some(t) = not_after {
            self.tls_not_after.with_label_values(&[listener]).set(t);
        }
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Records one decision.
    /// `fail_open`: the outage an allow was let through despite (`on_store_error: allow`).
    pub fn decision(
        &self,
        t: Transport,
        deny: Option<Reason>,
        fail_open: Option<Reason>,
        took: Duration,
    ) {
        let slot = match (deny, fail_open) {
            (None, None) => 0,
            (None, Some(Reason::StatusListUnavailable)) => 2,
            (None, Some(_)) => 1,
            (Some(r), _) => 3 + Reason::ALL.iter().position(|x| *x == r).unwrap_or(0),
        };
        let pt = &self.transports[t as usize];
        if let Some(c) = pt.decisions.get(slot) {
            c.inc();
        }
        pt.duration.observe(took.as_secs_f64());
    }

    /// Records one store call.
    pub fn store(&self, op: StoreOp, result: Result<(), StoreOutcome>, took: Duration) {
        let o = &self.ops[op as usize];
        match result {
            Ok(()) => o.ok.inc(),
            Err(StoreOutcome::Error) => o.error.inc(),
            Err(StoreOutcome::Timeout) => o.timeout.inc(),
        }
        o.duration.observe(took.as_secs_f64());
    }

    pub fn cache(&self, cache: CacheKind, hit: bool) {
        self.cache[cache as usize][usize::from(!hit)].inc();
    }

    pub fn revocation(&self, kind: &str, source: &str) {
        self.revocations.with_label_values(&[kind, source]).inc();
    }

    pub fn jwks_refresh(&self, provider: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_refresh
            .with_label_values(&[provider, result])
            .inc();
    }

    /// One Token Status List fetch; `result` is one of [`crate::status::FETCH_RESULTS`].
    pub fn status_list_fetch(&self, provider: &str, result: &str) {
        self.status_list_fetches
            .with_label_values(&[provider, result])
            .inc();
    }

    /// Store calls with result `ok` for `op` so far (tests and benchmarks).
    pub fn store_calls(&self, op: StoreOp) -> u64 {
        let o = &self.ops[op as usize];
        o.ok.get() + o.error.get() + o.timeout.get()
    }

    /// The registry, for collectors kept outside the core (the server's trace counters).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The OpenMetrics text format, with exemplars on the decision-latency buckets.
    pub fn render_openmetrics(&self) -> String {
        openmetrics::encode(&self.registry.gather(), self)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl openmetrics::Exemplars for Metrics {
    fn exemplar(
        &self,
        family: &str,
        metric: &prometheus::proto::Metric,
        bucket: usize,
    ) -> Option<Exemplar> {
        if family != "tokengate_decision_duration_seconds" {
            return None;
        }
        let transport = metric
            .get_label()
            .iter()
            .find(|l| l.name() == "transport")?
            .value();
        let t = [Transport::Grpc, Transport::Http]
            .into_iter()
            .find(|t| t.as_str() == transport)?;
        *self.exemplars[t as usize].get(bucket)?.lock()
    }
}

/// How a failed store call failed.
#[derive(Debug, Clone, Copy)]
pub enum StoreOutcome {
    Error,
    Timeout,
}
