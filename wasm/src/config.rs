//! The plugin configuration (a JSON object in Envoy's `configuration`). One module
//! serves two roles: `filter` (the HTTP filter on each worker) and `sync` (the
//! singleton that keeps the set current from tokengate). Unknown members are refused,
//! as tokengate refuses unknown YAML fields: a misspelt option must not silently fall
//! back to a default.

use crate::json::{self, Malformed, Val};
use crate::judge::{Names, Rules};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Filter,
    Sync,
}

/// What the filter does while the set is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStale {
    /// Leave the request to the ext_authz filter behind (the marker header is removed).
    Fallback,
    /// 503 `store_unavailable`.
    Deny,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub role: Role,
    pub rules: Rules,
    /// The header jwt_authn writes the verified payload to (`forward_payload_header`).
    pub payload_header: String,
    pub realm: String,
    pub retry_after_seconds: u64,
    pub on_stale: OnStale,
    /// Set on requests the fast path judged while fresh (ext_authz skips them), and
    /// removed from every other request, so that a client cannot set it. Empty: no
    /// marker (no header write per request), only with `on_stale: deny` and no ext_authz.
    pub fast_path_header: String,
    /// The set counts as stale when no sync succeeded for this long.
    pub stale_after_ms: u64,
    /// How often each worker looks for a new set.
    pub tick_ms: u64,
    /// Sync: the Envoy cluster of tokengate's HTTP listener, its authority, the feed's
    /// path, the bearer token of `revocation_feed.token_*`, and the long-poll wait.
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub token: String,
    pub poll_wait_ms: u64,
    /// Filter role only: each worker polls the feed itself instead of reading a
    /// singleton's set (where no bootstrap singleton can be configured, e.g. Istio's
    /// WasmPlugin). One long poll per worker.
    pub self_sync: bool,
    /// Filter role: slots of each worker's verdict memo (crate::memo), 0 to judge every
    /// request in full. At most slots × 2 KiB of payloads per worker.
    pub verdict_cache_slots: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            role: Role::Filter,
            rules: Rules {
                names: Names::default(),
                namespaces: Vec::new(),
                default_namespace: None,
                require_jti: true,
                leeway_seconds: 30,
            },
            payload_header: "x-jwt-payload".into(),
            realm: "tokengate".into(),
            retry_after_seconds: 1,
            on_stale: OnStale::Fallback,
            fast_path_header: "x-tokengate-fast-path".into(),
            stale_after_ms: 15_000,
            tick_ms: 50,
            cluster: "tokengate_http".into(),
            authority: "tokengate".into(),
            path: "/v1/revocations/changes".into(),
            token: String::new(),
            poll_wait_ms: 5_000,
            self_sync: false,
            verdict_cache_slots: 256,
        }
    }
}

/// Why a configuration was refused (logged by Envoy; the plugin then fails to load).
pub type Error = String;

fn string(k: &str, v: Val<'_>) -> Result<String, Error> {
    let mut b = Vec::new();
    match v.str(&mut b) {
        Ok(Some(s)) => String::from_utf8(s.to_vec()).map_err(|_| format!("{k}: not UTF-8")),
        _ => Err(format!("{k}: must be a string")),
    }
}

fn number(k: &str, v: Val<'_>) -> Result<u64, Error> {
    match v {
        Val::Num(n) => json::uint(n).ok_or_else(|| format!("{k}: must be a non-negative integer")),
        _ => Err(format!("{k}: must be a number")),
    }
}

fn boolean(k: &str, v: Val<'_>) -> Result<bool, Error> {
    match v {
        Val::Bool(b) => Ok(b),
        _ => Err(format!("{k}: must be true or false")),
    }
}

impl Config {
    pub fn parse(text: &[u8]) -> Result<Config, Error> {
        let mut c = Config::default();
        let mut err: Option<Error> = None;
        let mut kb = Vec::new();
        let res = json::members(text, &mut kb, |k, v| {
            let key = String::from_utf8_lossy(k).into_owned();
            let r = c.set(&key, v);
            if let Err(e) = r {
                err = Some(e);
                return Err(Malformed);
            }
            Ok(())
        });
        if let Some(e) = err {
            return Err(e);
        }
        res.map_err(|_| "configuration: not a JSON object".to_string())?;
        c.check()?;
        Ok(c)
    }

    fn set(&mut self, k: &str, v: Val<'_>) -> Result<(), Error> {
        let n = &mut self.rules.names;
        match k {
            "role" => {
                self.role = match string(k, v)?.as_str() {
                    "filter" => Role::Filter,
                    "sync" => Role::Sync,
                    _ => return Err("role: filter | sync".into()),
                }
            }
            "claims" => {
                let raw = match v {
                    Val::Nested(raw) => raw,
                    _ => return Err("claims: must be an object".into()),
                };
                let mut kb = Vec::new();
                let mut err = None;
                let _ = json::members(raw, &mut kb, |ck, cv| {
                    let ck = String::from_utf8_lossy(ck).into_owned();
                    let name = match string(&format!("claims.{ck}"), cv) {
                        Ok(s) => s.into_bytes(),
                        Err(e) => {
                            err = Some(e);
                            return Err(Malformed);
                        }
                    };
                    match ck.as_str() {
                        "user" => n.user = name,
                        "tenant" => n.tenant = name,
                        "user_version" => n.user_version = name,
                        "tenant_version" => n.tenant_version = name,
                        "family" => n.family = name,
                        "session" => n.session = name,
                        _ => {
                            err = Some(format!("claims.{ck}: unknown claim"));
                            return Err(Malformed);
                        }
                    }
                    Ok(())
                });
                if let Some(e) = err {
                    return Err(e);
                }
            }
            "namespaces" => {
                let raw = match v {
                    Val::Nested(raw) => raw,
                    _ => return Err("namespaces: must be an object".into()),
                };
                let mut kb = Vec::new();
                let mut out = Vec::new();
                let mut bad = false;
                let _ = json::members(raw, &mut kb, |iss, ns| {
                    let mut b = Vec::new();
                    match ns.str(&mut b) {
                        Ok(Some(ns)) if valid_namespace(ns) => {
                            out.push((iss.to_vec(), ns.to_vec()));
                            Ok(())
                        }
                        _ => {
                            bad = true;
                            Err(Malformed)
                        }
                    }
                });
                if bad {
                    return Err(
                        "namespaces: each value must be a namespace ([A-Za-z0-9._-], 1 to 64)"
                            .into(),
                    );
                }
                self.rules.namespaces = out;
            }
            "default_namespace" => {
                let ns = string(k, v)?;
                if !valid_namespace(ns.as_bytes()) {
                    return Err("default_namespace: [A-Za-z0-9._-], 1 to 64".into());
                }
                self.rules.default_namespace = Some(ns.into_bytes());
            }
            "require_jti" => self.rules.require_jti = boolean(k, v)?,
            "leeway_seconds" => {
                self.rules.leeway_seconds = i64::try_from(number(k, v)?)
                    .map_err(|_| "leeway_seconds: too large".to_string())?
            }
            "payload_header" => self.payload_header = string(k, v)?.to_ascii_lowercase(),
            "realm" => self.realm = string(k, v)?,
            "retry_after_seconds" => self.retry_after_seconds = number(k, v)?,
            "on_stale" => {
                self.on_stale = match string(k, v)?.as_str() {
                    "fallback" => OnStale::Fallback,
                    "deny" => OnStale::Deny,
                    _ => return Err("on_stale: fallback | deny".into()),
                }
            }
            "fast_path_header" => self.fast_path_header = string(k, v)?.to_ascii_lowercase(),
            "stale_after_ms" => self.stale_after_ms = number(k, v)?,
            "tick_ms" => self.tick_ms = number(k, v)?,
            "cluster" => self.cluster = string(k, v)?,
            "authority" => self.authority = string(k, v)?,
            "path" => self.path = string(k, v)?,
            "token" => self.token = string(k, v)?,
            // The token from the VM's environment (Envoy's vm_config.environment_variables,
            // Istio's WasmPlugin vmConfig.env), so that it can come from a Secret.
            "token_env" => {
                let name = string(k, v)?;
                self.token = std::env::var(&name)
                    .map_err(|_| format!("token_env: {name} is not set in the VM's environment"))?;
            }
            "poll_wait_ms" => self.poll_wait_ms = number(k, v)?,
            "self_sync" => self.self_sync = boolean(k, v)?,
            "verdict_cache_slots" => self.verdict_cache_slots = number(k, v)?,
            _ => return Err(format!("{k}: unknown field")),
        }
        Ok(())
    }

    fn check(&self) -> Result<(), Error> {
        if self.tick_ms == 0 || self.tick_ms > 1_000 {
            return Err("tick_ms: 1 to 1000".into());
        }
        if self.role == Role::Sync || self.self_sync {
            if self.token.is_empty() {
                return Err("token: required for role sync and self_sync".into());
            }
            if self.poll_wait_ms == 0 || self.poll_wait_ms > 60_000 {
                return Err("poll_wait_ms: 1 to 60000".into());
            }
        }
        if self.role == Role::Filter {
            if self.verdict_cache_slots > 65_536 {
                return Err("verdict_cache_slots: 0 to 65536".into());
            }
            if self.rules.namespaces.is_empty() && self.rules.default_namespace.is_none() {
                return Err("namespaces: at least one issuer, or default_namespace".into());
            }
            if self.stale_after_ms < 1_000 {
                return Err("stale_after_ms: at least 1000".into());
            }
            if self.payload_header.is_empty() {
                return Err("payload_header: must not be empty".into());
            }
            // Without the marker ext_authz cannot tell judged requests from the others:
            // only valid where no ext_authz follows (on_stale deny).
            if self.fast_path_header.is_empty() && self.on_stale == OnStale::Fallback {
                return Err("fast_path_header: required with on_stale fallback".into());
            }
        }
        Ok(())
    }
}

fn valid_namespace(s: &[u8]) -> bool {
    (1..=64).contains(&s.len())
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_unknown_fields() {
        let c = Config::parse(br#"{"role":"filter","namespaces":{"https://a":"dev"},"claims":{"tenant":"org"},"on_stale":"deny"}"#).unwrap();
        assert_eq!(c.rules.names.tenant, b"org");
        assert_eq!(c.on_stale, OnStale::Deny);
        assert_eq!(
            c.rules.namespaces,
            vec![(b"https://a".to_vec(), b"dev".to_vec())]
        );
        for bad in [
            r#"{"namespaces":{"https://a":"dev"},"stale_afte_ms":1}"#,
            r#"{"role":"filter"}"#,
            r#"{"role":"sync"}"#,
            r#"{"namespaces":{"https://a":"a:b"}}"#,
            r#"{"namespaces":{"https://a":"dev"},"claims":{"usr":"x"}}"#,
            r#"{"namespaces":{"https://a":"dev"},"on_stale":"allow"}"#,
            r#"{"namespaces":{"https://a":"dev"},"fast_path_header":""}"#,
            r#"{"namespaces":{"https://a":"dev"},"verdict_cache_slots":65537}"#,
        ] {
            assert!(Config::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
