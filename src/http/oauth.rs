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

/// Every form parameter in order, repeated names kept (a repeated credential is refused,
/// never one of its copies picked).
pub(super) fn form_params(body: &[u8]) -> Vec<(String, String)> {
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

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description}).to_string();
    let mut r = (status, json_body(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// `POST /v1/oauth/revoke` (RFC 7009): revokes the token posted. Unknown, invalid or
/// expired tokens get 200 as the RFC says (§2.2); a revocation the store did not accept,
/// or a token that cannot be judged because its provider's keys are not loaded yet, gets
/// 503 (§2.2.1). With `token_type_hint=refresh_token`, the token's refresh family
/// is revoked too.
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match token_form(&headers, &body) {
        Ok(p) => p,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let token = params.get("token").map_or("", String::as_str);
    let engine = &state.engine;
    let claims = match engine.verify_token(token).await {
        Ok(claims) => claims,
        // Keys not loaded: the token may be valid, and a 200 would tell the client it
        // is revoked when nothing was written.
        Err(reason @ Reason::KeysUnavailable) => return deny_response(engine, &reason.into()),
        Err(_) => return StatusCode::OK.into_response(),
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

/// Constant-time comparison, so that response times leak neither a secret's prefix nor
/// its length: both sides are hashed to 32 bytes first, and the digests compared in full.
fn same(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The credentials of an `Authorization: Basic …` header; the scheme is
/// case-insensitive (RFC 9110 §11.1).
fn basic_credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    STANDARD.decode(rest.trim()).ok()
}

fn client_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(creds) = basic_credentials(headers) else {
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
        // `on_store_error: allow` lets a Check through an outage; introspection must not
        // vouch for a token whose revocation state nobody could read.
        Ok(allowed) if allowed.fail_open => {
            return deny_response(&state.engine, &Reason::StoreUnavailable.into())
        }
        Ok(allowed) => {
            let mut out = serde_json::Map::new();
            if let Some(c) = &allowed.claims {
                out.extend(c.payload.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            out.insert("active".into(), Value::Bool(true));
            out.insert("token_type".into(), "Bearer".into());
            Value::Object(out)
        }
        // An outage (store or keys) is not an inactive token: clients would throw valid
        // tokens away.
        Err(d) if d.reason.http_status() == 503 => return deny_response(&state.engine, &d),
        Err(_) => json!({"active": false}),
    };
    let mut r = (StatusCode::OK, json_body(body.to_string())).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_scheme_is_case_insensitive() {
        for v in [
            "Basic YTpi",
            "basic YTpi",
            "BASIC YTpi",
            "bAsIc\tYTpi",
            " Basic  YTpi ",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            assert_eq!(basic_credentials(&h).as_deref(), Some(&b"a:b"[..]), "{v:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer YTpi"),
        );
        assert_eq!(basic_credentials(&h), None);
    }

    #[test]
    fn comparison_is_exact_whatever_the_lengths() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret\0"));
        assert!(!same(b"", b"x"));
        assert!(same(b"", b""));
    }
}
