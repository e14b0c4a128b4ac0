//! Revocation (docs/spec.md §2 step 4, §3): the store trait, its implementations, and the pure
//! rules that turn what the store knows into a deny reason.
//!
//! The trait is shaped for a network store: every call is async and fallible, and one
//! [`RevocationStore::check`] answers every revocation question about one token (its
//! `jti`, user, tenant and family) so that a Redis store can do it in one round trip.
//!
//! Every identifier handed to a store is scoped (`{namespace}:{id}`, see [`scope`]):
//! the stores, the cache and the events never look inside it.

pub mod cache;
pub mod events;
pub mod feed;
pub mod memory;
pub mod redis;
pub mod scope;

use std::future::Future;

use tokio::sync::broadcast;

use serde::{Deserialize, Serialize};

use crate::jwt::Claims;
use crate::reason::Reason;

/// How long an ended session (`Target::Session`) is remembered unless configured
/// (`revocation.session_ttl_seconds`): a day, beyond any access token's life.
pub const DEFAULT_SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The scoped identifiers of one token that revocation looks up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query<'a> {
    pub jti: Option<&'a str>,
    pub user: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub family: Option<&'a str>,
    /// The token's session (`sid`) at its issuer, ended by a back-channel logout or a
    /// CAEP session-revoked event.
    pub session: Option<&'a str>,
    /// Unix seconds after which the token is dead anyway (`exp` + leeway): how long a
    /// "revoked" answer about it is worth keeping in a cache.
    pub expires_at: i64,
}

impl<'a> Query<'a> {
    /// Borrows the ids scoped at verification: nothing is built per check.
    pub fn for_claims(c: &'a Claims, expires_at: i64) -> Self {
        Query {
            jti: c.scoped.jti.as_deref(),
            user: c.scoped.user.as_deref(),
            tenant: c.scoped.tenant.as_deref(),
            family: c.scoped.family.as_deref(),
            session: c.scoped.session.as_deref(),
            expires_at,
        }
    }
}

/// A user's or tenant's revocation state: tokens with a lower version claim, or issued at
/// or before `before_ms`, are revoked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(rename = "ver")]
    pub version: u64,
    /// Unix milliseconds.
    #[serde(rename = "before")]
    pub before_ms: i64,
}

impl Subject {
    pub const fn new(version: u64, before_ms: i64) -> Self {
        Subject { version, before_ms }
    }
}

/// Everything the store knows about one token's identifiers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    pub jti: bool,
    pub user: Option<Subject>,
    pub tenant: Option<Subject>,
    pub family: bool,
    pub session: bool,
}

/// What a revocation targets, by scoped id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// One token; kept until `expires_at` (unix seconds: the token's `exp` plus leeway).
    Jti {
        id: &'a str,
        expires_at: i64,
    },
    User(&'a str),
    Tenant(&'a str),
    Family(&'a str),
    /// Every token of one session (`sid`); kept for `revocation.session_ttl_seconds`.
    Session(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Jti,
    User,
    Tenant,
    Family,
    Session,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Jti,
        Kind::User,
        Kind::Tenant,
        Kind::Family,
        Kind::Session,
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::User => "user",
            Kind::Tenant => "tenant",
            Kind::Family => "family",
            Kind::Session => "session",
        }
    }
}

impl Target<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Target::Jti { .. } => Kind::Jti,
            Target::User(_) => Kind::User,
            Target::Tenant(_) => Kind::Tenant,
            Target::Family(_) => Kind::Family,
            Target::Session(_) => Kind::Session,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Target::Jti { id, .. }
            | Target::User(id)
            | Target::Tenant(id)
            | Target::Family(id)
            | Target::Session(id) => id,
        }
    }
}

/// Who revoked what and why: the JSON value of `jti:` and `family:` keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub reason: String,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: Option<String>,
}

impl Record {
    pub fn now(reason: impl Into<String>, actor: Option<String>) -> Self {
        Record {
            reason: reason.into(),
            at: now_ms(),
            actor,
        }
    }
}

impl Written {
    /// The event that announces this write.
    pub fn event(&self, target: &Target<'_>) -> events::Event {
        use events::Event;
        let id = target.id().to_string();
        match (*self, *target) {
            (Written::Subject(s), t) => Event::subject(t.kind(), &id, s),
            (Written::Marker, Target::Jti { expires_at, .. }) => Event::Jti {
                id,
                exp: expires_at,
            },
            (Written::Marker, Target::Session(_)) => Event::Session { id },
            (Written::Marker, _) => Event::Family { id },
        }
    }
}

/// What the store holds about one identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Status {
    /// A revoked `jti` or family: who, when, why, and how long it is kept.
    Marker {
        record: Record,
        expires_in_seconds: Option<i64>,
    },
    /// A user's or tenant's version and cut-off.
    Subject(Subject),
}

/// What a successful revocation wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Marker,
    Subject(Subject),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store call exceeded its deadline")]
    Timeout,
    /// No connection (yet, or any more): what the connection supervisor last saw.
    #[error("store unavailable: {0}")]
    Disconnected(String),
    /// A call the store failed, with the client's error.
    #[error("store unavailable: {source}")]
    Call {
        #[source]
        source: ::redis::RedisError,
    },
    /// The store answered what this version cannot read, or the data kept changing
    /// under an operation that needs it still.
    #[error("store unavailable: {0}")]
    Unexpected(String),
}

impl StoreError {
    /// Whether trying again later may succeed without anyone changing anything: a
    /// deadline, a lost or refused connection, a cluster moving slots. An unreadable
    /// record or a refused command stays what it is.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Timeout | StoreError::Disconnected(_) => true,
            // The client's own judgement: anything it would retry is transient.
            StoreError::Call { source } => {
                !matches!(source.retry_method(), ::redis::RetryMethod::NoRetry)
            }
            StoreError::Unexpected(_) => false,
        }
    }
}

/// A revocation store. Implementations: [`memory::MemoryStore`] (one process) and the
/// Redis store (shared by replicas).
pub trait RevocationStore: Send + Sync + 'static {
    /// Answers every revocation question about one token.
    fn check(&self, query: &Query<'_>) -> impl Future<Output = Result<State, StoreError>> + Send;

    /// Writes a revocation; returns only after the store accepted it.
    fn revoke(
        &self,
        target: &Target<'_>,
        record: &Record,
    ) -> impl Future<Output = Result<Written, StoreError>> + Send;

    /// What the store holds about one identifier (admin inspection); `None` when nothing.
    fn status(
        &self,
        kind: Kind,
        id: &str,
    ) -> impl Future<Output = Result<Option<Status>, StoreError>> + Send;

    /// Whether the store answers (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The replay guard shared by every replica: true the first time `id` (a scoped
    /// `jti` of a logout token or security event) is presented, false ever after, for
    /// `ttl_seconds`. Atomic: two replicas given the same id at once cannot both get true.
    fn first_use(
        &self,
        id: &str,
        ttl_seconds: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Undoes [`first_use`](Self::first_use) when what the id was for could not be
    /// written, so that the sender's retry is not taken for a replay.
    fn release_use(&self, id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Invalidation events from every writer (this process's and other replicas'), and
    /// gaps when events may have been missed.
    fn signals(&self) -> broadcast::Receiver<events::Signal>;

    /// True when events never cross a network (the memory store): the event stream is
    /// then up from the start and cannot drop.
    fn events_in_process(&self) -> bool {
        false
    }
}

/// The configured store. An enum rather than a trait object: the check path is called
/// for every request and static dispatch keeps it free of boxed futures.
pub enum Store {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

impl RevocationStore for Store {
    async fn check(&self, query: &Query<'_>) -> Result<State, StoreError> {
        match self {
            Store::Memory(s) => s.check(query).await,
            Store::Redis(s) => s.check(query).await,
        }
    }

    async fn revoke(&self, target: &Target<'_>, record: &Record) -> Result<Written, StoreError> {
        match self {
            Store::Memory(s) => s.revoke(target, record).await,
            Store::Redis(s) => s.revoke(target, record).await,
        }
    }

    async fn status(&self, kind: Kind, id: &str) -> Result<Option<Status>, StoreError> {
        match self {
            Store::Memory(s) => s.status(kind, id).await,
            Store::Redis(s) => s.status(kind, id).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.ping().await,
            Store::Redis(s) => s.ping().await,
        }
    }

    async fn first_use(&self, id: &str, ttl_seconds: u64) -> Result<bool, StoreError> {
        match self {
            Store::Memory(s) => s.first_use(id, ttl_seconds).await,
            Store::Redis(s) => s.first_use(id, ttl_seconds).await,
        }
    }

    async fn release_use(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.release_use(id).await,
            Store::Redis(s) => s.release_use(id).await,
        }
    }

    fn signals(&self) -> broadcast::Receiver<events::Signal> {
        match self {
            Store::Memory(s) => s.signals(),
            Store::Redis(s) => s.signals(),
        }
    }

    fn events_in_process(&self) -> bool {
        matches!(self, Store::Memory(_))
    }
}

/// The revocation rules of docs/spec.md §2 step 4, as a pure function of the token and the state.
///
/// - a revoked `jti` or family revokes the token;
/// - a user's (tenant's) version newer than the token's version claim revokes it, but
///   only for tokens that carry the claim;
/// - a cut-off revokes every token issued at or before it, and tokens without `iat`.
pub fn evaluate(claims: &Claims, state: &State) -> Option<Reason> {
    if state.jti {
        return Some(Reason::JtiRevoked);
    }
    if subject_revokes(state.user, claims.user_version, claims.iat_ms) {
        return Some(Reason::UserRevoked);
    }
    if subject_revokes(state.tenant, claims.tenant_version, claims.iat_ms) {
        return Some(Reason::TenantRevoked);
    }
    if state.family {
        return Some(Reason::FamilyRevoked);
    }
    if state.session {
        return Some(Reason::SessionRevoked);
    }
    None
}

/// One subject's rule: version first, then cut-off. A zero field means "never set".
pub fn subject_revokes(
    subject: Option<Subject>,
    version: Option<u64>,
    iat_ms: Option<i64>,
) -> bool {
    let Some(s) = subject else { return false };
    let by_version = version.is_some_and(|v| s.version > v);
    let by_cutoff = s.before_ms > 0 && iat_ms.is_none_or(|iat| iat <= s.before_ms);
    by_version || by_cutoff
}

/// Furthest ahead an operator may put a revoked `jti`'s expiry (admin API and CLI): ten
/// years. Both stores hold that much (Redis `EX` and the memory store's `Instant`
/// arithmetic fail far beyond it), so the answer is the same whatever the store.
pub const MAX_JTI_AHEAD_SECONDS: i64 = 10 * 366 * 86_400;

/// What an operator must give as a `jti`'s `expires_at` (admin API, CLI).
pub const OPERATOR_EXPIRY: &str = "must be an integer: unix seconds of the token's exp";

/// The one rule for an operator's `expires_at`, whatever the store: in the future (a
/// dead token needs no revocation) and at most [`MAX_JTI_AHEAD_SECONDS`] ahead.
pub fn operator_expiry(expires_at: i64, now: i64) -> Result<(), &'static str> {
    if expires_at <= now {
        Err("is in the past: that token is already dead")
    } else if expires_at > now.saturating_add(MAX_JTI_AHEAD_SECONDS) {
        Err("is more than 10 years ahead: no token lives that long")
    } else {
        Ok(())
    }
}

/// A marker's lifetime in seconds, as both stores keep it: at least 1, and never so long
/// that `Instant` or `EX` arithmetic could overflow (tokens are valid until year 9999 at
/// most, so this only guards against a caller that did not check).
pub fn marker_ttl(expires_at: i64) -> i64 {
    expires_at
        .saturating_sub(now_ms() / 1000)
        .clamp(1, 10 * MAX_JTI_AHEAD_SECONDS)
}

/// The audit event of one revocation (tracing target `audit`): kind, namespace, id (as
/// the token or operator named it), actor, reason and source. Identifiers only: never a
/// token.
pub fn audit(target: &Target<'_>, reason: &str, actor: Option<&str>, source: &str) {
    let (namespace, id) = scope::split(target.id()).unwrap_or(("", target.id()));
    tracing::info!(
        target: "audit",
        kind = target.kind().as_str(),
        namespace,
        id,
        actor = actor.unwrap_or(""),
        reason,
        source,
        "revoked"
    );
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(version: u64, before_ms: i64) -> Option<Subject> {
        Some(Subject { version, before_ms })
    }

    #[test]
    fn no_subject_entry_revokes_nothing() {
        assert!(!subject_revokes(None, Some(0), None));
    }

    #[test]
    fn version_rule_applies_only_to_tokens_with_the_claim() {
        assert!(subject_revokes(subject(3, 0), Some(2), Some(1)));
        assert!(!subject_revokes(subject(3, 0), Some(3), Some(1)));
        assert!(!subject_revokes(subject(3, 0), None, Some(1)));
    }

    #[test]
    fn cutoff_is_inclusive_and_later_tokens_pass() {
        assert!(subject_revokes(subject(1, 5_000), None, Some(5_000)));
        assert!(subject_revokes(subject(1, 5_000), None, Some(4_999)));
        assert!(!subject_revokes(subject(1, 5_000), None, Some(5_001)));
        // a token carrying the current version but issued before the cut-off is revoked
        assert!(subject_revokes(subject(1, 5_000), Some(1), Some(4_000)));
    }

    #[test]
    fn token_without_iat_is_revoked_once_a_cutoff_exists() {
        assert!(subject_revokes(subject(1, 5_000), None, None));
        assert!(!subject_revokes(subject(1, 0), None, None));
    }
}
