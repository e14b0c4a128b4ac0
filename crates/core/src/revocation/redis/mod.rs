//! The Redis store: shared by every replica (docs/spec.md §3).
//!
//! - A check is one round trip to a standalone server (the `CHECK` script reads all four
//!   keys, and with `legacy_keys: read` the four keys of the layout before issuer
//!   namespaces too); in Cluster mode, where the keys live on different nodes, the reads
//!   go out in parallel and are combined. A legacy revocation counts for whichever
//!   namespace asks: it cannot know its issuer, so it is enforced for all of them.
//! - A write stores its value and publishes its event in one script, and returns only
//!   after Redis answered.
//! - Start-up never waits for Redis: connections are made in the background with
//!   backoff, and until then every call fails fast (readiness says why).

mod conn;
mod keys;
pub mod migrate;
mod scripts;
mod snapshot;
mod subscriber;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, RedisResult};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use conn::{redacted_url, Target as RedisTarget};
pub use keys::Keys;

use super::events::{Event, Signal, Signals};
use super::{
    now_ms, Kind, Query, Record, RevocationStore, State, Status, StoreError, Subject, Target,
    Written,
};
use crate::config;

/// A live connection, cheap to clone per call.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Either connection answers a command or a pipeline the same way (a Cluster routes it
/// by its keys), so callers write one `query_async` / `invoke_async` for both. Only what
/// really differs (the CHECK read, a keyspace scan) still matches on the kind.
impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

struct Shared {
    conn: RwLock<Option<Conn>>,
    /// Why the store is not usable (for readiness), empty when it is.
    problem: Mutex<String>,
}

pub struct RedisStore {
    shared: Arc<Shared>,
    keys: Keys,
    /// `revocation.legacy_keys: read`: checks and status also read the legacy layout.
    legacy: bool,
    family_ttl: u64,
    session_ttl: u64,
    subject_ttl: u64,
    events: Signals,
    shutdown: CancellationToken,
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Why a Redis store could not be built from its configuration. Names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("redis.{field}: {source}")]
    Password {
        field: String,
        #[source]
        source: crate::secret::SecretError,
    },
    #[error("redis.url: {0}")]
    Url(#[from] conn::UrlError),
}

impl RedisStore {
    /// Builds the store and starts connecting in the background; returns at once.
    /// Must be called inside a tokio runtime.
    pub fn connect(
        cfg: &config::Redis,
        revocation: &config::Revocation,
    ) -> Result<Self, ConnectError> {
        crate::crypto::install_provider();
        let password = match &cfg.password {
            Some(secret) => {
                Some(
                    secret
                        .read_string()
                        .map_err(|source| ConnectError::Password {
                            field: secret.field("password"),
                            source,
                        })?,
                )
            }
            None => None,
        };
        let target = conn::parse(&cfg.url, password.as_deref())?;
        let redacted = redacted_url(&cfg.url);
        let shared = Arc::new(Shared {
            conn: RwLock::new(None),
            problem: Mutex::new(format!("connecting to {redacted}")),
        });
        let keys = Keys::new(&revocation.key_prefix);
        // Made before the subscriber starts, so its first `Up` cannot be lost.
        let events = Signals::default();
        let shutdown = CancellationToken::new();
        tokio::spawn(supervise(
            target.clone(),
            redacted.clone(),
            shared.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(subscriber::run(
            target,
            redacted,
            keys.events(),
            events.sender(),
            shutdown.clone(),
        ));
        Ok(RedisStore {
            shared,
            keys,
            legacy: revocation.legacy_keys == config::LegacyKeys::Read,
            family_ttl: revocation.family_ttl_seconds.max(1),
            session_ttl: revocation.session_ttl_seconds.max(1),
            subject_ttl: revocation.subject_ttl_seconds.unwrap_or(0),
            events,
            shutdown,
        })
    }

    fn conn(&self) -> Result<Conn, StoreError> {
        let guard = self.shared.conn.read();
        guard.clone().ok_or_else(|| {
            let problem = self.shared.problem.lock();
            StoreError::Disconnected(problem.clone())
        })
    }

    /// The keys this store reads and writes (for tests and tools).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// What one key holds, read as `kind` says.
    async fn status_at(&self, kind: Kind, key: &str) -> Result<Option<Status>, StoreError> {
        let mut cmd = redis::pipe();
        match kind {
            Kind::Jti | Kind::Family | Kind::Session => cmd.get(key).ttl(key),
            Kind::User | Kind::Tenant => cmd.hget(key, "ver").hget(key, "before"),
        };
        // Both commands touch one key, hence one slot: a pipeline works in a Cluster too.
        let reply: (Option<String>, Option<i64>) = cmd
            .query_async(&mut self.conn()?)
            .await
            .map_err(unavailable)?;
        Ok(match (kind, reply) {
            (_, (None, None)) => None,
            (Kind::Jti | Kind::Family | Kind::Session, (Some(json), ttl)) => {
                let record = serde_json::from_str(&json).map_err(|e| {
                    StoreError::Unexpected(format!("unreadable record at {key}: {e}"))
                })?;
                Some(Status::Marker {
                    record,
                    expires_in_seconds: ttl.filter(|t| *t >= 0),
                })
            }
            (Kind::Jti | Kind::Family | Kind::Session, (None, _)) => None,
            (Kind::User | Kind::Tenant, (ver, before)) => {
                subject(ver.and_then(|v| v.parse().ok()), before).map(Status::Subject)
            }
        })
    }
}

fn unavailable(source: redis::RedisError) -> StoreError {
    StoreError::Call { source }
}

/// Reads an optional integer hash field from a script reply.
fn opt_i64(v: &redis::Value) -> Option<i64> {
    redis::from_redis_value_ref::<Option<i64>>(v).ok().flatten()
}

fn subject(ver: Option<i64>, before: Option<i64>) -> Option<Subject> {
    (ver.is_some() || before.is_some()).then(|| Subject {
        version: ver.unwrap_or(0).max(0) as u64,
        before_ms: before.unwrap_or(0),
    })
}

/// A subject known under both layouts: the higher version and the later cut-off, so
/// that whichever revoked more wins.
fn merge(a: Option<Subject>, b: Option<Subject>) -> Option<Subject> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Subject::new(
            a.version.max(b.version),
            a.before_ms.max(b.before_ms),
        )),
        (a, b) => a.or(b),
    }
}

impl RevocationStore for RedisStore {
    async fn check(&self, q: &Query<'_>) -> Result<State, StoreError> {
        let key = |kind, id: Option<&str>| id.map(|id| self.keys.key(kind, id));
        let legacy = |kind, id: Option<&str>| {
            id.filter(|_| self.legacy)
                .and_then(|id| self.keys.legacy_of(kind, id))
        };
        let keys = [
            key(Kind::Jti, q.jti),
            key(Kind::User, q.user),
            key(Kind::Tenant, q.tenant),
            key(Kind::Family, q.family),
            legacy(Kind::Jti, q.jti),
            legacy(Kind::User, q.user),
            legacy(Kind::Tenant, q.tenant),
            legacy(Kind::Family, q.family),
            key(Kind::Session, q.session),
        ];
        match self.conn()? {
            Conn::Single(mut c) => {
                let mut inv = scripts::CHECK.prepare_invoke();
                for k in &keys {
                    inv.key(k.as_deref().unwrap_or_default());
                }
                let reply: Vec<redis::Value> =
                    inv.invoke_async(&mut c).await.map_err(unavailable)?;
                if reply.len() != 11 {
                    return Err(StoreError::Unexpected("unexpected CHECK reply".into()));
                }
                let at = |i: usize| opt_i64(&reply[i]);
                Ok(State {
                    jti: at(0).is_some_and(|n| n > 0),
                    user: merge(subject(at(1), at(2)), subject(at(3), at(4))),
                    tenant: merge(subject(at(5), at(6)), subject(at(7), at(8))),
                    family: at(9).is_some_and(|n| n > 0),
                    session: at(10).is_some_and(|n| n > 0),
                })
            }
            Conn::Cluster(c) => {
                // Keys hash to different slots: read them in parallel.
                let exists = |k: Option<String>, mut c: ClusterConnection| async move {
                    match k {
                        Some(k) => c.exists::<_, bool>(k).await,
                        None => Ok(false),
                    }
                };
                let hash = |k: Option<String>, mut c: ClusterConnection| async move {
                    match k {
                        Some(k) => {
                            let (v, b): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
                                .arg(k)
                                .arg("ver")
                                .arg("before")
                                .query_async(&mut c)
                                .await?;
                            RedisResult::Ok(subject(v, b))
                        }
                        None => Ok(None),
                    }
                };
                let [jti, user, tenant, family, l_jti, l_user, l_tenant, l_family, session] = keys;
                let (j, u, t, f, lj, lu, lt, lf, sn) = tokio::join!(
                    exists(jti, c.clone()),
                    hash(user, c.clone()),
                    hash(tenant, c.clone()),
                    exists(family, c.clone()),
                    exists(l_jti, c.clone()),
                    hash(l_user, c.clone()),
                    hash(l_tenant, c.clone()),
                    exists(l_family, c.clone()),
                    exists(session, c),
                );
                Ok(State {
                    jti: j.map_err(unavailable)? || lj.map_err(unavailable)?,
                    user: merge(u.map_err(unavailable)?, lu.map_err(unavailable)?),
                    tenant: merge(t.map_err(unavailable)?, lt.map_err(unavailable)?),
                    family: f.map_err(unavailable)? || lf.map_err(unavailable)?,
                    session: sn.map_err(unavailable)?,
                })
            }
        }
    }

    async fn revoke(&self, target: &Target<'_>, record: &Record) -> Result<Written, StoreError> {
        let kind = target.kind();
        let key = self.keys.key(kind, target.id());
        let channel = self.keys.events();
        let record_json = serde_json::to_string(record).unwrap_or_default();
        let mut conn = self.conn()?;
        let marker_ttl = match *target {
            Target::Jti { expires_at, .. } => Some(super::marker_ttl(expires_at)),
            Target::Family(_) => Some(self.family_ttl as i64),
            Target::Session(_) => Some(self.session_ttl as i64),
            Target::User(_) | Target::Tenant(_) => None,
        };
        if let Some(ttl) = marker_ttl {
            let event = Written::Marker.event(target).to_json();
            let mut inv = scripts::MARK.key(&key);
            inv.arg(&record_json).arg(ttl).arg(&channel).arg(&event);
            let _: i64 = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
            return Ok(Written::Marker);
        }
        // User or tenant: the event's version and cut-off are only known inside the
        // script, so it completes the JSON that starts here.
        let head = Event::subject_head(kind, target.id());
        let mut inv = scripts::BUMP.key(&key);
        inv.arg(now_ms())
            .arg(self.subject_ttl)
            .arg(&channel)
            .arg(&head);
        let (ver, before): (i64, i64) = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(Written::Subject(Subject {
            version: ver.max(0) as u64,
            before_ms: before,
        }))
    }

    /// The current key, merged with the legacy one while `legacy_keys: read`: a
    /// subject's higher version and later cut-off, a marker from either (the current
    /// one first: it is the newer write).
    async fn status(&self, kind: Kind, id: &str) -> Result<Option<Status>, StoreError> {
        let current = self.status_at(kind, &self.keys.key(kind, id)).await?;
        let legacy = match self.keys.legacy_of(kind, id).filter(|_| self.legacy) {
            Some(key) => self.status_at(kind, &key).await?,
            None => None,
        };
        Ok(match (current, legacy) {
            (Some(Status::Subject(a)), Some(Status::Subject(b))) => {
                merge(Some(a), Some(b)).map(Status::Subject)
            }
            (current, legacy) => current.or(legacy),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let r: RedisResult<String> = redis::cmd("PING").query_async(&mut self.conn()?).await;
        r.map(|_| ()).map_err(unavailable)
    }

    /// `SET key 1 NX EX ttl`: one atomic command, so of two replicas given the same id
    /// at once exactly one sets it.
    async fn first_use(&self, id: &str, ttl_seconds: u64) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.seen(id))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl_seconds.max(1))
            .query_async(&mut self.conn()?)
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn release_use(&self, id: &str) -> Result<(), StoreError> {
        let _: i64 = redis::cmd("DEL")
            .arg(self.keys.seen(id))
            .query_async(&mut self.conn()?)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn signals(&self) -> broadcast::Receiver<Signal> {
        self.events.subscribe()
    }
}

/// Establishes the connection (retrying with backoff, never blocking start-up), checks
/// persistence once, and for Sentinel re-resolves the master when it stops answering.
async fn supervise(
    target: RedisTarget,
    redacted: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    let conn = loop {
        attempt += 1;
        match open(&target).await {
            Ok(c) => break c,
            Err(e) => {
                let msg = format!("connecting to {redacted} (attempt {attempt}): {e}");
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(store = %redacted, attempt, error = %e, "redis not reachable yet");
                }
                *shared.problem.lock() = msg;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    };
    warn_without_persistence(&conn, &redacted).await;
    *shared.conn.write() = Some(conn);
    shared.problem.lock().clear();
    tracing::info!(store = %redacted, "redis connected");

    if matches!(target, RedisTarget::Sentinel { .. }) {
        sentinel_watch(&target, &redacted, &shared, &shutdown).await;
    }
}

/// Sentinel: when the master stops answering pings, ask the Sentinels again.
async fn sentinel_watch(
    target: &RedisTarget,
    redacted: &str,
    shared: &Shared,
    shutdown: &CancellationToken,
) {
    let mut failures = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let current = shared.conn.read().clone();
        let Some(Conn::Single(mut c)) = current else {
            continue;
        };
        let ok = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        failures = if ok { 0 } else { failures + 1 };
        if failures >= 2 {
            if let Ok(conn) = open(target).await {
                tracing::warn!(store = %redacted, "redis master changed, reconnected through sentinel");
                *shared.conn.write() = Some(conn);
                failures = 0;
            }
        }
    }
}

/// Reconnect quickly: a Redis restart must be over for tokengate within about a second.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(Duration::from_millis(400))
        .set_number_of_retries(usize::MAX)
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_secs(1)))
}

async fn open(target: &RedisTarget) -> RedisResult<Conn> {
    match target {
        RedisTarget::Standalone(info) => {
            let client = redis::Client::open(info.clone())?;
            let mut m = ConnectionManager::new_lazy_with_config(client, manager_config())?;
            // One round trip proves the server answers before the store reports ready.
            redis::cmd("PING").query_async::<String>(&mut m).await?;
            Ok(Conn::Single(m))
        }
        RedisTarget::Cluster(nodes) => {
            let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(Duration::from_millis(500))
                .response_timeout(Duration::from_secs(1))
                .retries(2)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
        RedisTarget::Sentinel { .. } => {
            let client = subscriber::sentinel_master(target).await?;
            let mut m = ConnectionManager::new_lazy_with_config(client, manager_config())?;
            redis::cmd("PING").query_async::<String>(&mut m).await?;
            Ok(Conn::Single(m))
        }
    }
}

/// Revocations must survive a Redis restart: warn when neither AOF nor RDB is on.
/// Managed Redis often refuses CONFIG; that is not an error.
async fn warn_without_persistence(conn: &Conn, redacted: &str) {
    async fn get(conn: &Conn, name: &str) -> Option<String> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(name);
        let r: RedisResult<Vec<String>> = match conn.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        };
        r.ok()?.get(1).cloned()
    }
    let (aof, save) = (get(conn, "appendonly").await, get(conn, "save").await);
    match (aof.as_deref(), save.as_deref()) {
        (Some("no"), Some("")) => tracing::warn!(
            store = %redacted,
            "redis has neither AOF nor RDB persistence: revocations will be lost if it restarts"
        ),
        (None, _) | (_, None) => tracing::info!(
            store = %redacted,
            "redis refused CONFIG GET; cannot check persistence (managed Redis?)"
        ),
        _ => {}
    }
}

/// Used by the subscriber to turn raw messages into signals.
fn parse_event(payload: &[u8]) -> Signal {
    Event::signal(payload)
}
