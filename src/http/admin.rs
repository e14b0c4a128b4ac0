//! The revocation API on the admin listener (SPEC §4): off unless `admin_api.enabled`;
//! every call needs a bearer token that passes the whole decision and carries the
//! configured admin scope. Validation errors are 400 with a body naming the field.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{deny_response, json_body, AppState};
use crate::jwt::{now_unix, Claims};
use crate::reason::{Deny, Reason};
use crate::revocation::{Kind, Target, Written};

/// Longest accepted identifier: ids are keys in Redis and lines in the audit log.
const MAX_ID: usize = 512;

/// The caller's claims when it may administer revocations, else the deny to send.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<Claims>, Response> {
    let engine = &state.engine;
    let allowed = engine
        .authenticate(headers, None)
        .await
        .map_err(|d| deny_response(engine, &d))?;
    let claims = allowed
        .claims
        .ok_or_else(|| deny_response(engine, &Reason::MissingToken.into()))?;
    let scope = &state.admin_scope;
    if !claims.has_scope(scope) {
        let deny = Deny {
            reason: Reason::InsufficientScope,
            scope: Some(scope.clone()),
        };
        return Err(deny_response(engine, &deny));
    }
    Ok(claims)
}

pub fn bad_request(field: &str, message: &str) -> Response {
    let body = json!({"error": "invalid_request", "field": field, "message": message});
    (StatusCode::BAD_REQUEST, json_body(body.to_string())).into_response()
}

/// An identifier field of the request body: absent, or a string of 1 to `MAX_ID` bytes.
/// The error is the message for [`bad_request`].
fn id_field<'a>(
    body: &'a serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, String> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID => Ok(Some(s)),
        Some(Value::String(_)) => Err(format!("must be 1 to {MAX_ID} bytes")),
        Some(_) => Err("must be a string".into()),
    }
}

/// `POST /v1/admin/revocations` with exactly one of `jti` (and `expires_at`), `user`,
/// `tenant`, `family`, and an optional `reason`.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match authorize(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body: serde_json::Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(_) => return bad_request("body", "must be a JSON object"),
    };
    if let Some(unknown) = body.keys().find(|k| {
        !matches!(
            k.as_str(),
            "jti" | "expires_at" | "user" | "tenant" | "family" | "reason"
        )
    }) {
        return bad_request(unknown, "unknown field");
    }
    let mut ids = Vec::new();
    for kind in Kind::ALL {
        match id_field(&body, kind.as_str()) {
            Ok(Some(id)) => ids.push((kind, id)),
            Ok(None) => {}
            Err(message) => return bad_request(kind.as_str(), &message),
        }
    }
    let [(kind, id)] = ids[..] else {
        return bad_request("body", "set exactly one of jti, user, tenant, family");
    };
    let reason = match body.get("reason") {
        None | Some(Value::Null) => "admin",
        Some(Value::String(r)) if r.len() <= MAX_ID => r.as_str(),
        Some(_) => {
            return bad_request(
                "reason",
                &format!("must be a string of at most {MAX_ID} bytes"),
            )
        }
    };
    let target = match kind {
        Kind::Jti => match body.get("expires_at").and_then(Value::as_i64) {
            Some(exp) if exp > now_unix() => Target::Jti {
                id,
                expires_at: exp,
            },
            Some(_) => {
                return bad_request("expires_at", "is in the past: that token is already dead")
            }
            None => {
                return bad_request(
                    "expires_at",
                    "required with jti: unix seconds of the token's exp",
                )
            }
        },
        Kind::User => Target::User(id),
        Kind::Tenant => Target::Tenant(id),
        Kind::Family => Target::Family(id),
    };
    if kind != Kind::Jti && body.contains_key("expires_at") {
        return bad_request("expires_at", "only valid with jti");
    }
    match state
        .engine
        .revoke(target, reason, caller.user.as_deref(), "admin")
        .await
    {
        Ok(written) => {
            let mut out = json!({"success": true, "kind": kind.as_str(), "id": id});
            if let (Written::Subject(s), Some(map)) = (written, out.as_object_mut()) {
                map.insert("version".into(), s.version.into());
                map.insert("revoked_before".into(), s.before_ms.into());
            }
            (StatusCode::OK, json_body(out.to_string())).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "admin revocation not written");
            deny_response(&state.engine, &Reason::StoreUnavailable.into())
        }
    }
}

/// `GET /v1/admin/revocations/{kind}/{id}`.
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    if let Err(r) = authorize(&state, &headers).await {
        return r;
    }
    // Authentication first: an unauthenticated caller learns nothing, not even that
    // its path was malformed.
    let Ok(Path((kind, id))) = path else {
        return bad_request("id", "must be valid UTF-8 once percent-decoded");
    };
    let Some(kind) = Kind::parse(&kind) else {
        return bad_request("kind", "one of jti, user, tenant, family");
    };
    if id.is_empty() || id.len() > MAX_ID {
        return bad_request("id", &format!("must be 1 to {MAX_ID} bytes"));
    }
    match state.engine.status(kind, &id).await {
        Ok(Some(status)) => {
            let body = json!({"kind": kind.as_str(), "id": id, "revoked": true, "state": status});
            (StatusCode::OK, json_body(body.to_string())).into_response()
        }
        Ok(None) => {
            let body = json!({"kind": kind.as_str(), "id": id, "revoked": false});
            (StatusCode::NOT_FOUND, json_body(body.to_string())).into_response()
        }
        Err(_) => deny_response(&state.engine, &Reason::StoreUnavailable.into()),
    }
}
