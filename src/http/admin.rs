//! The revocation API on the admin listener (docs/spec.md §4): off unless `admin_api.enabled`;
//! every call needs a bearer token that passes the whole decision, comes from one of
//! the providers listed in `admin_api.providers` (any trusted issuer can mint a scope,
//! so a scope alone grants nothing) and carries the configured admin scope. Every
//! revocation lands in one issuer namespace: the named provider's, or the only one.
//! Validation errors are 400 with a body naming the field.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{deny_response, json_body, AppState};
use crate::json::{parse_unique, BodyError};
use crate::jwt::{now_unix, Claims};
use crate::reason::{Deny, Reason};
use crate::revocation::{operator_expiry, scope, Kind, Target, Written, OPERATOR_EXPIRY};

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
    let wanted = &state.admin_scope;
    // Same answer for both: a caller learns nothing about which providers administer.
    let admin_provider = state.admin_providers.contains(&claims.scoped.provider);
    if !admin_provider || !claims.has_scope(wanted) {
        let deny = Deny {
            reason: Reason::InsufficientScope,
            scope: Some(wanted.clone()),
            dpop_nonce: None,
        };
        return Err(deny_response(engine, &deny));
    }
    Ok(claims)
}

pub fn bad_request(field: &str, message: &str) -> Response {
    let body = json!({"error": "invalid_request", "field": field, "message": message});
    (StatusCode::BAD_REQUEST, json_body(body.to_string())).into_response()
}

/// The namespace of the provider an operator names (or the only one), under the policy
/// in force.
fn namespace(state: &AppState, provider: Option<&str>) -> Result<String, scope::Unresolved> {
    let policy = state.engine.policy();
    let providers = policy
        .verifier
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.namespace.as_str()));
    scope::resolve(providers, provider).map(str::to_string)
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
/// `tenant`, `family`, an optional `reason`, and `provider` (required when several
/// namespaces are configured).
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match authorize(&state, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = match parse_unique(&body) {
        Ok(Value::Object(b)) => b,
        Err(BodyError::Duplicate(path)) => return bad_request(&path, "duplicate key"),
        Ok(_) | Err(BodyError::Invalid) => return bad_request("body", "must be a JSON object"),
    };
    if let Some(unknown) = body.keys().find(|k| {
        !matches!(
            k.as_str(),
            "jti" | "expires_at" | "user" | "tenant" | "family" | "reason" | "provider"
        )
    }) {
        return bad_request(unknown, "unknown field");
    }
    let provider = match id_field(&body, "provider") {
        Ok(p) => p,
        Err(message) => return bad_request("provider", &message),
    };
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
    let namespace = match namespace(&state, provider) {
        Ok(ns) => ns,
        Err(why) => return bad_request("provider", why.message()),
    };
    let scoped = scope::scoped(&namespace, id);
    let id_scoped = scoped.as_str();
    let target = match kind {
        Kind::Jti => match body.get("expires_at") {
            None | Some(Value::Null) => {
                return bad_request(
                    "expires_at",
                    "required with jti: unix seconds of the token's exp",
                )
            }
            Some(v) => match v.as_i64().ok_or(OPERATOR_EXPIRY) {
                Ok(exp) => match operator_expiry(exp, now_unix()) {
                    Ok(()) => Target::Jti {
                        id: id_scoped,
                        expires_at: exp,
                    },
                    Err(why) => return bad_request("expires_at", why),
                },
                Err(why) => return bad_request("expires_at", why),
            },
        },
        Kind::User => Target::User(id_scoped),
        Kind::Tenant => Target::Tenant(id_scoped),
        Kind::Family => Target::Family(id_scoped),
        Kind::Session => Target::Session(id_scoped),
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
            let mut out = json!({
                "success": true, "kind": kind.as_str(), "id": id, "namespace": namespace,
            });
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

/// The `provider` of a status query; any other parameter, or `provider` twice, is
/// refused as (field, message) for [`bad_request`], as a duplicate key in a body is.
fn provider_param(query: Option<&str>) -> Result<Option<String>, (String, String)> {
    let mut provider = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name != "provider" {
            return Err((name.into_owned(), "unknown parameter".into()));
        }
        if provider.is_some() {
            return Err(("provider".into(), "duplicate parameter".into()));
        }
        if value.is_empty() || value.len() > MAX_ID {
            return Err(("provider".into(), format!("must be 1 to {MAX_ID} bytes")));
        }
        provider = Some(value.into_owned());
    }
    Ok(provider)
}

/// `GET /v1/admin/revocations/{kind}/{id}?provider=NAME`.
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
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
    let provider = match provider_param(query.as_deref()) {
        Ok(p) => p,
        Err((field, message)) => return bad_request(&field, &message),
    };
    let namespace = match namespace(&state, provider.as_deref()) {
        Ok(ns) => ns,
        Err(why) => return bad_request("provider", why.message()),
    };
    let scoped = scope::scoped(&namespace, &id);
    let about = json!({"kind": kind.as_str(), "id": id, "namespace": namespace});
    match state.engine.status(kind, &scoped).await {
        Ok(Some(status)) => {
            let mut body = about;
            body["revoked"] = true.into();
            body["state"] = json!(status);
            (StatusCode::OK, json_body(body.to_string())).into_response()
        }
        Ok(None) => {
            let mut body = about;
            body["revoked"] = false.into();
            (StatusCode::NOT_FOUND, json_body(body.to_string())).into_response()
        }
        Err(_) => deny_response(&state.engine, &Reason::StoreUnavailable.into()),
    }
}
