//! Tokens two ways. [`Minter`] signs as `tokengate token mint` does (the provider's
//! configured key, the standard claims): honest tokens in bulk, for the tools and the
//! bench. [`sign`] signs any header and payload with a fixture key: tests build the
//! tokens an attacker would from it.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::Value;
use tokengate_core::config::Config;
use tokengate_core::jwt::mint::{mint_with, MintRequest};
use tokengate_core::jwt::Verifier;

use crate::fixture;

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs arbitrary header and payload JSON.
pub fn sign(
    header: &Value,
    payload: &Value,
    alg: Algorithm,
    key: &EncodingKey,
) -> anyhow::Result<String> {
    sign_raw(
        header.to_string().as_bytes(),
        payload.to_string().as_bytes(),
        alg,
        key,
    )
}

/// Signs arbitrary header and payload bytes (not necessarily JSON).
pub fn sign_raw(
    header: &[u8],
    payload: &[u8],
    alg: Algorithm,
    key: &EncodingKey,
) -> anyhow::Result<String> {
    let message = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg)?;
    Ok(format!("{message}.{sig}"))
}

/// Signs tokens for the first provider of a configuration, with its signing key, the
/// way `tokengate token mint` does; keys are loaded once.
pub struct Minter {
    config: Config,
    verifier: Verifier,
}

impl Minter {
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let verifier = Verifier::from_config(&config)?;
        Ok(Minter { config, verifier })
    }

    /// A minter for `alg`'s fixture key (from `dir`), for `issuer` and `audience`: a
    /// one-provider configuration (`bench`) publishing that key under the `kid`
    /// scripts/bench/tokengate.yaml and the bench configurations use.
    pub fn fixture(alg: &str, dir: &Path, issuer: &str, audience: &str) -> anyhow::Result<Self> {
        let key = fixture::for_alg(alg).ok_or_else(|| {
            anyhow::anyhow!("no fixture key for {alg} (HS256, RS256, PS256, ES256, ES384, EdDSA)")
        })?;
        let yaml = format!(
            "providers:\n{}",
            fixture::provider_yaml("bench", issuer, audience, &[key], dir)
        );
        Self::new(Config::parse("fixture minter", &yaml)?)
    }

    pub fn mint(&self, request: &MintRequest) -> anyhow::Result<String> {
        Ok(mint_with(&self.verifier, &self.config, request)?)
    }

    /// Token `i` of `population`.
    pub fn numbered(&self, population: &Population, i: usize) -> anyhow::Result<String> {
        self.mint(&population.request(i))
    }

    /// Tokens `0..count` of `population`, minted on `threads` threads (RSA signing is
    /// slow), in order.
    pub fn pool(
        &self,
        population: &Population,
        count: usize,
        threads: usize,
    ) -> anyhow::Result<Vec<String>> {
        let chunk = count.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..count)
                .step_by(chunk)
                .map(|from| {
                    s.spawn(move || {
                        (from..(from + chunk).min(count))
                            .map(|i| self.numbered(population, i))
                            .collect::<anyhow::Result<Vec<String>>>()
                    })
                })
                .collect();
            let mut tokens = Vec::with_capacity(count);
            for h in handles {
                let part = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("a minting thread panicked"))??;
                tokens.extend(part);
            }
            Ok(tokens)
        })
    }
}

/// The benchmark population: token `i` is user `{sub_prefix}{i:07}`'s, of tenant
/// `tenant-{i % tenants:02}`, valid for `ttl_seconds`. Fixed-width `sub` (and a uuid
/// `jti`, same-width times) give every token of a run the same length, so every allow
/// answer to them has the same size: scripts/bench.sh verifies h2load runs by the exact
/// number of response bytes.
#[derive(Debug, Clone)]
pub struct Population {
    pub sub_prefix: String,
    pub tenants: usize,
    pub ttl_seconds: u64,
}

impl Default for Population {
    fn default() -> Self {
        Population {
            sub_prefix: "user-".into(),
            tenants: 16,
            ttl_seconds: 3600,
        }
    }
}

impl Population {
    pub fn request(&self, i: usize) -> MintRequest {
        MintRequest {
            provider: None,
            sub: format!("{}{i:07}", self.sub_prefix),
            tenant: Some(format!("tenant-{:02}", i % self.tenants.max(1))),
            ttl_seconds: self.ttl_seconds,
            claims: Vec::new(),
        }
    }
}
