//! `dpop` and `sender_constraint`: sender-constrained tokens (issue 18). A stolen bearer
//! token works for whoever holds it; a token bound to a key (DPoP, RFC 9449) or to a
//! client certificate (RFC 8705) works only with a proof of that key or over that
//! certificate's connection, so the theft alone buys nothing.

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::secret::Secret;

/// Whether a token must be sender-constrained, per provider and per route; the stricter
/// of the two applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SenderConstraint {
    /// A token's `cnf` is not looked at, except that a DPoP-bound token (`cnf.jkt`)
    /// never passes as a bearer token and a `DPoP` request always has its proof checked.
    #[default]
    None,
    /// A token that carries a binding (`cnf.jkt`, `cnf.x5t#S256`) must be presented with
    /// it; an unbound token passes.
    Optional,
    /// Every token must carry a binding and be presented with it.
    Required,
}

/// How DPoP proofs are judged. Absent: the `DPoP` scheme is not recognised at all.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, try_from = "RawDpop")]
pub struct Dpop {
    /// Proof algorithms accepted (asymmetric only; `none` and `HS*` are refused here).
    pub algorithms: Vec<Algorithm>,
    /// How old (by `iat`) a proof may be; also how long its `jti` is remembered against
    /// replay, so a proof can never outlive its replay guard.
    pub max_age_seconds: u64,
    /// How far in the future a proof's `iat` may be (client clock ahead of ours).
    pub future_skew_seconds: u64,
    /// Server nonces (RFC 9449 §9); absent: proofs need none.
    pub nonce: Option<Nonce>,
}

/// Stateless server nonces: the HMAC of a time window under a secret every replica
/// shares, so that any replica accepts a nonce any other replica handed out.
#[derive(Debug, Clone)]
pub struct Nonce {
    pub secret: Secret,
    /// Length of one window; a nonce is accepted in its own window and the next one.
    pub window_seconds: u64,
}

impl Default for Dpop {
    fn default() -> Self {
        Self {
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA, Algorithm::PS256],
            max_age_seconds: 60,
            future_skew_seconds: 5,
            nonce: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDpop {
    algorithms: Vec<Algorithm>,
    #[serde(deserialize_with = "super::timeout_seconds")]
    max_age_seconds: u64,
    future_skew_seconds: u64,
    nonce: Option<RawNonce>,
}

impl Default for RawDpop {
    fn default() -> Self {
        let d = Dpop::default();
        Self {
            algorithms: d.algorithms,
            max_age_seconds: d.max_age_seconds,
            future_skew_seconds: d.future_skew_seconds,
            nonce: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNonce {
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<std::path::PathBuf>,
    #[serde(
        default = "default_window",
        deserialize_with = "super::timeout_seconds"
    )]
    window_seconds: u64,
}

fn default_window() -> u64 {
    300
}

impl TryFrom<RawDpop> for Dpop {
    type Error = String;

    fn try_from(r: RawDpop) -> Result<Self, String> {
        if r.algorithms.is_empty() {
            return Err(".algorithms: at least one algorithm is required".into());
        }
        if let Some(alg) = r.algorithms.iter().find(|a| !asymmetric(**a)) {
            return Err(format!(
                ".algorithms: {alg:?} is symmetric: a proof must be signed with a private key only the client holds"
            ));
        }
        if r.future_skew_seconds > 300 {
            return Err(".future_skew_seconds: must be between 0 and 300".into());
        }
        let nonce = match r.nonce {
            None => None,
            Some(n) => {
                if n.secret_env.is_some() && n.secret_file.is_some() {
                    return Err(".nonce: set exactly one of secret_env, secret_file".into());
                }
                let secret = Secret::from_pair(n.secret_env, n.secret_file)
                    .ok_or(".nonce: set exactly one of secret_env, secret_file")?;
                Some(Nonce {
                    secret,
                    window_seconds: n.window_seconds,
                })
            }
        };
        Ok(Dpop {
            algorithms: r.algorithms,
            max_age_seconds: r.max_age_seconds,
            future_skew_seconds: r.future_skew_seconds,
            nonce,
        })
    }
}

/// Whether `alg` signs with a private key (RFC 9449 §4.2: no MAC, no `none`).
pub fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Dpop, String> {
        serde_yaml_ng::from_str::<Dpop>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn symmetric_algorithms_and_an_empty_list_are_refused() {
        for yaml in [
            "algorithms: [HS256]",
            "algorithms: [ES256, HS512]",
            "algorithms: []",
        ] {
            assert!(parse(yaml).is_err(), "{yaml}");
        }
        assert!(parse("algorithms: [none]").is_err());
        let d = parse("algorithms: [ES256, EdDSA, RS256]").unwrap();
        assert_eq!(d.algorithms.len(), 3);
    }

    #[test]
    fn a_nonce_needs_exactly_one_secret_and_unknown_fields_are_refused() {
        assert!(parse("nonce: {window_seconds: 60}").is_err());
        assert!(parse("nonce: {secret_env: A, secret_file: /x}").is_err());
        assert!(parse("nonce: {secret_env: A}").unwrap().nonce.is_some());
        assert!(parse("max_age: 3").is_err());
        assert!(parse("max_age_seconds: 0").is_err());
    }
}
