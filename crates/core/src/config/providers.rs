//! `providers`: who issues tokens and with which keys they are verified.

use std::path::PathBuf;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::secret::Secret;

/// One identity provider: who issues tokens and with which keys they are verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    /// Expected `iss`; checked when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Accepted `aud` values; when non-empty the token's `aud` must contain one of them.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Algorithm allow-list. `none` cannot be named.
    pub algorithms: Vec<Algorithm>,
    #[serde(default = "Provider::default_leeway")]
    pub leeway_seconds: u64,
    pub keys: Vec<KeySource>,
    /// How remote keys (`jwks_uri`, `oidc_discovery`) are refreshed.
    #[serde(default)]
    pub jwks: JwksSettings,
    /// Accepted values of the JOSE header's `typ` (compared case-insensitively, an
    /// `application/` prefix ignored, as RFC 7515 §4.1.9 says); empty = any. For an OIDC
    /// provider, `[at+jwt]` (RFC 9068) keeps ID tokens and refresh tokens out.
    #[serde(default)]
    pub token_types: Vec<String>,
    /// Whose users and tokens this provider's revocations reach (issue 13): providers
    /// with the same namespace share revocations, others never touch each other's.
    /// Defaults to the provider's `name`.
    #[serde(default)]
    pub subject_namespace: Option<String>,
    /// OIDC Back-Channel Logout 1.0 from this issuer (issue 16); absent: its logout
    /// tokens are refused.
    #[serde(default)]
    pub backchannel_logout: Option<BackchannelLogout>,
    /// Token Status List checking (`status.status_list` claims); off when absent.
    #[serde(default)]
    pub status_list: Option<super::StatusListSettings>,
    /// Whether this provider's tokens must be sender-constrained (DPoP `cnf.jkt`, mTLS
    /// `cnf.x5t#S256`); a route may ask for more, never less.
    #[serde(default)]
    pub sender_constraint: super::SenderConstraint,
}

/// What this relying party is to the provider for back-channel logout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackchannelLogout {
    /// Our client id at the provider: a logout token's `aud` must contain it.
    pub client_id: String,
    /// How old (by `iat`) a logout token may be; also how long its `jti` is remembered
    /// against replay. 1..86400, default 300.
    #[serde(
        default = "BackchannelLogout::default_max_age",
        deserialize_with = "super::timeout_seconds"
    )]
    pub max_age_seconds: u64,
}

impl BackchannelLogout {
    fn default_max_age() -> u64 {
        300
    }
}

impl Provider {
    fn default_leeway() -> u64 {
        30
    }

    /// The subject namespace in force: the configured one, else the provider's name.
    pub fn namespace(&self) -> &str {
        self.subject_namespace.as_deref().unwrap_or(&self.name)
    }

    /// Whether some key of this provider is fetched (JWKS URI or OIDC discovery).
    pub fn has_remote_keys(&self) -> bool {
        self.keys.iter().any(|k| k.remote().is_some())
    }
}

/// How remote key sets are refreshed.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, try_from = "RawJwksSettings")]
pub struct JwksSettings {
    /// Refresh interval when the response has no `Cache-Control: max-age`.
    pub refresh_seconds: u64,
    /// Bounds applied to `max-age`.
    pub min_refresh_seconds: u64,
    pub max_refresh_seconds: u64,
    /// Per `kid`: one token naming an unknown `kid` may cause an early fetch, and that
    /// `kid` causes no other for this many seconds (a fetch that found it absent is
    /// trusted that long), so one stale or garbage `kid` repeated costs one fetch.
    pub unknown_kid_min_interval_seconds: u64,
    /// Global: early fetches that may happen back to back, whatever the kids. With the
    /// refill below this caps what a flood of distinct garbage kids costs the identity
    /// provider, while a genuine new `kid` never waits longer than one refill. At least 1.
    pub unknown_kid_burst: u32,
    /// Global: one more early fetch becomes available every this many milliseconds
    /// (at least 1).
    pub unknown_kid_refill_ms: u64,
    /// How many recent kids are remembered for the per-kid limit (bounded memory; when
    /// full the oldest is forgotten, and the global budget still applies to it). At
    /// least 1.
    pub unknown_kid_tracked: usize,
    /// Timeout of one fetch.
    pub timeout_ms: u64,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            refresh_seconds: 300,
            min_refresh_seconds: 30,
            max_refresh_seconds: 86_400,
            unknown_kid_min_interval_seconds: 30,
            unknown_kid_burst: 3,
            unknown_kid_refill_ms: 1_000,
            unknown_kid_tracked: 4_096,
            timeout_ms: 2_000,
        }
    }
}

/// [`JwksSettings`] as written, before the budget's counts are checked.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawJwksSettings {
    refresh_seconds: u64,
    min_refresh_seconds: u64,
    max_refresh_seconds: u64,
    unknown_kid_min_interval_seconds: u64,
    unknown_kid_burst: u32,
    unknown_kid_refill_ms: u64,
    unknown_kid_tracked: usize,
    timeout_ms: u64,
}

impl Default for RawJwksSettings {
    fn default() -> Self {
        let d = JwksSettings::default();
        Self {
            refresh_seconds: d.refresh_seconds,
            min_refresh_seconds: d.min_refresh_seconds,
            max_refresh_seconds: d.max_refresh_seconds,
            unknown_kid_min_interval_seconds: d.unknown_kid_min_interval_seconds,
            unknown_kid_burst: d.unknown_kid_burst,
            unknown_kid_refill_ms: d.unknown_kid_refill_ms,
            unknown_kid_tracked: d.unknown_kid_tracked,
            timeout_ms: d.timeout_ms,
        }
    }
}

impl TryFrom<RawJwksSettings> for JwksSettings {
    type Error = String;

    fn try_from(r: RawJwksSettings) -> Result<Self, String> {
        if r.unknown_kid_burst == 0 {
            return Err(".unknown_kid_burst: must be at least 1".into());
        }
        if r.unknown_kid_refill_ms == 0 {
            return Err(".unknown_kid_refill_ms: must be at least 1".into());
        }
        if r.unknown_kid_tracked == 0 {
            return Err(".unknown_kid_tracked: must be at least 1".into());
        }
        Ok(Self {
            refresh_seconds: r.refresh_seconds,
            min_refresh_seconds: r.min_refresh_seconds,
            max_refresh_seconds: r.max_refresh_seconds,
            unknown_kid_min_interval_seconds: r.unknown_kid_min_interval_seconds,
            unknown_kid_burst: r.unknown_kid_burst,
            unknown_kid_refill_ms: r.unknown_kid_refill_ms,
            unknown_kid_tracked: r.unknown_kid_tracked,
            timeout_ms: r.timeout_ms,
        })
    }
}

/// Where one key (or one set of keys) comes from, with the `kid` it answers to.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawKeySource")]
pub struct KeySource {
    /// Key id matched against the token header's `kid`.
    pub kid: Option<String>,
    pub key: Key,
}

/// The one place a key comes from: the YAML sets exactly one of `public_key_file`,
/// `secret_env`, `secret_file`, `jwks_file`, `jwks_uri`, `oidc_discovery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// PEM public key (RSA, EC P-256/P-384 or Ed25519), with the matching private key
    /// when `tokengate token mint` should sign with it.
    Pem {
        public: PathBuf,
        private: Option<PathBuf>,
    },
    /// An HMAC secret (one trailing newline of a file is ignored).
    Hmac(Secret),
    /// Local JWKS document (RFC 7517).
    JwksFile(PathBuf),
    /// Fetched at start and refreshed (see the provider's `jwks`).
    Remote(Remote),
}

/// Where a remote key set is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// `jwks_uri`: an http(s) URL.
    Uri(String),
    /// `oidc_discovery: true`: `{issuer}/.well-known/openid-configuration` names it.
    Discovery,
}

impl KeySource {
    /// The remote key set this source names, if it is one.
    pub fn remote(&self) -> Option<&Remote> {
        match &self.key {
            Key::Remote(r) => Some(r),
            _ => None,
        }
    }
}

/// [`KeySource`] as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeySource {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    public_key_file: Option<PathBuf>,
    #[serde(default)]
    private_key_file: Option<PathBuf>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<PathBuf>,
    #[serde(default)]
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    oidc_discovery: bool,
}

impl TryFrom<RawKeySource> for KeySource {
    type Error = String;

    fn try_from(r: RawKeySource) -> Result<Self, String> {
        let set = [
            r.public_key_file.is_some(),
            r.secret_env.is_some(),
            r.secret_file.is_some(),
            r.jwks_file.is_some(),
            r.jwks_uri.is_some(),
            r.oidc_discovery,
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if set != 1 {
            return Err(
                "set exactly one of public_key_file, secret_env, secret_file, \
                        jwks_file, jwks_uri, oidc_discovery"
                    .into(),
            );
        }
        if r.private_key_file.is_some() && r.public_key_file.is_none() {
            return Err(".private_key_file: needs public_key_file beside it".into());
        }
        let key = if let Some(public) = r.public_key_file {
            Key::Pem {
                public,
                private: r.private_key_file,
            }
        } else if let Some(secret) = Secret::from_pair(r.secret_env, r.secret_file) {
            Key::Hmac(secret)
        } else if let Some(path) = r.jwks_file {
            Key::JwksFile(path)
        } else if let Some(uri) = r.jwks_uri {
            if !(uri.starts_with("https://") || uri.starts_with("http://")) {
                return Err(".jwks_uri: must be an http(s) URL".into());
            }
            Key::Remote(Remote::Uri(uri))
        } else {
            Key::Remote(Remote::Discovery)
        };
        Ok(KeySource { kid: r.kid, key })
    }
}
