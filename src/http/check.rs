//! The HTTP-mode check (SPEC §4) for Envoy's HTTP ext_authz, nginx `auth_request` and
//! Traefik `forwardAuth`: the same pipeline as gRPC; only where the original request's
//! method and URI come from differs.
//!
//! Precedence: `X-Original-Method`/`X-Original-URI` (nginx), then
//! `X-Forwarded-Method`/`X-Forwarded-Uri` (Traefik), then the request itself with the
//! `/authz` prefix stripped (Envoy `path_prefix`). The proxy in front must set (not
//! pass through) the headers it uses; the shipped configs do.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{deny_response_with, AppState};
use crate::decision::{Decision, Policy, Request};
use crate::jwt::Claims;
use crate::metrics::Transport;

pub const PREFIX: &str = "/authz";

pub async fn check(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let engine = &state.engine;
    // Read in place: the headers are borrowed, not copied.
    let (method, uri, headers) = (request.method(), request.uri(), request.headers());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // Header values may carry raw non-ASCII bytes (nginx passes the path as typed): read
    // them lossily rather than ignore them, or a path the proxy named would silently
    // become the check request's own path and dodge the route rules.
    let lossy = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
    };
    let original = lossy("x-original-uri").or_else(|| lossy("x-forwarded-uri"));
    let stripped;
    let path: &str = match &original {
        Some(p) => p,
        None => {
            let path = uri.path().strip_prefix(PREFIX).unwrap_or("");
            let path = if path.is_empty() { "/" } else { path };
            stripped = match uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            &stripped
        }
    };
    let original_method = lossy("x-original-method").or_else(|| lossy("x-forwarded-method"));
    let method = original_method.as_deref().unwrap_or(method.as_str());
    let req = Request {
        transport: Transport::Http,
        method,
        path,
        host: header("x-forwarded-host")
            .or_else(|| header("x-original-host"))
            .or_else(|| header("host")),
        headers,
        required_scopes: None,
        request_id: header("x-request-id"),
    };
    let policy = engine.policy();
    match engine.check_with(&policy, &req).await {
        Decision::Deny(deny) => deny_response_with(&policy, &deny),
        Decision::Allow(allowed) => {
            let mut response = StatusCode::OK.into_response();
            *response.headers_mut() = match allowed.claims.as_deref() {
                Some(claims) => claims
                    .rendered
                    .http(|| allow_headers(&policy, Some(claims))),
                None => allow_headers(&policy, None),
            };
            response
        }
    }
}

/// The headers of an allow: the forwarded claims, and what the proxy should remove.
fn allow_headers(policy: &Policy, claims: Option<&Claims>) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut remove: Vec<&str> = Vec::new();
    for (name, value) in policy.upstream_headers(claims) {
        // A claim the token lacks is sent empty: proxies copy these headers over the
        // client's, so an empty value still wipes a spoofed one. Envoy also honours
        // x-envoy-auth-headers-to-remove and drops it altogether.
        let value = value.and_then(|v| HeaderValue::from_str(&v).ok());
        if value.is_none() {
            remove.push(name);
        }
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            out.insert(name, value.unwrap_or_else(|| HeaderValue::from_static("")));
        }
    }
    if policy.forwarding.remove_authorization {
        remove.push("authorization");
    }
    if let Ok(v) = HeaderValue::from_str(&remove.join(",")) {
        if !remove.is_empty() {
            out.insert("x-envoy-auth-headers-to-remove", v);
        }
    }
    out
}
