//! The decision pipeline of docs/spec.md §2, shared by every transport: request facts in,
//! [`Decision`] out. No transport types live here; the gRPC and HTTP adapters only
//! translate to and from these types, so they cannot disagree on a decision.

pub mod canonical;
mod client_cert;
pub mod extract;
mod policy;
mod routes;
mod sender;
mod verified;

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Instant;

use crate::config::OnStoreError;
use crate::jwt::{now_unix, Claims};
use crate::metrics::{CacheKind, Metrics, Transport};
use crate::reason::{Deny, Reason};
use crate::revocation::cache::CachedStore;
use crate::revocation::{
    evaluate, Query, Record, RevocationStore, Store, StoreError, Target, Written,
};
use crate::status;
pub use canonical::is_canonical_prefix;
pub use client_cert::ClientCert;
pub use extract::{Headers, Source};
pub use policy::{Forwarding, Policy, Responses};
use sender::Presented;
pub use verified::Rendered;
use verified::{Verified, VerifiedCache};

/// The facts of one request that the pipeline reads.
pub struct Request<'a, H> {
    pub transport: Transport,
    pub method: &'a str,
    /// Path with its query string, as the client sent it.
    pub path: &'a str,
    /// The original request's host, for host-specific route rules.
    pub host: Option<&'a str>,
    /// The original request's scheme (`http`, `https`), for a DPoP proof's `htu`.
    pub scheme: Option<&'a str>,
    /// Where the original connection's client certificate is found, if anywhere
    /// (certificate-bound tokens, RFC 8705).
    pub client_cert: Option<ClientCert<'a>>,
    pub headers: &'a H,
    /// Space-separated scopes required by the Envoy route (`context_extensions`).
    pub required_scopes: Option<&'a str>,
    /// Envoy's `x-request-id`, for the log line only.
    pub request_id: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub enum Decision {
    Allow(Allowed),
    Deny(Deny),
}

#[derive(Debug, Clone)]
pub struct Allowed {
    /// `None` on an exempt route.
    pub claims: Option<Arc<Claims>>,
    /// The memo of this token's rendered answers, shared with its verified-token cache
    /// entry (a fresh one when the cache is off or the route exempt).
    pub rendered: Arc<Rendered>,
    /// The outage (`store_unavailable` or `status_list_unavailable`) that
    /// `on_store_error: allow` let the request through despite; `None` normally.
    pub fail_open: Option<Reason>,
    /// The allow holds for this request only: it rested on a single-use DPoP proof or
    /// on the connection's certificate, so no cache (a proxy's included) may answer a
    /// repeat of it.
    pub per_request: bool,
}

/// The pipeline: the current policy (swapped whole on reload), the store, the metrics.
pub struct Engine {
    policy: ArcSwap<Policy>,
    store: CachedStore<Store>,
    metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(policy: Policy, store: CachedStore<Store>, metrics: Arc<Metrics>) -> Self {
        Engine {
            policy: ArcSwap::from_pointee(policy),
            store,
            metrics,
        }
    }

    /// The policy in force. Hold the `Arc` for the length of one request.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Puts a new policy in force; requests in flight finish with the old one.
    pub fn replace_policy(&self, policy: Policy) {
        self.policy.store(Arc::new(policy));
    }

    /// The store with its cache in front: what every check and revocation goes through.
    pub fn store(&self) -> &CachedStore<Store> {
        &self.store
    }

    /// The whole pipeline: exemption, token, verification, revocation, requirements.
    pub async fn check<H: Headers>(&self, req: &Request<'_, H>) -> Decision {
        self.check_with(&self.policy(), req).await
    }

    /// [`check`](Self::check) under a policy the caller already holds, so that an
    /// adapter renders the answer with the same policy that decided it (and loads it
    /// once per request).
    pub async fn check_with<H: Headers>(&self, policy: &Policy, req: &Request<'_, H>) -> Decision {
        let started = Instant::now();
        let decision = match self.route_and_authenticate(policy, req).await {
            Ok(d) | Err(d) => d,
        };
        let (deny, fail_open) = match &decision {
            Decision::Allow(a) => (None, a.fail_open),
            Decision::Deny(d) => (Some(d.reason), None),
        };
        self.metrics
            .decision(req.transport, deny, fail_open, started.elapsed());
        if tracing::enabled!(tracing::Level::DEBUG) {
            log(policy, req, &decision);
        }
        decision
    }

    /// Steps 1–5 for one request; `Err` carries a decision reached before the token
    /// was looked at (a request too ambiguous to match against the rules).
    async fn route_and_authenticate<H: Headers>(
        &self,
        policy: &Policy,
        req: &Request<'_, H>,
    ) -> Result<Decision, Decision> {
        let refuse = |reason: Reason| Decision::Deny(reason.into());
        let (raw, query) = match req.path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.path, None),
        };
        let forms = canonical::forms(raw).map_err(refuse)?;
        let host = req.host.map(canonical::host);
        let mut methods = [""; 5];
        let n = canonical::methods(req.method, req.headers, query, &mut methods).map_err(refuse)?;
        let matched = policy
            .routes_for(&methods[..n], host.as_deref(), forms.iter())
            .ok_or_else(|| refuse(Reason::MalformedRequest))?;
        if matched.exempt() {
            return Ok(Decision::Allow(Allowed {
                claims: None,
                rendered: Arc::default(),
                fail_open: None,
                per_request: false,
            }));
        }
        let (token, presented) =
            find_token(policy, req.headers, query).map_err(|r| Decision::Deny(r.into()))?;
        let facts = sender::Facts {
            methods: &methods[..n],
            scheme: req.scheme,
            host: req.host,
            path: raw,
            headers: req.headers,
            client_cert: req.client_cert,
        };
        let allowed = self
            .authenticate_presented(
                policy,
                &token,
                presented,
                matched.sender_constraint(),
                &facts,
            )
            .await
            .map_err(Decision::Deny)?;
        let claims = allowed.claims.as_deref();
        let roles = policy.roles_claim.as_str();
        Ok(match matched.unmet(req.required_scopes, claims, roles) {
            Some(scope) => Decision::Deny(Deny {
                reason: Reason::InsufficientScope,
                scope: Some(scope).filter(|s| !s.is_empty()),
                dpop_nonce: None,
            }),
            None => Decision::Allow(allowed),
        })
    }

    /// A deny decided by an adapter before the pipeline could run (a request it cannot
    /// read), counted like any other decision.
    pub fn refuse(&self, transport: Transport, reason: Reason) -> Deny {
        self.metrics
            .decision(transport, Some(reason), None, std::time::Duration::ZERO);
        reason.into()
    }

    /// Steps 2–4 for the state-changing endpoints (logout, logout-all, admin): find,
    /// verify and revocation-check the token. A token taken from a cookie counts only on
    /// a request no browser sends cross-site unasked (`cross_site_request` otherwise).
    pub async fn authenticate<H: Headers>(
        &self,
        headers: &H,
        query: Option<&str>,
    ) -> Result<Allowed, Deny> {
        let policy = self.policy();
        let (token, source) = extract::token_and_source(&policy.sources, headers, query)?;
        if matches!(source, Source::Cookie(_))
            && !extract::same_site_intent(headers, &policy.csrf_allowed_origins)
        {
            return Err(Reason::CrossSiteRequest.into());
        }
        // Presented as a bearer token: a DPoP-bound one is refused here as on any
        // bearer request (logout takes its proof through `authenticate_at`).
        let facts = sender::Facts {
            methods: &[],
            scheme: None,
            host: None,
            path: "",
            headers,
            client_cert: None,
        };
        self.authenticate_presented(
            &policy,
            &token,
            Presented::Other,
            crate::config::SenderConstraint::None,
            &facts,
        )
        .await
    }

    /// [`authenticate`](Self::authenticate) for an endpoint a DPoP client calls itself
    /// (logout, logout-all): with proofs configured, `Authorization: DPoP` and its proof
    /// for `at` (this request's method and URL as the client addressed it) are taken
    /// first, so a client whose token is bound can end its own session. Anything else is
    /// [`authenticate`](Self::authenticate), where a bound token stays refused.
    pub async fn authenticate_at<H: Headers>(
        &self,
        headers: &H,
        query: Option<&str>,
        at: &At<'_>,
    ) -> Result<Allowed, Deny> {
        let policy = self.policy();
        if policy.verifier.dpop.is_some() {
            if let Some(token) = extract::from_header(headers, "authorization", Some("DPoP"))? {
                let methods = [at.method];
                let facts = sender::Facts {
                    methods: &methods,
                    scheme: Some(policy.http_scheme.as_str()),
                    host: at.host,
                    path: at.path,
                    headers,
                    client_cert: None,
                };
                return self
                    .authenticate_presented(
                        &policy,
                        &token,
                        Presented::Dpop,
                        crate::config::SenderConstraint::None,
                        &facts,
                    )
                    .await;
            }
        }
        self.authenticate(headers, query).await
    }

    /// Steps 3–4 with the sender check between them: verify (cached), check the
    /// token's binding against how it was presented (never cached), then the
    /// revocation read and, for a DPoP proof, its replay guard, side by side.
    async fn authenticate_presented<H: Headers>(
        &self,
        policy: &Policy,
        token: &str,
        presented: Presented,
        route_constraint: crate::config::SenderConstraint,
        facts: &sender::Facts<'_, H>,
    ) -> Result<Allowed, Deny> {
        let verified = self.verify(policy, token).await?;
        let replay = sender::check(
            &policy.verifier,
            route_constraint,
            facts,
            token,
            presented,
            &verified.claims,
            now_unix(),
        )?;
        let bound = presented == Presented::Dpop || verified.claims.payload.contains_key("cnf");
        let mut allowed = self.admit(policy, verified, replay).await?;
        allowed.per_request = bound;
        Ok(allowed)
    }

    /// Steps 3–4 for a token given directly (OAuth introspection).
    pub async fn authenticate_token(&self, token: &str) -> Result<Allowed, Deny> {
        self.authenticate_token_with(&self.policy(), token).await
    }

    async fn authenticate_token_with(&self, policy: &Policy, token: &str) -> Result<Allowed, Deny> {
        let verified = self.verify(policy, token).await?;
        self.admit(policy, verified, None).await
    }

    /// Step 4 for a verified token: revocation and status list, and the replay guard
    /// of its DPoP proof when there is one. The guard's `SET NX` and the revocation
    /// read go out together: on one multiplexed Redis connection that is one round
    /// trip (and when the revocation answer is cached, only the guard travels).
    async fn admit(
        &self,
        policy: &Policy,
        verified: Verified,
        replay: Option<sender::Replay>,
    ) -> Result<Allowed, Deny> {
        let Verified { claims, rendered } = verified;
        let fails_open = policy.on_store_error == OnStoreError::Allow;
        let (revoked, fresh) = match &replay {
            Some(r) => {
                // Boxed: inline, the two joined futures would enlarge every check's
                // future (and tonic's boxed copy of it), DPoP or not.
                let (revoked, fresh) = Box::pin(async {
                    tokio::join!(
                        self.revocation(policy, &claims),
                        self.store.first_use(&r.key, r.ttl_seconds)
                    )
                })
                .await;
                (revoked, Some(fresh))
            }
            None => (self.revocation(policy, &claims).await, None),
        };
        let mut fail_open = match revoked {
            Ok(None) => None,
            Ok(Some(reason)) => return Err(reason.into()),
            Err(_) if fails_open => Some(Reason::StoreUnavailable),
            Err(_) => return Err(Reason::StoreUnavailable.into()),
        };
        match fresh {
            None | Some(Ok(true)) => {}
            Some(Ok(false)) => return Err(Reason::DpopReplayed.into()),
            // A proof that cannot be checked for replay is judged like a revocation
            // that cannot be read (`on_store_error`).
            Some(Err(_)) if fails_open => fail_open = Some(Reason::StoreUnavailable),
            Some(Err(_)) => return Err(Reason::StoreUnavailable.into()),
        }
        match self.token_status(policy, &claims).await {
            status::Outcome::Valid => {}
            status::Outcome::Deny(reason) => return Err(reason.into()),
            status::Outcome::Unavailable if fails_open => {
                fail_open = fail_open.or(Some(Reason::StatusListUnavailable));
            }
            status::Outcome::Unavailable => return Err(Reason::StatusListUnavailable.into()),
        }
        Ok(Allowed {
            claims: Some(claims),
            rendered,
            fail_open,
            per_request: false,
        })
    }

    /// Step 3 alone: is this a token tokengate would accept, revocation aside?
    pub async fn verify_token(&self, token: &str) -> Result<Arc<Claims>, Reason> {
        Ok(self.verify(&self.policy(), token).await?.claims)
    }

    /// What the store holds about one identifier, within the store deadline.
    pub async fn status(
        &self,
        kind: crate::revocation::Kind,
        id: &str,
    ) -> Result<Option<crate::revocation::Status>, StoreError> {
        self.store.status(kind, id).await
    }

    /// Step 3, with the verified-token cache in front of the signature work. A key id
    /// no provider knows may mean the identity provider rotated its keys: the provider
    /// refreshes them (rate-limited) and the token gets one more try.
    async fn verify(&self, policy: &Policy, token: &str) -> Result<Verified, Reason> {
        let cache = match &policy.verified {
            // Oversized tokens are refused by the verifier before anything is hashed.
            Some(cache) if token.len() <= policy.max_token_bytes => Some(cache),
            _ => None,
        };
        let key = cache.map(|_| VerifiedCache::key(token));
        if let (Some(cache), Some(key)) = (cache, &key) {
            let hit = cache.get(key, now_unix());
            self.metrics.cache(CacheKind::Verified, hit.is_some());
            crate::trace::cache("tokengate.cache.token", hit.is_some());
            if let Some(token) = hit {
                return Ok(token);
            }
        }
        let verified = match policy.verifier.verify(token, now_unix()) {
            Err(Reason::UnknownKey) if policy.verifier.refresh_for_unknown_kid(token).await => {
                policy.verifier.verify(token, now_unix())
            }
            other => other,
        };
        let token = Verified::new(verified?);
        if let (Some(cache), Some(key)) = (cache, key) {
            cache.insert(key, token.clone(), policy.jti_expiry(&token.claims));
        }
        Ok(token)
    }

    /// Step 4b: the token's Token Status List entry, when its provider checks them.
    /// Never cached with the verified token: the list changes under an unchanged token.
    async fn token_status(&self, policy: &Policy, claims: &Claims) -> status::Outcome {
        let provider = policy.verifier.providers.get(claims.provider);
        match provider.and_then(|p| p.status.as_ref().map(|s| (p, s))) {
            Some((p, lists)) => lists.check(p, claims, &self.metrics).await,
            None => status::Outcome::Valid,
        }
    }

    async fn revocation(
        &self,
        policy: &Policy,
        claims: &Claims,
    ) -> Result<Option<Reason>, StoreError> {
        let query = Query::for_claims(claims, policy.jti_expiry(claims));
        match self.store.check(&query).await {
            Ok(state) => Ok(evaluate(claims, &state)),
            // The store is out of reach, but a revocation this replica already knows of
            // still holds: such a token is denied as revoked, fail-open or not.
            Err(e) => match evaluate(claims, &self.store.known(&query)) {
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

    /// When a revoked `jti` may be forgotten, under the policy in force.
    pub fn jti_expiry(&self, claims: &Claims) -> i64 {
        self.policy().jti_expiry(claims)
    }
}

/// Where a request to one of tokengate's own endpoints was sent, for its DPoP proof's
/// `htm` and `htu`: the method, the `Host` it named and its path. The scheme is
/// `http_check.original_scheme` (the proxy in front terminates TLS).
pub struct At<'a> {
    pub method: &'a str,
    pub host: Option<&'a str>,
    pub path: &'a str,
}

/// The token and how it came: the `DPoP` scheme first when proofs are configured, then
/// the configured sources.
fn find_token<'a, H: Headers>(
    policy: &'a Policy,
    headers: &'a H,
    query: Option<&'a str>,
) -> Result<(std::borrow::Cow<'a, str>, Presented), Reason> {
    if policy.verifier.dpop.is_some() {
        if let Some(token) = extract::from_header(headers, "authorization", Some("DPoP"))? {
            return Ok((token, Presented::Dpop));
        }
    }
    extract::token(&policy.sources, headers, query).map(|t| (t, Presented::Other))
}

/// The debug line of one decision: identifiers and reason, never the token.
fn log<H>(policy: &Policy, req: &Request<'_, H>, decision: &Decision) {
    let (outcome, reason, provider) = match decision {
        Decision::Allow(a) => (
            if a.fail_open.is_some() {
                "allow_fail_open"
            } else {
                "allow"
            },
            "",
            a.claims
                .as_ref()
                .map_or("", |c| policy.verifier.provider_name(c.provider)),
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
