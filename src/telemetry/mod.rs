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
            "Trace spans by what became of them: ended (handed to the export queue), exported, export_failed; ended minus the other two were dropped by a full queue or are still queued.",
        ),
        &["result"],
    )
    .ok()?;
    for r in ["ended", "exported", "export_failed"] {
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
            BatchSpanProcessor::builder(Counting(exporter))
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
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
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

/// Counts exported and failed spans.
#[derive(Debug)]
struct Counting(Exporter);

impl SpanExporter for Counting {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = match &self.0 {
            Exporter::Grpc(e) | Exporter::Http(e) => e.export(batch).await,
        };
        let label = if result.is_ok() {
            "exported"
        } else {
            "export_failed"
        };
        count(label, n);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match &self.0 {
            Exporter::Grpc(e) | Exporter::Http(e) => e.shutdown_with_timeout(timeout),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        match &self.0 {
            Exporter::Grpc(e) | Exporter::Http(e) => e.force_flush(),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        match &mut self.0 {
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

/// The trace headers of a checked request (either transport): the first value of each
/// name the propagators read, when it is text.
fn trace_headers<H: crate::decision::Headers>(
    headers: &H,
) -> std::collections::HashMap<String, String> {
    const NAMES: [&str; 6] = [
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-sampled",
    ];
    NAMES
        .iter()
        .filter_map(|name| {
            let v = headers.values(name).next()?;
            Some((name.to_string(), std::str::from_utf8(v).ok()?.to_string()))
        })
        .collect()
}

/// The span of one check, a child of the trace the request's headers carry. Disabled
/// (free) unless tracing is on: tokengate's spans are DEBUG-level callsites that only the
/// OpenTelemetry layer enables.
pub fn check_span<H: crate::decision::Headers>(
    transport: &'static str,
    headers: &H,
) -> tracing::Span {
    let span = tracing::debug_span!(
        target: "tokengate::trace",
        "check",
        otel.name = "tokengate.check",
        otel.kind = "server",
        tokengate.transport = transport,
        tokengate.decision = tracing::field::Empty,
        tokengate.reason = tracing::field::Empty,
        tokengate.issuer = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let _ = span.set_parent(parent_from(&trace_headers(headers)));
        let trace = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(trace));
    }
    span
}

/// Records what the check decided on its span: the decision, the deny reason, and the
/// issuer (provider name) of a verified token. Nothing else of the token or its claims.
pub fn record_decision(
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
