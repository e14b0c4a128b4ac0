//! JWT verification (docs/spec.md §2 step 3): providers, keys, and the claims revocation needs.

pub mod dpop;
pub mod fetch;
pub mod jwks;
pub mod keys;
mod kid_budget;
mod logout;
pub mod mint;
pub mod status_token;
mod verify;

pub use logout::{LogoutError, LogoutToken};
pub use verify::Signed;
pub(crate) use verify::{numeric_date_ms, Jws};

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::config::{ClaimNames, Config, Remote};
pub use keys::KeyError;
use keys::KeySet;

/// One provider, ready to verify.
pub struct Provider {
    pub name: String,
    /// Subject namespace of its revocations (`subject_namespace`, default the name).
    pub namespace: String,
    pub issuer: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: i64,
    /// Accepted JOSE `typ` values, lower-case without `application/`; empty = any.
    pub token_types: Vec<String>,
    pub keys: KeySet,
    /// Keys fetched from a JWKS URL, when the provider has one.
    pub remote: Option<Arc<jwks::Remote>>,
    /// Back-channel logout settings (`backchannel_logout`), when its logout tokens are taken.
    pub backchannel: Option<crate::config::BackchannelLogout>,
    /// Token Status List checking, when the provider configures `status_list`.
    pub status: Option<crate::status::Lists>,
    /// Whether its tokens must be sender-constrained (`sender_constraint`).
    pub sender_constraint: crate::config::SenderConstraint,
}

/// Whether a provider can verify its tokens, and if not, why (readiness says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Ready,
    /// Remote keys were never loaded; the last fetch's failure, if one happened.
    Waiting(Option<fetch::FetchError>),
    /// Only static keys, and none of them suits the provider's algorithms.
    NoUsableKey,
}

impl Provider {
    /// Loads the provider-like section at config path `at`: its static keys now, its
    /// remote key set ready to be started.
    pub fn load(at: &str, p: &crate::config::Provider) -> Result<Self, KeyError> {
        let remote = p.keys.iter().find_map(|k| {
            let source = match (k.remote()?, &p.issuer) {
                (Remote::Uri(uri), _) => jwks::Source::Uri(uri.clone()),
                (Remote::Discovery, Some(issuer)) => jwks::Source::Discovery {
                    issuer: issuer.clone(),
                },
                // The configuration refuses discovery without an issuer.
                (Remote::Discovery, None) => return None,
            };
            Some(Arc::new(jwks::Remote::new(
                &p.name,
                source,
                p.jwks.clone(),
                p.algorithms.clone(),
            )))
        });
        let keys = KeySet::load_at(at, p)?;
        if remote.is_none() && !fetch::usable(&keys.verify, &p.algorithms) {
            tracing::error!(
                provider = %p.name,
                algorithms = %fetch::names(&p.algorithms),
                key_families = %fetch::families(&keys.verify),
                "provider has no key usable with its algorithms: its tokens cannot be verified and readiness stays 503"
            );
        }
        Ok(Provider {
            name: p.name.clone(),
            namespace: p.namespace().to_string(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            algorithms: p.algorithms.clone(),
            leeway: i64::try_from(p.leeway_seconds).unwrap_or(i64::MAX),
            token_types: p.token_types.iter().map(|t| media_type(t)).collect(),
            keys,
            remote,
            backchannel: p.backchannel_logout.clone(),
            status: p
                .status_list
                .clone()
                .map(|s| crate::status::Lists::new(&p.name, s)),
            sender_constraint: p.sender_constraint,
        })
    }

    /// Whether verification can start: a usable static key and no remote set, or remote
    /// keys fetched once (a remote set is only ever installed with a usable key in it).
    pub fn key_state(&self) -> KeyState {
        match &self.remote {
            Some(r) if r.loaded() => KeyState::Ready,
            Some(r) => KeyState::Waiting(r.last_error()),
            None if fetch::usable(&self.keys.verify, &self.algorithms) => KeyState::Ready,
            None => KeyState::NoUsableKey,
        }
    }

    pub fn ready(&self) -> bool {
        self.key_state() == KeyState::Ready
    }

    /// True while the provider's remote keys were never loaded: a token it cannot match
    /// to a key is then not known to be bad, only not checkable yet.
    fn awaiting_keys(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| !r.loaded())
    }
}

/// The claims of a verified token that the rest of tokengate reads, plus the whole
/// payload for forwarding. Shared (`Arc`) so that a cache can hand it out cheaply.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// Index of the provider that verified the token.
    pub provider: usize,
    pub jti: Option<String>,
    pub user: Option<String>,
    pub tenant: Option<String>,
    pub family: Option<String>,
    pub user_version: Option<u64>,
    pub tenant_version: Option<u64>,
    /// `iat` in unix milliseconds (fractional seconds are kept).
    pub iat_ms: Option<i64>,
    /// `exp` in unix seconds.
    pub exp: i64,
    /// The revocation identifiers, qualified by the provider's namespace once here so
    /// that checking a token seen before builds nothing. The raw ids above stay for
    /// forwarding and for the audit actor.
    pub scoped: Scoped,
    pub payload: Map<String, Value>,
    /// The payload segment exactly as in the token (for `forward.payload_header`).
    pub payload_b64: String,
}

/// A verified token's provider and its revocation identifiers as `{namespace}:{id}`
/// (see [`crate::revocation::scope`]): a revocation by one issuer's token can then
/// only reach identifiers of that issuer's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scoped {
    /// The name of the provider that verified the token: admin rights are granted per
    /// provider, never by a scope that any trusted issuer could mint.
    pub provider: String,
    pub namespace: String,
    pub jti: Option<String>,
    pub user: Option<String>,
    pub tenant: Option<String>,
    pub family: Option<String>,
    /// Set by [`Scoped::with_session`].
    pub session: Option<String>,
}

impl Scoped {
    /// Adds the token's session (`sid`), qualified like the other identifiers.
    pub fn with_session(mut self, session: Option<&str>) -> Self {
        self.session = session.map(|id| crate::revocation::scope::scoped(&self.namespace, id));
        self
    }

    /// Qualifies the raw identifiers with `namespace`.
    pub fn new(
        provider: &str,
        namespace: &str,
        jti: Option<&str>,
        user: Option<&str>,
        tenant: Option<&str>,
        family: Option<&str>,
    ) -> Self {
        let scope = |id: Option<&str>| id.map(|id| crate::revocation::scope::scoped(namespace, id));
        Scoped {
            provider: provider.to_string(),
            namespace: namespace.to_string(),
            jti: scope(jti),
            user: scope(user),
            tenant: scope(tenant),
            family: scope(family),
            session: None,
        }
    }
}

impl Claims {
    /// Scopes granted: the space-separated `scope` claim and the `scp` array (or string).
    pub fn has_scope(&self, wanted: &str) -> bool {
        let in_value = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.split(' ').any(|s| s == wanted),
            Some(Value::Array(a)) => a.iter().any(|s| s.as_str() == Some(wanted)),
            _ => false,
        };
        in_value(self.payload.get("scope")) || in_value(self.payload.get("scp"))
    }

    /// A claim by dotted path (`realm_access.roles`); a claim whose own name contains
    /// dots is found first.
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        if let Some(v) = self.payload.get(path) {
            return Some(v);
        }
        let mut parts = path.split('.');
        let mut v = self.payload.get(parts.next()?)?;
        for part in parts {
            v = v.as_object()?.get(part)?;
        }
        Some(v)
    }

    /// Whether the claim at `path` is `wanted`, contains it (array), or lists it
    /// (space-separated string). Numbers and booleans compare by their text.
    pub fn has_value(&self, path: &str, wanted: &str) -> bool {
        let eq = |v: &Value| match v {
            Value::String(s) => s == wanted,
            Value::Number(n) => n.to_string() == wanted,
            Value::Bool(b) => b.to_string() == wanted,
            _ => false,
        };
        match self.lookup(path) {
            Some(Value::Array(items)) => items.iter().any(eq),
            Some(Value::String(s)) => s == wanted || s.split(' ').any(|p| p == wanted),
            Some(v) => eq(v),
            None => false,
        }
    }

    /// A claim (dotted path) rendered as a header value: strings as they are, numbers
    /// and booleans printed, arrays of those joined by commas; objects and nulls are not
    /// forwarded.
    pub fn header_value(&self, claim: &str) -> Option<String> {
        fn scalar(v: &Value) -> Option<String> {
            match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        }
        match self.lookup(claim)? {
            Value::Array(items) => {
                let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                parts.map(|p| p.join(","))
            }
            v => scalar(v),
        }
    }
}

/// A `typ` as RFC 7515 §4.1.9 compares it: case-insensitive, `application/` optional.
pub fn media_type(typ: &str) -> String {
    let t = typ.trim().to_ascii_lowercase();
    match t.strip_prefix("application/") {
        Some(rest) if !rest.contains('/') => rest.to_string(),
        _ => t,
    }
}

/// All providers, the size limit and the claim names: everything verification needs.
pub struct Verifier {
    pub providers: Vec<Provider>,
    max_bytes: usize,
    require_jti: bool,
    claims: ClaimNames,
    /// How DPoP proofs are judged (`dpop`); `None`: the `DPoP` scheme is not recognised.
    pub dpop: Option<dpop::Settings>,
}

impl Verifier {
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        let mut providers = Vec::with_capacity(config.providers.len());
        for (i, p) in config.providers.iter().enumerate() {
            providers.push(Provider::load(&format!("providers[{i}]"), p)?);
        }
        Ok(Self {
            providers,
            max_bytes: config.tokens.max_bytes,
            require_jti: config.tokens.require_jti,
            claims: config.tokens.claims.clone(),
            dpop: match &config.dpop {
                Some(d) => Some(dpop_settings(d)?),
                None => None,
            },
        })
    }

    /// Names of providers that use a shipped development key.
    pub fn development_providers(&self) -> impl Iterator<Item = &str> {
        self.providers
            .iter()
            .filter(|p| p.keys.development)
            .map(|p| p.name.as_str())
    }

    pub fn provider_name(&self, index: usize) -> &str {
        self.providers.get(index).map_or("", |p| p.name.as_str())
    }

    /// After `unknown_key`: lets the token's provider re-fetch its JWKS (budgeted per
    /// kid and globally) and says whether it is worth verifying again. Static keys never
    /// change.
    pub async fn refresh_for_unknown_kid(&self, token: &str) -> bool {
        let Some(index) = self.provider_of(token) else {
            return false;
        };
        match &self.providers[index].remote {
            Some(remote) => {
                let kid = verify::header_kid(token);
                remote.refresh_for_unknown_kid(kid.as_deref()).await
            }
            None => false,
        }
    }

    /// Whether every provider has keys (readiness).
    pub fn ready(&self) -> bool {
        self.providers.iter().all(Provider::ready)
    }

    /// Providers whose tokens cannot be verified yet (readiness).
    pub fn waiting(&self) -> Vec<&str> {
        self.providers
            .iter()
            .filter(|p| !p.ready())
            .map(|p| p.name.as_str())
            .collect()
    }

    /// Each provider that is not ready, with why, for the readiness body: the last fetch
    /// failure's text (URL without credentials), or the missing usable key.
    pub fn key_problems(&self) -> Vec<(&str, String)> {
        self.providers
            .iter()
            .filter_map(|p| {
                let why = match p.key_state() {
                    KeyState::Ready => return None,
                    KeyState::Waiting(Some(e)) => e.to_string(),
                    KeyState::Waiting(None) => "waiting for the first JWKS fetch".to_string(),
                    KeyState::NoUsableKey => format!(
                        "no_usable_key: no configured key is usable with the provider's algorithms [{}] (keys: {})",
                        fetch::names(&p.algorithms),
                        fetch::families(&p.keys.verify)
                    ),
                };
                Some((p.name.as_str(), why))
            })
            .collect()
    }

    /// Starts the background JWKS refreshers; `observe` records each fetch's outcome.
    pub fn start(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
        observe: jwks::FetchObserver,
    ) {
        for remote in self.providers.iter().filter_map(|p| p.remote.as_ref()) {
            remote.set_observer(observe.clone());
            remote.spawn(shutdown.clone());
        }
    }
}

/// The `dpop` section, its nonce secret read (at least 32 bytes, like an HMAC key).
fn dpop_settings(d: &crate::config::Dpop) -> Result<dpop::Settings, KeyError> {
    let field = |s: &crate::secret::Secret| format!("dpop.nonce.{}", s.field("secret"));
    if let Some(n) = &d.nonce {
        let bytes = n.secret.read().map_err(|e| KeyError {
            field: field(&n.secret),
            message: e.to_string(),
        })?;
        if bytes.len() < 32 {
            return Err(KeyError {
                field: field(&n.secret),
                message: "the nonce secret must be at least 32 bytes".into(),
            });
        }
    }
    dpop::Settings::from_config(d).map_err(|e| KeyError {
        field: "dpop.nonce".into(),
        message: e.to_string(),
    })
}

/// Current unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub type SharedClaims = Arc<Claims>;
