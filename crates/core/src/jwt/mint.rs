//! `tokengate token mint`: signs a token with a provider's private or HMAC key, for the
//! README walkthrough, tests and benchmarks. It is not an identity provider: it refuses
//! providers that only have public keys rather than pretending.

use jsonwebtoken::Header;
use serde_json::{Map, Value};

use super::Verifier;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no provider named {0:?} in the configuration")]
    UnknownProvider(String),
    #[error("provider {0:?} has only public keys: tokengate cannot sign for it")]
    NoSigningKey(String),
    #[error("{0}")]
    Keys(#[from] super::KeyError),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// What to put in the token.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    /// Provider name; the first provider when `None`.
    pub provider: Option<String>,
    pub sub: String,
    pub tenant: Option<String>,
    pub ttl_seconds: u64,
    /// Extra claims, applied last (they may override the standard ones, e.g. `iat`).
    pub claims: Vec<(String, Value)>,
}

/// Signs a token for `request` with the configured provider's signing key.
pub fn mint(config: &Config, request: &MintRequest) -> Result<String, MintError> {
    let verifier = Verifier::from_config(config)?;
    mint_with(&verifier, config, request)
}

/// As [`mint`], with keys already loaded (benchmarks mint many tokens).
pub fn mint_with(
    verifier: &Verifier,
    config: &Config,
    request: &MintRequest,
) -> Result<String, MintError> {
    let index = match &request.provider {
        None => 0,
        Some(name) => verifier
            .providers
            .iter()
            .position(|p| &p.name == name)
            .ok_or_else(|| MintError::UnknownProvider(name.clone()))?,
    };
    let provider = &verifier.providers[index];
    let (key, alg) = provider
        .keys
        .sign
        .iter()
        .find_map(|k| {
            provider
                .algorithms
                .iter()
                .find(|a| a.family() == k.family)
                .map(|a| (k, *a))
        })
        .ok_or_else(|| MintError::NoSigningKey(provider.name.clone()))?;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = Map::new();
    if let Some(iss) = &provider.issuer {
        claims.insert("iss".into(), iss.clone().into());
    }
    if let Some(aud) = provider.audiences.first() {
        claims.insert("aud".into(), aud.clone().into());
    }
    let names = &config.tokens.claims;
    claims.insert(names.user.clone(), request.sub.clone().into());
    if let Some(t) = &request.tenant {
        claims.insert(names.tenant.clone(), t.clone().into());
    }
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + request.ttl_seconds).into());
    claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
    for (k, v) in &request.claims {
        claims.insert(k.clone(), v.clone());
    }
    let mut header = Header::new(alg);
    header.kid = key.kid.clone();
    Ok(jsonwebtoken::encode(&header, &claims, &key.key)?)
}

/// Parses `KEY=VALUE` from the command line: VALUE as JSON when it parses (numbers,
/// arrays, booleans), else as a string.
pub fn parse_claim(arg: &str) -> Result<(String, Value), String> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {arg:?}"))?;
    if k.is_empty() {
        return Err("claim name is empty".into());
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
    Ok((k.to_string(), value))
}
