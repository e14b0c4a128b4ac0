//! Deny reasons (docs/spec.md §2): one enum with a stable string, used alike for the JSON body,
//! the metric label and the log field, and the mapping of each reason to its HTTP status,
//! OAuth error code and gRPC status code. Both transports render a deny from here, so
//! they cannot disagree on what a reason looks like on the wire.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    MissingToken,
    Malformed,
    MalformedRequest,
    BadSignature,
    UnknownKey,
    DisallowedAlgorithm,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    TokenTooLarge,
    WrongTokenType,
    JtiRevoked,
    UserRevoked,
    TenantRevoked,
    FamilyRevoked,
    /// The token's session (`sid`) was ended at its issuer (back-channel logout, CAEP).
    SessionRevoked,
    InsufficientScope,
    CrossSiteRequest,
    StoreUnavailable,
    /// The token's provider has no key set yet (its remote JWKS never loaded): the token
    /// cannot be judged, so it is an outage, never a 401 that makes clients drop it.
    KeysUnavailable,
    /// The token's Token Status List entry says INVALID.
    TokenStatusInvalid,
    /// The token's Token Status List entry says SUSPENDED.
    TokenStatusSuspended,
    /// The token's status cannot be read: an unreadable `status` claim, a list `uri` on
    /// a host the provider does not allow, an index past the list's end, or a status
    /// value tokengate does not know (application-specific).
    TokenStatusUnknown,
    /// The referenced Status List Token could not be fetched or verified: an outage,
    /// judged like the store's (`on_store_error`).
    StatusListUnavailable,
    /// The DPoP proof is not one tokengate accepts (RFC 9449 §4.3): not exactly one
    /// `DPoP` header, not a JWT, wrong `typ`, an algorithm off the list, a private or
    /// unusable `jwk`, a bad signature, a missing claim.
    DpopProofInvalid,
    /// The proof's `iat` is outside `dpop.max_age_seconds` in the past or
    /// `dpop.future_skew_seconds` ahead.
    DpopProofStale,
    /// The proof was made for another method (`htm`) or URI (`htu`).
    DpopWrongTarget,
    /// The proof's `jti` was seen before within its window, by any replica.
    DpopReplayed,
    /// The proof does not belong to this token: its `ath` is another token's hash, or
    /// its key's thumbprint is not the token's `cnf.jkt` (or the token has none).
    DpopBindingMismatch,
    /// A DPoP-bound token (`cnf.jkt`) without a proof (e.g. sent as a bearer token).
    DpopRequired,
    /// The proof lacks a current server nonce (`dpop.nonce`); the answer carries one.
    UseDpopNonce,
    /// The route or provider requires a sender-constrained token and this one has no
    /// `cnf` binding.
    UnboundToken,
    /// The token is bound to a client certificate (`cnf.x5t#S256`) that is not the
    /// certificate of this connection, or the connection has none.
    CertBindingMismatch,
}

/// Which row of docs/spec.md §2's deny table a reason falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyClass {
    /// 400, `invalid_request`, no challenge: the request itself cannot be judged.
    BadRequest,
    /// 403, `access_denied`, no challenge: the credential is fine, the request's
    /// circumstances are not (a cookie token on a cross-site request).
    Refused,
    /// 401, `invalid_request`, challenge without error.
    NoToken,
    /// 401, `invalid_token`.
    InvalidToken,
    /// 403, `insufficient_scope`.
    Forbidden,
    /// 503, `temporarily_unavailable`, no challenge.
    Unavailable,
    /// 401, `invalid_dpop_proof`, a `DPoP` challenge (RFC 9449 §7.1).
    InvalidProof,
    /// 401, `use_dpop_nonce`, a `DPoP` challenge and a `DPoP-Nonce` header (§9).
    UseNonce,
}

impl Reason {
    pub const ALL: [Reason; 35] = [
        Reason::MissingToken,
        Reason::Malformed,
        Reason::MalformedRequest,
        Reason::BadSignature,
        Reason::UnknownKey,
        Reason::DisallowedAlgorithm,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::MissingClaim,
        Reason::TokenTooLarge,
        Reason::WrongTokenType,
        Reason::JtiRevoked,
        Reason::UserRevoked,
        Reason::TenantRevoked,
        Reason::FamilyRevoked,
        Reason::SessionRevoked,
        Reason::InsufficientScope,
        Reason::CrossSiteRequest,
        Reason::StoreUnavailable,
        Reason::KeysUnavailable,
        Reason::TokenStatusInvalid,
        Reason::TokenStatusSuspended,
        Reason::TokenStatusUnknown,
        Reason::StatusListUnavailable,
        Reason::DpopProofInvalid,
        Reason::DpopProofStale,
        Reason::DpopWrongTarget,
        Reason::DpopReplayed,
        Reason::DpopBindingMismatch,
        Reason::DpopRequired,
        Reason::UseDpopNonce,
        Reason::UnboundToken,
        Reason::CertBindingMismatch,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::Malformed => "malformed",
            Reason::MalformedRequest => "malformed_request",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::DisallowedAlgorithm => "disallowed_algorithm",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::MissingClaim => "missing_claim",
            Reason::TokenTooLarge => "token_too_large",
            Reason::WrongTokenType => "wrong_token_type",
            Reason::JtiRevoked => "jti_revoked",
            Reason::UserRevoked => "user_revoked",
            Reason::TenantRevoked => "tenant_revoked",
            Reason::FamilyRevoked => "family_revoked",
            Reason::SessionRevoked => "session_revoked",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::CrossSiteRequest => "cross_site_request",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::TokenStatusInvalid => "token_status_invalid",
            Reason::TokenStatusSuspended => "token_status_suspended",
            Reason::TokenStatusUnknown => "token_status_unknown",
            Reason::StatusListUnavailable => "status_list_unavailable",
            Reason::DpopProofInvalid => "dpop_proof_invalid",
            Reason::DpopProofStale => "dpop_proof_stale",
            Reason::DpopWrongTarget => "dpop_wrong_target",
            Reason::DpopReplayed => "dpop_replayed",
            Reason::DpopBindingMismatch => "dpop_binding_mismatch",
            Reason::DpopRequired => "dpop_required",
            Reason::UseDpopNonce => "use_dpop_nonce",
            Reason::UnboundToken => "unbound_token",
            Reason::CertBindingMismatch => "cert_binding_mismatch",
        }
    }

    /// Human-readable text for `message` and `error_description`. Fixed strings only:
    /// nothing from the request ever reaches a response body.
    pub const fn message(self) -> &'static str {
        match self {
            Reason::MissingToken => "A bearer token is required",
            Reason::Malformed => "Token is malformed",
            Reason::MalformedRequest => "Request is malformed or ambiguous",
            Reason::BadSignature => "Token signature is invalid",
            Reason::UnknownKey => "Token signing key is unknown",
            Reason::DisallowedAlgorithm => "Token algorithm is not allowed",
            Reason::Expired => "Token has expired",
            Reason::NotYetValid => "Token is not yet valid",
            Reason::WrongIssuer => "Token issuer is not accepted",
            Reason::WrongAudience => "Token audience is not accepted",
            Reason::MissingClaim => "Token lacks a required claim",
            Reason::TokenTooLarge => "Token is too large",
            Reason::WrongTokenType => "Token is not an access token of an accepted type",
            Reason::JtiRevoked => "Token has been revoked",
            Reason::UserRevoked => "Token has been revoked for this user",
            Reason::TenantRevoked => "Token has been revoked for this tenant",
            Reason::FamilyRevoked => "Token family has been revoked",
            Reason::SessionRevoked => "The session of this token has ended",
            Reason::InsufficientScope => "Token lacks the required scope",
            Reason::CrossSiteRequest => {
                "A cookie token needs a non-simple content type or an allowed Origin"
            }
            Reason::StoreUnavailable => "Revocation store is unavailable, retry later",
            Reason::KeysUnavailable => "Token signing keys are not loaded yet, retry later",
            Reason::TokenStatusInvalid => "Token status is invalid",
            Reason::TokenStatusSuspended => "Token is suspended",
            Reason::TokenStatusUnknown => "Token status cannot be determined",
            Reason::StatusListUnavailable => "Token status list is unavailable, retry later",
            Reason::DpopProofInvalid => "DPoP proof is invalid",
            Reason::DpopProofStale => "DPoP proof is too old or from the future",
            Reason::DpopWrongTarget => "DPoP proof was made for another method or URI",
            Reason::DpopReplayed => "DPoP proof was already used",
            Reason::DpopBindingMismatch => "DPoP proof does not belong to this token",
            Reason::DpopRequired => "Token is DPoP-bound and needs a DPoP proof",
            Reason::UseDpopNonce => "Resource server requires nonce in DPoP proof",
            Reason::UnboundToken => "Token must be sender-constrained",
            Reason::CertBindingMismatch => "Token is bound to another client certificate",
        }
    }

    pub const fn class(self) -> DenyClass {
        match self {
            Reason::MissingToken => DenyClass::NoToken,
            Reason::MalformedRequest => DenyClass::BadRequest,
            Reason::CrossSiteRequest => DenyClass::Refused,
            Reason::InsufficientScope => DenyClass::Forbidden,
            Reason::StoreUnavailable | Reason::KeysUnavailable | Reason::StatusListUnavailable => {
                DenyClass::Unavailable
            }
            Reason::DpopProofInvalid
            | Reason::DpopProofStale
            | Reason::DpopWrongTarget
            | Reason::DpopReplayed => DenyClass::InvalidProof,
            Reason::UseDpopNonce => DenyClass::UseNonce,
            _ => DenyClass::InvalidToken,
        }
    }

    pub const fn http_status(self) -> u16 {
        match self.class() {
            DenyClass::BadRequest => 400,
            DenyClass::NoToken
            | DenyClass::InvalidToken
            | DenyClass::InvalidProof
            | DenyClass::UseNonce => 401,
            DenyClass::Forbidden | DenyClass::Refused => 403,
            DenyClass::Unavailable => 503,
        }
    }

    /// `google.rpc.Code` of the CheckResponse status.
    pub const fn grpc_code(self) -> i32 {
        match self.class() {
            DenyClass::BadRequest => 3, // INVALID_ARGUMENT
            DenyClass::NoToken
            | DenyClass::InvalidToken
            | DenyClass::InvalidProof
            | DenyClass::UseNonce => 16, // UNAUTHENTICATED
            DenyClass::Forbidden | DenyClass::Refused => 7, // PERMISSION_DENIED
            DenyClass::Unavailable => 14, // UNAVAILABLE
        }
    }

    /// OAuth error code of the JSON body (RFC 6750 §3.1).
    pub const fn oauth_error(self) -> &'static str {
        match self.class() {
            DenyClass::NoToken | DenyClass::BadRequest => "invalid_request",
            DenyClass::InvalidToken => "invalid_token",
            DenyClass::Forbidden => "insufficient_scope",
            DenyClass::Refused => "access_denied",
            DenyClass::Unavailable => "temporarily_unavailable",
            DenyClass::InvalidProof => "invalid_dpop_proof",
            DenyClass::UseNonce => "use_dpop_nonce",
        }
    }

    /// Whether the challenge of this deny is `DPoP` (RFC 9449 §7.1) rather than
    /// `Bearer`: the proof was at fault, or the token needs one.
    pub const fn dpop_challenge(self) -> bool {
        matches!(self.class(), DenyClass::InvalidProof | DenyClass::UseNonce)
            || matches!(self, Reason::DpopBindingMismatch | Reason::DpopRequired)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deny as both transports render it: status, challenge, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub reason: Reason,
    /// The scopes that were required, for `insufficient_scope`.
    pub scope: Option<String>,
    /// A fresh server nonce for the `DPoP-Nonce` header (`use_dpop_nonce`).
    pub dpop_nonce: Option<String>,
}

impl From<Reason> for Deny {
    fn from(reason: Reason) -> Self {
        Deny {
            reason,
            scope: None,
            dpop_nonce: None,
        }
    }
}

impl Deny {
    /// The `WWW-Authenticate` value (RFC 6750 §3), or `None` for an outage (store or
    /// keys): a challenge would tell the client its token is bad.
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        self.challenge(realm, "")
    }

    /// [`www_authenticate`](Self::www_authenticate), with a `DPoP` challenge naming
    /// `dpop_algs` (space-separated) for the reasons that call for one.
    pub fn challenge(&self, realm: &str, dpop_algs: &str) -> Option<String> {
        let realm = quotable(realm);
        let r = self.reason;
        if r.dpop_challenge() {
            let error = match r.class() {
                DenyClass::InvalidProof | DenyClass::UseNonce => r.oauth_error(),
                _ => "invalid_token",
            };
            return Some(format!(
                "DPoP realm=\"{realm}\", error=\"{error}\", error_description=\"{}\", algs=\"{}\"",
                r.message(),
                quotable(dpop_algs)
            ));
        }
        match r.class() {
            DenyClass::Unavailable | DenyClass::BadRequest | DenyClass::Refused => None,
            DenyClass::NoToken => Some(format!("Bearer realm=\"{realm}\"")),
            DenyClass::InvalidToken => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                r.message()
            )),
            DenyClass::Forbidden => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                r.message(),
                quotable(self.scope.as_deref().unwrap_or(""))
            )),
            // Reached only through `dpop_challenge` above.
            DenyClass::InvalidProof | DenyClass::UseNonce => None,
        }
    }

    /// The JSON body of docs/spec.md §2.
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({
            "error": self.reason.oauth_error(),
            "reason": self.reason.as_str(),
            "message": self.reason.message(),
        });
        if let (Some(scope), Some(map)) = (&self.scope, body.as_object_mut()) {
            map.insert("scope".into(), scope.clone().into());
        }
        body.to_string()
    }
}

/// Keeps only characters allowed in an RFC 6750 quoted value (no `"` or `\`, printable).
fn quotable(s: &str) -> String {
    s.chars()
        .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()));
            assert!(r
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn table_rows_match_the_spec() {
        let d = Deny::from(Reason::MissingToken);
        assert_eq!(
            d.www_authenticate("r").as_deref(),
            Some("Bearer realm=\"r\"")
        );
        assert_eq!(Reason::MissingToken.http_status(), 401);
        let d = Deny::from(Reason::JtiRevoked);
        assert_eq!(
            d.www_authenticate("r").as_deref(),
            Some("Bearer realm=\"r\", error=\"invalid_token\", error_description=\"Token has been revoked\"")
        );
        assert_eq!(
            d.body(),
            r#"{"error":"invalid_token","message":"Token has been revoked","reason":"jti_revoked"}"#
        );
        let d = Deny {
            reason: Reason::InsufficientScope,
            scope: Some("admin \"x\"".into()),
            dpop_nonce: None,
        };
        assert!(d
            .www_authenticate("r")
            .unwrap()
            .ends_with("scope=\"admin x\""));
        assert_eq!(Reason::InsufficientScope.grpc_code(), 7);
        assert_eq!(Reason::StoreUnavailable.http_status(), 503);
        assert_eq!(Reason::StoreUnavailable.grpc_code(), 14);
        assert!(Deny::from(Reason::StoreUnavailable)
            .www_authenticate("r")
            .is_none());
    }

    #[test]
    fn keys_unavailable_is_an_outage_like_the_store() {
        let r = Reason::KeysUnavailable;
        assert_eq!(r.as_str(), "keys_unavailable");
        assert_eq!(r.class(), DenyClass::Unavailable);
        assert_eq!(r.http_status(), 503);
        assert_eq!(r.grpc_code(), 14);
        assert_eq!(r.oauth_error(), "temporarily_unavailable");
        assert!(Deny::from(r).www_authenticate("r").is_none());
        assert!(Reason::ALL.contains(&r));
    }

    #[test]
    fn status_list_reasons_are_401_except_the_outage() {
        for r in [
            Reason::TokenStatusInvalid,
            Reason::TokenStatusSuspended,
            Reason::TokenStatusUnknown,
        ] {
            assert_eq!((r.http_status(), r.oauth_error()), (401, "invalid_token"));
        }
        let r = Reason::StatusListUnavailable;
        assert_eq!((r.http_status(), r.grpc_code()), (503, 14));
        assert!(Deny::from(r).www_authenticate("r").is_none());
    }

    #[test]
    fn dpop_reasons_challenge_with_dpop_and_their_rfc9449_error() {
        for (r, error) in [
            (Reason::DpopProofInvalid, "invalid_dpop_proof"),
            (Reason::DpopProofStale, "invalid_dpop_proof"),
            (Reason::DpopWrongTarget, "invalid_dpop_proof"),
            (Reason::DpopReplayed, "invalid_dpop_proof"),
            (Reason::UseDpopNonce, "use_dpop_nonce"),
            (Reason::DpopBindingMismatch, "invalid_token"),
            (Reason::DpopRequired, "invalid_token"),
        ] {
            assert_eq!((r.http_status(), r.grpc_code()), (401, 16), "{r}");
            let c = Deny::from(r).challenge("r", "ES256 EdDSA").unwrap();
            assert!(c.starts_with("DPoP realm=\"r\", "), "{c}");
            assert!(c.contains(&format!("error=\"{error}\"")), "{c}");
            assert!(c.ends_with("algs=\"ES256 EdDSA\""), "{c}");
            assert!(Reason::ALL.contains(&r));
        }
        for r in [Reason::UnboundToken, Reason::CertBindingMismatch] {
            assert!(Deny::from(r)
                .challenge("r", "ES256")
                .unwrap()
                .starts_with("Bearer "));
        }
    }
}
