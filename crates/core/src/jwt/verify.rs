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
pub(super) struct Header {
    pub(super) alg: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
    /// Whether `crit` is present at all (even `null`: it is then malformed, and no
    /// extension is understood anyway). Set by [`Header::parse`].
    #[serde(skip)]
    pub(super) crit: bool,
    #[serde(default)]
    pub(super) typ: Option<String>,
}

impl Header {
    /// The header of a token: a JSON object (RFC 7515 §4) without a name twice.
    pub(super) fn parse(bytes: &[u8]) -> Result<Header, Reason> {
        let mut object = UniqueObject::parse(bytes)?;
        let crit = object.remove("crit").is_some();
        let mut header =
            Header::deserialize(Value::Object(object)).map_err(|_| Reason::Malformed)?;
        header.crit = crit;
        Ok(header)
    }
}

/// A token whose signature one provider's keys verified; its claims not judged yet.
pub struct Signed {
    /// Index of the provider whose keys verified it.
    pub provider: usize,
    /// The header's `typ`, as a media type without `application/` (lowercase).
    pub typ: Option<String>,
    pub payload: Map<String, Value>,
}

impl Verifier {
    /// Verifies `token` at unix time `now` and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, Reason> {
        let Signed {
            provider: index,
            typ,
            payload,
        } = self.verify_signature(token)?;
        let provider = &self.providers[index];
        if !provider.token_types.is_empty() {
            // RFC 8725 §3.11: an ID token or a refresh token of the same issuer, signed
            // with the same keys, must not pass as an access token.
            if !typ.is_some_and(|t| provider.token_types.contains(&t)) {
                return Err(Reason::WrongTokenType);
            }
        }
        let p64 = token.split('.').nth(1).unwrap_or_default();
        self.access_claims(index, payload, p64, now)
    }

    /// Steps 1-5 of RFC 8725's order for any JWT of a configured provider (an access
    /// token, a logout token, a security event): size, shape, algorithm, key, signature.
    pub fn verify_signature(&self, token: &str) -> Result<Signed, Reason> {
        if token.len() > self.max_bytes {
            return Err(Reason::TokenTooLarge);
        }
        let jws = Jws::parse(token)?;
        let index = self.choose_provider(&jws.payload)?;
        let provider = &self.providers[index];
        jws.check_signature(provider)?;
        Ok(Signed {
            provider: index,
            typ: jws.typ(),
            payload: jws.payload,
        })
    }

    /// The access-token rules for a verified payload: time, issuer, audience, and the
    /// identifiers revocation reads.
    fn access_claims(
        &self,
        index: usize,
        payload: Map<String, Value>,
        p64: &str,
        now: i64,
    ) -> Result<Claims, Reason> {
        let provider = &self.providers[index];
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
        let session = id_claim(&payload, &names.session)?;
        let scoped = super::Scoped::new(
            &provider.name,
            &provider.namespace,
            jti.as_deref(),
            user.as_deref(),
            tenant.as_deref(),
            family.as_deref(),
        )
        .with_session(session.as_deref());
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

/// A compact JWS split, its header and payload parsed, its signature not yet checked:
/// the shape rules every signed token of tokengate obeys (access tokens, and the
/// Security Event Tokens of [`crate::ssf`]), in RFC 8725's order.
pub(crate) struct Jws<'t> {
    header: Header,
    alg: Algorithm,
    pub payload: Map<String, Value>,
    /// `header.payload`, the signed bytes.
    message: &'t str,
    s64: &'t str,
}

impl<'t> Jws<'t> {
    /// Shape, header (no `crit`, a known `alg`, `none` refused), a signature present,
    /// and a payload object without duplicate names.
    pub(crate) fn parse(token: &'t str) -> Result<Self, Reason> {
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
        let header = Header::parse(&header_bytes)?;
        if header.crit {
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
        let payload = UniqueObject::parse(&payload_bytes)?;
        Ok(Jws {
            header,
            alg,
            payload,
            message: &token[..h64.len() + 1 + p64.len()],
            s64,
        })
    }

    /// The `kid` the header names.
    pub(crate) fn kid(&self) -> Option<&str> {
        self.header.kid.as_deref()
    }

    /// The header's `typ` as a media type (lowercase, without `application/`): what it
    /// may be depends on the kind of token, which the caller knows.
    pub(crate) fn typ(&self) -> Option<String> {
        self.header.typ.as_deref().map(super::media_type)
    }

    /// The algorithm against `provider`'s allow-list, the key by `kid` and family, and
    /// the signature.
    pub(crate) fn check_signature(&self, provider: &super::Provider) -> Result<(), Reason> {
        let alg = self.alg;
        if !provider.algorithms.contains(&alg) {
            return Err(Reason::DisallowedAlgorithm);
        }
        let remote = provider.remote.as_ref().map(|r| r.keys());
        let candidates = provider
            .keys
            .verify
            .iter()
            .chain(remote.iter().flat_map(|k| k.iter()));
        let key =
            super::keys::select(candidates, self.header.kid.as_deref(), alg).map_err(|miss| {
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
        match jsonwebtoken::crypto::verify(self.s64, self.message.as_bytes(), &key.key, alg) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Reason::BadSignature),
            Err(e) => Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::Base64(_) => Reason::Malformed,
                _ => Reason::BadSignature,
            }),
        }
    }
}

/// The unverified `kid` of a token's header, for the unknown-kid fetch budget.
pub(super) fn header_kid(token: &str) -> Option<String> {
    let h64 = token.split('.').next()?;
    Header::parse(&URL_SAFE_NO_PAD.decode(h64).ok()?).ok()?.kid
}

/// A JSON object without a name twice at any depth ([`crate::json::parse_unique`]):
/// RFC 7519 lets a parser take the last of two `sub`s (or of two `roles` inside
/// `realm_access`), but the service behind tokengate may take the first, so a token that
/// means two things to two parsers is refused (`malformed`). Anything but an object (a
/// JSON array would pass a derived struct `Deserialize`, field by field) is refused too.
pub(super) struct UniqueObject;

impl UniqueObject {
    pub(super) fn parse(bytes: &[u8]) -> Result<Map<String, Value>, Reason> {
        match crate::json::parse_unique(bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Reason::Malformed),
        }
    }
}

/// Largest accepted NumericDate: year 9999. Beyond it the token is nonsense, not "valid
/// for ever".
const MAX_DATE: f64 = 253_402_300_799.0;

pub(super) fn numeric_date(v: &Value) -> Result<i64, Reason> {
    Ok(numeric_date_ms(v)?.div_euclid(1000))
}

pub(crate) fn numeric_date_ms(v: &Value) -> Result<i64, Reason> {
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

/// The verifier alone, at a chosen `now`: each refusal in RFC 8725's order reached
/// directly, with honest and forged tokens, rather than through a server. The keys are
/// the repository's fixtures: the configuration reads the public halves from
/// tests/fixtures/keys, the tests sign with the private halves compiled in.
#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::{json, Value};

    use super::*;
    use crate::config::Config;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/keys");
    const ISSUER: &str = "https://issuer.test";
    const OTHER_ISSUER: &str = "https://other.test";
    const NOW: i64 = 1_700_000_000;
    const LEEWAY: i64 = 5;

    const HS_SECRET: &[u8] = include_bytes!("../../../../tests/fixtures/keys/hs.secret");
    const RSA_PRIVATE: &[u8] = include_bytes!("../../../../tests/fixtures/keys/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../../../../tests/fixtures/keys/rsa-public.pem");
    const RSA2_PRIVATE: &[u8] = include_bytes!("../../../../tests/fixtures/keys/rsa2-private.pem");
    const EC256_PRIVATE: &[u8] =
        include_bytes!("../../../../tests/fixtures/keys/ec256-private.pem");
    const EC384_PRIVATE: &[u8] =
        include_bytes!("../../../../tests/fixtures/keys/ec384-private.pem");
    const ED_PRIVATE: &[u8] = include_bytes!("../../../../tests/fixtures/keys/ed25519-private.pem");

    /// The provider `test`: every family, each key under its own `kid`, leeway 5 s.
    fn provider_test(algorithms: &str, extra: &str) -> String {
        format!(
            "  - name: test\n    issuer: {ISSUER}\n    audiences: [api, other-api]\n    \
             algorithms: [{algorithms}]\n    leeway_seconds: {LEEWAY}\n{extra}    keys:\n      \
             - {{kid: hs, secret_file: {KEYS}/hs.secret}}\n      \
             - {{kid: rsa, public_key_file: {KEYS}/rsa-public.pem}}\n      \
             - {{kid: ec256, public_key_file: {KEYS}/ec256-public.pem}}\n      \
             - {{kid: ec384, public_key_file: {KEYS}/ec384-public.pem}}\n      \
             - {{kid: ed, public_key_file: {KEYS}/ed25519-public.pem}}\n"
        )
    }

    const ALL: &str = "HS256, RS256, PS256, ES256, ES384, EdDSA";

    fn verifier_of(yaml: &str) -> Verifier {
        let config = Config::parse("verify.rs tests", yaml).expect("test config parses");
        Verifier::from_config(&config).expect("fixture keys load")
    }

    fn verifier() -> Verifier {
        verifier_of(&format!("providers:\n{}", provider_test(ALL, "")))
    }

    /// The signing key of a fixture `kid` and the algorithm it signs with.
    fn key(kid: &str) -> (Algorithm, EncodingKey) {
        match kid {
            "hs" => (
                Algorithm::HS256,
                EncodingKey::from_secret(HS_SECRET.strip_suffix(b"\n").unwrap_or(HS_SECRET)),
            ),
            "rsa" => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            ),
            "ps" => (
                Algorithm::PS256,
                EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
            ),
            "rsa2" => (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap(),
            ),
            "ec256" => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
            ),
            "ec384" => (
                Algorithm::ES384,
                EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap(),
            ),
            "ed" => (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
            ),
            other => panic!("no fixture key {other}"),
        }
    }

    fn alg_name(alg: Algorithm) -> String {
        serde_json::to_value(alg)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Any header and payload bytes, signed for real.
    fn sign_raw(header: &[u8], payload: &[u8], alg: Algorithm, key: &EncodingKey) -> String {
        let message = format!("{}.{}", b64(header), b64(payload));
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
        format!("{message}.{sig}")
    }

    fn sign(header: &Value, payload: &Value, alg: Algorithm, key: &EncodingKey) -> String {
        sign_raw(
            header.to_string().as_bytes(),
            payload.to_string().as_bytes(),
            alg,
            key,
        )
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": "api", "sub": "alice", "tid": "acme",
            "iat": NOW, "exp": NOW + 600, "jti": "jti-1",
        })
    }

    /// `base` with `extra` merged in; `null` in `extra` removes the claim.
    fn with(mut base: Value, extra: Value) -> Value {
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base
    }

    /// An honest token signed with fixture key `kid` (its header names the configured
    /// `kid`: `ps` signs with the `rsa` pair), claims merged with `extra`.
    fn token(kid: &str, extra: Value) -> String {
        let (alg, key) = key(kid);
        let header_kid = if kid == "ps" { "rsa" } else { kid };
        sign(
            &json!({"alg": alg_name(alg), "kid": header_kid, "typ": "JWT"}),
            &with(claims(), extra),
            alg,
            &key,
        )
    }

    fn verify(token: &str) -> Result<Claims, Reason> {
        verifier().verify(token, NOW)
    }

    fn refused(token: &str) -> Reason {
        match verify(token) {
            Ok(c) => panic!("accepted: {:?}", c.payload),
            Err(r) => r,
        }
    }

    #[test]
    fn a_token_of_each_algorithm_family_is_accepted_with_its_claims() {
        for kid in ["hs", "rsa", "ps", "ec256", "ec384", "ed"] {
            let claims = verify(&token(kid, json!({})))
                .unwrap_or_else(|r| panic!("{kid}: refused as {r:?}"));
            assert_eq!(claims.provider, 0, "{kid}");
            assert_eq!(claims.user.as_deref(), Some("alice"), "{kid}");
            assert_eq!(claims.tenant.as_deref(), Some("acme"), "{kid}");
            assert_eq!(claims.jti.as_deref(), Some("jti-1"), "{kid}");
            assert_eq!(claims.exp, NOW + 600, "{kid}");
            assert_eq!(claims.iat_ms, Some(NOW * 1000), "{kid}");
            assert_eq!(claims.scoped.jti.as_deref(), Some("test:jti-1"), "{kid}");
        }
    }

    #[test]
    fn a_kid_naming_a_key_of_another_family_is_refused_whatever_signed_it() {
        // Every (algorithm, kid) pair across families: the token is really signed with
        // the algorithm's own key, only its kid points elsewhere.
        let signers = ["hs", "rsa", "ec256", "ed"];
        for signer in signers {
            for kid in signers.iter().filter(|k| **k != signer) {
                let (alg, key) = key(signer);
                let t = sign(
                    &json!({"alg": alg_name(alg), "kid": kid}),
                    &claims(),
                    alg,
                    &key,
                );
                assert_eq!(
                    refused(&t),
                    Reason::DisallowedAlgorithm,
                    "{signer} key, kid {kid}"
                );
            }
        }
    }

    #[test]
    fn the_rsa_public_key_as_an_hmac_secret_forges_nothing() {
        // The classic confusion: HS256 "signed" with the RSA public key (which everyone
        // has) as the secret.
        let secret = EncodingKey::from_secret(RSA_PUBLIC);
        for kid in [Some("rsa"), Some("hs"), None] {
            let mut header = json!({"alg": "HS256"});
            if let Some(kid) = kid {
                header["kid"] = kid.into();
            }
            let t = sign(&header, &claims(), Algorithm::HS256, &secret);
            let want = if kid == Some("rsa") {
                Reason::DisallowedAlgorithm
            } else {
                // the HMAC key is the real secret: the signature does not match it
                Reason::BadSignature
            };
            assert_eq!(refused(&t), want, "kid {kid:?}");
        }
    }

    #[test]
    fn an_algorithm_outside_the_allow_list_is_refused_even_with_a_fitting_key() {
        let v = verifier_of(&format!(
            "providers:\n  - name: test\n    issuer: {ISSUER}\n    audiences: [api]\n    \
             algorithms: [RS256]\n    keys:\n      \
             - {{kid: rsa, public_key_file: {KEYS}/rsa-public.pem}}\n"
        ));
        assert!(v.verify(&token("rsa", json!({})), NOW).is_ok());
        // PS256 with the very RSA key that verifies RS256: not on the list
        for kid in ["ps", "ec256", "ed", "hs"] {
            assert_eq!(
                v.verify(&token(kid, json!({})), NOW).err(),
                Some(Reason::DisallowedAlgorithm),
                "{kid}"
            );
        }
        // a name jsonwebtoken knows but no provider lists
        let (_, key) = key("hs");
        let hs512 = sign(
            &json!({"alg": "HS512", "kid": "hs"}),
            &claims(),
            Algorithm::HS512,
            &key,
        );
        assert_eq!(refused(&hs512), Reason::DisallowedAlgorithm);
    }

    #[test]
    fn alg_none_in_any_spelling_and_unknown_algorithms_are_refused() {
        let payload = b64(claims().to_string().as_bytes());
        for alg in [
            "none", "None", "NONE", "nOnE", "", "HS1", "RS256 ", "ES256K",
        ] {
            let header = b64(json!({"alg": alg, "kid": "hs"}).to_string().as_bytes());
            for sig in ["", "c2lnbmF0dXJl"] {
                assert_eq!(
                    refused(&format!("{header}.{payload}.{sig}")),
                    Reason::DisallowedAlgorithm,
                    "alg {alg:?}, signature {sig:?}"
                );
            }
        }
        // no `alg`, or not a string: not a JOSE header
        for header in [
            json!({"kid": "hs"}),
            json!({"alg": 256}),
            json!({"alg": null}),
        ] {
            let h = b64(header.to_string().as_bytes());
            assert_eq!(
                refused(&format!("{h}.{payload}.c2ln")),
                Reason::Malformed,
                "{header}"
            );
        }
    }

    #[test]
    fn a_real_algorithm_without_a_signature_is_malformed() {
        let t = token("rsa", json!({}));
        let unsigned = &t[..=t.rfind('.').unwrap()];
        assert_eq!(refused(unsigned), Reason::Malformed);
    }

    #[test]
    fn another_tokens_signature_or_an_edited_payload_is_a_bad_signature() {
        for kid in ["hs", "rsa", "ec256", "ed"] {
            let a = token(kid, json!({}));
            let b = token(kid, json!({"sub": "admin"}));
            let (a_msg, a_sig) = a.rsplit_once('.').unwrap();
            let (b_msg, _) = b.rsplit_once('.').unwrap();
            assert_eq!(
                refused(&format!("{b_msg}.{a_sig}")),
                Reason::BadSignature,
                "{kid}"
            );
            // a's header and signature around b's payload
            let a_head = a_msg.split('.').next().unwrap();
            let b_payload = b_msg.split('.').nth(1).unwrap();
            assert_eq!(
                refused(&format!("{a_head}.{b_payload}.{a_sig}")),
                Reason::BadSignature,
                "{kid}"
            );
        }
    }

    #[test]
    fn expiry_allows_exactly_the_leeway() {
        assert!(verify(&token("ec256", json!({"exp": NOW - LEEWAY}))).is_ok());
        assert_eq!(
            refused(&token("ec256", json!({"exp": NOW - LEEWAY - 1}))),
            Reason::Expired
        );
        assert_eq!(
            refused(&token("ec256", json!({"exp": null}))),
            Reason::MissingClaim
        );
        for bad in [
            json!("soon"),
            json!(-1),
            json!(253_402_300_800_i64),
            json!([NOW]),
        ] {
            assert_eq!(
                refused(&token("ec256", json!({"exp": bad.clone()}))),
                Reason::Malformed,
                "exp {bad}"
            );
        }
    }

    #[test]
    fn not_before_and_issued_at_allow_exactly_the_leeway_into_the_future() {
        assert!(verify(&token("ec256", json!({"nbf": NOW + LEEWAY}))).is_ok());
        assert_eq!(
            refused(&token("ec256", json!({"nbf": NOW + LEEWAY + 1}))),
            Reason::NotYetValid
        );
        assert_eq!(
            refused(&token("ec256", json!({"nbf": "now"}))),
            Reason::Malformed
        );
        // an `iat` in the future would sort after every logout-all cut-off
        assert!(verify(&token("ec256", json!({"iat": NOW + LEEWAY}))).is_ok());
        assert_eq!(
            refused(&token("ec256", json!({"iat": NOW + LEEWAY + 1}))),
            Reason::NotYetValid
        );
        // fractional seconds are kept, in milliseconds
        let c = verify(&token("ec256", json!({"iat": NOW as f64 + 0.25}))).unwrap();
        assert_eq!(c.iat_ms, Some(NOW * 1000 + 250));
    }

    #[test]
    fn the_issuer_must_be_the_configured_one_exactly() {
        for iss in [
            json!("https://issuer.test/"),
            json!("https://ISSUER.test"),
            json!("https://evil.test"),
            json!(["https://issuer.test"]),
            json!(1),
            Value::Null,
        ] {
            assert_eq!(
                refused(&token("ec256", json!({"iss": iss.clone()}))),
                Reason::WrongIssuer,
                "iss {iss}"
            );
        }
    }

    #[test]
    fn the_audience_must_name_a_configured_one() {
        for aud in [json!("other-api"), json!(["x", "api"]), json!(["api"])] {
            assert!(
                verify(&token("ec256", json!({"aud": aud.clone()}))).is_ok(),
                "aud {aud}"
            );
        }
        for aud in [
            json!("API"),
            json!("api "),
            json!([]),
            json!(["x"]),
            json!([["api"]]),
            json!(1),
            json!({"api": true}),
            Value::Null,
        ] {
            assert_eq!(
                refused(&token("ec256", json!({"aud": aud.clone()}))),
                Reason::WrongAudience,
                "aud {aud}"
            );
        }
    }

    #[test]
    fn an_unknown_kid_is_unknown_key_and_no_key_is_guessed() {
        let (alg, key) = key("ec256");
        let named = |kid: Value| {
            let mut header = json!({"alg": alg_name(alg)});
            if !kid.is_null() {
                header["kid"] = kid;
            }
            sign(&header, &claims(), alg, &key)
        };
        for kid in [
            json!("nope"),
            json!("EC256"),
            json!(""),
            json!("x".repeat(5000)),
        ] {
            assert_eq!(refused(&named(kid.clone())), Reason::UnknownKey, "{kid}");
        }
        // no kid: two EC keys (ec256, ec384) fit ES256's family, so none is picked
        assert_eq!(refused(&named(Value::Null)), Reason::UnknownKey);
        // no kid, one RSA key: that one
        let (alg, key) = super::tests::key("rsa");
        let t = sign(&json!({"alg": "RS256"}), &claims(), alg, &key);
        assert!(verify(&t).is_ok());
    }

    #[test]
    fn any_crit_header_is_refused() {
        let (alg, key) = key("ec256");
        for crit in [
            json!(["exp"]),
            json!([]),
            json!("b64"),
            json!({"b64": false}),
            json!(null),
        ] {
            let t = sign(
                &json!({"alg": "ES256", "kid": "ec256", "crit": crit.clone()}),
                &claims(),
                alg,
                &key,
            );
            assert_eq!(refused(&t), Reason::Malformed, "crit {crit}");
        }
    }

    #[test]
    fn a_name_given_twice_in_the_header_or_the_claims_is_malformed() {
        let (alg, key) = key("ec256");
        let header = br#"{"alg":"ES256","kid":"ec256"}"#;
        let claims = |inner: &str| {
            format!(
                r#"{{"iss":"{ISSUER}","aud":"api","exp":{},"jti":"j",{inner}}}"#,
                NOW + 600
            )
        };
        // the control: once is fine
        let once = sign_raw(header, claims(r#""sub":"alice""#).as_bytes(), alg, &key);
        assert!(verify(&once).is_ok());
        for (what, h, p) in [
            (
                "sub twice",
                header.to_vec(),
                claims(r#""sub":"alice","sub":"admin""#),
            ),
            (
                "exp twice",
                header.to_vec(),
                claims(&format!(r#""sub":"alice","exp":{}"#, NOW + 99_999)),
            ),
            (
                "alg twice",
                br#"{"alg":"ES256","alg":"none","kid":"ec256"}"#.to_vec(),
                claims(r#""sub":"alice""#),
            ),
            (
                "kid twice",
                br#"{"alg":"ES256","kid":"ec256","kid":"rsa"}"#.to_vec(),
                claims(r#""sub":"alice""#),
            ),
        ] {
            let t = sign_raw(&h, p.as_bytes(), alg, &key);
            assert_eq!(refused(&t), Reason::Malformed, "{what}");
        }
    }

    #[test]
    fn a_name_given_twice_inside_a_nested_claim_is_malformed() {
        let (alg, key) = key("ec256");
        let payload = format!(
            r#"{{"iss":"{ISSUER}","aud":"api","exp":{},"jti":"j","sub":"alice","realm_access":{{"roles":["user"],"roles":["admin"]}}}}"#,
            NOW + 600
        );
        let t = sign_raw(
            br#"{"alg":"ES256","kid":"ec256"}"#,
            payload.as_bytes(),
            alg,
            &key,
        );
        assert_eq!(verify(&t).err(), Some(Reason::Malformed));
    }

    #[test]
    fn a_token_over_the_size_limit_is_refused_before_anything_is_parsed() {
        let t = token("ec256", json!({}));
        let limit = |max: usize| {
            verifier_of(&format!(
                "providers:\n{}tokens:\n  max_bytes: {max}\n",
                provider_test(ALL, "")
            ))
        };
        assert!(limit(t.len()).verify(&t, NOW).is_ok(), "exactly the limit");
        assert_eq!(
            limit(t.len() - 1).verify(&t, NOW).err(),
            Some(Reason::TokenTooLarge)
        );
        // garbage over the limit is refused for its size, not parsed
        let junk = "!".repeat(t.len());
        assert_eq!(
            limit(t.len() - 1).verify(&junk, NOW).err(),
            Some(Reason::TokenTooLarge)
        );
        // the default limit (8 KiB) holds too
        let big = token("ec256", json!({"pad": "x".repeat(9000)}));
        assert_eq!(refused(&big), Reason::TokenTooLarge);
    }

    #[test]
    fn anything_not_three_base64url_parts_of_json_objects_is_malformed() {
        let t = token("ec256", json!({}));
        let (h, rest) = t.split_once('.').unwrap();
        let (p, s) = rest.split_once('.').unwrap();
        let obj = |v: &str| b64(v.as_bytes());
        let mut cases: Vec<(String, String)> = vec![
            ("empty".into(), String::new()),
            ("one part".into(), h.to_string()),
            ("two parts".into(), format!("{h}.{p}")),
            ("four parts".into(), format!("{t}.{s}")),
            ("empty payload".into(), format!("{h}..{s}")),
            ("empty header".into(), format!(".{p}.{s}")),
            ("padding".into(), format!("{h}=.{p}.{s}")),
            ("whitespace".into(), format!("{h}.{p}.{s} ")),
            ("standard base64".into(), format!("{h}.{p}+/.{s}")),
            (
                "header not JSON".into(),
                format!("{}.{p}.{s}", obj("alg=ES256")),
            ),
        ];
        // payloads that are not a JSON object of claims, signed for real
        let (alg, key) = key("ec256");
        let header = br#"{"alg":"ES256","kid":"ec256"}"#;
        for payload in ["null", "[1]", "\"alice\"", "{", "{\"sub\":\"a\"} x"] {
            cases.push((
                format!("payload {payload}"),
                sign_raw(header, payload.as_bytes(), alg, &key),
            ));
        }
        for (what, t) in cases {
            assert_eq!(refused(&t), Reason::Malformed, "{what}");
        }
    }

    #[test]
    fn a_header_that_is_not_a_json_object_is_malformed() {
        // RFC 7515 §4: the header is a JSON object. serde's derived `Deserialize` also
        // reads a struct from a JSON array, field by field, so `["ES256","ec256"]` is
        // taken as alg ES256, kid ec256.
        let (alg, key) = key("ec256");
        for header in [r#"["ES256","ec256"]"#, r#"["ES256","ec256",null,null]"#] {
            let t = sign_raw(
                header.as_bytes(),
                claims().to_string().as_bytes(),
                alg,
                &key,
            );
            assert_eq!(verify(&t).err(), Some(Reason::Malformed), "header {header}");
        }
    }

    #[test]
    fn identifier_claims_are_strings_or_integers_and_jti_is_required() {
        let c = verify(&token("ec256", json!({"jti": 42, "sub": 7}))).unwrap();
        assert_eq!(
            (c.jti.as_deref(), c.user.as_deref()),
            (Some("42"), Some("7"))
        );
        for (claim, bad) in [
            ("jti", json!({})),
            ("jti", json!("")),
            ("sub", json!(1.5)),
            ("tid", json!(["acme"])),
            ("fam", json!(true)),
        ] {
            assert_eq!(
                refused(&token("ec256", json!({claim: bad.clone()}))),
                Reason::Malformed,
                "{claim}: {bad}"
            );
        }
        assert_eq!(
            refused(&token("ec256", json!({"jti": null}))),
            Reason::MissingClaim
        );
        let lax = verifier_of(&format!(
            "providers:\n{}tokens:\n  require_jti: false\n",
            provider_test(ALL, "")
        ));
        let c = lax
            .verify(&token("ec256", json!({"jti": null})), NOW)
            .unwrap();
        assert_eq!(c.jti, None);
    }

    #[test]
    fn token_types_when_configured_are_compared_as_media_types() {
        let v = verifier_of(&format!(
            "providers:\n{}",
            provider_test(ALL, "    token_types: [at+jwt]\n")
        ));
        let (alg, key) = key("ec256");
        let typed = |typ: Option<&str>| {
            let mut header = json!({"alg": "ES256", "kid": "ec256"});
            if let Some(typ) = typ {
                header["typ"] = typ.into();
            }
            v.verify(&sign(&header, &claims(), alg, &key), NOW)
        };
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert!(typed(Some(typ)).is_ok(), "{typ}");
        }
        for typ in [Some("JWT"), Some("application/jwt"), Some("at+jwt+x"), None] {
            assert_eq!(typed(typ).err(), Some(Reason::WrongTokenType), "{typ:?}");
        }
    }

    #[test]
    fn with_two_providers_a_token_is_verified_with_its_issuers_keys_only() {
        let v = verifier_of(&format!(
            "providers:\n{}  - name: other\n    issuer: {OTHER_ISSUER}\n    audiences: [api]\n    \
             algorithms: [RS256, ES256]\n    keys:\n      \
             - {{kid: rsa2, public_key_file: {KEYS}/rsa2-public.pem}}\n",
            provider_test(ALL, "")
        ));
        let other = json!({"iss": OTHER_ISSUER});
        // other's own key: verified, by provider 1
        let (alg, key) = key("rsa2");
        let own = sign(
            &json!({"alg": "RS256", "kid": "rsa2"}),
            &with(claims(), other.clone()),
            alg,
            &key,
        );
        let c = v.verify(&own, NOW).unwrap();
        assert_eq!(
            (c.provider, c.scoped.jti.as_deref()),
            (1, Some("other:jti-1"))
        );
        // naming other but signed with test's key and kid: other has no such key
        let forged = token("ec256", other);
        assert_eq!(v.verify(&forged, NOW).err(), Some(Reason::UnknownKey));
        // naming test but signed with other's key: test has no such key
        let crossed = sign(
            &json!({"alg": "RS256", "kid": "rsa2"}),
            &claims(),
            alg,
            &key,
        );
        assert_eq!(v.verify(&crossed, NOW).err(), Some(Reason::UnknownKey));
        // naming nobody: no provider's keys are tried
        for iss in [json!("https://nobody.test"), Value::Null] {
            let t = token("ec256", json!({"iss": iss.clone()}));
            assert_eq!(v.verify(&t, NOW).err(), Some(Reason::WrongIssuer), "{iss}");
        }
    }

    #[test]
    fn the_unverified_kid_is_read_for_the_fetch_budget_only() {
        assert_eq!(
            header_kid(&token("ec256", json!({}))).as_deref(),
            Some("ec256")
        );
        let unsigned = format!("{}.e30.", b64(br#"{"alg":"RS256","kid":"k1"}"#));
        assert_eq!(header_kid(&unsigned).as_deref(), Some("k1"));
        assert_eq!(header_kid("garbage"), None);
        // and naming a kid in an otherwise bad token never makes it valid
        assert_eq!(refused(&unsigned), Reason::Malformed);
    }
}
