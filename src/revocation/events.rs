//! Invalidation events (SPEC §3): every write publishes one, every replica applies it to
//! its local cache at once. The memory store emits the same events in-process, so the
//! cache has one code path whatever the store.
//!
//! Wire format on `{prefix}events` (JSON, one object per message):
//! `{"kind":"jti","id":"…","exp":1700000000}`, `{"kind":"family","id":"…"}`,
//! `{"kind":"user","id":"…","ver":3,"before":1700000000123}` (same for `tenant`).

use std::sync::Mutex;

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

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

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
            .unwrap_or_else(|p| p.into_inner())
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
            id: "a\"b".into(),
            exp: 5,
        };
        assert_eq!(e.to_json(), r#"{"kind":"jti","id":"a\"b","exp":5}"#);
        let u = Event::from_json(br#"{"kind":"user","id":"u","ver":2,"before":9}"#);
        assert_eq!(
            u,
            Some(Event::User {
                id: "u".into(),
                ver: 2,
                before: 9
            })
        );
        assert_eq!(Event::from_json(b"garbage"), None);
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
