//! Liveness and readiness: the one readiness computation, answered on `/readyz` for
//! kubelet probes and published to gRPC health (`grpc.health.v1`) for Envoy's health
//! checks, so that the two can never disagree about whether this replica should get
//! traffic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::grpc_health::GrpcHealth;
use super::{json_body, AppState};
use crate::decision::Engine;
use crate::revocation::RevocationStore;

/// What readiness waits for besides keys and the store, and where it is published.
#[derive(Default)]
pub struct Readiness {
    shutting_down: AtomicBool,
    grpc: OnceLock<GrpcHealth>,
}

/// One readiness verdict: whether to take traffic, and the body that says why not.
pub struct Report {
    pub ready: bool,
    pub body: serde_json::Value,
}

impl Readiness {
    /// Readiness turns 503 at SIGTERM so that endpoints stop sending new traffic while
    /// in-flight requests finish.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// From now on every verdict is also published to gRPC health.
    pub(super) fn publish_to(&self, grpc: GrpcHealth) {
        let _ = self.grpc.set(grpc);
    }

    /// Whether this replica should get traffic: every provider can verify its tokens,
    /// the store answers (unless fail-open), and it is not shutting down.
    pub async fn evaluate(&self, engine: &Engine) -> Report {
        let mut not_ready: Vec<&str> = Vec::new();
        let policy = engine.policy();
        let waiting = policy.verifier.waiting();
        let problems = policy.verifier.key_problems();
        if !waiting.is_empty() {
            not_ready.push("keys");
        }
        let store = engine.store().ping();
        let store_problem =
            match tokio::time::timeout(std::time::Duration::from_millis(500), store).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("store did not answer a ping within 500 ms".to_string()),
            };
        // Fail-open replicas answer (allow) through a store outage: taking them out of
        // the Service would turn the outage into downtime after all. The body still says.
        if store_problem.is_some() && !policy.fails_open() {
            not_ready.push("store");
        }
        if self.shutting_down.load(Ordering::Acquire) {
            not_ready.push("shutting_down");
        }
        let ready = not_ready.is_empty();
        let mut body = serde_json::json!({ "ready": ready, "not_ready": not_ready });
        if let Some(map) = body.as_object_mut() {
            if let Some(problem) = store_problem {
                // Store errors name the (redacted) URL and the cause, never a password.
                map.insert("store".into(), problem.into());
            }
            if !waiting.is_empty() {
                // Fetch errors name the URL without credentials or query.
                let errors: serde_json::Map<String, serde_json::Value> = problems
                    .into_iter()
                    .map(|(name, why)| (name.to_string(), why.into()))
                    .collect();
                map.insert(
                    "keys".into(),
                    serde_json::json!({ "waiting_for": waiting, "errors": errors }),
                );
            }
        }
        if let Some(grpc) = self.grpc.get() {
            grpc.publish(ready).await;
        }
        Report { ready, body }
    }
}

pub async fn healthz() -> Response {
    json_body(r#"{"status":"ok"}"#.to_string()).into_response()
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.readiness.evaluate(&state.engine).await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, json_body(report.body.to_string())).into_response()
}

/// `GET /metrics`: the Prometheus text format, or OpenMetrics (with trace-id exemplars
/// on the decision-latency buckets) when the scrape's `Accept` asks for it.
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    use tokengate_core::metrics::openmetrics;
    let metrics = state.engine.store().metrics();
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (body, content_type) = if openmetrics::wanted(accept) {
        (metrics.render_openmetrics(), openmetrics::CONTENT_TYPE)
    } else {
        (metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(content_type),
        )],
        body,
    )
        .into_response()
}
