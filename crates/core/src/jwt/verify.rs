//! Token verification, in the order RFC 8725 asks for: size, shape, algorithm against the
//! allow-list, key by `kid` and family, signature, then the time and audience claims.
//!
//! The header is parsed here rather than by `jsonwebtoken::decode` so that `alg: none`
//! and unknown algorithms map to `disallowed_algorithm` instead of a parse error, so that
//! `crit` can be refused, and so that the payload is decoded exactly once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::KeyMiss;
use super::{Claims, Verifier};
use crate::reason::Reason;

/// The JOSE header fields tokengate reads. Everything else (`jku`, `x5u`, `jwk`, `x5c`)
/// is ignored on purpose: keys come only from configuration. Duplicate fields are a
/// parse error, hence `malformed`.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
    #[serde(default)]
    typ: Option<String>,
}

impl Verifier {
    /// Verifies `token` at unix time `now` and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, Reason> {
        if token.len() > self.max_bytes {
            return Err(Reason::TokenTooLarge);
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(Reason::Malformed);
        }
        let mut parts = token.splitn(3, '.');
        let (Some(h64), Some(p64), Some(s64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Reason::Malformed);
        };
        if h64.is_empty() || p64.is_empty() || s64.contains('.') {
            return Err(Reason::Malformed);
        }
        let header_bytes = URL_SAFE_NO_PAD.decode(h64).map_err(|_| Reason::Malformed)?;
        let header: Header =
            serde_json::from_slice(&header_bytes).map_err(|_| Reason::Malformed)?;
        if header.crit.is_some() {
            // No JWS extension is understood, so any critical one makes the token invalid
            // (RFC 7515 §4.1.11).
            return Err(Reason::Malformed);
        }
        let alg: Algorithm = header
            .alg
            .parse()
            .map_err(|_| Reason::DisallowedAlgorithm)?;
        if s64.is_empty() {
            // An unsigned token with a real algorithm (`alg: none` was refused above).
            return Err(Reason::Malformed);
        }
        let payload_bytes = URL_SAFE_NO_PAD.decode(p64).map_err(|_| Reason::Malformed)?;
        let UniqueClaims(payload) =
            serde_json::from_slice(&payload_bytes).map_err(|_| Reason::Malformed)?;

        let index = self.choose_provider(&payload)?;
        let provider = &self.providers[index];
        if !provider.algorithms.contains(&alg) {
            return Err(Reason::DisallowedAlgorithm);
        }
        if !provider.token_types.is_empty() {
            // RFC 8725 §3.11: an ID token or a refresh token of the same issuer, signed
            // with the same keys, must not pass as an access token.
            let typ = header.typ.as_deref().map(super::media_type);
            if !typ.is_some_and(|t| provider.token_types.contains(&t)) {
                return Err(Reason::WrongTokenType);
            }
        }
        let remote = provider.remote.as_ref().map(|r| r.keys());
        let candidates = provider
            .keys
            .verify
            .iter()
            .chain(remote.iter().flat_map(|k| k.iter()));
        let key = super::keys::select(candidates, header.kid.as_deref(), alg).map_err(|miss| {
            if provider.awaiting_keys() {
                // The key may well be in the set not loaded yet: not a bad token, an
                // outage (503), so that clients keep it and retry.
                return Reason::KeysUnavailable;
            }
            match miss {
                KeyMiss::Unknown => Reason::UnknownKey,
                KeyMiss::WrongFamily => Reason::DisallowedAlgorithm,
            }
        })?;
        let message = &token[..h64.len() + 1 + p64.len()];
        match jsonwebtoken::crypto::verify(s64, message.as_bytes(), &key.key, alg) {
            Ok(true) => {}
            Ok(false) => return Err(Reason::BadSignature),
            Err(e) => {
                return Err(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::Base64(_) => Reason::Malformed,
                    _ => Reason::BadSignature,
                })
            }
        }

        let exp = match payload.get("exp") {
            None | Some(Value::Null) => return Err(Reason::MissingClaim),
            Some(v) => numeric_date(v)?,
        };
        if now > exp.saturating_add(provider.leeway) {
            return Err(Reason::Expired);
        }
        if let Some(v) = payload.get("nbf") {
            if now.saturating_add(provider.leeway) < numeric_date(v)? {
                return Err(Reason::NotYetValid);
            }
        }
        if let Some(issuer) = &provider.issuer {
            if payload.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(Reason::WrongIssuer);
            }
        }
        if !provider.audiences.is_empty() {
            let matches = |a: &Value| {
                a.as_str()
                    .is_some_and(|a| provider.audiences.iter().any(|x| x == a))
            };
            let ok = match payload.get("aud") {
                Some(Value::Array(items)) => items.iter().any(matches),
                Some(v) => matches(v),
                None => false,
            };
            if !ok {
                return Err(Reason::WrongAudience);
            }
        }
        let iat_ms = match payload.get("iat") {
            None => None,
            Some(v) => Some(numeric_date_ms(v)?),
        };
        // A token "issued" in the future would sort after every logout-all cut-off and
        // escape it; no honest issuer's clock is ahead by more than the leeway.
        if iat_ms.is_some_and(|iat| iat.div_euclid(1000) > now.saturating_add(provider.leeway)) {
            return Err(Reason::NotYetValid);
        }
        let names = &self.claims;
        let jti = id_claim(&payload, "jti")?;
        if self.require_jti && jti.is_none() {
            return Err(Reason::MissingClaim);
        }
        let user = id_claim(&payload, &names.user)?;
        let tenant = id_claim(&payload, &names.tenant)?;
        let family = id_claim(&payload, &names.family)?;
        let scoped = super::Scoped::new(
            &provider.name,
            &provider.namespace,
            jti.as_deref(),
            user.as_deref(),
            tenant.as_deref(),
            family.as_deref(),
        );
        Ok(Claims {
            provider: index,
            jti,
            user,
            tenant,
            family,
            scoped,
            user_version: version_claim(&payload, &names.user_version)?,
            tenant_version: version_claim(&payload, &names.tenant_version)?,
            iat_ms,
            exp,
            payload,
            payload_b64: p64.to_string(),
        })
    }

    /// Which provider a token belongs to, judging by its unverified payload.
    pub(super) fn provider_of(&self, token: &str) -> Option<usize> {
        let p64 = token.split('.').nth(1)?;
        let payload: Map<String, Value> =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p64).ok()?).ok()?;
        self.choose_provider(&payload).ok()
    }

    /// With one provider, that one (its `iss` is still checked later when configured).
    /// With several, the one whose issuer is the token's unverified `iss`: the token is
    /// then verified with that provider's keys only.
    fn choose_provider(&self, payload: &Map<String, Value>) -> Result<usize, Reason> {
        if self.providers.len() == 1 {
            return Ok(0);
        }
        let iss = payload.get("iss").and_then(Value::as_str);
        self.providers
            .iter()
            .position(|p| p.issuer.as_deref().is_some_and(|i| Some(i) == iss))
            .ok_or(Reason::WrongIssuer)
    }
}

/// The unverified `kid` of a token's header, for the unknown-kid fetch budget.
pub(super) fn header_kid(token: &str) -> Option<String> {
    let h64 = token.split('.').next()?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h64).ok()?).ok()?;
    header.kid
}

/// A claims object that refuses duplicate names. RFC 7519 lets a parser take the last
/// of two `sub`s, but the service behind tokengate may take the first: a token that
/// means two things to two parsers is refused (`malformed`).
struct UniqueClaims(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueClaims {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Claims;
        impl<'de> serde::de::Visitor<'de> for Claims {
            type Value = UniqueClaims;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<UniqueClaims, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = a.next_entry::<String, Value>()? {
                    if map.contains_key(&k) {
                        return Err(serde::de::Error::custom("duplicate claim"));
                    }
                    map.insert(k, v);
                }
                Ok(UniqueClaims(map))
            }
        }
        d.deserialize_map(Claims)
    }
}

/// Largest accepted NumericDate: year 9999. Beyond it the token is nonsense, not "valid
/// for ever".
const MAX_DATE: f64 = 253_402_300_799.0;

fn numeric_date(v: &Value) -> Result<i64, Reason> {
    Ok(numeric_date_ms(v)?.div_euclid(1000))
}

fn numeric_date_ms(v: &Value) -> Result<i64, Reason> {
    let n = v.as_f64().ok_or(Reason::Malformed)?;
    if !(0.0..=MAX_DATE).contains(&n) {
        return Err(Reason::Malformed);
    }
    Ok((n * 1000.0).floor() as i64)
}

/// An identifier claim: a string, or an integer printed as one. Absent or null is
/// `None`; any other type is `malformed` (an id that cannot be compared cannot be revoked).
fn id_claim(payload: &Map<String, Value>, name: &str) -> Result<Option<String>, Reason> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err(Reason::Malformed),
    }
}

fn version_claim(payload: &Map<String, Value>, name: &str) -> Result<Option<u64>, Reason> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(Reason::Malformed),
    }
}
