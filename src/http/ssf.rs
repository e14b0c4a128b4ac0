//! `POST /v1/ssf/events`: RFC 8935 push delivery of Security Event Tokens from the
//! configured Shared Signals transmitters (docs/spec.md §4). The SET is verified whole
//! in core ([`crate::ssf`]); revocations are written only once it passed, through the
//! same [`Engine::revoke`](crate::decision::Engine::revoke) as logout (store, replicas,
//! audit, `tokengate_revocations_total{source="ssf"}`), and the `jti` is remembered only
//! after they all were, so a transmitter's retry after a 503 is not taken for a replay.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{json_body, AppState};
use crate::revocation::scope::scoped;
use crate::revocation::Target;
use crate::ssf::{Action, ReplayGuard, SetError, Verified};

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

/// Replay check, revocations, then the `jti` remembered.
async fn apply(state: &AppState, set: &Verified) -> Result<(), SetError> {
    let engine = &state.engine;
    let guard = ReplayGuard::new(engine.store());
    if guard.seen(&set.replay_key).await.map_err(store_failed)? {
        return Err(SetError::InvalidRequest(
            "this SET (iss, jti) was received before",
        ));
    }
    let mut targets: Vec<(&'static str, String)> = Vec::new();
    for (event, action) in &set.actions {
        let user = session_or_user(action)?;
        let id = scoped(&set.namespace, user);
        if !targets.iter().any(|(_, t)| *t == id) {
            targets.push((event.reason(), id));
        }
    }
    for (reason, id) in &targets {
        engine
            .revoke(Target::User(id), reason, Some(&set.issuer), "ssf")
            .await
            .map_err(store_failed)?;
    }
    guard
        .remember(&set.replay_key, set.remember_until)
        .await
        .map_err(store_failed)
}

/// The user a session event cuts off. Until the store has session revocations, a
/// `session-revoked` for a session is applied to its user (more than asked, never less);
/// one that names no user is refused, before anything is written.
fn session_or_user(action: &Action) -> Result<&str, SetError> {
    match action {
        Action::User(user)
        | Action::Session {
            user: Some(user), ..
        } => Ok(user),
        Action::Session { user: None, .. } => Err(SetError::InvalidRequest(
            "a session without its user cannot be revoked by this receiver",
        )),
    }
}

fn store_failed(e: crate::revocation::StoreError) -> SetError {
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
