//! The HTTP-mode check (docs/spec.md §4) for Envoy's HTTP ext_authz, nginx `auth_request`,
//! ingress-nginx `auth-url` and Traefik `forwardAuth`: the same pipeline as gRPC; only
//! where the original request's method, URI and host come from differs.
//!
//! They come from exactly one place, the proxy the operator declared
//! (`http_check.proxy`, docs/security.md "Trusted forwarded headers"): a client can
//! send `X-Original-URI` or `X-Forwarded-Uri` through a proxy that does not overwrite
//! them, so headers of any other proxy are ignored. Each trusted header must be present
//! exactly once: missing, repeated or self-contradictory values are refused
//! (`malformed_request`, 400) rather than guessed at.

use std::borrow::Cow;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{deny_response_with, AppState};
use crate::config::TrustedProxy;
use crate::decision::{ClientCert, Decision, Policy, Request};
use crate::jwt::Claims;
use crate::metrics::Transport;
use crate::reason::Reason;

pub const PREFIX: &str = "/authz";

/// The request the proxy asks about.
struct Original<'a> {
    method: Cow<'a, str>,
    /// Path and query.
    path: Cow<'a, str>,
    host: Option<Cow<'a, str>>,
    /// Said by the proxy (ingress-nginx, Traefik), else `http_check.original_scheme`;
    /// `None` when the proxy's own header is ambiguous (only a DPoP proof needs it, and
    /// then matches no request).
    scheme: Option<Cow<'a, str>>,
}

pub async fn check(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let engine = &state.engine;
    // Read in place: the headers are borrowed, not copied.
    let (method, uri, headers) = (request.method(), request.uri(), request.headers());
    let policy = engine.policy();
    let original = match original(&policy, method, uri, headers) {
        Ok(o) => o,
        Err(reason) => {
            let deny = engine.refuse(Transport::Http, reason);
            return deny_response_with(&policy, &deny);
        }
    };
    let req = Request {
        transport: Transport::Http,
        method: &original.method,
        path: &original.path,
        host: original.host.as_deref(),
        scheme: original.scheme.as_deref(),
        client_cert: policy.http_client_cert.map(ClientCert::Header),
        headers,
        required_scopes: None,
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()),
    };
    let decision = crate::telemetry::check(engine, &policy, &req, headers).await;
    match decision {
        Decision::Deny(deny) => deny_response_with(&policy, &deny),
        Decision::Allow(allowed) => {
            let mut response = StatusCode::OK.into_response();
            *response.headers_mut() = match allowed.claims.as_deref() {
                Some(claims) => allowed
                    .rendered
                    .http(|| allow_headers(&policy, Some(claims))),
                None => allow_headers(&policy, None),
            };
            // A proxy that kept this allow would answer a replayed proof itself.
            let max_age = policy.allow_max_age.filter(|_| !allowed.per_request);
            let cache = super::cache_control(max_age, allowed.claims.as_deref());
            response.headers_mut().insert(header::CACHE_CONTROL, cache);
            response
        }
    }
}

/// The original request, from where `proxy` puts it and nowhere else.
fn original<'a>(
    policy: &Policy,
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
) -> Result<Original<'a>, Reason> {
    let configured = Some(Cow::Borrowed(policy.http_scheme.as_str()));
    Ok(match policy.http_proxy {
        TrustedProxy::Envoy => {
            let path = uri.path().strip_prefix(PREFIX).unwrap_or("");
            let path = if path.is_empty() { "/" } else { path };
            let path = match uri.query() {
                Some(q) => Cow::Owned(format!("{path}?{q}")),
                None => Cow::Borrowed(path),
            };
            // HTTP/1.1 names the host in `Host`, HTTP/2 in `:authority`; both present
            // and different is a request two servers could route differently.
            let host = optional(headers, "host")?;
            let authority = uri.authority().map(|a| Cow::Borrowed(a.as_str()));
            let host = match (host, authority) {
                (Some(h), Some(a)) if !h.eq_ignore_ascii_case(&a) => {
                    return Err(Reason::MalformedRequest)
                }
                (h, a) => h.or(a),
            };
            Original {
                method: Cow::Borrowed(method.as_str()),
                path,
                host,
                scheme: configured,
            }
        }
        TrustedProxy::Nginx => Original {
            method: single_token(headers, "x-original-method")?,
            path: required(headers, "x-original-uri")?,
            host: Some(single_token(headers, "x-original-host")?),
            scheme: configured,
        },
        TrustedProxy::IngressNginx => {
            let url = required(headers, "x-original-url")?;
            let (host, path) = split_url(&url).ok_or(Reason::MalformedRequest)?;
            let scheme = url.split_once("://").map_or("https", |(s, _)| s);
            Original {
                method: single_token(headers, "x-original-method")?,
                path: Cow::Owned(path.to_string()),
                host: Some(Cow::Owned(host.to_string())),
                scheme: Some(Cow::Owned(scheme.to_ascii_lowercase())),
            }
        }
        TrustedProxy::Traefik => Original {
            method: single_token(headers, "x-forwarded-method")?,
            path: required(headers, "x-forwarded-uri")?,
            host: Some(single_token(headers, "x-forwarded-host")?),
            // Read for a DPoP proof's `htu` only: a bearer request never depends on it.
            scheme: match optional(headers, "x-forwarded-proto") {
                Ok(None) => configured,
                Ok(Some(v)) if !v.is_empty() && !v.contains(',') => Some(v),
                _ => None,
            },
        },
    })
}

/// The one value of a trusted header, or `None` when absent; sent twice is refused.
/// Read lossily: nginx passes a path's raw bytes as typed, and a path it named must never
/// silently become something else.
fn optional<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<Cow<'a, str>>, Reason> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Reason::MalformedRequest);
    }
    Ok(Some(String::from_utf8_lossy(value.as_bytes())))
}

fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<Cow<'a, str>, Reason> {
    optional(headers, name)?.ok_or(Reason::MalformedRequest)
}

/// A method or host: one value, and no list (`GET, DELETE` or `a.com, b.com` would be
/// two values merged into one header).
fn single_token<'a>(headers: &'a HeaderMap, name: &str) -> Result<Cow<'a, str>, Reason> {
    let value = required(headers, name)?;
    if value.is_empty() || value.contains(',') {
        return Err(Reason::MalformedRequest);
    }
    Ok(value)
}

/// `scheme://host[:port]/path?query` → (host, path and query).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(at);
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some((host, if path.is_empty() { "/" } else { path }))
}

/// The headers of an allow: the forwarded claims, and what the proxy should remove.
fn allow_headers(policy: &Policy, claims: Option<&Claims>) -> HeaderMap {
    let mut out = HeaderMap::new();
    let mut remove: Vec<&str> = Vec::new();
    for (name, value) in policy.upstream_headers(claims) {
        // A claim the token lacks is sent empty: proxies copy these headers over the
        // client's, so an empty value still wipes a spoofed one. Envoy also honours
        // x-envoy-auth-headers-to-remove and drops it altogether.
        let value = value.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
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

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn original_urls_split_into_host_and_path() {
        assert_eq!(
            split_url("https://app.example.com/a/b?x=1"),
            Some(("app.example.com", "/a/b?x=1"))
        );
        assert_eq!(split_url("http://h:8080"), Some(("h:8080", "/")));
        assert_eq!(split_url("http://h?q"), Some(("h", "?q")));
        assert_eq!(split_url("ftp://h/x"), None);
        assert_eq!(split_url("/x"), None);
        assert_eq!(split_url("http://user@h/x"), None);
    }
}
