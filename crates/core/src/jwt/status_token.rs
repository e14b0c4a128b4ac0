//! Verification of a Status List Token (draft-ietf-oauth-status-list-20, "Status List Token in JWT Format") with the
//! keys of the provider whose token referenced it. The same key set and algorithm
//! allow-list as for access tokens, never keys named by the list itself: a list that
//! anyone could sign would let anyone mark tokens VALID again.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::verify::{numeric_date, Header, UniqueObject};
use super::Provider;

/// The media type a Status List Token's `typ` must carry.
pub const STATUS_LIST_TYP: &str = "statuslist+jwt";

/// Why a list failed when no key of the provider matched its header.
const NO_KEY: &str = "no key of the provider matches";

impl Provider {
    /// [`verify_status_list_token`](Self::verify_status_list_token), and when no key
    /// matched and the keys are remote, once more after a JWKS fetch under the same
    /// unknown-kid budget as access tokens: an issuer that signs its lists with a key
    /// rotated in since the last refresh is not an outage until the next one.
    pub async fn verify_status_list(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Map<String, Value>, &'static str> {
        match self.verify_status_list_token(token, now) {
            Err(NO_KEY) => match &self.remote {
                Some(remote) => {
                    let kid = super::verify::header_kid(token.trim());
                    if remote.refresh_for_unknown_kid(kid.as_deref()).await {
                        self.verify_status_list_token(token, now)
                    } else {
                        Err(NO_KEY)
                    }
                }
                None => Err(NO_KEY),
            },
            other => other,
        }
    }

    /// The verified payload of a Status List Token at unix time `now`, or why it is not
    /// one this provider issued (a fixed text for the log, never the token).
    pub fn verify_status_list_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Map<String, Value>, &'static str> {
        let mut parts = token.trim().splitn(3, '.');
        let (Some(h64), Some(p64), Some(s64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("not a compact JWS");
        };
        if h64.is_empty() || p64.is_empty() || s64.is_empty() || s64.contains('.') {
            return Err("not a compact JWS");
        }
        let header_bytes = URL_SAFE_NO_PAD
            .decode(h64)
            .map_err(|_| "header is not base64url")?;
        let header = Header::parse(&header_bytes).map_err(|_| "header is not a JSON object")?;
        if header.crit {
            return Err("header has crit");
        }
        if header.typ.as_deref().map(super::media_type).as_deref() != Some(STATUS_LIST_TYP) {
            return Err("typ is not statuslist+jwt");
        }
        let alg: Algorithm = header.alg.parse().map_err(|_| "algorithm not allowed")?;
        if !self.algorithms.contains(&alg) {
            return Err("algorithm not allowed");
        }
        let remote = self.remote.as_ref().map(|r| r.keys());
        let candidates = self
            .keys
            .verify
            .iter()
            .chain(remote.iter().flat_map(|k| k.iter()));
        let key =
            super::keys::select(candidates, header.kid.as_deref(), alg).map_err(|_| NO_KEY)?;
        let message = &token.trim()[..h64.len() + 1 + p64.len()];
        match jsonwebtoken::crypto::verify(s64, message.as_bytes(), &key.key, alg) {
            Ok(true) => {}
            _ => return Err("bad signature"),
        }
        let payload_bytes = URL_SAFE_NO_PAD
            .decode(p64)
            .map_err(|_| "payload is not base64url")?;
        let payload =
            UniqueObject::parse(&payload_bytes).map_err(|_| "payload is not a JSON object")?;
        if let Some(issuer) = &self.issuer {
            if payload.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err("iss is not the provider's issuer");
            }
        }
        if let Some(exp) = payload.get("exp") {
            let exp = numeric_date(exp).map_err(|_| "exp is not a NumericDate")?;
            if now > exp.saturating_add(self.leeway) {
                return Err("expired");
            }
        }
        let iat = payload.get("iat").ok_or("no iat")?;
        let iat = numeric_date(iat).map_err(|_| "iat is not a NumericDate")?;
        if iat > now.saturating_add(self.leeway) {
            return Err("iat in the future");
        }
        Ok(payload)
    }
}
