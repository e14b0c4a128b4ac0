//! The singleton side (`role: sync`, Envoy's bootstrap `envoy.bootstrap.wasm` with
//! `singleton: true`): long-polls tokengate's revocation feed through the `cluster`,
//! applies snapshot and deltas to its set, and publishes the set and a heartbeat in
//! shared data for the workers. One poll is in flight at a time; a failed poll is
//! retried on the next tick, with the cursor it had, so a reconnect resumes where it
//! stopped (tokengate answers a snapshot when it cannot: another replica, a restart).

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::config::Config;
use crate::json::{self, Val};
use crate::set::Set;

pub struct Sync {
    config: Config,
    pub set: Set,
    cursor: Option<String>,
    pub gen: u64,
    in_flight: Option<u32>,
    /// Unix ms of the last good answer (published as the heartbeat).
    pub last_ok: i64,
    /// Whether to publish in shared data (the singleton) or only hold the set for the
    /// VM's own filter (`self_sync`, where no singleton can be configured: Istio).
    shared: bool,
}

fn now_ms() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

impl Sync {
    pub fn new(config: Config, shared: bool) -> Sync {
        Sync {
            shared,
            config,
            set: Set::default(),
            cursor: None,
            gen: 0,
            in_flight: None,
            last_ok: 0,
        }
    }

    pub fn on_tick(&mut self) {
        if self.in_flight.is_none() {
            self.poll();
        }
    }

    fn poll(&mut self) {
        let c = &self.config;
        let mut path = format!("{}?wait_ms={}", c.path, c.poll_wait_ms);
        if let Some(cursor) = &self.cursor {
            path.push_str("&cursor=");
            path.push_str(cursor);
        }
        let auth = format!("Bearer {}", c.token);
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", c.authority.as_str()),
            ("authorization", auth.as_str()),
        ];
        let timeout = Duration::from_millis(c.poll_wait_ms + 5_000);
        match hostcalls::dispatch_http_call(&c.cluster, headers, None, vec![], timeout) {
            Ok(token) => self.in_flight = Some(token),
            Err(e) => log::warn!("tokengate fast path: sync call not dispatched: {e:?}"),
        }
    }

    pub fn on_response(&mut self, token: u32, body_size: usize) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        if status.as_deref() != Some("200") {
            log::warn!("tokengate fast path: sync answered {status:?}; retrying");
            return;
        }
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Err(e) = self.apply(&body) {
            // Not claiming to be current with what could not be read: the next poll
            // asks for a whole snapshot, and the heartbeat is not renewed meanwhile.
            log::warn!("tokengate fast path: sync answer refused ({e}); asking for a snapshot");
            self.cursor = None;
            return;
        }
        self.poll();
    }

    /// The feed's answer: a header line `{"cursor":…,"reset":…}` then event lines.
    fn apply(&mut self, body: &[u8]) -> Result<(), &'static str> {
        let (head, rest) = match body.iter().position(|b| *b == b'\n') {
            Some(i) => (&body[..i], &body[i + 1..]),
            None => (body, &b""[..]),
        };
        let mut cursor = None;
        let mut reset = None;
        let mut kb = Vec::new();
        json::members(head, &mut kb, |k, v| {
            match (k, v) {
                (b"cursor", v @ Val::Str { .. }) => {
                    let mut b = Vec::new();
                    cursor = v
                        .str(&mut b)?
                        .map(|s| String::from_utf8_lossy(s).into_owned());
                }
                (b"reset", Val::Bool(r)) => reset = Some(r),
                _ => {}
            }
            Ok(())
        })
        .map_err(|_| "unreadable header")?;
        let (cursor, reset) = match (cursor, reset) {
            (Some(c), Some(r)) => (c, r),
            _ => return Err("header without cursor or reset"),
        };
        if cursor
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return Err("cursor with unexpected characters");
        }
        let changed = if reset {
            let mut set = Set::default();
            set.apply(rest).map_err(|_| "unreadable snapshot")?;
            self.set = set;
            true
        } else {
            self.set.apply(rest).map_err(|_| "unreadable delta")? > 0
        };
        self.cursor = Some(cursor);
        let now = now_ms();
        if changed {
            self.set.prune(now / 1000);
            self.gen += 1;
        }
        self.last_ok = now;
        if !self.shared {
            return Ok(());
        }
        if changed {
            let mut blob = format!("{{\"gen\":{}}}\n", self.gen).into_bytes();
            self.set.write(&mut blob);
            hostcalls::set_shared_data(crate::SET_KEY, Some(&blob), None)
                .map_err(|_| "shared data refused the set")?;
        }
        let head = format!("{} {}", self.gen, self.last_ok);
        hostcalls::set_shared_data(crate::HEAD_KEY, Some(head.as_bytes()), None)
            .map_err(|_| "shared data refused the heartbeat")?;
        Ok(())
    }
}
