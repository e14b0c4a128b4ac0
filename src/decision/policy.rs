//! Everything about a decision that the configuration decides and a reload may change:
//! providers and keys, token sources, route rules, forwarding, response details. The
//! engine holds one `Arc<Policy>` and swaps it whole, so a request in flight finishes
//! with the policy it started with.

use std::sync::Arc;

use super::routes::{self, Route};
use super::verified::VerifiedCache;
use super::Source;
use crate::config::{Config, OnStoreError};
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
    pub(super) routes: Vec<Route>,
    pub(super) roles_claim: String,
    pub forwarding: Forwarding,
    pub responses: Responses,
    pub(super) on_store_error: OnStoreError,
}

impl Policy {
    /// Builds a policy; `verifier` comes separately because loading keys may need I/O.
    pub fn new(config: &Config, verifier: Arc<Verifier>) -> Self {
        Policy {
            verifier,
            verified: VerifiedCache::new(config.tokens.verified_cache_entries),
            max_token_bytes: config.tokens.max_bytes,
            sources: config
                .tokens
                .sources
                .iter()
                .map(Source::from_config)
                .collect(),
            routes: config.routes.iter().map(Route::from_config).collect(),
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
        }
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

    pub(super) fn routes_for(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
    ) -> routes::Matched<'_> {
        routes::Matched::find(&self.routes, method, host, path)
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
    /// comes last when `payload_header` is set.
    pub fn upstream_headers<'s>(
        &'s self,
        claims: Option<&'s Claims>,
    ) -> impl Iterator<Item = (&'s str, Option<String>)> + 's {
        let mapped = self.forwarding.headers.iter().map(move |(header, claim)| {
            (header.as_str(), claims.and_then(|c| c.header_value(claim)))
        });
        let payload = self
            .forwarding
            .payload_header
            .as_deref()
            .map(move |h| (h, claims.map(|c| c.payload_b64.clone())));
        mapped.chain(payload)
    }
}
