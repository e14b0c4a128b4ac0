//! Standard OAuth endpoints for services that do not sit behind Envoy, so they need no
//! hand-written denylist: token revocation (RFC 7009) and introspection (RFC 7662).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{deny_response, json_body, AppState};
use crate::reason::Reason;
use crate::revocation::Target;

/// A configured introspection client.
pub struct Client {
    pub id: String,
    pub secret: Vec<u8>,
}

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The form parameters of an RFC 7009/7662 request, which must carry a `token`; the
/// error is the `error_description` of the 400.
fn token_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, &'static str> {
    if !is_form(headers) {
        return Err("expected application/x-www-form-urlencoded");
    }
    let params = form(body);
    match params.get("token") {
        Some(t) if !t.is_empty() => Ok(params),
        _ => Err("token is required"),
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description}).to_string();
    let mut r = (status, json_body(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// `POST /v1/oauth/revoke` (RFC 7009): revokes the token posted. Unknown, invalid or
/// expired tokens get 200 as the RFC says (§2.2); a revocation the store did not accept
/// gets 503 (§2.2.1). With `token_type_hint=refresh_token`, the token's refresh family
/// is revoked too.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match token_form(&headers, &body) {
        Ok(p) => p,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let token = params.get("token").map_or("", String::as_str);
    let engine = &state.engine;
    let Ok(claims) = engine.verify_token(token).await else {
        return StatusCode::OK.into_response();
    };
    // Scoped ids: the posted token can only revoke itself (and its family) within its
    // own issuer's namespace.
    let actor = claims.user.as_deref();
    if let Some(jti) = claims.scoped.jti.as_deref() {
        let target = Target::Jti {
            id: jti,
            expires_at: engine.jti_expiry(&claims),
        };
        if engine
            .revoke(target, "oauth-revoke", actor, "oauth")
            .await
            .is_err()
        {
            return deny_response(engine, &Reason::StoreUnavailable.into());
        }
    }
    let refresh = params.get("token_type_hint").map(String::as_str) == Some("refresh_token");
    match (refresh, claims.scoped.family.as_deref()) {
        (true, Some(family)) => {
            let target = Target::Family(family);
            if engine
                .revoke(target, "oauth-revoke", actor, "oauth")
                .await
                .is_err()
            {
                return deny_response(engine, &Reason::StoreUnavailable.into());
            }
        }
        _ if claims.jti.is_none() => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "token has no jti and cannot be revoked alone",
            );
        }
        _ => {}
    }
    StatusCode::OK.into_response()
}

/// Constant-time comparison, so that response times do not leak a secret's prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn client_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(creds) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| STANDARD.decode(b.trim()).ok())
    else {
        return false;
    };
    let Some(colon) = creds.iter().position(|b| *b == b':') else {
        return false;
    };
    let (id, secret) = (&creds[..colon], &creds[colon + 1..]);
    // Check every client so the time taken does not tell which ids exist.
    state.introspection_clients.iter().fold(false, |found, c| {
        found | (same(c.id.as_bytes(), id) & same(&c.secret, secret))
    })
}

/// `POST /v1/oauth/introspect` (RFC 7662): `{"active": false}` for any invalid, expired
/// or revoked token, else `active: true` with its claims. Callers authenticate with HTTP
/// Basic as a configured client; with no client configured the endpoint does not exist.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.introspection_clients.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !client_ok(&state, &headers) {
        let mut r = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tokengate-introspection\""),
        );
        return r;
    }
    let params = match token_form(&headers, &body) {
        Ok(p) => p,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let token = params.get("token").map_or("", String::as_str);
    let body = match state.engine.authenticate_token(token).await {
        Ok(allowed) => {
            let mut out = serde_json::Map::new();
            if let Some(c) = &allowed.claims {
                out.extend(c.payload.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            out.insert("active".into(), Value::Bool(true));
            out.insert("token_type".into(), "Bearer".into());
            Value::Object(out)
        }
        // An outage is not an inactive token: clients would throw valid tokens away.
        Err(d) if d.reason == Reason::StoreUnavailable => return deny_response(&state.engine, &d),
        Err(_) => json!({"active": false}),
    };
    let mut r = (StatusCode::OK, json_body(body.to_string())).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
