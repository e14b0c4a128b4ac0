//! The Shared Signals receiver's verification (RFC 8935 push delivery of Security Event
//! Tokens, OpenID SSF 1.0, CAEP 1.0; docs/spec.md §4). A SET is verified as strictly as
//! an access token (the same JWS rules and key loading, [`crate::jwt`]), then its events
//! are turned into revocations of the one provider namespace its transmitter may reach.
//! Nothing here writes: the caller revokes only once everything here passed, so a SET
//! with one bad event changes nothing.

mod events;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::config::{Config, Transmitter};
use crate::jwt::{self, KeyError};
use crate::reason::Reason;

pub use events::{Action, EventType};

/// An RFC 8935 §2.3 error (`err` and `description` of a 400), or a 503 when keys are
/// not loaded yet (the transmitter retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetError {
    InvalidRequest(&'static str),
    InvalidKey(&'static str),
    InvalidIssuer,
    InvalidAudience,
    AuthenticationFailed,
    AccessDenied(&'static str),
    /// Not an RFC 8935 code: the receiver cannot take the SET now (keys, store).
    Unavailable(&'static str),
}

impl SetError {
    pub const fn code(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(_) => "invalid_request",
            SetError::InvalidKey(_) => "invalid_key",
            SetError::InvalidIssuer => "invalid_issuer",
            SetError::InvalidAudience => "invalid_audience",
            SetError::AuthenticationFailed => "authentication_failed",
            SetError::AccessDenied(_) => "access_denied",
            SetError::Unavailable(_) => "temporarily_unavailable",
        }
    }

    pub const fn description(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(d)
            | SetError::InvalidKey(d)
            | SetError::AccessDenied(d)
            | SetError::Unavailable(d) => d,
            SetError::InvalidIssuer => "the SET's iss is not a configured transmitter",
            SetError::InvalidAudience => "the SET's aud does not name this receiver",
            SetError::AuthenticationFailed => "the SET's signature does not verify",
        }
    }
}

/// One configured transmitter, ready to verify.
struct Receiving {
    key: jwt::Provider,
    audience: String,
    /// Namespace of the provider its subjects belong to.
    namespace: String,
    /// The `iss` an `iss_sub` subject must carry: the provider's issuer, else the
    /// transmitter's.
    subject_issuer: String,
    config: Transmitter,
}

/// All transmitters and the `iat` window.
pub struct Receiver {
    transmitters: Vec<Receiving>,
    max_age: i64,
    max_future: i64,
    pub max_bytes: usize,
}

/// A SET that passed every check, with what it asks for.
#[derive(Debug)]
pub struct Verified {
    /// The transmitter (the audit actor).
    pub issuer: String,
    /// The replay guard's key (`ssf:{iss}#{jti}`), to be scoped by the namespace.
    pub replay_key: String,
    /// How long the `jti` must be remembered: until its `iat` is out of the window.
    pub replay_ttl_seconds: u64,
    /// Namespace of the provider whose users the actions name.
    pub namespace: String,
    pub actions: Vec<(EventType, Action)>,
}

impl Receiver {
    /// `None` when no transmitter is configured (the route then does not exist).
    pub fn from_config(config: &Config) -> Result<Option<Arc<Self>>, KeyError> {
        let ssf = &config.ssf;
        if ssf.transmitters.is_empty() {
            return Ok(None);
        }
        let mut transmitters = Vec::with_capacity(ssf.transmitters.len());
        for (i, t) in ssf.transmitters.iter().enumerate() {
            let key = jwt::Provider::load(&format!("ssf.transmitters[{i}]"), &t.as_provider())?;
            let provider = config.providers.iter().find(|p| p.name == t.provider);
            transmitters.push(Receiving {
                key,
                audience: t.audience.clone(),
                namespace: provider.map_or(t.provider.clone(), |p| p.namespace().to_string()),
                subject_issuer: provider
                    .and_then(|p| p.issuer.clone())
                    .unwrap_or_else(|| t.issuer.clone()),
                config: t.clone(),
            });
        }
        let secs = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(Some(Arc::new(Receiver {
            transmitters,
            max_age: secs(ssf.max_age_seconds),
            max_future: secs(ssf.max_future_seconds),
            max_bytes: ssf.max_bytes,
        })))
    }

    /// Starts the transmitters' JWKS refreshers.
    pub fn start(
        &self,
        shutdown: &tokio_util::sync::CancellationToken,
        observe: jwt::jwks::FetchObserver,
    ) {
        for remote in self
            .transmitters
            .iter()
            .filter_map(|t| t.key.remote.as_ref())
        {
            remote.set_observer(observe.clone());
            remote.spawn(shutdown.clone());
        }
    }

    /// Verifies a SET at unix time `now`; an unknown `kid` may re-fetch the
    /// transmitter's JWKS once (budgeted as a provider's).
    pub async fn verify(&self, set: &str, now: i64) -> Result<Verified, SetError> {
        match self.verify_now(set, now) {
            Err(SetError::InvalidKey(UNKNOWN_KID)) => {
                let refreshed = match self.transmitter_of(set).and_then(|t| t.key.remote.as_ref()) {
                    Some(remote) => {
                        let kid = jwt::Jws::parse(set)
                            .ok()
                            .and_then(|j| j.kid().map(String::from));
                        remote.refresh_for_unknown_kid(kid.as_deref()).await
                    }
                    None => false,
                };
                if refreshed {
                    self.verify_now(set, now)
                } else {
                    Err(SetError::InvalidKey(UNKNOWN_KID))
                }
            }
            other => other,
        }
    }

    fn transmitter_of(&self, set: &str) -> Option<&Receiving> {
        let jws = jwt::Jws::parse(set).ok()?;
        let iss = jws.payload.get("iss").and_then(Value::as_str)?;
        self.transmitters
            .iter()
            .find(|t| t.key.issuer.as_deref() == Some(iss))
    }

    fn verify_now(&self, set: &str, now: i64) -> Result<Verified, SetError> {
        let jws = jwt::Jws::parse(set).map_err(|r| match r {
            Reason::DisallowedAlgorithm => SetError::InvalidKey("the SET's alg is not accepted"),
            _ => SetError::InvalidRequest("not a signed JWT (compact JWS)"),
        })?;
        let iss = jws
            .payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(SetError::InvalidIssuer)?;
        let t = self
            .transmitters
            .iter()
            .find(|t| t.key.issuer.as_deref() == Some(iss))
            .ok_or(SetError::InvalidIssuer)?;
        if jws.typ().as_deref() != Some(SET_TYPE) {
            // RFC 8417 §2.3: explicit typing keeps an access, ID or logout token of the
            // same keys from passing as a security event.
            return Err(SetError::InvalidRequest(
                "the SET's typ is not secevent+jwt",
            ));
        }
        jws.check_signature(&t.key).map_err(|r| match r {
            Reason::KeysUnavailable => {
                SetError::Unavailable("the transmitter's keys are not loaded yet, retry later")
            }
            Reason::UnknownKey => SetError::InvalidKey(UNKNOWN_KID),
            Reason::DisallowedAlgorithm => {
                SetError::InvalidKey("the SET's alg is not accepted for this transmitter's keys")
            }
            Reason::Malformed => SetError::InvalidRequest("not a signed JWT (compact JWS)"),
            _ => SetError::AuthenticationFailed,
        })?;
        let payload = &jws.payload;
        if !audience_matches(payload.get("aud"), &t.audience) {
            return Err(SetError::InvalidAudience);
        }
        let iat = payload
            .get("iat")
            .ok_or(SetError::InvalidRequest("the SET has no iat"))
            .and_then(|v| {
                jwt::numeric_date_ms(v)
                    .map_err(|_| SetError::InvalidRequest("the SET's iat is not a NumericDate"))
            })?
            .div_euclid(1000);
        if iat > now.saturating_add(self.max_future) {
            return Err(SetError::InvalidRequest("the SET's iat is in the future"));
        }
        if iat < now.saturating_sub(self.max_age) {
            return Err(SetError::InvalidRequest("the SET's iat is too old"));
        }
        if let Some(exp) = payload.get("exp") {
            // RFC 8417 does not recommend exp, but one that is set is honoured.
            let exp = jwt::numeric_date_ms(exp)
                .map_err(|_| SetError::InvalidRequest("the SET's exp is not a NumericDate"))?;
            if exp.div_euclid(1000) < now {
                return Err(SetError::InvalidRequest("the SET has expired"));
            }
        }
        let jti = match payload.get("jti") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s,
            _ => return Err(SetError::InvalidRequest("the SET has no jti")),
        };
        let actions = events::actions(payload, &t.config, &t.subject_issuer)?;
        Ok(Verified {
            issuer: iss.to_string(),
            replay_key: format!("ssf:{iss}#{jti}"),
            replay_ttl_seconds: u64::try_from(
                iat.saturating_add(self.max_age)
                    .saturating_add(self.max_future)
                    .saturating_sub(now),
            )
            .unwrap_or(0)
            .max(1),
            namespace: t.namespace.clone(),
            actions,
        })
    }
}

/// The SET `typ` (RFC 8417 §2.3), as [`jwt::Jws::typ`] gives it.
const SET_TYPE: &str = "secevent+jwt";

const UNKNOWN_KID: &str = "no key of the transmitter matches the SET's kid";

fn audience_matches(aud: Option<&Value>, ours: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == ours,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(ours)),
        _ => false,
    }
}

/// A JSON object member as an object.
fn object<'a>(v: &'a Map<String, Value>, name: &str) -> Option<&'a Map<String, Value>> {
    v.get(name).and_then(Value::as_object)
}
