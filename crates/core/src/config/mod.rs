//! Typed configuration (docs/spec.md §6): parse, don't validate.
//!
//! The YAML file is parsed once at start into types that cannot hold an invalid state:
//! "exactly one of" choices (a key's source, a token's source, the store) are enums,
//! built from the fields as written by `try_from` raw types; bounded numbers are checked
//! as they are read; defaults live in one `Default` impl per section (container-level
//! `#[serde(default)]`). What remains after parsing is the few rules that span sections
//! (provider names unique, admin providers among them), checked in [`Config::parse`].
//!
//! Unknown fields are an error (`deny_unknown_fields` everywhere) because a misspelled
//! security setting that is silently ignored is worse than a refused start. Errors name
//! the file, the line and column when the parser knows them, and the dotted path of the
//! field (via `serde_path_to_error`).
//!
//! By concern: [`providers`] (issuers and keys), [`tokens`] (where tokens are found, the
//! claims revocation reads), [`revocation`] (store and cache), [`listeners`] (addresses,
//! connection limits, logging), [`tls`] (certificates per listener), [`policy`] (routes,
//! forwarding, responses, admin, OAuth), [`ssf`] (Shared Signals transmitters).

mod dpop;
mod feed;
mod listeners;
mod policy;
mod providers;
mod revocation;
mod ssf;
mod status_list;
mod telemetry;
mod tls;
mod tokens;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

pub use dpop::{asymmetric, Dpop, Nonce as DpopNonce, SenderConstraint};
pub use feed::RevocationFeed;
pub use listeners::{GrpcLimits, HttpLimits, Listen, Log, LogFormat, Server};
pub use policy::{
    AdminApi, ClientCertHeader, Csrf, Forward, HttpCheck, OAuth, OAuthClient, OriginalScheme,
    Responses, Route, RouteMatching, TrustedProxy,
};
pub use providers::{BackchannelLogout, JwksSettings, Key, KeySource, Provider, Remote};
pub use revocation::{
    Cache, LegacyKeys, OnStoreError, Redis, RedisTls, Revocation, Store, StoreKind,
};
pub use ssf::{Events, Ssf, SubjectAs, Subjects, Transmitter};
pub use status_list::StatusListSettings;
pub use telemetry::{OtlpProtocol, Tracing};
pub use tls::{ClientName, ListenerTls, Tls, TlsVersion};
pub use tokens::{ClaimNames, TokenSource, Tokens};

/// A configuration problem, always naming the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{location}{field}: {message}")]
    Parse {
        file: String,
        /// `line:column: ` when known, else empty.
        location: String,
        field: String,
        message: String,
    },
    #[error("{file}: {field}: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    #[serde(deserialize_with = "non_empty_providers")]
    pub providers: Vec<Provider>,
    #[serde(default)]
    pub tokens: Tokens,
    #[serde(default)]
    pub revocation: Revocation,
    /// The revocation feed of the in-proxy fast path (issue 20).
    #[serde(default)]
    pub revocation_feed: RevocationFeed,
    #[serde(default)]
    pub forward: Forward,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub route_matching: RouteMatching,
    #[serde(default)]
    pub http_check: HttpCheck,
    #[serde(default)]
    pub csrf: Csrf,
    #[serde(default)]
    pub responses: Responses,
    #[serde(default)]
    pub admin_api: AdminApi,
    #[serde(default)]
    pub oauth: OAuth,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub ssf: Ssf,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub tracing: Tracing,
    /// DPoP proofs (RFC 9449); absent: the `DPoP` scheme is not recognised.
    #[serde(default)]
    pub dpop: Option<Dpop>,
    /// The file this configuration was read from (for reloads and messages); set by
    /// [`Config::load`], never read from YAML. Key and secret paths in the file are
    /// relative to the working directory, as in every shipped example.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Config {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut config = Self::parse(&file, &text)?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses YAML text; `file` is only used in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let location = inner
                .location()
                .map(|l| format!("{}:{}: ", l.line(), l.column()))
                .unwrap_or_default();
            let (field, message) = field_and_message(&path, &inner.to_string());
            ConfigError::Parse {
                file: file.to_string(),
                location,
                field,
                message,
            }
        })?;
        config
            .check_across_sections()
            .map_err(|(field, message)| ConfigError::Invalid {
                file: file.to_string(),
                field,
                message: message.to_string(),
            })?;
        Ok(config)
    }

    /// The rules that span sections, which no one section's type can hold. Returns
    /// (field path, message).
    fn check_across_sections(&self) -> Result<(), (String, &'static str)> {
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            if p.name.trim().is_empty() {
                return Err((format!("{at}.name"), "must not be empty"));
            }
            if !names.insert(p.name.as_str()) {
                return Err((format!("{at}.name"), "duplicate provider name"));
            }
            if !crate::revocation::scope::valid_namespace(p.namespace()) {
                let message = if p.subject_namespace.is_some() {
                    "must be 1 to 64 of A-Z a-z 0-9 . _ -"
                } else {
                    "required: the provider's name is not a valid namespace (1 to 64 of A-Z a-z 0-9 . _ -)"
                };
                return Err((format!("{at}.subject_namespace"), message));
            }
            if p.algorithms.is_empty() {
                return Err((
                    format!("{at}.algorithms"),
                    "at least one algorithm is required",
                ));
            }
            if p.keys.is_empty() {
                return Err((format!("{at}.keys"), "at least one key is required"));
            }
            if p.backchannel_logout.is_some() && p.issuer.is_none() {
                return Err((
                    format!("{at}.backchannel_logout"),
                    "needs the provider's issuer (a logout token's iss is checked against it)",
                ));
            }
            if p.backchannel_logout
                .as_ref()
                .is_some_and(|b| b.client_id.trim().is_empty())
            {
                return Err((
                    format!("{at}.backchannel_logout.client_id"),
                    "must not be empty",
                ));
            }
            for (k, key) in p.keys.iter().enumerate() {
                if key.remote() == Some(&Remote::Discovery) && p.issuer.is_none() {
                    return Err((
                        format!("{at}.keys[{k}].oidc_discovery"),
                        "needs the provider's issuer",
                    ));
                }
            }
        }
        if self.providers.len() > 1 && self.providers.iter().any(|p| p.issuer.is_none()) {
            return Err((
                "providers".into(),
                "with several providers every provider needs an issuer (tokens are routed by `iss`)",
            ));
        }
        let mut issuers = std::collections::HashSet::new();
        for (i, t) in self.ssf.transmitters.iter().enumerate() {
            let at = format!("ssf.transmitters[{i}]");
            if !names.contains(t.provider.as_str()) {
                return Err((
                    format!("{at}.provider"),
                    "not the name of a configured provider",
                ));
            }
            if t.issuer.is_empty() || !issuers.insert(t.issuer.as_str()) {
                return Err((format!("{at}.issuer"), "empty or duplicate issuer"));
            }
            if t.audience.is_empty() {
                return Err((format!("{at}.audience"), "must not be empty"));
            }
            if t.algorithms.is_empty() {
                return Err((
                    format!("{at}.algorithms"),
                    "at least one algorithm is required",
                ));
            }
            if t.keys.is_empty() {
                return Err((format!("{at}.keys"), "at least one key is required"));
            }
            for (k, key) in t.keys.iter().enumerate() {
                if key.remote() == Some(&Remote::Discovery) {
                    return Err((
                        format!("{at}.keys[{k}].oidc_discovery"),
                        "not for a transmitter: name its jwks_uri",
                    ));
                }
            }
        }
        for (i, name) in self.admin_api.providers.iter().enumerate() {
            if !names.contains(name.as_str()) {
                return Err((
                    format!("admin_api.providers[{i}]"),
                    "not the name of a configured provider",
                ));
            }
        }
        Ok(())
    }
}

fn non_empty_providers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Provider>, D::Error> {
    let providers = Vec::<Provider>::deserialize(d)?;
    if providers.is_empty() {
        return Err(serde::de::Error::custom(
            "at least one provider is required",
        ));
    }
    Ok(providers)
}

/// Longest accepted timeout: beyond a day a "timeout" is no bound at all, and a bound
/// keeps deadline arithmetic far from overflow.
const MAX_TIMEOUT_SECONDS: u64 = 86_400;
/// Most connections one listener may be configured to hold (far above any file
/// descriptor limit; it also keeps the count within a semaphore's range).
const MAX_CONNECTIONS: usize = 1_000_000;

/// A number read within `min..=max`.
fn within<'de, D, T>(d: D, min: T, max: T) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + Display,
{
    let v = T::deserialize(d)?;
    if v < min || v > max {
        return Err(serde::de::Error::custom(format!(
            "must be between {min} and {max}"
        )));
    }
    Ok(v)
}

fn timeout_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    within(d, 1, MAX_TIMEOUT_SECONDS)
}

fn optional_timeout_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<u64>::deserialize(d)? {
        Some(v) if !(1..=MAX_TIMEOUT_SECONDS).contains(&v) => Err(serde::de::Error::custom(
            format!("must be between 1 and {MAX_TIMEOUT_SECONDS}"),
        )),
        v => Ok(v),
    }
}

fn connections<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    within(d, 1, MAX_CONNECTIONS)
}

/// A count of at least 1 (a type error stays a type error, with its location).
fn positive<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialEq + Default,
{
    let v = T::deserialize(d)?;
    if v == T::default() {
        return Err(serde::de::Error::custom("must be greater than 0"));
    }
    Ok(v)
}

fn positive_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    positive(d)
}

fn positive_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    positive(d)
}

fn positive_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    positive(d)
}

/// The field and the message of a parse error. serde_yaml_ng puts its own copy of the
/// path in front of its messages and " at line X column Y" after them; both are printed
/// already, so they go. A section's own check names a field below it by starting its
/// message with `.field: ` or `[i]: `, which joins the path.
fn field_and_message(path: &str, message: &str) -> (String, String) {
    let mut message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    if let Some(rest) = message
        .strip_prefix(path)
        .and_then(|r| r.strip_prefix(": "))
    {
        message = rest;
    } else if let Some((prefix, rest)) = message.split_once(": ") {
        // serde_yaml_ng's path spelled differently from serde_path_to_error's
        if !prefix.is_empty()
            && !prefix.starts_with(['.', '['])
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c))
        {
            message = rest;
        }
    }
    let mut field = if path == "." {
        "(top)".to_string()
    } else {
        path.to_string()
    };
    if message.starts_with(['.', '[']) {
        if let Some((sub, rest)) = message.split_once(": ") {
            if field == "(top)" {
                field = sub.trim_start_matches('.').to_string();
            } else {
                field.push_str(sub);
            }
            message = rest;
        }
    }
    (field, message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "providers:\n  - name: dev\n    algorithms: [HS256]\n    keys:\n      - secret_env: X\n";

    #[test]
    fn defaults_follow_the_spec() {
        let c = Config::parse("t.yaml", MINIMAL).unwrap();
        assert_eq!(c.listen.grpc.port(), 9001);
        assert_eq!(c.listen.http.port(), 8080);
        assert_eq!(c.listen.admin.port(), 9090);
        assert_eq!(c.revocation.store, Store::Memory);
        assert_eq!(c.revocation.on_store_error, OnStoreError::Deny);
        assert_eq!(c.revocation.cache.ttl_seconds, 5);
        assert_eq!(c.revocation.store_timeout_ms, 50);
        assert_eq!(c.tokens.max_bytes, 8192);
        assert!(c.tokens.require_jti);
        assert_eq!(c.providers[0].leeway_seconds, 30);
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = format!("{MINIMAL}revocation:\n  stor: redis\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.starts_with("t.yaml:7:"), "{err}");
        assert!(err.contains("revocation"), "{err}");
        assert!(err.contains("unknown field `stor`"), "{err}");
        assert_eq!(
            err.matches("revocation").count(),
            1,
            "path printed once: {err}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let text = format!("{MINIMAL}tokens:\n  max_bytes: lots\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("tokens.max_bytes"), "{err}");
        assert!(err.contains("t.yaml:7:"), "{err}");
    }

    #[test]
    fn alg_none_cannot_be_allowed() {
        let text = MINIMAL.replace("[HS256]", "[none]");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("providers[0].algorithms"), "{err}");
    }

    #[test]
    fn key_needs_exactly_one_source() {
        let text = MINIMAL.replace("- secret_env: X", "- kid: a");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("providers[0].keys[0]"), "{err}");
    }

    #[test]
    fn route_prefixes_must_be_canonical_and_hosts_bare() {
        for (route, field) in [
            ("path_prefix: /a/../b", "routes[0].path_prefix"),
            ("path_prefix: /%61dmin", "routes[0].path_prefix"),
            ("path_prefix: /admin;x", "routes[0].path_prefix"),
            ("path_prefix: //admin", "routes[0].path_prefix"),
            (
                "{path_prefix: /a, host: \"api.example.com:443\"}",
                "routes[0].host",
            ),
            (
                "{path_prefix: /a, host: api.example.com.}",
                "routes[0].host",
            ),
        ] {
            let text = format!("{MINIMAL}routes:\n  - {route}\n");
            let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.contains(field), "{route}: {err}");
        }
        let ok =
            format!("{MINIMAL}routes:\n  - path_prefix: /public/\n    host: \"*.example.com\"\n");
        assert!(Config::parse("t.yaml", &ok).is_ok());
    }

    #[test]
    fn trusted_proxy_and_csrf_origins_are_typed() {
        let text = format!("{MINIMAL}http_check:\n  proxy: apache\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("http_check.proxy"), "{err}");
        let text = format!("{MINIMAL}http_check:\n  proxy: ingress-nginx\n");
        assert_eq!(
            Config::parse("t.yaml", &text).unwrap().http_check.proxy,
            TrustedProxy::IngressNginx
        );
        let text = format!("{MINIMAL}csrf:\n  allowed_origins: [\"https://a.example/x\"]\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("csrf.allowed_origins[0]"), "{err}");
    }

    /// A transmitter reaches only a configured provider, is named once, and says which
    /// keys sign its SETs; every refusal names the field.
    #[test]
    fn ssf_transmitters_are_checked_and_errors_name_the_field() {
        let tx = |extra: &str| {
            format!(
                "{MINIMAL}ssf:\n  transmitters:\n    - issuer: https://tx\n      \
                 audience: https://rx\n      provider: dev\n      algorithms: [ES256]\n      \
                 keys:\n        - jwks_uri: https://tx/jwks\n{extra}"
            )
        };
        let c = Config::parse("t.yaml", &tx("")).unwrap();
        let t = &c.ssf.transmitters[0];
        assert_eq!(
            t.subjects.email,
            SubjectAs::Refuse,
            "email is refused by default"
        );
        assert!(!t.events.credential_change && !t.events.assurance_level_change);
        for (text, field) in [
            (tx("").replace("provider: dev", "provider: nope"), "ssf.transmitters[0].provider"),
            (tx("      subjects: {email: yes}\n"), "ssf.transmitters[0].subjects.email"),
            (tx("      events: {token_claims_change: true}\n"), "ssf.transmitters[0].events"),
            (
                tx("").replace("jwks_uri: https://tx/jwks", "oidc_discovery: true"),
                "ssf.transmitters[0].keys[0].oidc_discovery",
            ),
            (tx("").replace("algorithms: [ES256]", "algorithms: []"), "ssf.transmitters[0].algorithms"),
            (tx("    - issuer: https://tx\n      audience: a\n      provider: dev\n      algorithms: [ES256]\n      keys: [{jwks_uri: https://tx/j}]\n"), "ssf.transmitters[1].issuer"),
        ] {
            let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn subject_namespace_defaults_to_the_name_and_is_validated() {
        let c = Config::parse("t.yaml", MINIMAL).unwrap();
        assert_eq!(c.providers[0].namespace(), "dev");
        let text = MINIMAL.replace(
            "    algorithms",
            "    subject_namespace: idp\n    algorithms",
        );
        let c = Config::parse("t.yaml", &text).unwrap();
        assert_eq!(c.providers[0].namespace(), "idp");
        for bad in ["a:b", "\"\"", "\"a b\""] {
            let text = MINIMAL.replace(
                "    algorithms",
                &format!("    subject_namespace: {bad}\n    algorithms"),
            );
            let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.contains("providers[0].subject_namespace"), "{err}");
        }
        // a name that cannot serve as a namespace needs an explicit one
        let text = MINIMAL.replace("name: dev", "name: \"dev:1\"");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("providers[0].subject_namespace"), "{err}");
    }

    #[test]
    fn admin_api_needs_its_providers_by_name() {
        let text = format!("{MINIMAL}admin_api:\n  enabled: true\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("admin_api.providers"), "{err}");
        let text = format!("{MINIMAL}admin_api:\n  enabled: true\n  providers: [dev, nope]\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("admin_api.providers[1]"), "{err}");
        let text = format!("{MINIMAL}admin_api:\n  enabled: true\n  providers: [dev]\n");
        assert!(Config::parse("t.yaml", &text).is_ok());
    }

    #[test]
    fn legacy_keys_are_read_unless_turned_off() {
        let c = Config::parse("t.yaml", MINIMAL).unwrap();
        assert_eq!(c.revocation.legacy_keys, LegacyKeys::Read);
        let text = format!("{MINIMAL}revocation:\n  legacy_keys: off\n");
        let c = Config::parse("t.yaml", &text).unwrap();
        assert_eq!(c.revocation.legacy_keys, LegacyKeys::Off);
        let text = format!("{MINIMAL}revocation:\n  legacy_keys: write\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("revocation.legacy_keys"), "{err}");
    }

    #[test]
    fn connection_limits_default_like_nginx() {
        let c = Config::parse("t.yaml", MINIMAL).unwrap();
        let h = c.server.http_limits;
        assert_eq!(h.header_timeout_seconds, 60);
        assert_eq!(h.body_timeout_seconds, 60);
        assert_eq!(h.request_timeout_seconds, 120);
        assert_eq!(h.idle_timeout_seconds, 75);
        assert_eq!(h.max_connections, 1024);
        let g = c.server.grpc_limits;
        assert_eq!(g.keepalive_interval_seconds, 60);
        assert_eq!(g.keepalive_timeout_seconds, 20);
        assert_eq!(
            g.max_connection_age_seconds, None,
            "Envoy's connections are not recycled"
        );
    }

    #[test]
    fn connection_limit_errors_name_the_field() {
        for (yaml, field) in [
            (
                "http_limits:\n    header_timeout_seconds: 0",
                "server.http_limits.header_timeout_seconds",
            ),
            (
                "http_limits:\n    body_timeout_seconds: 0",
                "server.http_limits.body_timeout_seconds",
            ),
            (
                "http_limits:\n    request_timeout_seconds: 86401",
                "server.http_limits.request_timeout_seconds",
            ),
            (
                "http_limits:\n    idle_timeout_seconds: 0",
                "server.http_limits.idle_timeout_seconds",
            ),
            (
                "http_limits:\n    max_connections: 0",
                "server.http_limits.max_connections",
            ),
            (
                "http_limits:\n    max_connections: 1000001",
                "server.http_limits.max_connections",
            ),
            (
                "grpc_limits:\n    handshake_timeout_seconds: 0",
                "server.grpc_limits.handshake_timeout_seconds",
            ),
            (
                "grpc_limits:\n    keepalive_interval_seconds: 0",
                "server.grpc_limits.keepalive_interval_seconds",
            ),
            (
                "grpc_limits:\n    keepalive_timeout_seconds: 0",
                "server.grpc_limits.keepalive_timeout_seconds",
            ),
            (
                "grpc_limits:\n    request_timeout_seconds: 0",
                "server.grpc_limits.request_timeout_seconds",
            ),
            (
                "grpc_limits:\n    max_connection_age_seconds: 0",
                "server.grpc_limits.max_connection_age_seconds",
            ),
            (
                "grpc_limits:\n    max_concurrent_streams: 0",
                "server.grpc_limits.max_concurrent_streams",
            ),
            (
                "grpc_limits:\n    max_pending_accept_reset_streams: 0",
                "server.grpc_limits.max_pending_accept_reset_streams",
            ),
            (
                "grpc_limits:\n    max_connections: 0",
                "server.grpc_limits.max_connections",
            ),
            ("http_limits:\n    header_timeout: 5", "server.http_limits"),
            (
                "http_limits:\n    max_connections: -1",
                "server.http_limits.max_connections",
            ),
            (
                "grpc_limits:\n    keepalive_interval_seconds: soon",
                "server.grpc_limits.keepalive_interval_seconds",
            ),
        ] {
            let text = format!("{MINIMAL}server:\n  {yaml}\n");
            let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        }
    }

    #[test]
    fn redis_store_needs_its_section() {
        let text = format!("{MINIMAL}revocation:\n  store: redis\n");
        let err = Config::parse("t.yaml", &text).unwrap_err().to_string();
        assert!(err.contains("revocation.redis"), "{err}");
    }
}
