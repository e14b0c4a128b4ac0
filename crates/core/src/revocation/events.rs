//! Invalidation events (docs/spec.md §3): every write publishes one, every replica applies it to
//! its local cache at once. The memory store emits the same events in-process, so the
//! cache has one code path whatever the store.
//!
//! Wire format on `{prefix}events` (JSON, one object per message), ids scoped as
//! `{namespace}:{id}`:
//! `{"v":2,"kind":"jti","id":"…","exp":1700000000}`, `{"v":2,"kind":"family","id":"…"}`,
//! `{"v":2,"kind":"session","id":"…"}`,
//! `{"v":2,"kind":"user","id":"…","ver":3,"before":1700000000123}` (same for `tenant`).
//!
//! `"v":2` marks the issuer-scoped layout. An event without it comes from a replica of
//! an older release (a rolling upgrade): its id is a raw one that cannot be attributed
//! to a namespace, so it is applied as a gap instead ([`Signal::Unscoped`]): the cache
//! forgets its "not revoked" answers and asks the store, which reads the legacy keys.
//! Older replicas ignore the marker: their `Event` has no `deny_unknown_fields`.

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{Kind, Subject};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Event {
    Jti {
        id: String,
        /// Unix seconds until which the revocation matters (token `exp` + leeway).
        exp: i64,
    },
    Family {
        id: String,
    },
    /// Since issue 16. A replica of an earlier release cannot read it and drops its
    /// cached "not revoked" answers instead (the safe reading of any unreadable event).
    Session {
        id: String,
    },
    User {
        id: String,
        ver: u64,
        before: i64,
    },
    Tenant {
        id: String,
        ver: u64,
        before: i64,
    },
}

impl Event {
    pub fn subject(kind: Kind, id: &str, s: Subject) -> Self {
        let id = id.to_string();
        match kind {
            Kind::Tenant => Event::Tenant {
                id,
                ver: s.version,
                before: s.before_ms,
            },
            _ => Event::User {
                id,
                ver: s.version,
                before: s.before_ms,
            },
        }
    }

    /// The kind and scoped id the event is about.
    pub fn target(&self) -> (Kind, &str) {
        match self {
            Event::Jti { id, .. } => (Kind::Jti, id),
            Event::Family { id } => (Kind::Family, id),
            Event::Session { id } => (Kind::Session, id),
            Event::User { id, .. } => (Kind::User, id),
            Event::Tenant { id, .. } => (Kind::Tenant, id),
        }
    }

    /// The wire form, with the layout marker first.
    pub fn to_json(&self) -> String {
        let body = serde_json::to_string(self).unwrap_or_default();
        // `body` is an object: `{"kind":…}` becomes `{"v":2,"kind":…}`.
        format!("{{\"v\":{LAYOUT},{}", body.get(1..).unwrap_or("}"))
    }

    /// The start of a user's or tenant's event, to be completed with
    /// `,"ver":…,"before":…}` by whoever knows them (the Redis `BUMP` script).
    pub fn subject_head(kind: Kind, id: &str) -> String {
        format!(
            r#"{{"v":{LAYOUT},"kind":"{}","id":{}"#,
            kind.as_str(),
            serde_json::to_string(id).unwrap_or_default()
        )
    }

    /// What a message means to the cache: an event of this layout, an event of an older
    /// replica ([`Signal::Unscoped`]), or [`Signal::Unreadable`] (counted, never ignored).
    pub fn signal(bytes: &[u8]) -> Signal {
        #[derive(Deserialize)]
        struct Marker {
            #[serde(default)]
            v: Option<u64>,
        }
        let (Ok(event), Ok(marker)) = (
            serde_json::from_slice::<Event>(bytes),
            serde_json::from_slice::<Marker>(bytes),
        ) else {
            return Signal::Unreadable;
        };
        match marker.v {
            Some(LAYOUT) => Signal::Event(event),
            _ => Signal::Unscoped,
        }
    }
}

/// The event layout this release writes (ids scoped by issuer namespace).
pub const LAYOUT: u64 = 2;

/// What a store tells the cache: an event, or the state of its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    Event(Event),
    /// The subscription is (again) established. After a gap, events published in
    /// between were lost, so the cache forgets its "not revoked" answers once more.
    Up,
    /// The subscription dropped: cached "not revoked" answers can no longer be trusted
    /// beyond their TTL.
    Gap,
    /// An event without the layout marker, from a replica of an older release: its raw
    /// id names no namespace, so the cache forgets its "not revoked" answers (the store
    /// then reads the legacy keys) rather than applying it.
    Unscoped,
    /// A message on the channel that is no event this release can read (a newer
    /// release's kind, or garbage). It may have been a revocation: the cache counts it
    /// and forgets its "not revoked" answers, as for [`Signal::Unscoped`].
    Unreadable,
}

/// The channel a store sends its signals on. The first subscriber (the cache) gets the
/// receiver made with the channel, so it sees every signal sent since the store was
/// created, even one sent by a background task before the cache subscribed.
pub struct Signals {
    tx: broadcast::Sender<Signal>,
    first: Mutex<Option<broadcast::Receiver<Signal>>>,
}

impl Default for Signals {
    fn default() -> Self {
        let (tx, rx) = broadcast::channel(4096);
        Signals {
            tx,
            first: Mutex::new(Some(rx)),
        }
    }
}

impl Signals {
    /// Sends to every subscriber; none yet is not an error.
    pub fn send(&self, signal: Signal) {
        let _ = self.tx.send(signal);
    }

    /// A sender for a background task.
    pub fn sender(&self) -> broadcast::Sender<Signal> {
        self.tx.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.first
            .lock()
            .take()
            .unwrap_or_else(|| self.tx.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let e = Event::Jti {
            id: "dev:a\"b".into(),
            exp: 5,
        };
        assert_eq!(
            e.to_json(),
            r#"{"v":2,"kind":"jti","id":"dev:a\"b","exp":5}"#
        );
        assert_eq!(Event::signal(e.to_json().as_bytes()), Signal::Event(e));
        let head = Event::subject_head(Kind::User, "dev:u");
        let u = Event::signal(format!(r#"{head},"ver":2,"before":9}}"#).as_bytes());
        assert_eq!(
            u,
            Signal::Event(Event::User {
                id: "dev:u".into(),
                ver: 2,
                before: 9
            })
        );
        assert_eq!(Event::signal(b"garbage"), Signal::Unreadable);
        assert_eq!(
            Event::signal(br#"{"v":2,"kind":"device","id":"x"}"#),
            Signal::Unreadable
        );
    }

    #[test]
    fn an_event_without_the_marker_is_unscoped() {
        let legacy = br#"{"kind":"user","id":"u","ver":2,"before":9}"#;
        assert_eq!(Event::signal(legacy), Signal::Unscoped);
        let future = br#"{"v":3,"kind":"family","id":"x"}"#;
        assert_eq!(Event::signal(future), Signal::Unscoped);
    }

    /// The `Event` of the release before issuer namespaces (its serde attributes and
    /// fields as they were, no `deny_unknown_fields`): what an old replica runs during a
    /// rolling upgrade. It must still read every new event (and
    /// ignore the marker), or the old replica would drop them.
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase")]
    enum OldEvent {
        Jti { id: String, exp: i64 },
        Family { id: String },
        User { id: String, ver: u64, before: i64 },
        Tenant { id: String, ver: u64, before: i64 },
    }

    #[test]
    fn a_replica_of_the_previous_release_reads_the_new_events() {
        let events = [
            Event::Jti {
                id: "a:1".into(),
                exp: 5,
            },
            Event::Family { id: "a:f".into() },
            Event::subject(Kind::User, "a:u", Subject::new(1, 2)),
            Event::subject(Kind::Tenant, "a:t", Subject::new(1, 2)),
        ];
        for e in events {
            let old: OldEvent = serde_json::from_str(&e.to_json()).expect("old replica parses");
            let id = match &old {
                OldEvent::Jti { id, .. }
                | OldEvent::Family { id }
                | OldEvent::User { id, .. }
                | OldEvent::Tenant { id, .. } => id.clone(),
            };
            assert!(id.starts_with("a:"), "{old:?}");
        }
        let head = Event::subject_head(Kind::Tenant, "a:t");
        let old: OldEvent =
            serde_json::from_str(&format!(r#"{head},"ver":1,"before":2}}"#)).unwrap();
        assert_eq!(
            old,
            OldEvent::Tenant {
                id: "a:t".into(),
                ver: 1,
                before: 2
            }
        );
    }

    #[test]
    fn the_first_subscriber_sees_signals_sent_before_it_subscribed() {
        let s = Signals::default();
        s.sender().send(Signal::Up).unwrap();
        assert_eq!(s.subscribe().try_recv(), Ok(Signal::Up));
        assert!(
            s.subscribe().try_recv().is_err(),
            "later subscribers start fresh"
        );
    }
}
