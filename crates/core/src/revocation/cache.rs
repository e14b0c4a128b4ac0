//! The local cache in front of any store (docs/spec.md §3), its own type wrapping the plain store
//! rather than flags inside it.
//!
//! What is cached is per identifier, not per token: one entry per `jti`, family, user and
//! tenant, keyed by the scoped id as it is (the namespace is part of it). That way an event about a user (logout-all) updates one entry and every token
//! of that user sees it at once.
//!
//! - "not revoked" answers live for the configured TTL (default 5 s): the bound on
//!   staleness when events are lost;
//! - a revoked `jti` or family is kept until the token's expiry: it can never become
//!   valid again;
//! - every store event is applied as it arrives; a gap in the event stream (subscription
//!   dropped, channel lagged) forgets every "not revoked" answer.
//!
//! A fetch that raced an event (the event arrived while the store call was in flight)
//! answers from what it fetched but does not cache it: an epoch counter bumped by every
//! event tells the two apart, so a stale "not revoked" can never overwrite a revocation.
//! Concurrent misses for the same identifiers share one store call, errors included.
//!
//! Every store call made through here has the store deadline and is counted and timed
//! in the metrics, so the deadline and its accounting live in one place.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::OnceCell;

use super::events::{Event, Signal};
use super::{
    Kind, Query, Record, RevocationStore, State, Status, StoreError, Subject, Target, Written,
};
use crate::metrics::{CacheKind, Metrics, StoreOp, StoreOutcome};

/// One cached answer about one identifier: whether a `jti` or family is revoked, or
/// what is known of a user or tenant.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot<V> {
    value: V,
    /// When the answer stops being usable: the TTL for "not revoked", the token's
    /// expiry (at least the TTL) for a revoked marker.
    until: Instant,
    /// The gap generation it was cached in. A gap bumps the generation, and from then on
    /// only answers that can never become wrong (revoked markers) are served from an
    /// older one: forgetting everything else in O(1).
    generation: u32,
}

/// An answer that stays true whatever events were missed.
trait Lasting {
    fn lasting(&self) -> bool;
}

impl Lasting for bool {
    fn lasting(&self) -> bool {
        *self
    }
}

impl Lasting for Option<Subject> {
    fn lasting(&self) -> bool {
        false
    }
}

type Entries<V> = Cache<Arc<str>, Slot<V>>;

/// The answer of one store call, shared by every concurrent miss for the same query.
type Shared = Arc<OnceCell<Result<State, StoreError>>>;

struct Caches {
    jti: Entries<bool>,
    family: Entries<bool>,
    session: Entries<bool>,
    user: Entries<Option<Subject>>,
    tenant: Entries<Option<Subject>>,
    /// Bumped by every event and gap; see the module doc.
    epoch: AtomicU64,
    /// Bumped by every gap; see [`Slot::generation`].
    generation: AtomicU32,
    ttl: Duration,
    family_ttl: Duration,
    metrics: Arc<Metrics>,
    /// Whether the event subscription has been up once (a later `Up` follows a gap).
    seen_up: AtomicBool,
    /// Store calls in flight, by query, so that concurrent misses share one.
    inflight: Mutex<HashMap<String, Shared>>,
}

/// A store with the local cache in front.
pub struct CachedStore<S> {
    store: Arc<S>,
    caches: Arc<Caches>,
    deadline: Duration,
}

impl<S: RevocationStore> CachedStore<S> {
    /// Wraps `store`; `max_entries` bounds each of the four caches, `deadline` every
    /// store call. Spawns the task that applies the store's events, so it must be called
    /// inside a tokio runtime.
    pub fn new(store: S, settings: CacheSettings, metrics: Arc<Metrics>) -> Self {
        let CacheSettings {
            ttl,
            max_entries,
            family_ttl,
            deadline,
        } = settings;
        // quick_cache's CLOCK-Pro admits every newcomer (a token is typically checked
        // again soon after its first check) and keeps about 130 bytes per identifier
        // at a million entries, against moka's 480 (docs/performance.md).
        let capacity = usize::try_from(max_entries).unwrap_or(usize::MAX).max(1);
        let caches = Arc::new(Caches {
            jti: Cache::new(capacity),
            family: Cache::new(capacity),
            session: Cache::new(capacity),
            user: Cache::new(capacity),
            tenant: Cache::new(capacity),
            epoch: AtomicU64::new(0),
            generation: AtomicU32::new(0),
            ttl,
            family_ttl,
            metrics,
            seen_up: AtomicBool::new(false),
            inflight: Mutex::new(HashMap::new()),
        });
        let store = Arc::new(store);
        if store.events_in_process() {
            caches.metrics.subscription_up.set(1);
        }
        tokio::spawn(apply_signals(store.signals(), Arc::downgrade(&caches)));
        CachedStore {
            store,
            caches,
            deadline,
        }
    }

    pub fn inner(&self) -> &S {
        &self.store
    }

    pub fn metrics(&self) -> &Metrics {
        &self.caches.metrics
    }

    /// Runs one store call within the deadline, and counts and times it.
    async fn timed<T>(
        &self,
        op: StoreOp,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.deadline, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout),
        };
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(StoreError::Timeout) => Err(StoreOutcome::Timeout),
            Err(_) => Err(StoreOutcome::Error),
        };
        self.caches.metrics.store(op, outcome, started.elapsed());
        result
    }

    /// Entries currently held, all kinds together (expired ones count until they are
    /// evicted or overwritten).
    pub fn entry_count(&self) -> u64 {
        let c = &self.caches;
        [
            c.jti.len(),
            c.family.len(),
            c.session.len(),
            c.user.len(),
            c.tenant.len(),
        ]
        .iter()
        .map(|&n| n as u64)
        .sum()
    }

    /// Asks the store and caches what it said, unless an event raced the call (then the
    /// answer is returned but not cached).
    async fn fetch(&self, q: &Query<'_>) -> Result<State, StoreError> {
        let c = &self.caches;
        let epoch = c.epoch.load(Ordering::Acquire);
        let generation = c.generation.load(Ordering::Acquire);
        let state = {
            use tracing::Instrument as _;
            // Only inside a traced check: an unsampled check has no span, and its store
            // call must not become a trace of its own.
            let span = if tracing::Span::current().is_none() {
                tracing::Span::none()
            } else {
                tracing::debug_span!(
                    target: "tokengate_core::trace",
                    "store.check",
                    otel.name = "tokengate.store.check",
                    otel.kind = "client",
                )
            };
            self.timed(StoreOp::Check, self.store.check(q))
                .instrument(span)
                .await?
        };
        if c.epoch.load(Ordering::Acquire) != epoch {
            return Ok(state);
        }
        let now = Instant::now();
        let short = now + c.ttl;
        let long = instant_at(q.expires_at).max(short);
        let subject = |value| Slot {
            value,
            until: short,
            generation,
        };
        let marker = |revoked: bool| Slot {
            value: revoked,
            until: if revoked { long } else { short },
            generation,
        };
        let user = q.user.map(|id| (id, subject(state.user)));
        let tenant = q.tenant.map(|id| (id, subject(state.tenant)));
        let family = q.family.map(|id| (id, marker(state.family)));
        let session = q.session.map(|id| (id, marker(state.session)));
        let jti = q.jti.map(|id| (id, marker(state.jti)));
        put(&c.user, user);
        put(&c.tenant, tenant);
        put(&c.family, family);
        put(&c.session, session);
        put(&c.jti, jti);
        // An event that landed between the check above and these inserts may have been
        // overwritten by an older answer: take back what was put, and let the next
        // check ask the store again.
        if c.epoch.load(Ordering::Acquire) != epoch {
            take_back(&c.user, user);
            take_back(&c.tenant, tenant);
            take_back(&c.family, family);
            take_back(&c.session, session);
            take_back(&c.jti, jti);
        }
        Ok(state)
    }

    /// What the cache knows about `q`, missing parts read as "not revoked". When the store
    /// cannot be reached, a revocation known here must still deny (even fail-open). A
    /// user or tenant cached before a gap still counts: subjects only move forward, so
    /// an older one can only deny less than the store would.
    pub fn known(&self, q: &Query<'_>) -> State {
        let c = &self.caches;
        let now = Instant::now();
        let revoked = |cache: &Entries<bool>, id: Option<&str>| {
            id.and_then(|id| cache.get(id))
                .is_some_and(|s| s.value && now <= s.until)
        };
        let subject = |cache: &Entries<Option<Subject>>, id: Option<&str>| {
            id.and_then(|id| cache.get(id))
                .filter(|s| now <= s.until)
                .and_then(|s| s.value)
        };
        State {
            jti: revoked(&c.jti, q.jti),
            family: revoked(&c.family, q.family),
            session: revoked(&c.session, q.session),
            user: subject(&c.user, q.user),
            tenant: subject(&c.tenant, q.tenant),
        }
    }

    /// The answer from the cache alone, when every part of it is cached.
    fn lookup(&self, q: &Query<'_>) -> Option<State> {
        let c = &self.caches;
        let now = Instant::now();
        let generation = c.generation.load(Ordering::Acquire);
        Some(State {
            jti: fresh(&c.jti, q.jti, now, generation)?.unwrap_or(false),
            family: fresh(&c.family, q.family, now, generation)?.unwrap_or(false),
            session: fresh(&c.session, q.session, now, generation)?.unwrap_or(false),
            user: fresh(&c.user, q.user, now, generation)?.flatten(),
            tenant: fresh(&c.tenant, q.tenant, now, generation)?.flatten(),
        })
    }

    /// One store call for every concurrent miss of the same query: the first caller
    /// fetches, the others wait for its answer (error included). If the fetching caller
    /// goes away (its request was cancelled), a waiting one takes over.
    async fn fetch_shared(&self, q: &Query<'_>) -> Result<State, StoreError> {
        let key = inflight_key(q);
        let inflight = &self.caches.inflight;
        let shared = lock(inflight).entry(key.clone()).or_default().clone();
        // Leaves the map when this caller is done or cancelled, so that an abandoned
        // call leaves nothing behind.
        let _leave = Leave {
            inflight,
            key,
            shared: shared.clone(),
        };
        shared.get_or_init(|| self.fetch(q)).await.clone()
    }
}

fn lock(
    inflight: &Mutex<HashMap<String, Shared>>,
) -> parking_lot::MutexGuard<'_, HashMap<String, Shared>> {
    inflight.lock()
}

/// Removes a shared call from the in-flight map (unless a newer one took its place).
struct Leave<'a> {
    inflight: &'a Mutex<HashMap<String, Shared>>,
    key: String,
    shared: Shared,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut inflight = lock(self.inflight);
        if inflight
            .get(&self.key)
            .is_some_and(|s| Arc::ptr_eq(s, &self.shared))
        {
            inflight.remove(&self.key);
        }
    }
}

/// A cached answer that may be served now: unexpired, and not from before a gap unless
/// it is a lasting one. `Some(None)` when there is no identifier to ask about.
fn fresh<V: Lasting + Copy>(
    cache: &Entries<V>,
    id: Option<&str>,
    now: Instant,
    generation: u32,
) -> Option<Option<V>> {
    let Some(id) = id else {
        return Some(None);
    };
    let slot = cache.get(id)?;
    let usable = now <= slot.until && (slot.generation == generation || slot.value.lasting());
    usable.then_some(Some(slot.value))
}

fn put<V: Copy>(cache: &Entries<V>, entry: Option<(&str, Slot<V>)>) {
    if let Some((id, slot)) = entry {
        cache.insert(Arc::from(id), slot);
    }
}

fn take_back<V: Copy + PartialEq>(cache: &Entries<V>, entry: Option<(&str, Slot<V>)>) {
    if let Some((id, slot)) = entry {
        cache.remove_if(id, |s| *s == slot);
    }
}

/// Concurrent misses share a store call only when they ask about the same identifiers.
fn inflight_key(q: &Query<'_>) -> String {
    let parts = [q.jti, q.family, q.user, q.tenant, q.session];
    let mut key = String::with_capacity(parts.iter().flatten().map(|p| p.len() + 2).sum());
    for part in parts {
        // A length prefix keeps ("ab", "c") and ("a", "bc") apart.
        if let Some(p) = part {
            key.push_str(&p.len().to_string());
            key.push(':');
            key.push_str(p);
        }
        key.push('|');
    }
    key
}

impl<S: RevocationStore> RevocationStore for CachedStore<S> {
    async fn check(&self, q: &Query<'_>) -> Result<State, StoreError> {
        let metrics = &self.caches.metrics;
        if let Some(state) = self.lookup(q) {
            metrics.cache(CacheKind::Revocation, true);
            crate::trace::cache("tokengate.cache.revocation", true);
            return Ok(state);
        }
        metrics.cache(CacheKind::Revocation, false);
        crate::trace::cache("tokengate.cache.revocation", false);
        self.fetch_shared(q).await
    }

    async fn revoke(&self, target: &Target<'_>, record: &Record) -> Result<Written, StoreError> {
        use tracing::Instrument as _;
        // The write and its publish are one store call (one script in Redis).
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::debug_span!(
                target: "tokengate_core::trace",
                "revocation.write",
                otel.name = "tokengate.revocation.write",
                otel.kind = "client",
                tokengate.kind = target.kind().as_str(),
            )
        };
        let written = self
            .timed(StoreOp::Revoke, self.store.revoke(target, record))
            .instrument(span)
            .await?;
        // Read-your-writes on this replica without waiting for the event to come back.
        self.caches.apply(&written.event(target));
        Ok(written)
    }

    async fn status(&self, kind: Kind, id: &str) -> Result<Option<Status>, StoreError> {
        self.timed(StoreOp::Status, self.store.status(kind, id))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(StoreOp::Ping, self.store.ping()).await
    }

    /// Never cached: the store alone knows whether another replica saw the id.
    async fn first_use(&self, id: &str, ttl_seconds: u64) -> Result<bool, StoreError> {
        self.timed(StoreOp::FirstUse, self.store.first_use(id, ttl_seconds))
            .await
    }

    async fn release_use(&self, id: &str) -> Result<(), StoreError> {
        self.timed(StoreOp::FirstUse, self.store.release_use(id))
            .await
    }

    fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
        self.store.signals()
    }
}

impl Caches {
    fn apply(&self, event: &Event) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics.invalidation_events.inc();
        let generation = self.generation.load(Ordering::Acquire);
        let now = Instant::now();
        let revoked = |until: Instant| Slot {
            value: true,
            until: until.max(now + self.ttl),
            generation,
        };
        match event {
            Event::Jti { id, exp } => self
                .jti
                .insert(id.as_str().into(), revoked(instant_at(*exp))),
            Event::Family { id } => self
                .family
                .insert(id.as_str().into(), revoked(now + self.family_ttl)),
            // Kept like a family: until the cache's own bound on a revoked marker.
            Event::Session { id } => self
                .session
                .insert(id.as_str().into(), revoked(now + self.family_ttl)),
            Event::User { id, ver, before } => {
                self.newest(&self.user, id, Subject::new(*ver, *before))
            }
            Event::Tenant { id, ver, before } => {
                self.newest(&self.tenant, id, Subject::new(*ver, *before))
            }
        }
    }

    /// Subjects only move forward; out-of-order events must not move one back. Whatever
    /// was cached (even before a gap) is a lower bound, and the event is the store's
    /// state after a write, so the merge is current.
    fn newest(&self, cache: &Entries<Option<Subject>>, id: &str, s: Subject) {
        let merged = match cache.get(id).and_then(|slot| slot.value) {
            Some(old) => Subject::new(old.version.max(s.version), old.before_ms.max(s.before_ms)),
            None => s,
        };
        let slot = Slot {
            value: Some(merged),
            until: Instant::now() + self.ttl,
            generation: self.generation.load(Ordering::Acquire),
        };
        cache.insert(id.into(), slot);
    }

    fn gap(&self) {
        self.metrics.invalidation_gaps.inc();
        self.metrics.subscription_up.set(0);
        self.forget_not_revoked();
    }

    /// An older replica's event: which namespace it meant is unknown, so every "not
    /// revoked" answer may now be wrong (see [`Signal::Unscoped`]).
    fn unscoped(&self) {
        self.metrics.invalidation_events.inc();
        self.forget_not_revoked();
    }

    /// A message no event could be read from: counted, and treated like an event whose
    /// target is unknown.
    fn unreadable(&self) {
        self.metrics.invalidation_unreadable.inc();
        tracing::warn!("unreadable invalidation message: cached not-revoked answers dropped");
        self.forget_not_revoked();
    }

    fn up(&self) {
        self.metrics.subscription_up.set(1);
        if self.seen_up.swap(true, Ordering::AcqRel) {
            // Back after a gap: whatever was cached meanwhile may have missed events.
            self.forget_not_revoked();
        }
    }

    /// Revoked markers stay: they can never become wrong. Everything else may be, and
    /// stops being served (see [`Slot::generation`]).
    fn forget_not_revoked(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// How the cache is sized and how long store calls may take.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Lifetime of a "not revoked" answer.
    pub ttl: Duration,
    /// Bound of each of the four caches.
    pub max_entries: u64,
    /// How long a revoked family is remembered.
    pub family_ttl: Duration,
    /// Deadline of every store call.
    pub deadline: Duration,
}

async fn apply_signals(mut rx: tokio::sync::broadcast::Receiver<Signal>, caches: Weak<Caches>) {
    loop {
        let signal = rx.recv().await;
        let Some(caches) = caches.upgrade() else {
            return;
        };
        match signal {
            Ok(Signal::Event(e)) => caches.apply(&e),
            Ok(Signal::Up) => caches.up(),
            Ok(Signal::Unscoped) => caches.unscoped(),
            Ok(Signal::Unreadable) => caches.unreadable(),
            Ok(Signal::Gap) | Err(RecvError::Lagged(_)) => caches.gap(),
            Err(RecvError::Closed) => return,
        }
    }
}

/// The `Instant` of a unix time in seconds (now when it is past).
fn instant_at(unix_secs: i64) -> Instant {
    let now_ms = super::now_ms();
    let ahead = unix_secs.saturating_mul(1000).saturating_sub(now_ms).max(0) as u64;
    Instant::now() + Duration::from_millis(ahead)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::memory::MemoryStore;

    const SETTINGS: CacheSettings = CacheSettings {
        ttl: Duration::from_secs(5),
        max_entries: 1000,
        family_ttl: Duration::from_secs(60),
        deadline: Duration::from_secs(1),
    };

    fn cached() -> CachedStore<MemoryStore> {
        CachedStore::new(
            MemoryStore::new(Duration::from_secs(60), None),
            SETTINGS,
            Arc::new(Metrics::new(&[]).unwrap()),
        )
    }

    fn calls<S: RevocationStore>(c: &CachedStore<S>) -> u64 {
        c.metrics().store_calls(StoreOp::Check)
    }

    fn query(jti: &str) -> Query<'_> {
        Query {
            jti: Some(jti),
            user: Some("u"),
            expires_at: super::super::now_ms() / 1000 + 60,
            ..Query::default()
        }
    }

    #[tokio::test]
    async fn repeated_check_is_served_from_the_cache() {
        let c = cached();
        assert!(!c.check(&query("a")).await.unwrap().jti);
        assert!(!c.check(&query("a")).await.unwrap().jti);
        assert_eq!(calls(&c), 1);
    }

    #[tokio::test]
    async fn a_revocation_replaces_a_cached_not_revoked_answer_at_once() {
        let c = cached();
        assert!(c.check(&query("a")).await.unwrap().user.is_none());
        c.revoke(&Target::User("u"), &Record::now("t", None))
            .await
            .unwrap();
        let st = c.check(&query("a")).await.unwrap();
        assert_eq!(st.user.map(|s| s.version), Some(1));
        assert_eq!(calls(&c), 1);
    }

    #[tokio::test]
    async fn a_gap_forgets_not_revoked_answers_but_keeps_revocations() {
        let c = cached();
        c.revoke(
            &Target::Jti {
                id: "gone",
                expires_at: super::super::now_ms() / 1000 + 60,
            },
            &Record::now("t", None),
        )
        .await
        .unwrap();
        assert!(!c.check(&query("a")).await.unwrap().jti);
        c.caches.gap();
        let before = calls(&c);
        let generation = c.caches.generation.load(Ordering::Acquire);
        let now = Instant::now();
        assert_eq!(
            fresh(&c.caches.jti, Some("gone"), now, generation),
            Some(Some(true))
        );
        assert_eq!(fresh(&c.caches.user, Some("u"), now, generation), None);
        assert_eq!(fresh(&c.caches.jti, Some("a"), now, generation), None);
        assert!(!c.check(&query("a")).await.unwrap().jti);
        assert_eq!(calls(&c), before + 1);
    }

    #[tokio::test]
    async fn an_unscoped_event_forgets_not_revoked_answers() {
        let c = cached();
        assert!(!c.check(&query("a")).await.unwrap().jti);
        let before = calls(&c);
        c.caches.unscoped();
        assert!(!c.check(&query("a")).await.unwrap().jti);
        assert_eq!(calls(&c), before + 1, "asked the store again");
    }

    /// The memory store with its checks held back: by a delay, so that concurrent misses
    /// really overlap, or (`None`) forever, so that every check runs into the deadline.
    struct Held(MemoryStore, Option<Duration>);

    impl RevocationStore for Held {
        async fn check(&self, q: &Query<'_>) -> Result<State, StoreError> {
            match self.1 {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
            self.0.check(q).await
        }
        async fn revoke(&self, t: &Target<'_>, r: &Record) -> Result<Written, StoreError> {
            self.0.revoke(t, r).await
        }
        async fn status(&self, k: Kind, id: &str) -> Result<Option<Status>, StoreError> {
            self.0.status(k, id).await
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
        async fn first_use(&self, id: &str, ttl: u64) -> Result<bool, StoreError> {
            self.0.first_use(id, ttl).await
        }
        async fn release_use(&self, id: &str) -> Result<(), StoreError> {
            self.0.release_use(id).await
        }
        fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
            self.0.signals()
        }
    }

    fn held(delay: Option<Duration>, settings: CacheSettings) -> Arc<CachedStore<Held>> {
        let store = Held(MemoryStore::new(Duration::from_secs(60), None), delay);
        Arc::new(CachedStore::new(
            store,
            settings,
            Arc::new(Metrics::new(&[]).unwrap()),
        ))
    }

    /// `n` checks of the same token at once, their answers in order.
    async fn at_once(c: &Arc<CachedStore<Held>>, n: usize) -> Vec<Result<State, StoreError>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.check(&query("same")).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_misses_for_one_token_share_one_store_call() {
        let c = held(Some(Duration::from_millis(50)), SETTINGS);
        for answer in at_once(&c, 16).await {
            assert!(!answer.unwrap().jti);
        }
        assert_eq!(calls(&c), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_misses_share_one_timeout_rather_than_queueing() {
        let settings = CacheSettings {
            deadline: Duration::from_millis(200),
            ..SETTINGS
        };
        let c = held(None, settings);
        for answer in at_once(&c, 8).await {
            assert!(matches!(answer, Err(StoreError::Timeout)));
        }
        // One shared call: the waiters got its timeout, they did not each take a turn.
        assert_eq!(calls(&c), 1);
    }

    #[tokio::test]
    async fn misses_for_different_identifiers_are_not_shared() {
        assert_ne!(
            inflight_key(&Query {
                jti: Some("ab"),
                user: Some("c"),
                ..Query::default()
            }),
            inflight_key(&Query {
                jti: Some("a"),
                user: Some("bc"),
                ..Query::default()
            })
        );
        assert_ne!(inflight_key(&query("a")), inflight_key(&query("b")));
    }

    #[tokio::test]
    async fn a_cancelled_miss_leaves_nothing_in_flight() {
        let c = held(None, SETTINGS);
        let task = {
            let c = c.clone();
            tokio::spawn(async move { c.check(&query("abandoned")).await })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while lock(&c.caches.inflight).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the check never reached the store"
            );
            tokio::task::yield_now().await;
        }
        task.abort();
        assert!(task.await.is_err_and(|e| e.is_cancelled()));
        assert!(lock(&c.caches.inflight).is_empty());
    }
}
