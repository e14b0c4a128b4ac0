//! `POST /v1/ssf/events`: RFC 8935 push delivery of Security Event Tokens from the
//! configured Shared Signals transmitters (docs/spec.md §4). The SET is verified whole
//! in core ([`crate::ssf`]); revocations are written only once it passed, through the
//! same [`Engine::revoke`](crate::decision::Engine::revoke) as logout (store, replicas,
//! audit, `tokengate_revocations_total{source="ssf"}`). The `jti` goes through the
//! store's replay guard first (one replica of two given the same SET proceeds) and is
//! released when a revocation fails, so a transmitter's retry after a 503 is applied.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{json_body, AppState};
use crate::revocation::scope::scoped;
use crate::revocation::{RevocationStore, StoreError, Target};
use crate::ssf::{Action, SetError, Verified};

const MEDIA_TYPE: &str = "application/secevent+jwt";

pub async fn events(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Some(receiver) = state.ssf.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !is_secevent(&headers) {
        return error(
            &state,
            &SetError::InvalidRequest("Content-Type must be application/secevent+jwt"),
        );
    }
    let Ok(bytes) = axum::body::to_bytes(body, receiver.max_bytes).await else {
        return error(
            &state,
            &SetError::InvalidRequest("the body is larger than ssf.max_bytes or unreadable"),
        );
    };
    let Ok(set) = std::str::from_utf8(&bytes) else {
        return error(&state, &SetError::InvalidRequest("the body is not a SET"));
    };
    let verified = match receiver.verify(set.trim(), crate::jwt::now_unix()).await {
        Ok(v) => v,
        Err(e) => return error(&state, &e),
    };
    match apply(&state, &verified).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => error(&state, &e),
    }
}

/// The replay guard (atomic across replicas), then the revocations; the guard is
/// released when a revocation could not be written, so that the retry is applied.
async fn apply(state: &AppState, set: &Verified) -> Result<(), SetError> {
    let engine = &state.engine;
    let store = engine.store();
    let seen = scoped(&set.namespace, &set.replay_key);
    if !store
        .first_use(&seen, set.replay_ttl_seconds)
        .await
        .map_err(store_failed)?
    {
        return Err(SetError::InvalidRequest(
            "this SET (iss, jti) was received before",
        ));
    }
    if let Err(e) = revoke_all(state, set).await {
        if let Err(release) = store.release_use(&seen).await {
            tracing::warn!(error = %release, "SSF replay guard not released: the transmitter's retry will be refused");
        }
        return Err(store_failed(e));
    }
    Ok(())
}

/// Every action of the SET, each target once: a session (the `sid` of its tokens) when
/// the subject names one, else the user's cut-off.
async fn revoke_all(state: &AppState, set: &Verified) -> Result<(), StoreError> {
    let mut done: Vec<(bool, String)> = Vec::new();
    for (event, action) in &set.actions {
        let target = match action {
            Action::Session(session) => (true, scoped(&set.namespace, session)),
            Action::User(user) => (false, scoped(&set.namespace, user)),
        };
        if done.contains(&target) {
            continue;
        }
        let t = match &target {
            (true, id) => Target::Session(id),
            (false, id) => Target::User(id),
        };
        state
            .engine
            .revoke(t, event.reason(), Some(&set.issuer), "ssf")
            .await?;
        done.push(target);
    }
    Ok(())
}

fn store_failed(e: StoreError) -> SetError {
    tracing::warn!(error = %e, "SSF event not applied: the revocation store failed");
    SetError::Unavailable("the revocation store is unavailable, retry later")
}

/// The media type, parameters and case aside.
fn is_secevent(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(MEDIA_TYPE))
}

/// RFC 8935 §2.3: 400 with `{"err", "description"}`; 503 with `Retry-After` when the
/// receiver cannot take the SET now. Logged at debug (anyone can post garbage), never
/// with the SET.
fn error(state: &AppState, e: &SetError) -> Response {
    tracing::debug!(
        err = e.code(),
        description = e.description(),
        "SSF event refused"
    );
    let body = serde_json::json!({"err": e.code(), "description": e.description()}).to_string();
    if let SetError::Unavailable(_) = e {
        let retry = state.engine.policy().responses.retry_after_seconds;
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, json_body(body)).into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        return r;
    }
    (StatusCode::BAD_REQUEST, json_body(body)).into_response()
}
