//! HTTP adapters over the same pipeline: the public listener (logout) and the admin
//! listener (health, readiness). Each handler translates a request into pipeline calls
//! and a [`Decision`](crate::decision::Decision) or deny into a response.

mod admin;
mod auth;
mod backchannel;
mod check;
pub mod feed;
pub mod grpc_health;
mod health;
pub mod oauth;
mod ssf;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use crate::decision::Engine;
use crate::reason::Deny;

/// State shared by the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub readiness: Arc<health::Readiness>,
    /// Scope an admin API caller's token must carry.
    pub admin_scope: String,
    /// Providers whose tokens may use the admin API (`admin_api.providers`).
    pub admin_providers: Arc<Vec<String>>,
    pub admin_enabled: bool,
    pub introspection_clients: Arc<Vec<oauth::Client>>,
    /// The Shared Signals receiver, when transmitters are configured.
    pub ssf: Option<Arc<crate::ssf::Receiver>>,
    /// The revocation feed of the in-proxy fast path, when `revocation_feed.enabled`.
    pub feed: Option<Arc<feed::Endpoint>>,
}

pub use health::{Readiness, Report};

/// Routes of the public HTTP listener (docs/spec.md §1).
pub fn public_router(state: AppState) -> Router {
    Router::new()
        // the writes: each a span of its own when traced, its store write the child
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/logout-all", post(auth::logout_all))
        .route("/v1/oauth/revoke", post(oauth::revoke))
        .route("/v1/oidc/backchannel-logout", post(backchannel::logout))
        .route("/v1/ssf/events", post(ssf::events))
        .route_layer(axum::middleware::from_fn(crate::telemetry::write_span))
        // the check has its own span (telemetry::check)
        .route(check::PREFIX, any(check::check))
        // `/authz/` is what Envoy's path_prefix makes of a client's `/`
        .route(&format!("{}/", check::PREFIX), any(check::check))
        .route(&format!("{}/{{*rest}}", check::PREFIX), any(check::check))
        .route("/v1/oauth/introspect", post(oauth::introspect))
        .route("/v1/revocations/changes", get(feed::changes))
        .route("/v1/revocations/snapshot", get(feed::snapshot))
        .with_state(state)
        .layer(axum::middleware::map_response(no_store_unless_set))
}

/// Routes of the admin listener: never routed publicly.
pub fn admin_router(state: AppState) -> Router {
    let mut router = Router::new();
    if state.admin_enabled {
        router = router
            .route("/v1/admin/revocations", post(admin::revoke))
            .route_layer(axum::middleware::from_fn(crate::telemetry::write_span))
            .route("/v1/admin/revocations/{kind}/{id}", get(admin::status));
    }
    router = router
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    router
        .with_state(state)
        .layer(axum::middleware::map_response(no_store_unless_set))
}

/// Every answer of both listeners, errors and 404s included, says `no-store` unless its
/// handler decided otherwise: an auth answer a proxy keeps would keep allowing a token
/// after its logout, and a logout or introspection answer must not be replayed
/// (docs/spec.md §4).
async fn no_store_unless_set(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The `Cache-Control` of an HTTP-mode allow: `private, max-age=N` when the operator
/// opted in (`max_age`) and a verified token bounds it (N is at most its remaining
/// life); `no-store` otherwise, and for an allow without a token (an exempt route),
/// whose answer a later configuration may change.
pub(crate) fn cache_control(
    max_age: Option<u64>,
    claims: Option<&crate::jwt::Claims>,
) -> HeaderValue {
    let (Some(max), Some(claims)) = (max_age, claims) else {
        return HeaderValue::from_static("no-store");
    };
    let left = claims.exp.saturating_sub(crate::jwt::now_unix());
    match u64::try_from(left)
        .ok()
        .map(|l| l.min(max))
        .filter(|n| *n > 0)
    {
        Some(n) => HeaderValue::from_str(&format!("private, max-age={n}"))
            .unwrap_or(HeaderValue::from_static("no-store")),
        None => HeaderValue::from_static("no-store"),
    }
}

/// A deny as an HTTP response: docs/spec.md §2's status, challenge and JSON body.
pub fn deny_response(engine: &Engine, deny: &Deny) -> Response {
    deny_response_with(&engine.policy(), deny)
}

/// [`deny_response`] under a policy the caller already holds.
pub fn deny_response_with(policy: &crate::decision::Policy, deny: &Deny) -> Response {
    let responses = &policy.responses;
    let status =
        StatusCode::from_u16(deny.reason.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = (status, json_body(deny.body())).into_response();
    let headers = response.headers_mut();
    if let Some(challenge) = deny.challenge(&responses.realm, policy.dpop_algs()) {
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
    }
    if let Some(v) = deny
        .dpop_nonce
        .as_deref()
        .and_then(|n| HeaderValue::from_str(n).ok())
    {
        headers.insert("dpop-nonce", v);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(responses.retry_after_seconds),
        );
    }
    response
}

/// A JSON text body with its content type.
pub fn json_body(body: String) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
}
