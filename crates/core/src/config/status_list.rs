//! `providers[].status_list`: whether and how a provider's tokens are checked against the
//! Token Status List they reference (draft-ietf-oauth-status-list-20). Off unless set, so
//! that turning it on is a decision: each list is fetched from the network, and a
//! provider's `allowed_hosts` is what stops a token from pointing tokengate anywhere.

use serde::Deserialize;

/// How one provider's Status List Tokens are fetched and cached.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawStatusList")]
pub struct StatusListSettings {
    /// Hosts a token's `status.status_list.uri` may name: `host` (any port) or
    /// `host:port`, compared case-insensitively. Any other host is refused unfetched.
    pub allowed_hosts: Vec<String>,
    /// Lower bound on how long a fetched list is used (its `ttl` / `exp` are clamped).
    pub min_ttl_seconds: u64,
    /// Upper bound on the same; also the lifetime of a list with neither `ttl` nor `exp`
    /// is `min_ttl_seconds`.
    pub max_ttl_seconds: u64,
    /// Timeout of one fetch (connect and whole answer).
    pub fetch_timeout_ms: u64,
    /// Largest Status List Token accepted, and separately largest decompressed list.
    pub max_bytes: usize,
}

impl Default for StatusListSettings {
    fn default() -> Self {
        let r = RawStatusList::default();
        Self {
            allowed_hosts: r.allowed_hosts,
            min_ttl_seconds: r.min_ttl_seconds,
            max_ttl_seconds: r.max_ttl_seconds,
            fetch_timeout_ms: r.fetch_timeout_ms,
            max_bytes: r.max_bytes,
        }
    }
}

/// Longest a list may be used: a week. A status change must reach tokengate in
/// bounded time whatever `ttl` the issuer writes.
pub const MAX_TTL_SECONDS: u64 = 7 * 86_400;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawStatusList {
    allowed_hosts: Vec<String>,
    min_ttl_seconds: u64,
    max_ttl_seconds: u64,
    fetch_timeout_ms: u64,
    max_bytes: usize,
}

impl Default for RawStatusList {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            min_ttl_seconds: 30,
            max_ttl_seconds: 3_600,
            fetch_timeout_ms: 2_000,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

impl TryFrom<RawStatusList> for StatusListSettings {
    type Error = String;

    fn try_from(r: RawStatusList) -> Result<Self, String> {
        if r.allowed_hosts.is_empty() {
            return Err(".allowed_hosts: name at least one host the lists are served from".into());
        }
        if let Some(h) = r
            .allowed_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', '@', '*', ' ']))
        {
            return Err(format!(
                ".allowed_hosts: {h:?} is not a host or host:port (no scheme, path or wildcard)"
            ));
        }
        if r.min_ttl_seconds > r.max_ttl_seconds {
            return Err(".min_ttl_seconds: must not exceed max_ttl_seconds".into());
        }
        if r.max_ttl_seconds == 0 || r.max_ttl_seconds > MAX_TTL_SECONDS {
            return Err(format!(
                ".max_ttl_seconds: must be 1 to {MAX_TTL_SECONDS} (a week)"
            ));
        }
        if r.fetch_timeout_ms == 0 {
            return Err(".fetch_timeout_ms: must be at least 1".into());
        }
        if r.max_bytes == 0 {
            return Err(".max_bytes: must be at least 1".into());
        }
        Ok(Self {
            allowed_hosts: r
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            min_ttl_seconds: r.min_ttl_seconds,
            max_ttl_seconds: r.max_ttl_seconds,
            fetch_timeout_ms: r.fetch_timeout_ms,
            max_bytes: r.max_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn provider(status_list: &str) -> String {
        format!(
            "providers:\n  - name: dev\n    algorithms: [HS256]\n    keys:\n      - secret_env: X\n    status_list:\n{status_list}"
        )
    }

    #[test]
    fn off_by_default_and_defaults_when_on() {
        let c = Config::parse("t.yaml", &provider("      allowed_hosts: [Lists.Test]\n")).unwrap();
        let s = c.providers[0].status_list.clone().unwrap();
        assert_eq!(s.allowed_hosts, ["lists.test"]);
        assert_eq!((s.min_ttl_seconds, s.max_ttl_seconds), (30, 3_600));
        assert_eq!((s.fetch_timeout_ms, s.max_bytes), (2_000, 4 * 1024 * 1024));
        let minimal = "providers:\n  - name: dev\n    algorithms: [HS256]\n    keys:\n      - secret_env: X\n";
        assert!(Config::parse("t.yaml", minimal).unwrap().providers[0]
            .status_list
            .is_none());
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        for (yaml, field) in [
            ("      allowed_hosts: []\n", "allowed_hosts"),
            ("      min_ttl_seconds: 5\n", "allowed_hosts"),
            ("      allowed_hosts: [\"https://h\"]\n", "allowed_hosts"),
            ("      allowed_hosts: [\"*.h\"]\n", "allowed_hosts"),
            (
                "      allowed_hosts: [h]\n      min_ttl_seconds: 9\n      max_ttl_seconds: 8\n",
                "min_ttl_seconds",
            ),
            (
                "      allowed_hosts: [h]\n      max_ttl_seconds: 0\n      min_ttl_seconds: 0\n",
                "max_ttl_seconds",
            ),
            (
                "      allowed_hosts: [h]\n      max_ttl_seconds: 604801\n",
                "max_ttl_seconds",
            ),
            (
                "      allowed_hosts: [h]\n      fetch_timeout_ms: 0\n",
                "fetch_timeout_ms",
            ),
            (
                "      allowed_hosts: [h]\n      max_bytes: 0\n",
                "max_bytes",
            ),
            ("      allowed_hosts: [h]\n      ttl: 5\n", "ttl"),
        ] {
            let e = Config::parse("t.yaml", &provider(yaml))
                .expect_err(yaml)
                .to_string();
            assert!(
                e.contains("status_list") && e.contains(field),
                "{yaml}: {e}"
            );
        }
    }
}
