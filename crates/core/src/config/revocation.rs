//! `revocation`: the store revocations are written to and read from, and the local cache
//! in front of it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, try_from = "RawRevocation")]
pub struct Revocation {
    pub store: Store,
    pub cache: Cache,
    pub on_store_error: OnStoreError,
    /// Prefix of every key the store writes.
    pub key_prefix: String,
    /// Deadline of one store call (at least 1).
    pub store_timeout_ms: u64,
    /// Lifetime of a revoked refresh-token family (the longest refresh-token lifetime).
    pub family_ttl_seconds: u64,
    /// Lifetime of an ended session (back-channel logout, CAEP session-revoked): the
    /// longest life of an access token issued in it. A day by default.
    pub session_ttl_seconds: u64,
    /// Lifetime of user and tenant entries; none by default (they are small and a
    /// cut-off must outlive every token issued before it).
    pub subject_ttl_seconds: Option<u64>,
    /// Whether a Redis store also reads the keys of the layout before issuer namespaces
    /// (docs/operations.md, "Upgrading to issuer-scoped revocations").
    pub legacy_keys: LegacyKeys,
}

impl Default for Revocation {
    fn default() -> Self {
        Self {
            store: Store::Memory,
            cache: Cache::default(),
            on_store_error: OnStoreError::Deny,
            key_prefix: "tokengate:".into(),
            store_timeout_ms: 50,
            family_ttl_seconds: 30 * 24 * 3600,
            session_ttl_seconds: 86_400,
            subject_ttl_seconds: None,
            legacy_keys: LegacyKeys::Read,
        }
    }
}

/// The store: the YAML names it in `store` (`memory` or `redis`) and, for Redis, gives
/// the connection in `redis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// Inside this process: for one replica, or trying tokengate out.
    Memory,
    /// Shared by every replica.
    Redis(Redis),
}

impl Store {
    pub fn kind(&self) -> StoreKind {
        match self {
            Store::Memory => StoreKind::Memory,
            Store::Redis(_) => StoreKind::Redis,
        }
    }
}

/// The name of a [`Store`], as `revocation.store` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Fail closed: 503 `store_unavailable`.
    #[default]
    Deny,
    /// Fail open: allow and count it.
    Allow,
}

/// Reading of the pre-namespace Redis layout, so that an upgrade keeps every revocation
/// enforced until `tokengate migrate` has copied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LegacyKeys {
    /// Every check also reads the legacy keys of the token's raw ids (same round trip).
    #[default]
    Read,
    /// Only the namespaced layout (after `tokengate migrate`).
    Off,
}

/// A Redis connection: a URL (`redis://`, `rediss://`, `redis+cluster://`,
/// `redis+sentinel://`) and a password from the environment or a file, which overrides
/// any in the URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRedis")]
pub struct Redis {
    pub url: String,
    pub password: Option<Secret>,
    /// Trust and client identity for `rediss://` (managed Redis uses a private CA, and
    /// some require a client certificate).
    pub tls: Option<RedisTls>,
    /// Replicas that must confirm a revocation (`WAIT`) before it is acknowledged: what
    /// makes an acknowledged revocation survive a failover. 0: the primary's answer is
    /// enough.
    pub wait_replicas: u32,
    /// How long a write waits for those replicas before it is refused (503).
    pub wait_timeout_ms: u64,
}

/// `revocation.redis.tls`: files read once at start; a missing or unreadable file
/// stops the start naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawRedisTls")]
pub struct RedisTls {
    /// PEM CA certificates the server's certificate must chain to (instead of the
    /// system's web roots).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, PEM, for servers that require one.
    pub client: Option<(PathBuf, PathBuf)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

impl TryFrom<RawRedisTls> for RedisTls {
    type Error = String;

    fn try_from(r: RawRedisTls) -> Result<Self, String> {
        let client = match (r.cert_file, r.key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err("key_file: required with cert_file".into()),
            (None, Some(_)) => return Err("cert_file: required with key_file".into()),
        };
        Ok(RedisTls {
            ca_file: r.ca_file,
            client,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: String,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<std::path::PathBuf>,
    #[serde(default)]
    tls: Option<RedisTls>,
    #[serde(default)]
    wait_replicas: u32,
    #[serde(default)]
    wait_timeout_ms: Option<u64>,
}

impl TryFrom<RawRedis> for Redis {
    type Error = String;

    fn try_from(r: RawRedis) -> Result<Self, String> {
        if r.password_env.is_some() && r.password_file.is_some() {
            return Err("set at most one of password_env, password_file".into());
        }
        let scheme = r.url.split_once("://").map_or("", |(s, _)| s);
        if r.tls.is_some() && !scheme.starts_with("rediss") {
            return Err(
                "tls: needs a rediss:// URL (rediss+cluster://, rediss+sentinel://)".into(),
            );
        }
        if r.wait_timeout_ms == Some(0) {
            return Err("wait_timeout_ms: must be at least 1".into());
        }
        Ok(Redis {
            url: r.url,
            password: Secret::from_pair(r.password_env, r.password_file),
            tls: r.tls,
            wait_replicas: r.wait_replicas,
            // 0 until the revocation section fills it in from its store deadline.
            wait_timeout_ms: r.wait_timeout_ms.unwrap_or(0),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cache {
    pub ttl_seconds: u64,
    /// At least 1.
    #[serde(deserialize_with = "super::positive_u64")]
    pub max_entries: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            ttl_seconds: 5,
            max_entries: 100_000,
        }
    }
}

/// [`Revocation`] as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRevocation {
    store: StoreKind,
    redis: Option<Redis>,
    cache: Cache,
    on_store_error: OnStoreError,
    key_prefix: String,
    #[serde(deserialize_with = "super::positive_u64")]
    store_timeout_ms: u64,
    family_ttl_seconds: u64,
    #[serde(deserialize_with = "super::positive_u64")]
    session_ttl_seconds: u64,
    subject_ttl_seconds: Option<u64>,
    legacy_keys: LegacyKeys,
}

impl Default for RawRevocation {
    fn default() -> Self {
        let d = Revocation::default();
        Self {
            store: StoreKind::Memory,
            redis: None,
            cache: d.cache,
            on_store_error: d.on_store_error,
            key_prefix: d.key_prefix,
            store_timeout_ms: d.store_timeout_ms,
            family_ttl_seconds: d.family_ttl_seconds,
            session_ttl_seconds: d.session_ttl_seconds,
            subject_ttl_seconds: d.subject_ttl_seconds,
            legacy_keys: d.legacy_keys,
        }
    }
}

impl TryFrom<RawRevocation> for Revocation {
    type Error = String;

    fn try_from(r: RawRevocation) -> Result<Self, String> {
        let store = match (r.store, r.redis) {
            (StoreKind::Memory, _) => Store::Memory,
            (StoreKind::Redis, Some(redis)) => {
                Store::Redis(with_wait_deadline(redis, r.store_timeout_ms)?)
            }
            (StoreKind::Redis, None) => {
                return Err(".redis: required when revocation.store is redis".into())
            }
        };
        Ok(Revocation {
            store,
            cache: r.cache,
            on_store_error: r.on_store_error,
            key_prefix: r.key_prefix,
            store_timeout_ms: r.store_timeout_ms,
            family_ttl_seconds: r.family_ttl_seconds,
            session_ttl_seconds: r.session_ttl_seconds,
            subject_ttl_seconds: r.subject_ttl_seconds,
            legacy_keys: r.legacy_keys,
        })
    }
}

/// `WAIT` runs inside the write's store deadline: its own timeout must end first, so
/// that a replica too slow to confirm gets the answer "not on N replicas" rather than a
/// deadline. Unset, it is half the deadline.
fn with_wait_deadline(mut redis: Redis, store_timeout_ms: u64) -> Result<Redis, String> {
    if redis.wait_timeout_ms == 0 {
        redis.wait_timeout_ms = (store_timeout_ms / 2).max(1);
    } else if redis.wait_replicas > 0 && redis.wait_timeout_ms >= store_timeout_ms {
        return Err(format!(
            ".redis.wait_timeout_ms: must be below revocation.store_timeout_ms ({store_timeout_ms})"
        ));
    }
    Ok(redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Revocation, String> {
        let de = serde_yaml_ng::Deserializer::from_str(yaml);
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    fn redis(fields: &str, extra: &str) -> Result<Redis, String> {
        let yaml = format!("store: redis\nredis:\n  url: rediss://h:6380/0\n{fields}{extra}");
        match parse(&yaml)?.store {
            Store::Redis(r) => Ok(r),
            Store::Memory => Err("memory".into()),
        }
    }

    #[test]
    fn wait_timeout_defaults_to_half_the_store_deadline_and_must_stay_below_it() {
        let r = redis("  wait_replicas: 1\n", "store_timeout_ms: 80\n").unwrap();
        assert_eq!((r.wait_replicas, r.wait_timeout_ms), (1, 40));
        let r = redis("", "").unwrap();
        assert_eq!(r.wait_replicas, 0, "off by default");
        let err = redis("  wait_replicas: 1\n  wait_timeout_ms: 50\n", "").unwrap_err();
        assert!(err.contains("redis.wait_timeout_ms"), "{err}");
        let err = redis("  wait_timeout_ms: 0\n", "").unwrap_err();
        assert!(err.contains("wait_timeout_ms"), "{err}");
    }

    #[test]
    fn tls_needs_a_tls_url_and_a_whole_client_identity() {
        let r = redis("  tls:\n    ca_file: /ca.pem\n", "").unwrap();
        assert_eq!(r.tls.unwrap().ca_file.as_deref(), Some("/ca.pem".as_ref()));
        let err =
            parse("store: redis\nredis:\n  url: redis://h/0\n  tls: {ca_file: /ca}\n").unwrap_err();
        assert!(err.contains("rediss://"), "{err}");
        let err = redis("  tls:\n    cert_file: /c.pem\n", "").unwrap_err();
        assert!(err.contains("key_file"), "{err}");
        let err = redis("  tls:\n    key_file: /k.pem\n", "").unwrap_err();
        assert!(err.contains("cert_file"), "{err}");
        let err = redis("  tls:\n    ca: /ca.pem\n", "").unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}
