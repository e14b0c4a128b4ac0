//! The revocation feed (issue 20): what Envoy's in-proxy fast path (wasm/) long-polls
//! to hold every live revocation in its own memory. A snapshot of the live entries,
//! then the changes after a cursor.
//!
//! Why a per-replica log fed by the invalidation events this replica already receives,
//! rather than a Redis Stream: the fast path must never be told "nothing changed" when
//! something did, and a per-replica log can say exactly when it knows that. Its cursor
//! names this replica's *epoch* (a random number drawn each time the feed is rebuilt
//! from the store); a cursor of another epoch (another replica behind the same Service,
//! a restart, a pub/sub gap) or older than the log is answered with a whole snapshot,
//! read from the store itself. A Stream would give durable cursors across replicas, but
//! every write would need an XADD beside the PUBLISH (a second write path that the
//! memory store would have to imitate), its trimming would need the same "too old →
//! snapshot" rule anyway, and snapshots are rare and small (only live entries travel).
//!
//! While the event subscription is down the feed is not ready (the endpoint answers
//! 503): the fast path's heartbeat then stops and its set goes stale after its bound,
//! instead of it being told it is current.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::events::{Event, Signal};
use super::{now_ms, Kind, Store, StoreError, Subject};

/// What the feed holds about one identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A revoked `jti`, family or session, until unix second `exp`.
    Marker {
        exp: i64,
    },
    Subject(Subject),
}

impl Entry {
    /// The entry that says both (revocations only ever grow).
    fn merge(self, other: Entry) -> Entry {
        match (self, other) {
            (Entry::Marker { exp: a }, Entry::Marker { exp: b }) => Entry::Marker { exp: a.max(b) },
            (Entry::Subject(a), Entry::Subject(b)) => Entry::Subject(Subject::new(
                a.version.max(b.version),
                a.before_ms.max(b.before_ms),
            )),
            (_, b) => b,
        }
    }
}

/// One live entry, by kind and scoped id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub kind: Kind,
    pub id: String,
    pub entry: Entry,
}

impl Live {
    pub fn new(kind: Kind, id: &str, entry: Entry) -> Live {
        Live {
            kind,
            id: id.to_string(),
            entry,
        }
    }

    /// The feed's line: the event format of `events.rs`, markers always with `exp`.
    pub fn line(&self) -> String {
        line(self.kind, &self.id, self.entry)
    }
}

fn line(kind: Kind, id: &str, entry: Entry) -> String {
    let id = serde_json::to_string(id).unwrap_or_default();
    let kind = kind.as_str();
    match entry {
        Entry::Marker { exp } => format!(r#"{{"v":2,"kind":"{kind}","id":{id},"exp":{exp}}}"#),
        Entry::Subject(s) => format!(
            r#"{{"v":2,"kind":"{kind}","id":{id},"ver":{},"before":{}}}"#,
            s.version, s.before_ms
        ),
    }
}

/// One answer of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The lines replace everything the caller holds (a snapshot), rather than add to it.
    pub reset: bool,
    pub cursor: String,
    pub lines: Vec<String>,
}

impl Answer {
    /// The response body: a header line, then one line per entry.
    pub fn body(&self) -> String {
        let mut out = format!(
            "{{\"cursor\":\"{}\",\"reset\":{}}}\n",
            self.cursor, self.reset
        );
        for l in &self.lines {
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}

/// What a poll gets.
pub enum Poll {
    Ready(Answer),
    /// Nothing after the cursor yet: wait for the receiver to change, then poll again.
    Wait(watch::Receiver<u64>),
    /// The feed does not know the store's current state (not loaded, or events lost).
    NotReady,
}

struct State {
    epoch: u64,
    seq: u64,
    ready: bool,
    entries: HashMap<(Kind, String), Entry>,
    /// `(seq, line)` of the latest changes, oldest first.
    log: VecDeque<(u64, String)>,
}

pub struct Feed {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    capacity: usize,
    family_ttl: i64,
    session_ttl: i64,
}

fn new_epoch() -> u64 {
    let id = uuid::Uuid::new_v4();
    let (hi, _) = id.as_u64_pair();
    hi
}

impl Feed {
    /// An empty, not yet ready feed. `family_ttl`/`session_ttl`: how long the store keeps
    /// a revoked family or session (their events carry no end).
    pub fn new(capacity: usize, family_ttl: Duration, session_ttl: Duration) -> Feed {
        Feed {
            state: Mutex::new(State {
                epoch: new_epoch(),
                seq: 0,
                ready: false,
                entries: HashMap::new(),
                log: VecDeque::new(),
            }),
            changed: watch::channel(0).0,
            capacity: capacity.max(1),
            family_ttl: family_ttl.as_secs() as i64,
            session_ttl: session_ttl.as_secs() as i64,
        }
    }

    /// Replaces the state with what the store holds, under a new epoch (every cursor
    /// handed out before now gets a snapshot).
    pub fn load(&self, live: Vec<Live>) {
        let mut s = self.state.lock();
        s.epoch = new_epoch();
        s.seq = 0;
        s.log.clear();
        s.entries = live
            .into_iter()
            .map(|l| ((l.kind, l.id), l.entry))
            .collect();
        s.ready = true;
        drop(s);
        self.changed.send_modify(|v| *v += 1);
    }

    /// The events may have been missed: not ready until the next [`load`](Self::load).
    pub fn down(&self) {
        self.state.lock().ready = false;
        self.changed.send_modify(|v| *v += 1);
    }

    pub fn is_ready(&self) -> bool {
        self.state.lock().ready
    }

    /// Number of entries held (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one invalidation event: merged into the state and logged.
    pub fn apply(&self, event: &Event) {
        let now = now_ms() / 1000;
        let (kind, id) = event.target();
        let entry = match event {
            Event::Jti { exp, .. } => Entry::Marker { exp: *exp },
            Event::Family { .. } => Entry::Marker {
                exp: now.saturating_add(self.family_ttl),
            },
            Event::Session { .. } => Entry::Marker {
                exp: now.saturating_add(self.session_ttl),
            },
            Event::User { ver, before, .. } | Event::Tenant { ver, before, .. } => {
                Entry::Subject(Subject::new(*ver, *before))
            }
        };
        let mut s = self.state.lock();
        let key = (kind, id.to_string());
        let merged = match s.entries.get(&key) {
            Some(old) => old.merge(entry),
            None => entry,
        };
        s.entries.insert(key, merged);
        s.seq += 1;
        let seq = s.seq;
        s.log.push_back((seq, line(kind, id, merged)));
        while s.log.len() > self.capacity {
            s.log.pop_front();
        }
        drop(s);
        self.changed.send_modify(|v| *v += 1);
    }

    /// The answer for a caller at `cursor` (`None`: a snapshot).
    pub fn poll(&self, cursor: Option<&str>) -> Poll {
        let mut s = self.state.lock();
        if !s.ready {
            return Poll::NotReady;
        }
        let at = cursor.and_then(parse_cursor).filter(|(e, _)| *e == s.epoch);
        if let Some((_, seq)) = at {
            if seq == s.seq {
                return Poll::Wait(self.changed.subscribe());
            }
            let covered = s.log.front().is_some_and(|(first, _)| *first <= seq + 1);
            if seq < s.seq && covered {
                let lines = s
                    .log
                    .iter()
                    .filter(|(n, _)| *n > seq)
                    .map(|(_, l)| l.clone())
                    .collect();
                return Poll::Ready(Answer {
                    reset: false,
                    cursor: cursor_of(s.epoch, s.seq),
                    lines,
                });
            }
        }
        // A snapshot: drop what has ended, send the rest.
        let now = now_ms() / 1000;
        s.entries
            .retain(|_, e| !matches!(e, Entry::Marker { exp } if *exp < now));
        let lines = s
            .entries
            .iter()
            .map(|((k, id), e)| line(*k, id, *e))
            .collect();
        Poll::Ready(Answer {
            reset: true,
            cursor: cursor_of(s.epoch, s.seq),
            lines,
        })
    }

    /// A heartbeat: nothing new, the caller stays where it is.
    pub fn unchanged(cursor: &str) -> Answer {
        Answer {
            reset: false,
            cursor: cursor.to_string(),
            lines: Vec::new(),
        }
    }
}

fn cursor_of(epoch: u64, seq: u64) -> String {
    format!("{epoch:016x}.{seq}")
}

fn parse_cursor(c: &str) -> Option<(u64, u64)> {
    let (e, s) = c.split_once('.')?;
    Some((u64::from_str_radix(e, 16).ok()?, s.parse().ok()?))
}

impl Store {
    /// Every live revocation the store holds (the feed's snapshot).
    pub async fn live_entries(&self) -> Result<Vec<Live>, StoreError> {
        match self {
            Store::Memory(m) => Ok(m.live_entries()),
            Store::Redis(r) => r.live_entries().await,
        }
    }
}

/// Keeps `feed` current: loads it from the store, applies every event, and reloads it
/// after anything that may have lost one (a new subscription, an unreadable or legacy
/// event, a lagging receiver). `signals` must be subscribed before the first load.
pub async fn run(
    feed: Arc<Feed>,
    store: impl std::ops::Deref<Target = Store>,
    mut signals: broadcast::Receiver<Signal>,
    shutdown: CancellationToken,
) {
    let mut need_load = true;
    loop {
        if need_load {
            match store.live_entries().await {
                Ok(live) => {
                    feed.load(live);
                    need_load = false;
                }
                Err(e) => {
                    feed.down();
                    tracing::warn!(error = %e, "revocation feed: cannot read the store; retrying");
                }
            }
        }
        let retry = tokio::time::sleep(Duration::from_secs(1));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = retry, if need_load => {}
            r = signals.recv() => match r {
                Ok(Signal::Event(e)) => feed.apply(&e),
                Ok(Signal::Gap) => feed.down(),
                Ok(Signal::Up | Signal::Unscoped | Signal::Unreadable)
                | Err(broadcast::error::RecvError::Lagged(_)) => need_load = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed() -> Feed {
        let f = Feed::new(3, Duration::from_secs(60), Duration::from_secs(60));
        f.load(vec![Live::new(
            Kind::Jti,
            "a:1",
            Entry::Marker { exp: i64::MAX },
        )]);
        f
    }

    fn ready(p: Poll) -> Answer {
        match p {
            Poll::Ready(a) => a,
            Poll::Wait(_) => panic!("waits"),
            Poll::NotReady => panic!("not ready"),
        }
    }

    #[test]
    fn snapshot_then_deltas_then_wait() {
        let f = feed();
        let snap = ready(f.poll(None));
        assert!(snap.reset);
        assert_eq!(
            snap.lines,
            vec![r#"{"v":2,"kind":"jti","id":"a:1","exp":9223372036854775807}"#]
        );
        assert!(matches!(f.poll(Some(&snap.cursor)), Poll::Wait(_)));
        f.apply(&Event::subject(Kind::User, "a:u", Subject::new(2, 5)));
        f.apply(&Event::subject(Kind::User, "a:u", Subject::new(1, 9)));
        let d = ready(f.poll(Some(&snap.cursor)));
        assert!(!d.reset);
        assert_eq!(
            d.lines[1],
            r#"{"v":2,"kind":"user","id":"a:u","ver":2,"before":9}"#
        );
        assert!(matches!(f.poll(Some(&d.cursor)), Poll::Wait(_)));
    }

    #[test]
    fn a_cursor_it_cannot_continue_gets_a_snapshot() {
        let f = feed();
        let c = ready(f.poll(None)).cursor;
        for i in 0..5 {
            f.apply(&Event::Family {
                id: format!("a:f{i}"),
            });
        }
        // three entries kept: the cursor is older than the log
        let a = ready(f.poll(Some(&c)));
        assert!(a.reset);
        assert_eq!(a.lines.len(), 6);
        // another epoch (a restart, another replica) or garbage
        let other = format!("{:016x}.0", 7u64);
        assert!(ready(f.poll(Some(&other))).reset);
        assert!(ready(f.poll(Some("x"))).reset);
        // a cursor from the future of this epoch cannot be trusted either
        let (e, _) = parse_cursor(&a.cursor).unwrap();
        assert!(ready(f.poll(Some(&cursor_of(e, 99)))).reset);
        // a reload starts a new epoch
        f.load(Vec::new());
        assert!(ready(f.poll(Some(&a.cursor))).reset);
    }

    #[test]
    fn not_ready_while_events_may_be_lost() {
        let f = feed();
        f.down();
        assert!(matches!(f.poll(None), Poll::NotReady));
        f.load(Vec::new());
        assert!(matches!(f.poll(None), Poll::Ready(_)));
    }

    #[test]
    fn ended_markers_leave_the_snapshot() {
        let f = Feed::new(8, Duration::from_secs(60), Duration::from_secs(60));
        f.load(vec![
            Live::new(Kind::Jti, "a:old", Entry::Marker { exp: 1 }),
            Live::new(Kind::Tenant, "a:t", Entry::Subject(Subject::new(0, 1))),
        ]);
        let a = ready(f.poll(None));
        assert_eq!(
            a.lines,
            vec![r#"{"v":2,"kind":"tenant","id":"a:t","ver":0,"before":1}"#]
        );
    }
}
