//! The local cache in front of any store (SPEC §3), its own type wrapping the plain store
//! rather than flags inside it.
//!
//! What is cached is per identifier, not per token: one entry per `jti`, family, user and
//! tenant. That way an event about a user (logout-all) updates one entry and every token
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
//! Concurrent misses for the same `jti` share one store call (moka's `try_get_with`).
//!
//! Every store call made through here has the store deadline and is counted and timed
//! in the metrics, so the deadline and its accounting live in one place.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use tokio::sync::broadcast::error::RecvError;

use super::events::{Event, Signal};
use super::{
    Kind, Query, Record, RevocationStore, State, Status, StoreError, Subject, Target, Written,
};
use crate::metrics::{CacheKind, Metrics, StoreOp, StoreOutcome};

/// A cached answer about a `jti` or a family.
#[derive(Debug, Clone, Copy)]
struct Marker {
    revoked: bool,
    /// For revoked markers: until when the answer matters.
    until: Instant,
}

/// Per-entry lifetime: the TTL for "not revoked", the recorded expiry for "revoked".
struct MarkerExpiry {
    ttl: Duration,
}

impl Expiry<Arc<str>, Marker> for MarkerExpiry {
    fn expire_after_create(&self, _: &Arc<str>, m: &Marker, now: Instant) -> Option<Duration> {
        Some(self.lifetime(m, now))
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        m: &Marker,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.lifetime(m, now))
    }
}

impl MarkerExpiry {
    fn lifetime(&self, m: &Marker, now: Instant) -> Duration {
        if m.revoked {
            m.until.saturating_duration_since(now).max(self.ttl)
        } else {
            self.ttl
        }
    }
}

struct Caches {
    jti: Cache<Arc<str>, Marker>,
    family: Cache<Arc<str>, Marker>,
    user: Cache<Arc<str>, Option<Subject>>,
    tenant: Cache<Arc<str>, Option<Subject>>,
    /// Bumped by every event and gap; see the module doc.
    epoch: AtomicU64,
    family_ttl: Duration,
    metrics: Arc<Metrics>,
    /// Whether the event subscription has been up once (a later `Up` follows a gap).
    seen_up: AtomicBool,
}

/// A store with the local cache in front.
pub struct CachedStore<S> {
    store: Arc<S>,
    caches: Arc<Caches>,
    deadline: Duration,
}

/// Why a shared fetch produced no cacheable answer.
#[derive(Debug)]
enum FetchError {
    Store(StoreError),
    /// The fetched state raced an event: valid to answer with, not to cache.
    Raced(State),
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
        // LRU for the same reason as the verified-token cache: recency, not long-run
        // frequency, predicts the next check of an identifier.
        let markers = || {
            Cache::builder()
                .max_capacity(max_entries)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(MarkerExpiry { ttl })
                .support_invalidation_closures()
                .build()
        };
        let subjects = || {
            Cache::builder()
                .max_capacity(max_entries)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_live(ttl)
                .build()
        };
        let caches = Arc::new(Caches {
            jti: markers(),
            family: markers(),
            user: subjects(),
            tenant: subjects(),
            epoch: AtomicU64::new(0),
            family_ttl,
            metrics,
            seen_up: AtomicBool::new(false),
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
            Err(StoreError::Unavailable(_)) => Err(StoreOutcome::Error),
        };
        self.caches.metrics.store(op, outcome, started.elapsed());
        result
    }

    /// Entries currently held, all kinds together (after pending maintenance).
    pub async fn entry_count(&self) -> u64 {
        let c = &self.caches;
        c.jti.run_pending_tasks().await;
        c.family.run_pending_tasks().await;
        c.user.run_pending_tasks().await;
        c.tenant.run_pending_tasks().await;
        c.jti.entry_count() + c.family.entry_count() + c.user.entry_count() + c.tenant.entry_count()
    }

    /// Asks the store and caches what it said, unless an event raced the call.
    async fn fetch(&self, q: &Query<'_>, cache_jti: bool) -> Result<State, FetchError> {
        let c = &self.caches;
        let epoch = c.epoch.load(Ordering::Acquire);
        let state = self
            .timed(StoreOp::Check, self.store.check(q))
            .await
            .map_err(FetchError::Store)?;
        if c.epoch.load(Ordering::Acquire) != epoch {
            return Err(FetchError::Raced(state));
        }
        let until = instant_at(q.expires_at);
        if let Some(id) = q.user {
            c.user.insert(id.into(), state.user).await;
        }
        if let Some(id) = q.tenant {
            c.tenant.insert(id.into(), state.tenant).await;
        }
        if let Some(id) = q.family {
            let m = Marker {
                revoked: state.family,
                until,
            };
            c.family.insert(id.into(), m).await;
        }
        if let (true, Some(id)) = (cache_jti, q.jti) {
            let m = Marker {
                revoked: state.jti,
                until,
            };
            c.jti.insert(id.into(), m).await;
        }
        Ok(state)
    }

    /// What the cache knows about `q`, missing parts read as "not revoked". When the store
    /// cannot be reached, a revocation known here must still deny (even fail-open).
    pub async fn known(&self, q: &Query<'_>) -> State {
        let c = &self.caches;
        let marker = |m: Option<Marker>| m.is_some_and(|m| m.revoked);
        State {
            jti: match q.jti {
                Some(id) => marker(c.jti.get(id).await),
                None => false,
            },
            family: match q.family {
                Some(id) => marker(c.family.get(id).await),
                None => false,
            },
            user: match q.user {
                Some(id) => c.user.get(id).await.flatten(),
                None => None,
            },
            tenant: match q.tenant {
                Some(id) => c.tenant.get(id).await.flatten(),
                None => None,
            },
        }
    }

    /// The answer from the cache alone, when every part of it is cached.
    async fn lookup(&self, q: &Query<'_>) -> Option<State> {
        let c = &self.caches;
        let jti = match q.jti {
            Some(id) => c.jti.get(id).await?.revoked,
            None => false,
        };
        let family = match q.family {
            Some(id) => c.family.get(id).await?.revoked,
            None => false,
        };
        let user = match q.user {
            Some(id) => c.user.get(id).await?,
            None => None,
        };
        let tenant = match q.tenant {
            Some(id) => c.tenant.get(id).await?,
            None => None,
        };
        Some(State {
            jti,
            user,
            tenant,
            family,
        })
    }
}

impl<S: RevocationStore> RevocationStore for CachedStore<S> {
    async fn check(&self, q: &Query<'_>) -> Result<State, StoreError> {
        let metrics = &self.caches.metrics;
        if let Some(state) = self.lookup(q).await {
            metrics.cache(CacheKind::Revocation, true);
            return Ok(state);
        }
        metrics.cache(CacheKind::Revocation, false);
        let Some(jti) = q.jti else {
            return self.fetch(q, false).await.or_else(raced_ok);
        };
        // Coalesce concurrent misses for this token: one caller fetches, the others
        // wait for its answer.
        let shared = self
            .caches
            .jti
            .try_get_with(Arc::from(jti), async {
                let state = self.fetch(q, false).await?;
                Ok::<_, FetchError>(Marker {
                    revoked: state.jti,
                    until: instant_at(q.expires_at),
                })
            })
            .await;
        match shared {
            Ok(_) => match self.lookup(q).await {
                Some(state) => Ok(state),
                // Evicted or raced between the fetch and now: ask once more, uncached.
                None => self.fetch(q, false).await.or_else(raced_ok),
            },
            Err(e) => match &*e {
                FetchError::Store(e) => Err(e.clone()),
                FetchError::Raced(state) => Ok(*state),
            },
        }
    }

    async fn revoke(&self, target: &Target<'_>, record: &Record) -> Result<Written, StoreError> {
        let written = self
            .timed(StoreOp::Revoke, self.store.revoke(target, record))
            .await?;
        // Read-your-writes on this replica without waiting for the event to come back.
        self.caches.apply(&written.event(target)).await;
        Ok(written)
    }

    async fn status(&self, kind: Kind, id: &str) -> Result<Option<Status>, StoreError> {
        self.timed(StoreOp::Status, self.store.status(kind, id))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(StoreOp::Ping, self.store.ping()).await
    }

    fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
        self.store.signals()
    }
}

fn raced_ok(e: FetchError) -> Result<State, StoreError> {
    match e {
        FetchError::Store(e) => Err(e),
        FetchError::Raced(state) => Ok(state),
    }
}

impl Caches {
    async fn apply(&self, event: &Event) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics.invalidation_events.inc();
        let revoked = |until| Marker {
            revoked: true,
            until,
        };
        match event {
            Event::Jti { id, exp } => {
                self.jti
                    .insert(id.as_str().into(), revoked(instant_at(*exp)))
                    .await
            }
            Event::Family { id } => {
                let until = Instant::now() + self.family_ttl;
                self.family.insert(id.as_str().into(), revoked(until)).await
            }
            Event::User { id, ver, before } => {
                newest(&self.user, id, Subject::new(*ver, *before)).await
            }
            Event::Tenant { id, ver, before } => {
                newest(&self.tenant, id, Subject::new(*ver, *before)).await
            }
        }
    }

    fn gap(&self) {
        self.metrics.invalidation_gaps.inc();
        self.metrics.subscription_up.set(0);
        self.forget_not_revoked();
    }

    fn up(&self) {
        self.metrics.subscription_up.set(1);
        if self.seen_up.swap(true, Ordering::AcqRel) {
            // Back after a gap: whatever was cached meanwhile may have missed events.
            self.forget_not_revoked();
        }
    }

    fn forget_not_revoked(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        // Revoked markers stay: they can never become wrong. Everything else may be.
        let _ = self.jti.invalidate_entries_if(|_, m| !m.revoked);
        let _ = self.family.invalidate_entries_if(|_, m| !m.revoked);
        self.user.invalidate_all();
        self.tenant.invalidate_all();
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

/// Subjects only move forward; out-of-order events must not move one back.
async fn newest(cache: &Cache<Arc<str>, Option<Subject>>, id: &str, s: Subject) {
    let merged = match cache.get(id).await.flatten() {
        Some(old) => Subject::new(old.version.max(s.version), old.before_ms.max(s.before_ms)),
        None => s,
    };
    cache.insert(id.into(), Some(merged)).await;
}

async fn apply_signals(mut rx: tokio::sync::broadcast::Receiver<Signal>, caches: Weak<Caches>) {
    loop {
        let signal = rx.recv().await;
        let Some(caches) = caches.upgrade() else {
            return;
        };
        match signal {
            Ok(Signal::Event(e)) => caches.apply(&e).await,
            Ok(Signal::Up) => caches.up(),
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
            Arc::new(Metrics::new(&[])),
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
        assert!(c.caches.jti.get("gone").await.is_some_and(|m| m.revoked));
        assert!(c.caches.jti.get("a").await.is_none());
        assert!(!c.check(&query("a")).await.unwrap().jti);
        assert_eq!(calls(&c), before + 1);
    }

    /// The memory store behind a delay, so that concurrent misses really overlap.
    struct Slow(MemoryStore);

    impl RevocationStore for Slow {
        async fn check(&self, q: &Query<'_>) -> Result<State, StoreError> {
            tokio::time::sleep(Duration::from_millis(50)).await;
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
        fn signals(&self) -> tokio::sync::broadcast::Receiver<Signal> {
            self.0.signals()
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_misses_for_one_token_share_one_store_call() {
        let slow = Slow(MemoryStore::new(Duration::from_secs(60), None));
        let c = Arc::new(CachedStore::new(
            slow,
            SETTINGS,
            Arc::new(Metrics::new(&[])),
        ));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move { c.check(&query("same")).await }));
        }
        for t in tasks {
            assert!(!t.await.unwrap().unwrap().jti);
        }
        assert_eq!(calls(&c), 1);
    }
}
