//! Loading provider keys from PEM files, HMAC secrets and local JWKS documents.
//!
//! Every key is tagged with its algorithm family at load time. Verification then only
//! ever pairs a token's `alg` with a key of the same family, which is what stops the
//! classic confusion attack (HS256 "signed" with an RSA public key used as the secret).

use std::path::Path;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use sha2::{Digest, Sha256};

use crate::config::{Key, KeySource, Provider};

/// SHA-256 of the development key files shipped in `config/dev/`. Whoever loads them gets
/// a warning at start, even if the file was copied elsewhere or renamed.
const DEVELOPMENT_KEY_SHA256: &[&str] = &[
    "1ef25d83324d2448b7686d7426c9923caf8ff50b5db4f0f5928ed5fd6055f093",
    "75bce31f7add4d874753ccc52ae4f75772cc336a2ba2cd7ef7ad22c69bf87c18",
];

/// A key load failure, naming the config field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct KeyError {
    pub field: String,
    pub message: String,
}

/// A key that verifies signatures.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub family: AlgorithmFamily,
    pub key: DecodingKey,
}

/// A key that signs tokens (`token mint` only).
pub struct SignKey {
    pub kid: Option<String>,
    pub family: AlgorithmFamily,
    pub key: EncodingKey,
}

/// All keys of one provider.
#[derive(Default)]
pub struct KeySet {
    pub verify: Vec<VerifyKey>,
    pub sign: Vec<SignKey>,
    /// True when a shipped development key is among them.
    pub development: bool,
}

/// Why no key could be chosen for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// No key has the token's `kid`, or there is no `kid` and no single key fits.
    Unknown,
    /// The key named by `kid` is of another family than the token's `alg`.
    WrongFamily,
}

/// Chooses the key for a token among `keys`: by `kid` when the token names one, else the
/// only key of the algorithm's family. Linear scans: providers hold a handful of keys.
pub fn select<'k, I>(keys: I, kid: Option<&str>, alg: Algorithm) -> Result<&'k VerifyKey, KeyMiss>
where
    I: Iterator<Item = &'k VerifyKey> + Clone,
{
    let family = alg.family();
    match kid {
        Some(kid) => {
            let mut named = keys.filter(|k| k.kid.as_deref() == Some(kid));
            let first = named.clone().next().ok_or(KeyMiss::Unknown)?;
            named
                .find(|k| k.family == family)
                .ok_or(if first.family == family {
                    KeyMiss::Unknown
                } else {
                    KeyMiss::WrongFamily
                })
        }
        None => {
            let any = keys.clone().next().is_some();
            let mut fitting = keys.filter(|k| k.family == family);
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => Ok(key),
                (None, _) if any => Err(KeyMiss::WrongFamily),
                _ => Err(KeyMiss::Unknown),
            }
        }
    }
}

/// Parses a JWKS document into verification keys, skipping keys tokengate cannot use
/// (other key types, encryption keys) rather than refusing the whole set.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    let keys: Vec<VerifyKey> = set
        .keys
        .iter()
        .filter(|jwk| {
            !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(VerifyKey {
                kid: jwk.common.key_id.clone(),
                family: key.family(),
                key,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err("the JWKS has no usable signing key".into());
    }
    Ok(keys)
}

impl KeySet {
    /// Loads the keys of provider `index` of the configuration.
    pub fn load(index: usize, provider: &Provider) -> Result<Self, KeyError> {
        Self::load_at(&format!("providers[{index}]"), provider)
    }

    /// Loads the keys of the provider-like section at config path `at` (a provider, or
    /// an SSF transmitter, whose keys are written the same way).
    pub fn load_at(at: &str, provider: &Provider) -> Result<Self, KeyError> {
        let mut set = KeySet::default();
        for (k, source) in provider.keys.iter().enumerate() {
            let at = format!("{at}.keys[{k}]");
            load_source(&at, provider, source, &mut set)?;
        }
        if set.verify.is_empty() && !provider.has_remote_keys() {
            return Err(KeyError {
                field: format!("{at}.keys"),
                message: "no usable key".into(),
            });
        }
        Ok(set)
    }
}

fn load_source(
    at: &str,
    provider: &Provider,
    source: &KeySource,
    set: &mut KeySet,
) -> Result<(), KeyError> {
    let err = |field: &str, message: String| KeyError {
        field: format!("{at}.{field}"),
        message,
    };
    match &source.key {
        Key::Pem { public, private } => {
            let pem = read(public).map_err(|m| err("public_key_file", m))?;
            set.development |= is_development(&pem);
            let (family, key) = public_pem(provider, &pem).ok_or_else(|| {
                err(
                    "public_key_file",
                    format!(
                        "{}: not a PEM public key for any of the provider's algorithms",
                        public.display()
                    ),
                )
            })?;
            set.verify.push(VerifyKey {
                kid: source.kid.clone(),
                family,
                key,
            });
            if let Some(path) = private {
                let pem = read(path).map_err(|m| err("private_key_file", m))?;
                set.development |= is_development(&pem);
                let key = match family {
                    AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(&pem),
                    AlgorithmFamily::Ec => EncodingKey::from_ec_pem(&pem),
                    AlgorithmFamily::Ed => EncodingKey::from_ed_pem(&pem),
                    AlgorithmFamily::Hmac => unreachable_family(),
                }
                .map_err(|e| {
                    err(
                        "private_key_file",
                        format!("{}: not a matching PEM private key: {e}", path.display()),
                    )
                })?;
                set.sign.push(SignKey {
                    kid: source.kid.clone(),
                    family,
                    key,
                });
            }
        }
        Key::Hmac(secret) => {
            let field = secret.field("secret");
            let bytes = secret.read().map_err(|e| err(&field, e.to_string()))?;
            if bytes.len() < 32 {
                return Err(err(
                    &field,
                    "HMAC secret must be at least 32 bytes (RFC 7518 §3.2)".into(),
                ));
            }
            set.verify.push(VerifyKey {
                kid: source.kid.clone(),
                family: AlgorithmFamily::Hmac,
                key: DecodingKey::from_secret(&bytes),
            });
            set.sign.push(SignKey {
                kid: source.kid.clone(),
                family: AlgorithmFamily::Hmac,
                key: EncodingKey::from_secret(&bytes),
            });
        }
        Key::JwksFile(path) => {
            let text = read(path).map_err(|m| err("jwks_file", m))?;
            let keys = parse_jwks(&text)
                .map_err(|e| err("jwks_file", format!("{}: {e}", path.display())))?;
            set.verify.extend(keys);
        }
        // Fetched by jwt::jwks, not loaded here.
        Key::Remote(_) => {}
    }
    Ok(())
}

/// The PEM decoders of the families the provider allows, tried in turn.
fn public_pem(provider: &Provider, pem: &[u8]) -> Option<(AlgorithmFamily, DecodingKey)> {
    let mut families: Vec<AlgorithmFamily> = Vec::new();
    for alg in &provider.algorithms {
        let f = alg.family();
        if f != AlgorithmFamily::Hmac && !families.contains(&f) {
            families.push(f);
        }
    }
    families.into_iter().find_map(|f| {
        let key = match f {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => return None,
        };
        key.ok().map(|k| (f, k))
    })
}

fn unreachable_family() -> Result<EncodingKey, jsonwebtoken::errors::Error> {
    Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn is_development(bytes: &[u8]) -> bool {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    DEVELOPMENT_KEY_SHA256.contains(&hex.as_str())
}
