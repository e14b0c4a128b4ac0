//! Liveness and readiness for kubelet probes.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{json_body, AppState};
use crate::revocation::RevocationStore;

/// What readiness waits for besides keys and the store.
#[derive(Debug, Default)]
pub struct Readiness {
    shutting_down: AtomicBool,
}

impl Readiness {
    /// Readiness turns 503 at SIGTERM so that endpoints stop sending new traffic while
    /// in-flight requests finish.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }
}

pub async fn healthz() -> Response {
    json_body(r#"{"status":"ok"}"#.to_string()).into_response()
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    let mut not_ready: Vec<&str> = Vec::new();
    let policy = state.engine.policy();
    let waiting = policy.verifier.waiting();
    if !waiting.is_empty() {
        not_ready.push("keys");
    }
    let store = state.engine.store().ping();
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
    if state.readiness.shutting_down.load(Ordering::Acquire) {
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
            map.insert("keys".into(), serde_json::json!({ "waiting_for": waiting }));
        }
    }
    let body = body.to_string();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, json_body(body)).into_response()
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.engine.store().metrics().render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
