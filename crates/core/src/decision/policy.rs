//! Everything about a decision that the configuration decides and a reload may change:
//! providers and keys, token sources, route rules, forwarding, response details. The
//! engine holds one `Arc<Policy>` and swaps it whole, so a request in flight finishes
//! with the policy it started with.

use std::sync::Arc;

use super::routes::{self, Route, Routes};
use super::verified::VerifiedCache;
use super::Source;
use crate::config::{Config, OnStoreError, TrustedProxy};
use crate::jwt::{Claims, KeyError, Verifier};

/// Upstream header ← claim, and what else an allowed request carries.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub headers: Vec<(String, String)>,
    pub remove_authorization: bool,
    pub dynamic_metadata: bool,
    pub payload_header: Option<String>,
}

/// What rendering a deny needs besides the deny itself.
#[derive(Debug, Clone)]
pub struct Responses {
    pub realm: String,
    pub retry_after_seconds: u64,
}

pub struct Policy {
    pub verifier: Arc<Verifier>,
    /// Claims by token hash. Per policy: new keys must not inherit old verdicts.
    pub(super) verified: Option<VerifiedCache>,
    pub(super) max_token_bytes: usize,
    pub(super) sources: Vec<Source>,
    pub(super) routes: Routes,
    pub(super) roles_claim: String,
    pub forwarding: Forwarding,
    pub responses: Responses,
    pub(super) on_store_error: OnStoreError,
    /// Where the HTTP-mode check reads the original request from.
    pub http_proxy: TrustedProxy,
    /// The original scheme when that proxy does not say it (`http_check.original_scheme`).
    pub http_scheme: crate::config::OriginalScheme,
    /// Where that proxy puts the client certificate (`http_check.client_cert`).
    pub http_client_cert: Option<crate::config::ClientCertHeader>,
    /// How long a proxy may cache an HTTP-mode allow (`http_check.allow_max_age_seconds`,
    /// capped by the revocation cache TTL); `None`: never (`no-store`).
    pub allow_max_age: Option<u64>,
    /// Origins whose requests may use a cookie token on the state-changing endpoints.
    pub(super) csrf_allowed_origins: Vec<String>,
}

impl Policy {
    /// Builds a policy; `verifier` comes separately because loading keys may need I/O.
    pub fn new(config: &Config, verifier: Arc<Verifier>) -> Self {
        Policy {
            verifier,
            verified: VerifiedCache::new(config.tokens.verified_cache_entries),
            max_token_bytes: config.tokens.max_bytes,
            sources: config.tokens.sources.clone(),
            routes: Routes::new(
                config.routes.iter().map(Route::from_config).collect(),
                config.route_matching.case_insensitive,
            ),
            roles_claim: config.tokens.claims.roles.clone(),
            forwarding: Forwarding {
                headers: config
                    .forward
                    .headers
                    .iter()
                    .map(|(h, c)| (h.to_ascii_lowercase(), c.clone()))
                    .collect(),
                remove_authorization: config.forward.remove_authorization,
                dynamic_metadata: config.forward.dynamic_metadata,
                payload_header: config
                    .forward
                    .payload_header
                    .as_ref()
                    .map(|h| h.to_ascii_lowercase()),
            },
            responses: Responses {
                realm: config.responses.realm.clone(),
                retry_after_seconds: config.responses.retry_after_seconds,
            },
            on_store_error: config.revocation.on_store_error,
            http_proxy: config.http_check.proxy,
            http_scheme: config.http_check.original_scheme,
            http_client_cert: config.http_check.client_cert,
            allow_max_age: config
                .http_check
                .allow_max_age_seconds
                .map(|n| n.min(config.revocation.cache.ttl_seconds))
                .filter(|n| *n > 0),
            csrf_allowed_origins: config.csrf.allowed_origins.clone(),
        }
    }

    /// The `algs` of a `DPoP` challenge: the accepted proof algorithms.
    pub fn dpop_algs(&self) -> &str {
        self.verifier.dpop.as_ref().map_or("", |d| d.algs.as_str())
    }

    /// True with `on_store_error: allow`: a store outage does not stop this replica
    /// from answering, so it must not stop it from being ready either.
    pub fn fails_open(&self) -> bool {
        self.on_store_error == OnStoreError::Allow
    }

    /// Loads keys from files (no network) and builds the policy: for tests and tools.
    pub fn load(config: &Config) -> Result<Self, KeyError> {
        Ok(Policy::new(
            config,
            Arc::new(Verifier::from_config(config)?),
        ))
    }

    /// The rules a request falls under; `host` is canonical, `paths` every form of the
    /// path. `None` when it falls under too many to hold.
    pub(super) fn routes_for<'p>(
        &self,
        methods: &[&str],
        host: Option<&str>,
        paths: impl Iterator<Item = &'p str> + Clone,
    ) -> Option<routes::Matched<'_>> {
        routes::Matched::find(&self.routes, methods, host, paths)
    }

    /// When a revoked `jti` may be forgotten: the token's `exp` plus its provider's leeway.
    pub fn jti_expiry(&self, claims: &Claims) -> i64 {
        let leeway = self
            .verifier
            .providers
            .get(claims.provider)
            .map_or(0, |p| p.leeway);
        claims.exp.saturating_add(leeway)
    }

    /// The forwarded headers for an allowed request: `Some(value)` to set (overwriting
    /// any client-sent value), `None` to remove a client-sent header the token does not
    /// back (so a client can never smuggle its own `x-user-id`). The verified payload
    /// comes last when `payload_header` is set. A claim that is no valid header value
    /// (a control character: CR, LF, NUL, tab…) is treated as absent, on every
    /// transport alike: never put in a header, and any client copy removed.
    pub fn upstream_headers<'s>(
        &'s self,
        claims: Option<&'s Claims>,
    ) -> impl Iterator<Item = (&'s str, Option<String>)> + 's {
        let mapped = self.forwarding.headers.iter().map(move |(header, claim)| {
            let value = claims
                .and_then(|c| c.header_value(claim))
                .filter(|v| is_header_value(v));
            (header.as_str(), value)
        });
        let payload = self
            .forwarding
            .payload_header
            .as_deref()
            .map(move |h| (h, claims.map(|c| c.payload_b64.clone())));
        mapped.chain(payload)
    }
}

/// What both transports can carry as a header value: no ASCII control character. UTF-8
/// beyond ASCII passes (Envoy and hyper both carry it as opaque bytes).
pub fn is_header_value(v: &str) -> bool {
    !v.bytes().any(|b| b.is_ascii_control())
}
