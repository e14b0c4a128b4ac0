//! `revocation_feed`: the revocation feed that Envoy's in-proxy fast path (issue 20,
//! wasm/) long-polls to keep its set current. Off by default: the feed lists revoked
//! identifiers, so it is served only to a caller holding the configured token.

use serde::Deserialize;

use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, try_from = "RawFeed")]
pub struct RevocationFeed {
    pub enabled: bool,
    /// The bearer token the fast path's singleton sends (a dedicated shared secret, not
    /// a JWT: a long-running proxy component cannot renew an expiring token).
    pub token: Option<Secret>,
    /// Longest long-poll the feed holds open (a caller's `wait_ms` is capped to it).
    pub max_wait_ms: u64,
    /// How many changes this replica remembers for callers resuming with a cursor; a
    /// caller further behind gets a whole snapshot.
    pub log_entries: usize,
}

impl Default for RevocationFeed {
    fn default() -> Self {
        RevocationFeed {
            enabled: false,
            token: None,
            max_wait_ms: 30_000,
            log_entries: 65_536,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFeed {
    enabled: bool,
    token_env: Option<String>,
    token_file: Option<std::path::PathBuf>,
    max_wait_ms: u64,
    log_entries: usize,
}

impl Default for RawFeed {
    fn default() -> Self {
        let d = RevocationFeed::default();
        RawFeed {
            enabled: d.enabled,
            token_env: None,
            token_file: None,
            max_wait_ms: d.max_wait_ms,
            log_entries: d.log_entries,
        }
    }
}

impl TryFrom<RawFeed> for RevocationFeed {
    type Error = String;

    fn try_from(r: RawFeed) -> Result<Self, String> {
        if r.token_env.is_some() && r.token_file.is_some() {
            return Err("token_env, token_file: set at most one".into());
        }
        let token = Secret::from_pair(r.token_env, r.token_file);
        if r.enabled && token.is_none() {
            return Err("token_env or token_file: required when enabled".into());
        }
        if !(1..=300_000).contains(&r.max_wait_ms) {
            return Err("max_wait_ms: 1 to 300000".into());
        }
        if !(1..=10_000_000).contains(&r.log_entries) {
            return Err("log_entries: 1 to 10000000".into());
        }
        Ok(RevocationFeed {
            enabled: r.enabled,
            token,
            max_wait_ms: r.max_wait_ms,
            log_entries: r.log_entries,
        })
    }
}
