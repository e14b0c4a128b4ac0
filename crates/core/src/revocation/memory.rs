//! The embedded store: one process, nothing to install, the default.
//!
//! Entries with a lifetime (`jti` until the token's expiry, families for the configured
//! refresh lifetime) are purged by one background task that sleeps until the next expiry,
//! as mini-redis's `db.rs` does, so the map never grows without bound and reads never
//! pay for cleaning. Reads also ignore entries that are past their expiry but not yet
//! purged, so correctness never depends on the purge task's timing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};

use super::events::Signals;
use tokio::time::Instant;

use super::events::Signal;
use super::feed::{Entry as FeedEntry, Live};
use super::{
    now_ms, Kind, Query, Record, RevocationStore, State, Status, StoreError, Subject, Target,
    Written,
};

pub struct MemoryStore {
    shared: Arc<Shared>,
    /// In-process invalidation events, so the cache in front works as with Redis.
    events: Signals,
    session_ttl: Duration,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the purge task when an earlier expiry is added or the store is dropped.
    wake: Arc<Notify>,
    family_ttl: Duration,
    subject_ttl: Option<Duration>,
}

/// One map per kind, keyed by the (scoped, opaque) id, so that reads look up a `&str`
/// without building a key.
#[derive(Default)]
struct Inner {
    jti: HashMap<String, Entry<Record>>,
    family: HashMap<String, Entry<Record>>,
    session: HashMap<String, Entry<Record>>,
    user: HashMap<String, Entry<Subject>>,
    tenant: HashMap<String, Entry<Subject>>,
    /// The replay guard: ids seen, until when.
    seen: HashMap<String, Instant>,
    expirations: BTreeSet<(Instant, Kind, String)>,
}

struct Entry<T> {
    value: T,
    expires_at: Option<Instant>,
}

impl<T> Entry<T> {
    fn live(&self, now: Instant) -> Option<&T> {
        match self.expires_at {
            Some(at) if at <= now => None,
            _ => Some(&self.value),
        }
    }
}

impl MemoryStore {
    /// Creates the store and its purge task; must be called inside a tokio runtime.
    pub fn new(family_ttl: Duration, subject_ttl: Option<Duration>) -> Self {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            wake: Arc::new(Notify::new()),
            family_ttl,
            subject_ttl,
        });
        tokio::spawn(purge_task(Arc::downgrade(&shared), shared.wake.clone()));
        MemoryStore {
            shared,
            events: Signals::default(),
            session_ttl: super::DEFAULT_SESSION_TTL,
        }
    }

    /// How long an ended session is remembered (`revocation.session_ttl_seconds`).
    pub fn with_session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Number of live entries (tests and metrics).
    pub fn len(&self) -> usize {
        let inner = self.shared.lock();
        inner.jti.len()
            + inner.family.len()
            + inner.session.len()
            + inner.user.len()
            + inner.tenant.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live entry, markers with the unix second they end (the revocation feed's
    /// snapshot, issue 20).
    pub fn live_entries(&self) -> Vec<Live> {
        let now = Instant::now();
        let unix = now_ms() / 1000;
        let ends = |at: Option<Instant>| match at {
            Some(at) => unix.saturating_add(at.saturating_duration_since(now).as_secs() as i64 + 1),
            None => i64::MAX,
        };
        let inner = self.shared.lock();
        let mut out = Vec::with_capacity(inner.jti.len() + inner.user.len());
        for (kind, map) in [
            (Kind::Jti, &inner.jti),
            (Kind::Family, &inner.family),
            (Kind::Session, &inner.session),
        ] {
            for (id, e) in map.iter().filter(|(_, e)| e.live(now).is_some()) {
                out.push(Live::new(
                    kind,
                    id,
                    FeedEntry::Marker {
                        exp: ends(e.expires_at),
                    },
                ));
            }
        }
        for (kind, map) in [(Kind::User, &inner.user), (Kind::Tenant, &inner.tenant)] {
            for (id, e) in map.iter() {
                if let Some(s) = e.live(now) {
                    out.push(Live::new(kind, id, FeedEntry::Subject(*s)));
                }
            }
        }
        out
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        // The purge task holds only a weak reference; wake it so it notices and exits.
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the store, so recover the guard instead of panicking.
        self.inner.lock()
    }
}

impl Inner {
    fn markers(&mut self, kind: Kind) -> &mut HashMap<String, Entry<Record>> {
        match kind {
            Kind::Family => &mut self.family,
            Kind::Session => &mut self.session,
            _ => &mut self.jti,
        }
    }

    fn subjects(&mut self, kind: Kind) -> &mut HashMap<String, Entry<Subject>> {
        if kind == Kind::Tenant {
            &mut self.tenant
        } else {
            &mut self.user
        }
    }

    fn marker(map: &HashMap<String, Entry<Record>>, id: Option<&str>, now: Instant) -> bool {
        id.and_then(|id| map.get(id))
            .and_then(|e| e.live(now))
            .is_some()
    }

    fn subject(
        map: &HashMap<String, Entry<Subject>>,
        id: Option<&str>,
        now: Instant,
    ) -> Option<Subject> {
        id.and_then(|id| map.get(id))
            .and_then(|e| e.live(now))
            .copied()
    }

    /// Records an expiry, replacing the entry's previous one. Returns true when it is the
    /// new earliest expiry (the purge task must wake to re-arm its timer).
    fn schedule(
        &mut self,
        kind: Kind,
        id: &str,
        old: Option<Instant>,
        new: Option<Instant>,
    ) -> bool {
        if let Some(old) = old {
            self.expirations.remove(&(old, kind, id.to_string()));
        }
        let Some(at) = new else { return false };
        let earliest = self
            .expirations
            .first()
            .is_none_or(|(first, ..)| at < *first);
        self.expirations.insert((at, kind, id.to_string()));
        earliest
    }

    /// Removes every entry whose time has come; returns the next expiry.
    fn purge(&mut self, now: Instant) -> Option<Instant> {
        while let Some((at, kind, id)) = self.expirations.first().cloned() {
            if at > now {
                return Some(at);
            }
            self.expirations.pop_first();
            match kind {
                Kind::Jti | Kind::Family | Kind::Session => {
                    self.markers(kind).remove(&id);
                }
                Kind::User | Kind::Tenant => {
                    self.subjects(kind).remove(&id);
                }
            }
        }
        None
    }
}

impl RevocationStore for MemoryStore {
    async fn check(&self, q: &Query<'_>) -> Result<State, StoreError> {
        let now = Instant::now();
        let inner = self.shared.lock();
        Ok(State {
            jti: Inner::marker(&inner.jti, q.jti, now),
            user: Inner::subject(&inner.user, q.user, now),
            tenant: Inner::subject(&inner.tenant, q.tenant, now),
            family: Inner::marker(&inner.family, q.family, now),
            session: Inner::marker(&inner.session, q.session, now),
        })
    }

    async fn revoke(&self, target: &Target<'_>, record: &Record) -> Result<Written, StoreError> {
        let now = Instant::now();
        let kind = target.kind();
        let id = target.id();
        let mut inner = self.shared.lock();
        let (written, old, new) = match *target {
            Target::Jti { expires_at, .. } => {
                let secs = super::marker_ttl(expires_at).unsigned_abs();
                let at = now + Duration::from_secs(secs);
                let old = inner.jti.get(id).and_then(|e| e.expires_at);
                // A token revoked twice keeps the later of the two expiries.
                let at = old.map_or(at, |o| o.max(at));
                let entry = Entry {
                    value: record.clone(),
                    expires_at: Some(at),
                };
                inner.jti.insert(id.to_string(), entry);
                (Written::Marker, old, Some(at))
            }
            Target::Family(_) | Target::Session(_) => {
                let ttl = if kind == Kind::Session {
                    self.session_ttl
                } else {
                    self.shared.family_ttl
                };
                let at = now + ttl;
                let entry = Entry {
                    value: record.clone(),
                    expires_at: Some(at),
                };
                let old = inner
                    .markers(kind)
                    .insert(id.to_string(), entry)
                    .and_then(|e| e.expires_at);
                (Written::Marker, old, Some(at))
            }
            Target::User(_) | Target::Tenant(_) => {
                let previous =
                    Inner::subject(inner.subjects(kind), Some(id), now).unwrap_or_default();
                let subject = Subject {
                    version: previous.version + 1,
                    // Strictly increasing, so two revocations in one millisecond still
                    // move the cut-off.
                    before_ms: now_ms().max(previous.before_ms + 1),
                };
                let at = self.shared.subject_ttl.map(|ttl| now + ttl);
                let entry = Entry {
                    value: subject,
                    expires_at: at,
                };
                let old = inner
                    .subjects(kind)
                    .insert(id.to_string(), entry)
                    .and_then(|e| e.expires_at);
                (Written::Subject(subject), old, at)
            }
        };
        if inner.schedule(kind, id, old, new) {
            self.shared.wake.notify_one();
        }
        drop(inner);
        self.events.send(Signal::Event(written.event(target)));
        Ok(written)
    }

    async fn status(&self, kind: Kind, id: &str) -> Result<Option<Status>, StoreError> {
        let now = Instant::now();
        let inner = self.shared.lock();
        let left =
            |at: Option<Instant>| at.map(|at| at.saturating_duration_since(now).as_secs() as i64);
        Ok(match kind {
            Kind::Jti | Kind::Family | Kind::Session => {
                let map = match kind {
                    Kind::Family => &inner.family,
                    Kind::Session => &inner.session,
                    _ => &inner.jti,
                };
                map.get(id)
                    .filter(|e| e.live(now).is_some())
                    .map(|e| Status::Marker {
                        record: e.value.clone(),
                        expires_in_seconds: left(e.expires_at),
                    })
            }
            Kind::User | Kind::Tenant => {
                let map = if kind == Kind::User {
                    &inner.user
                } else {
                    &inner.tenant
                };
                Inner::subject(map, Some(id), now).map(Status::Subject)
            }
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn first_use(&self, id: &str, ttl_seconds: u64) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.shared.lock();
        // Expired ids are dropped as new ones come: the map stays as large as the ids
        // of the last TTL.
        if inner.seen.len() >= 1024 && inner.seen.len().is_power_of_two() {
            inner.seen.retain(|_, until| *until > now);
        }
        match inner.seen.get(id) {
            Some(until) if *until > now => Ok(false),
            _ => {
                let until = now + Duration::from_secs(ttl_seconds.max(1));
                inner.seen.insert(id.to_string(), until);
                Ok(true)
            }
        }
    }

    async fn release_use(&self, id: &str) -> Result<(), StoreError> {
        self.shared.lock().seen.remove(id);
        Ok(())
    }

    fn signals(&self) -> broadcast::Receiver<Signal> {
        self.events.subscribe()
    }
}

async fn purge_task(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        // Register interest before purging, so that a wake sent meanwhile (a new earlier
        // expiry, or `Drop`) is not lost.
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let next = strong.lock().purge(Instant::now());
        drop(strong);
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = &mut notified => {}
                }
            }
            None => notified.await,
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn first_use_is_true_once_per_id() {
        let s = super::MemoryStore::new(std::time::Duration::from_secs(60), None);
        use super::RevocationStore;
        assert!(s.first_use("dev:j1", 60).await.unwrap());
        assert!(!s.first_use("dev:j1", 60).await.unwrap());
        assert!(s.first_use("dev:j2", 60).await.unwrap());
        assert!(
            s.first_use("other:j1", 60).await.unwrap(),
            "scoped: another issuer's id"
        );
    }

    #[tokio::test]
    async fn a_revoked_session_is_reported_for_its_id_only() {
        use super::{Query, Record, RevocationStore, Target};
        let s = super::MemoryStore::new(std::time::Duration::from_secs(60), None);
        s.revoke(&Target::Session("dev:s1"), &Record::now("bcl", None))
            .await
            .unwrap();
        let q = |sid| Query {
            session: Some(sid),
            ..Default::default()
        };
        assert!(s.check(&q("dev:s1")).await.unwrap().session);
        assert!(!s.check(&q("dev:s2")).await.unwrap().session);
        assert!(!s.check(&q("idp:s1")).await.unwrap().session);
    }

    use super::*;

    fn store() -> MemoryStore {
        MemoryStore::new(Duration::from_secs(60), None)
    }

    #[tokio::test(start_paused = true)]
    async fn jti_entries_expire_and_are_purged() {
        let s = store();
        let exp = now_ms() / 1000 + 10;
        let t = Target::Jti {
            id: "a",
            expires_at: exp,
        };
        s.revoke(&t, &Record::now("logout", None)).await.unwrap();
        let q = Query {
            jti: Some("a"),
            ..Query::default()
        };
        assert!(s.check(&q).await.unwrap().jti);
        assert_eq!(s.len(), 1);
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(!s.check(&q).await.unwrap().jti);
        // the purge task has run at the expiry and removed the entry
        for _ in 0..100 {
            if s.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(s.is_empty());
    }

    #[tokio::test]
    async fn user_revocation_bumps_version_and_moves_cutoff() {
        let s = store();
        let a = s
            .revoke(&Target::User("u"), &Record::now("logout-all", None))
            .await
            .unwrap();
        let b = s
            .revoke(&Target::User("u"), &Record::now("logout-all", None))
            .await
            .unwrap();
        let (Written::Subject(a), Written::Subject(b)) = (a, b) else {
            panic!("subjects expected")
        };
        assert_eq!((a.version, b.version), (1, 2));
        assert!(b.before_ms > a.before_ms);
        let q = Query {
            user: Some("u"),
            tenant: Some("u"),
            ..Query::default()
        };
        let st = s.check(&q).await.unwrap();
        assert_eq!(st.user, Some(b));
        assert_eq!(st.tenant, None, "kinds do not share a namespace");
    }
}
