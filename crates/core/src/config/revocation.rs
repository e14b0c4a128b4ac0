//! `revocation`: the store revocations are written to and read from, and the local cache
//! in front of it.

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: String,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<std::path::PathBuf>,
}

impl TryFrom<RawRedis> for Redis {
    type Error = String;

    fn try_from(r: RawRedis) -> Result<Self, String> {
        if r.password_env.is_some() && r.password_file.is_some() {
            return Err("set at most one of password_env, password_file".into());
        }
        Ok(Redis {
            url: r.url,
            password: Secret::from_pair(r.password_env, r.password_file),
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
            (StoreKind::Redis, Some(redis)) => Store::Redis(redis),
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
