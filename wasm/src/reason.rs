//! The deny reasons the fast path can give, rendered exactly as tokengate renders them
//! (crates/core/src/reason.rs, docs/spec.md §2): same status, `WWW-Authenticate`, JSON
//! body and `retry-after`, so that a client cannot tell which of the two answered.
//! tests/it/fast_path.rs compares the two renderings through a real Envoy.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Malformed,
    WrongIssuer,
    MissingClaim,
    NotYetValid,
    JtiRevoked,
    UserRevoked,
    TenantRevoked,
    FamilyRevoked,
    SessionRevoked,
    /// The set is older than its bound (and the configuration says deny, not fall back).
    StoreUnavailable,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::Malformed,
        Reason::WrongIssuer,
        Reason::MissingClaim,
        Reason::NotYetValid,
        Reason::JtiRevoked,
        Reason::UserRevoked,
        Reason::TenantRevoked,
        Reason::FamilyRevoked,
        Reason::SessionRevoked,
        Reason::StoreUnavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::MissingClaim => "missing_claim",
            Reason::NotYetValid => "not_yet_valid",
            Reason::JtiRevoked => "jti_revoked",
            Reason::UserRevoked => "user_revoked",
            Reason::TenantRevoked => "tenant_revoked",
            Reason::FamilyRevoked => "family_revoked",
            Reason::SessionRevoked => "session_revoked",
            Reason::StoreUnavailable => "store_unavailable",
        }
    }

    pub const fn message(self) -> &'static str {
        match self {
            Reason::Malformed => "Token is malformed",
            Reason::WrongIssuer => "Token issuer is not accepted",
            Reason::MissingClaim => "Token lacks a required claim",
            Reason::NotYetValid => "Token is not yet valid",
            Reason::JtiRevoked => "Token has been revoked",
            Reason::UserRevoked => "Token has been revoked for this user",
            Reason::TenantRevoked => "Token has been revoked for this tenant",
            Reason::FamilyRevoked => "Token family has been revoked",
            Reason::SessionRevoked => "The session of this token has ended",
            Reason::StoreUnavailable => "Revocation store is unavailable, retry later",
        }
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// One deny, ready to send.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Every deny rendered once, at configuration time: the request path only picks one.
#[derive(Debug, Clone, Default)]
pub struct Responses {
    all: Vec<Rendered>,
}

impl Responses {
    pub fn new(realm: &str, retry_after_seconds: u64) -> Responses {
        let realm: String = realm
            .chars()
            .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
            .collect();
        let all = Reason::ALL
            .iter()
            .map(|r| {
                let (status, error) = if *r == Reason::StoreUnavailable {
                    (503, "temporarily_unavailable")
                } else {
                    (401, "invalid_token")
                };
                // serde_json's map order (tokengate's body): error, message, reason.
                let body = format!(
                    r#"{{"error":"{error}","message":"{}","reason":"{}"}}"#,
                    r.message(),
                    r.as_str()
                );
                let mut headers = vec![
                    ("content-type".to_string(), "application/json".to_string()),
                    ("cache-control".to_string(), "no-store".to_string()),
                ];
                if status == 401 {
                    headers.push((
                        "www-authenticate".to_string(),
                        format!(
                            "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                            r.message()
                        ),
                    ));
                } else {
                    headers.push(("retry-after".to_string(), retry_after_seconds.to_string()));
                }
                Rendered {
                    status,
                    headers,
                    body: body.into_bytes(),
                }
            })
            .collect();
        Responses { all }
    }

    pub fn get(&self, r: Reason) -> Option<&Rendered> {
        self.all.get(r.index())
    }
}
