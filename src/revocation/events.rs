//! Invalidation events (SPEC §3): every write publishes one, every replica applies it to
//! its local cache at once. The memory store emits the same events in-process, so the
//! cache has one code path whatever the store.
//!
//! Wire format on `{prefix}events` (JSON, one object per message):
//! `{"kind":"jti","id":"…","exp":1700000000}`, `{"kind":"family","id":"…"}`,
//! `{"kind":"user","id":"…","ver":3,"before":1700000000123}` (same for `tenant`).

use serde::{Deserialize, Serialize};

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
}
