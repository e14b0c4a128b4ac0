//! OIDC Back-Channel Logout 1.0 logout tokens (issue 16): validated exactly as the
//! spec's §2.6 says, before anything is revoked.
//!
//! A logout token is a JWT signed with the issuer's keys, like its access tokens, so the
//! signature steps are the verifier's; what differs is every claim rule. An access token
//! of the same issuer must never pass as a logout token (it has no `events` member, and
//! its `typ` is not `logout+jwt`), nor an ID token (it may carry `nonce`).

use serde_json::{Map, Value};

use super::{Signed, Verifier};
use crate::reason::Reason;

/// The back-channel logout event member (§2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A logout token that passed every check: what it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// Index of the provider that issued it.
    pub provider: usize,
    pub jti: String,
    pub sub: Option<String>,
    pub sid: Option<String>,
    /// How long its `jti` must be remembered against replay (seconds).
    pub replay_window: u64,
}

/// Why a logout token was refused. `Invalid` is the spec's 400; the message is fixed
/// text, never a value from the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogoutError {
    #[error("{0}")]
    Invalid(&'static str),
    /// The issuer's keys are not loaded yet: not the token's fault (503).
    #[error("the issuer's keys are not loaded yet")]
    KeysUnavailable,
}

impl Verifier {
    /// §2.6: signature with the issuer's keys, `typ`, `iss`, `aud`, `iat`, `exp`, `jti`,
    /// `events`, `sub` and/or `sid`, no `nonce`. Replay (`jti` seen before) is the
    /// caller's, across replicas, through the store.
    pub fn verify_logout_token(&self, token: &str, now: i64) -> Result<LogoutToken, LogoutError> {
        use LogoutError::Invalid;
        let Signed {
            provider: index,
            typ,
            payload,
        } = self.verify_signature(token).map_err(|r| match r {
            Reason::KeysUnavailable => LogoutError::KeysUnavailable,
            Reason::TokenTooLarge => Invalid("the logout token is too large"),
            Reason::DisallowedAlgorithm => Invalid("the logout token's algorithm is not accepted"),
            Reason::UnknownKey | Reason::BadSignature => {
                Invalid("the logout token's signature does not verify with the issuer's keys")
            }
            _ => Invalid("the logout token is not a well-formed signed JWT of a known issuer"),
        })?;
        let provider = &self.providers[index];
        let Some(settings) = &provider.backchannel else {
            return Err(Invalid(
                "back-channel logout is not enabled for this issuer",
            ));
        };
        // Explicit typing (§2.4, RFC 8725 §3.11): when a type is given it must be this
        // one; an access token's `at+jwt` or an ID token's `JWT` is not a logout token.
        if typ.as_deref().is_some_and(|t| t != "logout+jwt") {
            return Err(Invalid("the token's typ is not logout+jwt"));
        }
        let string = |name: &str| payload.get(name).and_then(Value::as_str);
        if provider
            .issuer
            .as_deref()
            .is_none_or(|i| string("iss") != Some(i))
        {
            return Err(Invalid("iss is not the provider's issuer"));
        }
        if !audience_contains(&payload, &settings.client_id) {
            return Err(Invalid("aud does not name this client"));
        }
        let leeway = provider.leeway;
        let max_age = i64::try_from(settings.max_age_seconds).unwrap_or(i64::MAX);
        let iat = date(&payload, "iat").ok_or(Invalid("iat is missing or not a number"))?;
        if iat > now.saturating_add(leeway) {
            return Err(Invalid("iat is in the future"));
        }
        if iat < now.saturating_sub(max_age).saturating_sub(leeway) {
            return Err(Invalid(
                "iat is older than backchannel_logout.max_age_seconds",
            ));
        }
        let exp = date(&payload, "exp").ok_or(Invalid("exp is missing or not a number"))?;
        if now > exp.saturating_add(leeway) {
            return Err(Invalid("the logout token has expired"));
        }
        let jti = string("jti")
            .filter(|j| !j.is_empty())
            .ok_or(Invalid("jti is missing"))?;
        match payload.get("events").and_then(Value::as_object) {
            Some(events) if events.get(EVENT).is_some_and(Value::is_object) => {}
            _ => return Err(Invalid("events has no back-channel logout member")),
        }
        if payload.contains_key("nonce") {
            return Err(Invalid("a logout token must not contain nonce"));
        }
        let id = |name: &str| -> Result<Option<String>, LogoutError> {
            match payload.get(name) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(Invalid("sub and sid must be non-empty strings")),
            }
        };
        let (sub, sid) = (id("sub")?, id("sid")?);
        if sub.is_none() && sid.is_none() {
            return Err(Invalid("neither sub nor sid is present"));
        }
        // Remembered while a copy could still pass the iat check above.
        let replay_window = settings
            .max_age_seconds
            .saturating_add(2 * provider.leeway.unsigned_abs());
        Ok(LogoutToken {
            provider: index,
            jti: jti.to_string(),
            sub,
            sid,
            replay_window,
        })
    }
}

fn audience_contains(payload: &Map<String, Value>, client_id: &str) -> bool {
    match payload.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    }
}

/// A NumericDate in whole seconds (fractions dropped); `None` when absent or not a number.
fn date(payload: &Map<String, Value>, name: &str) -> Option<i64> {
    let v = payload.get(name)?;
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}
