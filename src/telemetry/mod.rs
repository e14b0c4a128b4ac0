//! OpenTelemetry traces (issue 17): every check a span in the proxy's trace.
//!
//! Off unless `tracing.enabled`. Spans go through the SDK's batch processor, which runs on
//! its own thread with a bounded queue: a check only hands its span over (no I/O, no
//! waiting), and when the collector is slow or down the queue fills and further spans are
//! dropped, never the check delayed. What happened to the spans is counted
//! (`tokengate_trace_spans_total{result}`: ended, exported, export_failed; ended minus
//! the other two is what the queue dropped or still holds).
//!
//! The check's span takes its parent from the trace context (W3C `traceparent`/
//! `tracestate`, or B3) of the call that asked: for gRPC the Check call's own metadata,
//! where Envoy puts its ext_authz span — never the CheckRequest's copy of the client's
//! headers, which a client writes; for the HTTP check the auth request's headers. So the
//! check is a child of Envoy's ext_authz span. Sampling follows that parent's decision,
//! and a root span is sampled at `tracing.sample_ratio`.

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus::{IntCounterVec, Opts};

use crate::config::{OtlpProtocol, Tracing};

/// What became of the spans: `ended`, `exported`, `export_failed` (registered with the
/// other metrics by [`register_metrics`]).
static SPANS: LazyLock<Option<IntCounterVec>> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "tokengate_trace_spans_total",
            "Trace spans by what became of them: ended (handed to the export queue), exported, export_failed, dropped (while backing off from a failed collector); ended minus the other three were dropped by a full queue or are still queued.",
        ),
        &["result"],
    )
    .ok()?;
    for r in ["ended", "exported", "export_failed", "dropped"] {
        c.with_label_values(&[r]);
    }
    Some(c)
});

fn count(result: &str, n: u64) {
    if let Some(c) = SPANS.as_ref() {
        c.with_label_values(&[result]).inc_by(n);
    }
}

/// Adds the span counters to the metrics registry (with tracing on).
pub fn register_metrics(registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
    match SPANS.as_ref() {
        Some(c) => registry.register(Box::new(c.clone())),
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("tracing: the OTLP exporter could not be built: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running tracer; flushes what it can on [`shutdown`](Telemetry::shutdown).
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Builds the exporter, the batch processor and the tracer. Must run inside the
    /// tokio runtime (the gRPC exporter's connection lives on it).
    pub fn start(config: &Tracing) -> Result<Telemetry, TelemetryError> {
        let timeout = Duration::from_secs(config.export_timeout_seconds);
        let exporter = match config.protocol {
            OtlpProtocol::Grpc => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout);
                if let Some(e) = &config.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                Exporter::Grpc(b.build()?)
            }
            OtlpProtocol::Http => {
                let mut b = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_timeout(timeout);
                if let Some(e) = &config.endpoint {
                    b = b.with_endpoint(format!("{}/v1/traces", e.trim_end_matches('/')));
                }
                Exporter::Http(b.build()?)
            }
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(config.max_queue_size)
            .build();
        let processor = Counted(
            BatchSpanProcessor::builder(Counting::new(exporter))
                .with_batch_config(batch)
                .build(),
        );
        let mut resource = Resource::builder();
        if let Some(name) = &config.service_name {
            resource = resource.with_service_name(name.clone());
        } else if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("tokengate");
        }
        resource = resource.with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
        let ratio = config.sample_ratio.or_else(env_ratio).unwrap_or(1.0);
        // Checks are head-sampled in check_span (an unsampled check gets no span at
        // all), so the SDK keeps what it is given; background spans without a parent
        // (JWKS fetches: rare) are kept too.
        ROOT_THRESHOLD.store(
            if ratio >= 1.0 {
                u64::MAX
            } else {
                (ratio * u64::MAX as f64) as u64
            },
            std::sync::atomic::Ordering::Relaxed,
        );
        ON.store(true, std::sync::atomic::Ordering::Relaxed);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(resource.build())
            .build();
        Ok(Telemetry { provider })
    }

    /// The `tracing` layer that turns tokengate's spans into OpenTelemetry spans.
    pub fn layer<S>(
        &self,
    ) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("tokengate"))
    }

    /// Exports what is queued, within the export timeout.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "trace exporter shutdown");
        }
    }
}

fn env_ratio() -> Option<f64> {
    std::env::var("OTEL_TRACES_SAMPLER_ARG")
        .ok()?
        .parse()
        .ok()
        .filter(|r: &f64| (0.0..=1.0).contains(r))
}

/// The two exporters behind one type.
#[derive(Debug)]
enum Exporter {
    Grpc(opentelemetry_otlp::SpanExporter),
    Http(opentelemetry_otlp::SpanExporter),
}

/// Counts exported and failed spans, and backs off from a collector that is down.
///
/// The OTLP exporter turns each batch into protobuf before it finds out the collector is
/// unreachable: with every check sampled and the collector down, that conversion cost
/// more than the checks themselves (callgrind, docs/performance.md). After a failed
/// export, batches are dropped unconverted for a backoff that doubles from 250 ms to
/// 10 s and resets on the first success; they are counted as `dropped`.
#[derive(Debug)]
struct Counting {
    exporter: Exporter,
    backoff: parking_lot::Mutex<Backoff>,
}

#[derive(Debug, Default)]
struct Backoff {
    until: Option<std::time::Instant>,
    delay: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Counting {
    fn new(exporter: Exporter) -> Self {
        Counting {
            exporter,
            backoff: parking_lot::Mutex::new(Backoff::default()),
        }
    }
}

impl SpanExporter for Counting {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let now = std::time::Instant::now();
        if self.backoff.lock().until.is_some_and(|u| now < u) {
            count("dropped", n);
            return Ok(());
        }
        let result = match &self.exporter {
            Exporter::Grpc(e) | Exporter::Http(e) => e.export(batch).await,
        };
        let mut b = self.backoff.lock();
        if result.is_ok() {
            *b = Backoff::default();
            count("exported", n);
        } else {
            b.delay = (b.delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
            b.until = Some(std::time::Instant::now() + b.delay);
            count("export_failed", n);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match &self.exporter {
            Exporter::Grpc(e) | Exporter::Http(e) => e.shutdown_with_timeout(timeout),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        match &self.exporter {
            Exporter::Grpc(e) | Exporter::Http(e) => e.force_flush(),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        match &mut self.exporter {
            Exporter::Grpc(e) | Exporter::Http(e) => e.set_resource(resource),
        }
    }
}

/// Counts the spans handed to the batch processor.
#[derive(Debug)]
struct Counted(BatchSpanProcessor);

impl SpanProcessor for Counted {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        count("ended", 1);
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// W3C trace context, then B3 (single and multi header) for Envoys configured that way.
static PROPAGATOR: LazyLock<TextMapCompositePropagator> = LazyLock::new(|| {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(b3::B3Propagator),
    ])
});

/// The parent context the headers of a checked request carry (empty when none). The
/// CheckRequest's header map implements [`Extractor`] as it is (lower-case names, as
/// Envoy sends them); the HTTP listener's requests go through [`Headers`].
pub fn parent_from(headers: &dyn Extractor) -> Context {
    PROPAGATOR.extract(headers)
}

/// A request's (or a gRPC call's metadata's) headers as an [`Extractor`], borrowed.
struct FromHeaderMap<'a>(&'a axum::http::HeaderMap);

impl Extractor for FromHeaderMap<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// What one pass over the headers says before any parsing of trace context.
#[derive(Debug, PartialEq)]
enum Glance {
    /// A well-formed version-00 `traceparent` whose parent did not sample, and no B3
    /// header that could override it: no span, and nothing else to parse.
    Unsampled,
    /// No trace context at all: a root span, sampled by ratio.
    Root,
    /// Anything else (a sampled parent, B3, another `traceparent` version, something
    /// malformed): the propagators decide, exactly as without this shortcut.
    Parse,
}

/// The unsampled check is the common case with a proxy that traces a small share of its
/// requests (every request carries a `traceparent`; most say "not sampled"). Building the
/// propagators' `Context` for it cost about 4 % of a warm check (measured with callgrind,
/// docs/performance.md); one pass over the few headers of a Check call costs almost
/// nothing. Strictness only sends more cases to [`Glance::Parse`].
fn glance(headers: &axum::http::HeaderMap) -> Glance {
    let mut traceparent = None;
    for (name, value) in headers {
        match name.as_str() {
            "traceparent" => {
                if traceparent.is_some() {
                    return Glance::Parse;
                }
                traceparent = Some(value.as_bytes());
            }
            "b3" | "x-b3-traceid" | "x-b3-spanid" | "x-b3-sampled" | "x-b3-flags" => {
                return Glance::Parse
            }
            _ => {}
        }
    }
    match traceparent {
        None => Glance::Root,
        Some(v) if unsampled_traceparent(v) => Glance::Unsampled,
        Some(_) => Glance::Parse,
    }
}

/// `00-{32 hex}-{16 hex}-{2 hex}` with non-zero ids and the sampled bit clear
/// (W3C Trace Context, version 00; lower-case hex only, as the format requires).
fn unsampled_traceparent(v: &[u8]) -> bool {
    let hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |b: &[u8]| b.iter().any(|c| *c != b'0');
    v.len() == 55
        && v.starts_with(b"00-")
        && v[35] == b'-'
        && v[52] == b'-'
        && hex(&v[3..35])
        && nonzero(&v[3..35])
        && hex(&v[36..52])
        && nonzero(&v[36..52])
        && hex(&v[53..55])
        && matches!(v[54], b'0' | b'2' | b'4' | b'6' | b'8' | b'a' | b'c' | b'e')
}

/// Whether tracing was started in this process (set by [`Telemetry::start`]).
static ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// `sample_ratio` as a threshold over `u64` (root spans below it are sampled).
static ROOT_THRESHOLD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// The head-sampling decision for a check, made before any span exists: a check whose
/// parent said "not sampled", or a root check outside `sample_ratio`, gets no span at all
/// (its store call then gets none either), so an unsampled check costs a header lookup.
fn sampled(parent: &Context) -> bool {
    use opentelemetry::trace::TraceContextExt as _;
    let span = parent.span();
    let sc = span.span_context();
    if sc.is_valid() {
        return sc.is_sampled();
    }
    let threshold = ROOT_THRESHOLD.load(std::sync::atomic::Ordering::Relaxed);
    threshold == u64::MAX || random() < threshold
}

/// A cheap per-thread pseudo-random number (xorshift), for root sampling only.
fn random() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9e37_79b9_7f4a_7c15)
                | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// Runs one check inside its span (when it is sampled): the span is a child of the
/// trace whose context `trace` carries (the Check call's metadata, or the HTTP check's
/// request headers), gets the decision recorded on it, and the check's latency becomes
/// the decision histogram's exemplar for its bucket. An unsampled check (or tracing off)
/// runs as it would without tracing: no span, no wrapper, no clock read.
pub async fn check<H: crate::decision::Headers>(
    engine: &crate::decision::Engine,
    policy: &crate::decision::Policy,
    req: &crate::decision::Request<'_, H>,
    trace: &axum::http::HeaderMap,
) -> crate::decision::Decision {
    let Some((span, trace_id)) = check_span(req.transport.as_str(), trace) else {
        return engine.check_with(policy, req).await;
    };
    let started = std::time::Instant::now();
    let decision = {
        use tracing::Instrument as _;
        engine
            .check_with(policy, req)
            .instrument(span.clone())
            .await
    };
    record_decision(&span, &decision, policy);
    if let Some(id) = trace_id {
        let metrics = engine.store().metrics();
        metrics.exemplar(req.transport, started.elapsed(), id.to_bytes());
    }
    decision
}

/// The parent context of a sampled request, or `None` when tracing is off or the
/// request is not sampled (its parent said so, or a root outside `sample_ratio`).
fn sampled_parent(trace: &axum::http::HeaderMap) -> Option<Context> {
    if !ON.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let parent = match glance(trace) {
        Glance::Unsampled => return None,
        Glance::Root => Context::new(),
        Glance::Parse => parent_from(&FromHeaderMap(trace)),
    };
    sampled(&parent).then_some(parent)
}

/// Joins `span` to `parent`'s trace and records the trace id on it (for log lines);
/// returns the trace id (the parent's, or the new one of a root span).
fn join(span: &tracing::Span, parent: Context) -> Option<opentelemetry::trace::TraceId> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let _ = span.set_parent(parent);
    let trace = span.context().span().span_context().trace_id();
    let trace = (trace != opentelemetry::trace::TraceId::INVALID).then_some(trace);
    if let Some(t) = trace {
        span.record("trace_id", tracing::field::display(t));
    }
    trace
}

/// A revocation write's request (logout, logout-all, OAuth revocation, back-channel
/// logout, SSF event, admin revocation) as a server span, sampled like a check; the
/// store write inside it (`tokengate.revocation.write`) becomes its child. Named by the
/// method and route (`POST /v1/auth/logout`).
pub async fn write_span(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(parent) = sampled_parent(req.headers()) else {
        return next.run(req).await;
    };
    // Every write route is a fixed path without parameters, and the router matched it
    // exactly, so the path is the route's template: nothing a client chose beyond that.
    let route = req.uri().path().to_string();
    let span = tracing::debug_span!(
        target: "tokengate::trace",
        "write",
        otel.name = format!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = req.method().as_str(),
        http.route = route.as_str(),
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if span.is_disabled() {
        return next.run(req).await;
    }
    join(&span, parent);
    let response = {
        use tracing::Instrument as _;
        next.run(req).instrument(span.clone()).await
    };
    span.record("http.response.status_code", response.status().as_u16());
    response
}

/// The span of one check and its trace id, or `None` when tracing is off or the check
/// is not sampled.
fn check_span(
    transport: &'static str,
    trace: &axum::http::HeaderMap,
) -> Option<(tracing::Span, Option<opentelemetry::trace::TraceId>)> {
    let parent = sampled_parent(trace)?;
    let span = tracing::debug_span!(
        target: "tokengate::trace",
        "check",
        otel.name = "tokengate.check",
        otel.kind = "server",
        tokengate.transport = transport,
        tokengate.decision = tracing::field::Empty,
        tokengate.reason = tracing::field::Empty,
        tokengate.issuer = tracing::field::Empty,
        tokengate.cache.token = tracing::field::Empty,
        tokengate.cache.revocation = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if span.is_disabled() {
        return None;
    }
    let trace = join(&span, parent);
    Some((span, trace))
}

/// Records what the check decided on its span: the decision, the deny reason, and the
/// issuer (provider name) of a verified token. Nothing else of the token or its claims.
fn record_decision(
    span: &tracing::Span,
    decision: &crate::decision::Decision,
    policy: &crate::decision::Policy,
) {
    if span.is_disabled() {
        return;
    }
    match decision {
        crate::decision::Decision::Allow(a) => {
            span.record("tokengate.decision", "allow");
            if let Some(c) = a.claims.as_deref() {
                if let Some(p) = policy.verifier.providers.get(c.provider) {
                    span.record("tokengate.issuer", p.name.as_str());
                }
            }
        }
        crate::decision::Decision::Deny(d) => {
            span.record("tokengate.decision", "deny");
            span.record("tokengate.reason", d.reason.as_str());
        }
    }
}

mod b3;

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;

    fn map(pairs: &[(&str, &str)]) -> axum::http::HeaderMap {
        let mut m = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const SPAN: &str = "b7ad6b7169203331";

    /// The shortcut never decides differently from the propagators: whatever it calls
    /// unsampled, they read as a valid, unsampled parent; whatever it calls a root, they
    /// find no parent in. Everything else goes to them.
    #[test]
    fn the_glance_agrees_with_the_propagators() {
        let tp = |v: &str| vec![("traceparent".to_string(), v.to_string())];
        let mut cases: Vec<(Vec<(String, String)>, Glance)> = vec![
            (vec![], Glance::Root),
            (vec![("x-request-id".into(), "1".into())], Glance::Root),
            (tp(&format!("00-{TRACE}-{SPAN}-00")), Glance::Unsampled),
            (tp(&format!("00-{TRACE}-{SPAN}-02")), Glance::Unsampled),
            (tp(&format!("00-{TRACE}-{SPAN}-01")), Glance::Parse),
            (tp(&format!("00-{TRACE}-{SPAN}-03")), Glance::Parse),
            (tp(&format!("01-{TRACE}-{SPAN}-00")), Glance::Parse),
            (tp(&format!("ff-{TRACE}-{SPAN}-00")), Glance::Parse),
            (
                tp(&format!("00-{}-{SPAN}-00", TRACE.to_uppercase())),
                Glance::Parse,
            ),
            (
                tp(&format!("00-{}-{SPAN}-00", "0".repeat(32))),
                Glance::Parse,
            ),
            (
                tp(&format!("00-{TRACE}-{}-00", "0".repeat(16))),
                Glance::Parse,
            ),
            (tp(&format!("00-{TRACE}-{SPAN}-00-extra")), Glance::Parse),
            (tp(&format!("00-{TRACE}-{SPAN}-0")), Glance::Parse),
            (tp(&format!("00_{TRACE}-{SPAN}-00")), Glance::Parse),
            (tp("garbage"), Glance::Parse),
        ];
        let mut two = tp(&format!("00-{TRACE}-{SPAN}-00"));
        two.extend(tp(&format!("00-{TRACE}-{SPAN}-01")));
        cases.push((two, Glance::Parse));
        for b3 in [
            "b3",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-sampled",
            "x-b3-flags",
        ] {
            let mut h = tp(&format!("00-{TRACE}-{SPAN}-00"));
            h.push((b3.into(), "1".into()));
            cases.push((h, Glance::Parse));
        }
        for (headers, want) in cases {
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let m = map(&pairs);
            assert_eq!(glance(&m), want, "{pairs:?}");
            let parent = parent_from(&FromHeaderMap(&m));
            let span = parent.span();
            let sc = span.span_context();
            match want {
                Glance::Unsampled => assert!(sc.is_valid() && !sc.is_sampled(), "{pairs:?}"),
                Glance::Root => assert!(!sc.is_valid(), "{pairs:?}"),
                Glance::Parse => {}
            }
        }
    }
}
