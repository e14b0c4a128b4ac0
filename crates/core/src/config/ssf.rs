//! `ssf`: the Shared Signals receiver (RFC 8935 push, OpenID SSF 1.0, CAEP 1.0). Each
//! transmitter is written much like a provider (issuer, algorithms, keys in the same
//! form) because its Security Event Tokens are verified the same way; what it may do is
//! bounded by the one provider whose subject namespace its events reach.

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::{JwksSettings, KeySource, Provider};

/// The receiver: off (no route answers) while no transmitter is configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ssf {
    pub transmitters: Vec<Transmitter>,
    /// A SET whose `iat` is older than this is refused: the replay guard only has to
    /// remember `jti`s this long.
    pub max_age_seconds: u64,
    /// A SET whose `iat` is ahead of our clock by more than this is refused.
    pub max_future_seconds: u64,
    /// Largest accepted request body (the SET).
    pub max_bytes: usize,
}

impl Default for Ssf {
    fn default() -> Self {
        Ssf {
            transmitters: Vec::new(),
            max_age_seconds: 600,
            max_future_seconds: 30,
            max_bytes: 16_384,
        }
    }
}

/// One transmitter whose SETs are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transmitter {
    /// The SET's `iss`, exactly.
    pub issuer: String,
    /// Our receiver's `aud`, which the SET's `aud` must contain.
    pub audience: String,
    /// The provider whose users the events name: revocations land in its namespace.
    pub provider: String,
    /// Algorithm allow-list. `none` cannot be named.
    pub algorithms: Vec<Algorithm>,
    /// As a provider's `keys` (`jwks_uri`, `jwks_file`, `public_key_file`, ...), except
    /// `oidc_discovery`.
    pub keys: Vec<KeySource>,
    #[serde(default)]
    pub jwks: JwksSettings,
    #[serde(default)]
    pub subjects: Subjects,
    #[serde(default)]
    pub events: Events,
}

impl Transmitter {
    /// The transmitter as a provider, so that its keys load and verify as a provider's.
    pub fn as_provider(&self) -> Provider {
        Provider {
            name: format!("ssf:{}", self.issuer),
            issuer: Some(self.issuer.clone()),
            audiences: vec![self.audience.clone()],
            algorithms: self.algorithms.clone(),
            leeway_seconds: 0,
            keys: self.keys.clone(),
            jwks: self.jwks.clone(),
            token_types: vec!["secevent+jwt".into()],
            subject_namespace: None,
            backchannel_logout: None,
            status_list: None,
            sender_constraint: Default::default(),
        }
    }
}

/// Which RFC 9493 subject formats name a user of the provider, beyond `iss_sub` (always
/// accepted when its `iss` is the provider's issuer).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Subjects {
    pub opaque: SubjectAs,
    pub email: SubjectAs,
}

/// What an identifier of one format means for the provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectAs {
    /// Not a user id of the provider: such a subject is refused.
    #[default]
    Refuse,
    /// The identifier is the provider's user claim (`sub`) as its tokens carry it.
    User,
}

/// The opt-in events (`session-revoked` always applies).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Events {
    /// `credential-change` cuts the user off.
    pub credential_change: bool,
    /// `assurance-level-change` cuts the user off.
    pub assurance_level_change: bool,
}
