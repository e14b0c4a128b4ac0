//! The decision pipeline of SPEC §2, shared by every transport: request facts in,
//! [`Decision`] out. No transport types live here; the gRPC and HTTP adapters only
//! translate to and from these types, so they cannot disagree on a decision.

pub mod extract;
mod verified;

use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, OnStoreError};
use crate::jwt::{now_unix, Claims, Verifier};
use crate::metrics::{CacheKind, Metrics, Transport};
use crate::reason::{Deny, Reason};
use crate::revocation::cache::CachedStore;
use crate::revocation::{
    evaluate, Query, Record, RevocationStore, Store, StoreError, Target, Written,
};
pub use extract::{Headers, Source};
use verified::VerifiedCache;

/// The facts of one request that the pipeline reads.
pub struct Request<'a, H> {
    pub transport: Transport,
    pub method: &'a str,
    /// Path with its query string, as the client sent it.
    pub path: &'a str,
    pub headers: &'a H,
    /// Space-separated scopes required by the Envoy route (`context_extensions`).
    pub required_scopes: Option<&'a str>,
    /// Envoy's `x-request-id`, for the log line only.
    pub request_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Allow(Allowed),
    Deny(Deny),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Allowed {
    /// `None` on an exempt route.
    pub claims: Option<Arc<Claims>>,
    /// True when the store failed and `on_store_error: allow` let the request through.
    pub fail_open: bool,
}

/// A route rule, normalised at start.
#[derive(Debug, Clone)]
struct Route {
    prefix: String,
    methods: Vec<String>,
    exempt: bool,
    scopes: Vec<String>,
}

/// Upstream header ← claim, and what else an allowed request carries.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub headers: Vec<(String, String)>,
    pub remove_authorization: bool,
    pub dynamic_metadata: bool,
}

/// What rendering a deny needs besides the deny itself.
#[derive(Debug, Clone)]
pub struct Responses {
    pub realm: String,
    pub retry_after_seconds: u64,
}

/// Everything the pipeline needs, built once from the configuration.
pub struct Engine {
    verifier: Verifier,
    verified: Option<VerifiedCache>,
    max_token_bytes: usize,
    store: CachedStore<Store>,
    sources: Vec<Source>,
    routes: Vec<Route>,
    pub forwarding: Forwarding,
    pub responses: Responses,
    on_store_error: OnStoreError,
    metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(
        config: &Config,
        verifier: Verifier,
        store: CachedStore<Store>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Engine {
            verifier,
            verified: VerifiedCache::new(config.tokens.verified_cache_entries),
            max_token_bytes: config.tokens.max_bytes,
            store,
            sources: config
                .tokens
                .sources
                .iter()
                .map(Source::from_config)
                .collect(),
            routes: config
                .routes
                .iter()
                .map(|r| Route {
                    prefix: r.path_prefix.clone(),
                    methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                    exempt: r.exempt,
                    scopes: r.require_scopes.clone(),
                })
                .collect(),
            forwarding: Forwarding {
                headers: config
                    .forward
                    .headers
                    .iter()
                    .map(|(h, c)| (h.to_ascii_lowercase(), c.clone()))
                    .collect(),
                remove_authorization: config.forward.remove_authorization,
                dynamic_metadata: config.forward.dynamic_metadata,
            },
            responses: Responses {
                realm: config.responses.realm.clone(),
                retry_after_seconds: config.responses.retry_after_seconds,
            },
            on_store_error: config.revocation.on_store_error,
            metrics,
        }
    }

    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The store with its cache in front: what every check and revocation goes through.
    pub fn store(&self) -> &CachedStore<Store> {
        &self.store
    }

    /// The whole pipeline: exemption, token, verification, revocation, requirements.
    pub async fn check<H: Headers>(&self, req: &Request<'_, H>) -> Decision {
        let started = Instant::now();
        let (path, query) = match req.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.path, None),
        };
        let route = self.route(req.method, path);
        let decision = match route {
            Some(r) if r.exempt => Decision::Allow(Allowed {
                claims: None,
                fail_open: false,
            }),
            _ => match self.authenticate(req.headers, query).await {
                Err(deny) => Decision::Deny(deny),
                Ok(allowed) => {
                    let claims = allowed.claims.as_deref();
                    match missing_scopes(route, req.required_scopes, claims) {
                        Some(scope) => Decision::Deny(Deny {
                            reason: Reason::InsufficientScope,
                            scope: Some(scope),
                        }),
                        None => Decision::Allow(allowed),
                    }
                }
            },
        };
        let (deny, fail_open) = match &decision {
            Decision::Allow(a) => (None, a.fail_open),
            Decision::Deny(d) => (Some(d.reason), false),
        };
        self.metrics
            .decision(req.transport, deny, fail_open, started.elapsed());
        if tracing::enabled!(tracing::Level::DEBUG) {
            self.log(req, &decision);
        }
        decision
    }

    /// Steps 2–4: find, verify and revocation-check the token. Logout uses this directly.
    pub async fn authenticate<H: Headers>(
        &self,
        headers: &H,
        query: Option<&str>,
    ) -> Result<Allowed, Deny> {
        let token = extract::token(&self.sources, headers, query)?;
        self.authenticate_token(&token).await
    }

    /// Steps 3–4 for a token given directly (OAuth introspection).
    pub async fn authenticate_token(&self, token: &str) -> Result<Allowed, Deny> {
        let claims = self.verify(token, now_unix())?;
        let fail_open = match self.revocation(&claims).await {
            Ok(None) => false,
            Ok(Some(reason)) => return Err(reason.into()),
            Err(_) if self.on_store_error == OnStoreError::Allow => true,
            Err(_) => return Err(Reason::StoreUnavailable.into()),
        };
        Ok(Allowed {
            claims: Some(claims),
            fail_open,
        })
    }

    /// Step 3 alone: is this a token tokengate would accept, revocation aside?
    pub fn verify_token(&self, token: &str) -> Result<Arc<Claims>, Reason> {
        self.verify(token, now_unix())
    }

    /// What the store holds about one identifier, within the store deadline.
    pub async fn status(
        &self,
        kind: crate::revocation::Kind,
        id: &str,
    ) -> Result<Option<crate::revocation::Status>, StoreError> {
        self.store.status(kind, id).await
    }

    /// Step 3, with the verified-token cache in front of the signature work.
    fn verify(&self, token: &str, now: i64) -> Result<Arc<Claims>, Reason> {
        let cache = match &self.verified {
            // Oversized tokens are refused by the verifier before anything is hashed.
            Some(cache) if token.len() <= self.max_token_bytes => cache,
            _ => return Ok(Arc::new(self.verifier.verify(token, now)?)),
        };
        let key = VerifiedCache::key(token);
        let hit = cache.get(&key, now);
        self.metrics.cache(CacheKind::Verified, hit.is_some());
        if let Some(claims) = hit {
            return Ok(claims);
        }
        let claims = Arc::new(self.verifier.verify(token, now)?);
        cache.insert(key, claims.clone(), self.jti_expiry(&claims));
        Ok(claims)
    }

    async fn revocation(&self, claims: &Claims) -> Result<Option<Reason>, StoreError> {
        let query = Query::for_claims(claims, self.jti_expiry(claims));
        match self.store.check(&query).await {
            Ok(state) => Ok(evaluate(claims, &state)),
            // The store is out of reach, but a revocation this replica already knows of
            // still holds: such a token is denied as revoked, fail-open or not.
            Err(e) => match evaluate(claims, &self.store.known(&query).await) {
                Some(reason) => Ok(Some(reason)),
                None => Err(e),
            },
        }
    }

    /// Writes a revocation (within the store deadline), counts it and emits the audit
    /// event. Returns only after the store accepted the write.
    pub async fn revoke(
        &self,
        target: Target<'_>,
        reason: &str,
        actor: Option<&str>,
        source: &'static str,
    ) -> Result<Written, StoreError> {
        let record = Record::now(reason, actor.map(str::to_string));
        let written = self.store.revoke(&target, &record).await?;
        self.metrics.revocation(target.kind().as_str(), source);
        crate::revocation::audit(&target, reason, actor, source);
        Ok(written)
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
    /// back (so a client can never smuggle its own `x-user-id`).
    pub fn upstream_headers<'s>(
        &'s self,
        claims: Option<&'s Claims>,
    ) -> impl Iterator<Item = (&'s str, Option<String>)> + 's {
        self.forwarding.headers.iter().map(move |(header, claim)| {
            (header.as_str(), claims.and_then(|c| c.header_value(claim)))
        })
    }

    fn route(&self, method: &str, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            path.starts_with(&r.prefix)
                && (r.methods.is_empty()
                    || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
        })
    }

    fn log<H>(&self, req: &Request<'_, H>, decision: &Decision) {
        let (outcome, reason, provider) = match decision {
            Decision::Allow(a) => (
                if a.fail_open {
                    "allow_fail_open"
                } else {
                    "allow"
                },
                "",
                a.claims
                    .as_ref()
                    .map_or("", |c| self.verifier.provider_name(c.provider)),
            ),
            Decision::Deny(d) => ("deny", d.reason.as_str(), ""),
        };
        tracing::debug!(
            decision = outcome,
            reason,
            provider,
            request_id = req.request_id.unwrap_or(""),
            method = req.method,
            "check"
        );
    }
}

/// The first required scope the token lacks, or (when several are missing) all of them
/// space-separated, for the `scope` parameter of the challenge.
fn missing_scopes(
    route: Option<&Route>,
    from_envoy: Option<&str>,
    claims: Option<&Claims>,
) -> Option<String> {
    let required = route
        .into_iter()
        .flat_map(|r| r.scopes.iter().map(String::as_str))
        .chain(from_envoy.into_iter().flat_map(|s| s.split(' ')))
        .filter(|s| !s.is_empty());
    let mut all: Vec<&str> = Vec::new();
    let mut lacking = false;
    for scope in required {
        all.push(scope);
        lacking |= !claims.is_some_and(|c| c.has_scope(scope));
    }
    lacking.then(|| all.join(" "))
}
