//! DPoP proofs (RFC 9449): the checks of §4.3, in the order RFC 8725 asks for (shape,
//! header, key, signature, then claims), each failure a stable [`Reason`].
//!
//! A proof is parsed once and borrowed where it can be: its header and payload are the
//! only JSON decoded, the thumbprint is hashed from the key's members in RFC 7638 order
//! without building a second object, and the key is made from its components directly.

pub mod htu;
pub mod nonce;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::verify::UniqueObject;
use crate::reason::Reason;
pub use nonce::Nonces;

/// Longest proof read: an RSA-4096 key in the header fits several times over.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Private members of any JWK type (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2): a
/// proof carrying one has published its own private key, or is not a public key at all.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// How proofs are judged, from the `dpop` configuration section.
#[derive(Debug)]
pub struct Settings {
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be (seconds); also its `jti`'s replay window.
    pub max_age: i64,
    /// How far ahead of our clock a proof's `iat` may be.
    pub future_skew: i64,
    pub nonces: Option<Nonces>,
    /// The challenge's `algs` parameter: the algorithm names, space-separated.
    pub algs: String,
}

impl Settings {
    pub fn from_config(c: &crate::config::Dpop) -> Result<Self, crate::secret::SecretError> {
        let nonces = match &c.nonce {
            Some(n) => Some(Nonces::new(&n.secret.read()?, n.window_seconds)),
            None => None,
        };
        Ok(Settings {
            algs: c
                .algorithms
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>()
                .join(" "),
            algorithms: c.algorithms.clone(),
            max_age: i64::try_from(c.max_age_seconds).unwrap_or(i64::MAX),
            future_skew: i64::try_from(c.future_skew_seconds).unwrap_or(0),
            nonces,
        })
    }
}

/// What the request a proof must match says.
pub struct Expected<'a> {
    /// The request's method, then any method a client asked for through an override
    /// header or `_method` ([`crate::decision::canonical::methods`]): `htm` must be
    /// every one of them (compared exactly: methods are case-sensitive), or a proof
    /// made for a `GET` would carry a `DELETE` to a server that honours overrides.
    pub methods: &'a [&'a str],
    /// The request's URI as [`htu::of_request`] normalised it; `None` when the request
    /// has none that can be named (no host or scheme): no proof can match it.
    pub htu: Option<&'a str>,
    /// The access token presented with the proof.
    pub token: &'a str,
    pub now: i64,
}

/// A proof that passed every check but the replay guard and the token's binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The RFC 7638 thumbprint of the proof's key, base64url: what `cnf.jkt` must be.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
}

/// Checks one proof against the request. `ath` mismatches are a binding failure
/// (`dpop_binding_mismatch`); a missing or stale server nonce is `use_dpop_nonce`.
pub fn check(proof: &str, s: &Settings, want: &Expected<'_>) -> Result<Checked, Reason> {
    let invalid = Reason::DpopProofInvalid;
    if proof.len() > MAX_PROOF_BYTES
        || !proof
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid);
    }
    let mut parts = proof.splitn(3, '.');
    let (Some(h64), Some(p64), Some(s64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid);
    };
    if h64.is_empty() || p64.is_empty() || s64.is_empty() || s64.contains('.') {
        return Err(invalid);
    }
    let header = decode_object(h64)?;
    if header.contains_key("crit") {
        return Err(invalid);
    }
    let typ = header.get("typ").and_then(Value::as_str).ok_or(invalid)?;
    if super::media_type(typ) != "dpop+jwt" {
        return Err(invalid);
    }
    let alg: Algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok())
        .ok_or(invalid)?;
    if !s.algorithms.contains(&alg) || !crate::config::asymmetric(alg) {
        return Err(invalid);
    }
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(invalid)?;
    let (key, jkt) = public_key(jwk, alg)?;
    let message = &proof[..h64.len() + 1 + p64.len()];
    match jsonwebtoken::crypto::verify(s64, message.as_bytes(), &key, alg) {
        Ok(true) => {}
        _ => return Err(invalid),
    }
    let claims = decode_object(p64)?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let (Some(jti), Some(htm), Some(htu), Some(iat)) = (
        text("jti"),
        text("htm"),
        text("htu"),
        claims
            .get("iat")
            .and_then(|v| super::verify::numeric_date(v).ok()),
    ) else {
        return Err(invalid);
    };
    if jti.len() > 256 {
        return Err(invalid);
    }
    if want.methods.is_empty() || want.methods.iter().any(|m| *m != htm) {
        return Err(Reason::DpopWrongTarget);
    }
    match (htu::normalise(htu), want.htu) {
        (Some(theirs), Some(ours)) if theirs == ours => {}
        _ => return Err(Reason::DpopWrongTarget),
    }
    if let Some(nonces) = &s.nonces {
        if !text("nonce").is_some_and(|n| nonces.accepts(n, want.now)) {
            return Err(Reason::UseDpopNonce);
        }
    }
    if iat < want.now.saturating_sub(s.max_age) || iat > want.now.saturating_add(s.future_skew) {
        return Err(Reason::DpopProofStale);
    }
    if text("ath") != Some(access_token_hash(want.token).as_str()) {
        return Err(Reason::DpopBindingMismatch);
    }
    Ok(Checked {
        jkt,
        jti: jti.to_string(),
    })
}

/// `ath`: base64url(SHA-256(the access token's ASCII)).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

fn decode_object(b64: &str) -> Result<Map<String, Value>, Reason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| Reason::DpopProofInvalid)?;
    UniqueObject::parse(&bytes).map_err(|_| Reason::DpopProofInvalid)
}

/// The proof's key, checked to be public and of `alg`'s type (and curve), and its RFC
/// 7638 thumbprint.
fn public_key(jwk: &Map<String, Value>, alg: Algorithm) -> Result<(DecodingKey, String), Reason> {
    let invalid = Reason::DpopProofInvalid;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(invalid);
    }
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or(invalid)
    };
    let kty = member("kty")?;
    // (the members RFC 7638 §3.2 hashes, in lexicographic order; the key)
    let (required, key): (&[&str], _) = match (kty, alg) {
        ("EC", Algorithm::ES256 | Algorithm::ES384) => {
            let curve = if alg == Algorithm::ES256 {
                "P-256"
            } else {
                "P-384"
            };
            if member("crv")? != curve {
                return Err(invalid);
            }
            (
                &["crv", "kty", "x", "y"],
                DecodingKey::from_ec_components(member("x")?, member("y")?),
            )
        }
        ("OKP", Algorithm::EdDSA) => {
            if member("crv")? != "Ed25519" {
                return Err(invalid);
            }
            (
                &["crv", "kty", "x"],
                DecodingKey::from_ed_components(member("x")?),
            )
        }
        (
            "RSA",
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => (
            &["e", "kty", "n"],
            DecodingKey::from_rsa_components(member("n")?, member("e")?),
        ),
        _ => return Err(invalid),
    };
    let key = key.map_err(|_| invalid)?;
    let mut hash = Sha256::new();
    hash.update(b"{");
    for (i, name) in required.iter().enumerate() {
        if i > 0 {
            hash.update(b",");
        }
        // Member values are base64url or registered names: no JSON escaping is needed,
        // and anything that would need it is not a valid member.
        let value = member(name)?;
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(invalid);
        }
        hash.update(b"\"");
        hash.update(name.as_bytes());
        hash.update(b"\":\"");
        hash.update(value.as_bytes());
        hash.update(b"\"");
    }
    hash.update(b"}");
    Ok((key, URL_SAFE_NO_PAD.encode(hash.finalize())))
}

/// The RFC 7638 thumbprint of a public JWK given as JSON (tests and tools).
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let alg = match jwk.get("kty").and_then(Value::as_str)? {
        "EC" if jwk.get("crv").and_then(Value::as_str) == Some("P-384") => Algorithm::ES384,
        "EC" => Algorithm::ES256,
        "OKP" => Algorithm::EdDSA,
        "RSA" => Algorithm::RS256,
        _ => return None,
    };
    public_key(jwk, alg).ok().map(|(_, t)| t)
}

#[cfg(test)]
mod tests;
