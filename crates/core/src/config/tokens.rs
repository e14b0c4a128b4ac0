//! `tokens`: where a request's token is found and which claims revocation reads.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tokens {
    /// Where to look for the token, in order (at least one).
    #[serde(deserialize_with = "non_empty_sources")]
    pub sources: Vec<TokenSource>,
    /// Tokens longer than this are refused before any parsing (at least 1).
    #[serde(deserialize_with = "super::positive_usize")]
    pub max_bytes: usize,
    /// Refuse tokens without `jti` (`missing_claim`): they cannot be revoked one by one.
    pub require_jti: bool,
    pub claims: ClaimNames,
    /// Verified tokens remembered by their SHA-256 until they expire, so that a token
    /// seen again skips signature work; 0 turns it off.
    pub verified_cache_entries: u64,
}

impl Default for Tokens {
    fn default() -> Self {
        Self {
            sources: vec![TokenSource::Header {
                name: "authorization".into(),
                scheme: Some("Bearer".into()),
            }],
            max_bytes: 8 * 1024,
            require_jti: true,
            claims: ClaimNames::default(),
            verified_cache_entries: 100_000,
        }
    }
}

fn non_empty_sources<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<TokenSource>, D::Error> {
    let sources = Vec::<TokenSource>::deserialize(d)?;
    if sources.is_empty() {
        return Err(serde::de::Error::custom(
            "at least one token source is required",
        ));
    }
    Ok(sources)
}

/// One token source. The YAML sets exactly one of `header` (with an optional `scheme`),
/// `cookie`, `query`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawTokenSource")]
pub enum TokenSource {
    /// A header, its name lower-cased; `scheme` is the prefix of its value, compared
    /// case-insensitively (e.g. `Bearer`).
    Header {
        name: String,
        scheme: Option<String>,
    },
    Cookie(String),
    Query(String),
}

/// [`TokenSource`] as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenSource {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    query: Option<String>,
}

impl TryFrom<RawTokenSource> for TokenSource {
    type Error = String;

    fn try_from(r: RawTokenSource) -> Result<Self, String> {
        match (r.header, r.cookie, r.query) {
            (Some(name), None, None) => {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(".header: not a valid header name".into());
                }
                Ok(TokenSource::Header {
                    name: name.to_ascii_lowercase(),
                    scheme: r.scheme,
                })
            }
            (None, cookie, query) if r.scheme.is_some() && (cookie.is_some() ^ query.is_some()) => {
                Err(".scheme: only valid with header".into())
            }
            (None, Some(cookie), None) => Ok(TokenSource::Cookie(cookie)),
            (None, None, Some(query)) => Ok(TokenSource::Query(query)),
            _ => Err("set exactly one of header, cookie, query".into()),
        }
    }
}

/// Names of the claims that revocation reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimNames {
    pub user: String,
    pub tenant: String,
    pub user_version: String,
    pub tenant_version: String,
    pub family: String,
    /// The token's session at its issuer (OIDC `sid`): what a back-channel logout or a
    /// CAEP session-revoked event names.
    pub session: String,
    /// Roles for route rules' `require_roles`; a dotted path reaches nested claims
    /// (e.g. `realm_access.roles`).
    pub roles: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            tenant: "tid".into(),
            user_version: "ver".into(),
            tenant_version: "tver".into(),
            family: "fam".into(),
            session: "sid".into(),
            roles: "roles".into(),
        }
    }
}
