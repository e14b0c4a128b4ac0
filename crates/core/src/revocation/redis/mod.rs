//! The Redis store: shared by every replica (docs/spec.md §3).
//!
//! - A check is one round trip to a standalone server (the `CHECK` script reads all four
//!   keys, and with `legacy_keys: read` the four keys of the layout before issuer
//!   namespaces too); in Cluster mode, where the keys live on different nodes, the reads
//!   go out in parallel and are combined. A legacy revocation counts for whichever
//!   namespace asks: it cannot know its issuer, so it is enforced for all of them.
//! - A write stores its value and publishes its event in one script, and returns only
//!   after Redis answered (and, with `wait_replicas`, after that many replicas confirmed
//!   it: durable.rs), so an acknowledgement means what docs/operations.md promises.
//! - Sentinel's primary moves: the connection follows it (`sentinel_watch`), and so
//!   does the subscription.
//! - Start-up never waits for Redis: connections are made in the background with
//!   backoff, and until then every call fails fast (readiness says why).

mod conn;
mod dial;
mod durable;
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
use dial::Endpoint;
pub use dial::TlsError;
use durable::Durability;
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
    /// `revocation.redis.wait_replicas`: what a write needs before it is acknowledged.
    durability: Durability,
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
    #[error("{0}")]
    Tls(#[from] TlsError),
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
        let endpoint = Endpoint {
            target,
            certs: dial::certificates(cfg.tls.as_ref())?,
        };
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
            endpoint.clone(),
            redacted.clone(),
            shared.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(subscriber::run(
            endpoint,
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
            durability: Durability {
                replicas: cfg.wait_replicas,
                timeout_ms: cfg.wait_timeout_ms,
            },
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
                // An absent key is named by the bare prefix (never a key of ours, and
                // inside an ACL user's `~prefix*` pattern, which checks every declared
                // key, where an empty name would be refused).
                let absent = self.keys.absent();
                for k in &keys {
                    inv.key(k.as_deref().unwrap_or(absent));
                }
                inv.arg(absent);
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
            let ttl = ttl.to_string();
            let args: [&[u8]; 4] = [
                record_json.as_bytes(),
                ttl.as_bytes(),
                channel.as_bytes(),
                event.as_bytes(),
            ];
            let _: i64 = self
                .durability
                .write(&mut conn, &scripts::MARK, &key, &args)
                .await
                .map_err(unavailable)?;
            return Ok(Written::Marker);
        }
        // User or tenant: the event's version and cut-off are only known inside the
        // script, so it completes the JSON that starts here.
        let head = Event::subject_head(kind, target.id());
        let (now, ttl) = (now_ms().to_string(), self.subject_ttl.to_string());
        let args: [&[u8]; 4] = [
            now.as_bytes(),
            ttl.as_bytes(),
            channel.as_bytes(),
            head.as_bytes(),
        ];
        let (ver, before): (i64, i64) = self
            .durability
            .write(&mut conn, &scripts::BUMP, &key, &args)
            .await
            .map_err(unavailable)?;
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
/// persistence once, and for Sentinel follows the master when it moves.
async fn supervise(
    endpoint: Endpoint,
    redacted: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    let conn = loop {
        attempt += 1;
        match open(&endpoint).await {
            Ok(c) => break c,
            Err(e) => {
                let why = dial::explain(&e);
                let msg = format!("connecting to {redacted} (attempt {attempt}): {why}");
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(store = %redacted, attempt, error = %why, "redis not reachable yet");
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

    if matches!(endpoint.target, RedisTarget::Sentinel { .. }) {
        sentinel_watch(&endpoint, &redacted, &shared, &shutdown).await;
    }
}

/// How often a Sentinel deployment's master is asked whether it still is one.
const SENTINEL_POLL: Duration = Duration::from_millis(250);

/// Sentinel: the connection is to one address, and the master can move. Every
/// [`SENTINEL_POLL`] the node is asked `ROLE`; when it no longer answers twice in a row,
/// or answers that it is not a master (demoted after a failover, and refusing writes
/// with READONLY), the Sentinels are asked again and the connection replaced.
async fn sentinel_watch(
    endpoint: &Endpoint,
    redacted: &str,
    shared: &Shared,
    shutdown: &CancellationToken,
) {
    let mut failures = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SENTINEL_POLL) => {}
        }
        let current = shared.conn.read().clone();
        let Some(Conn::Single(mut c)) = current else {
            continue;
        };
        let role = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("ROLE").query_async::<Vec<redis::Value>>(&mut c),
        )
        .await;
        let (answered, master) = match role {
            Ok(Ok(reply)) => (
                true,
                reply
                    .first()
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                    .is_some_and(|r| r == "master"),
            ),
            // An ACL user without ROLE still gets answers: only a lost node counts.
            Ok(Err(e)) if e.code() == Some("NOPERM") => (true, true),
            _ => (false, false),
        };
        failures = if answered { 0 } else { failures + 1 };
        // Healthy, or one missed answer (wait for a second before asking around).
        if master || (!answered && failures < 2) {
            continue;
        }
        match open(endpoint).await {
            Ok(conn) => {
                tracing::warn!(store = %redacted, "redis master changed, reconnected through sentinel");
                *shared.conn.write() = Some(conn);
                shared.problem.lock().clear();
                failures = 0;
            }
            Err(e) => {
                let why = dial::explain(&e);
                *shared.problem.lock() =
                    format!("looking for the master through {redacted}: {why}");
                tracing::debug!(store = %redacted, error = %why, "no master from the sentinels yet");
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

/// One plain connection first: the manager retries a failing connection for ever and
/// its first call would only time out, while this returns why (refused, a certificate
/// not trusted, a client certificate required, a wrong password) for readiness to show.
async fn probe(client: &redis::Client) -> RedisResult<()> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_secs(1)));
    let mut c = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("PING").query_async::<String>(&mut c).await?;
    Ok(())
}

async fn open(endpoint: &Endpoint) -> RedisResult<Conn> {
    match &endpoint.target {
        RedisTarget::Standalone(info) => {
            let client = endpoint.client(info.clone())?;
            probe(&client).await?;
            let mut m = ConnectionManager::new_lazy_with_config(client, manager_config())?;
            // One round trip proves the server answers before the store reports ready.
            redis::cmd("PING").query_async::<String>(&mut m).await?;
            scripts::preload(&mut m).await;
            Ok(Conn::Single(m))
        }
        RedisTarget::Cluster(nodes) => {
            let client = endpoint
                .cluster(nodes.clone())
                .connection_timeout(Duration::from_millis(500))
                .response_timeout(Duration::from_secs(1))
                .retries(2)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
        RedisTarget::Sentinel { .. } => {
            let client = endpoint.sentinel_master().await?;
            probe(&client).await?;
            let mut m = ConnectionManager::new_lazy_with_config(client, manager_config())?;
            redis::cmd("PING").query_async::<String>(&mut m).await?;
            scripts::preload(&mut m).await;
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
