//! The fixture keys under `tests/fixtures/keys`: which file holds which key, under which
//! `kid` the test and bench configurations publish it, and with which algorithm it signs.
//! One table, so that a configuration and the tokens signed for it cannot disagree.

use std::path::{Path, PathBuf};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey};

/// One fixture key (an HMAC secret, or a PEM key pair).
#[derive(Debug, Clone, Copy)]
pub struct FixtureKey {
    /// What callers name it by (`"ps"` is the RSA pair signing PS256).
    pub name: &'static str,
    /// The `kid` configurations publish it under and tokens carry.
    pub kid: &'static str,
    pub alg: Algorithm,
    /// The secret file (HMAC) or the PEM public key.
    pub public: &'static str,
    /// The secret file again (HMAC) or the PEM private key.
    pub private: &'static str,
}

/// Every fixture key; the first of each algorithm is the one [`for_alg`] picks.
pub const KEYS: [FixtureKey; 7] = [
    key("hs", "hs", Algorithm::HS256, "hs.secret", "hs.secret"),
    key(
        "rsa",
        "rsa",
        Algorithm::RS256,
        "rsa-public.pem",
        "rsa-private.pem",
    ),
    key(
        "ps",
        "rsa",
        Algorithm::PS256,
        "rsa-public.pem",
        "rsa-private.pem",
    ),
    key(
        "ec256",
        "ec256",
        Algorithm::ES256,
        "ec256-public.pem",
        "ec256-private.pem",
    ),
    key(
        "ec384",
        "ec384",
        Algorithm::ES384,
        "ec384-public.pem",
        "ec384-private.pem",
    ),
    key(
        "ed",
        "ed",
        Algorithm::EdDSA,
        "ed25519-public.pem",
        "ed25519-private.pem",
    ),
    key(
        "rsa2",
        "rsa2",
        Algorithm::RS256,
        "rsa2-public.pem",
        "rsa2-private.pem",
    ),
];

const fn key(
    name: &'static str,
    kid: &'static str,
    alg: Algorithm,
    public: &'static str,
    private: &'static str,
) -> FixtureKey {
    FixtureKey {
        name,
        kid,
        alg,
        public,
        private,
    }
}

/// `tests/fixtures/keys` of this repository.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/keys")
}

/// The key called `name` (`hs`, `rsa`, `ps`, `ec256`, `ec384`, `ed`, `rsa2`).
pub fn named(name: &str) -> Option<&'static FixtureKey> {
    KEYS.iter().find(|k| k.name == name)
}

/// The key that signs `alg` (`HS256`, `RS256`, `PS256`, `ES256`, `ES384`, `EdDSA`).
pub fn for_alg(alg: &str) -> Option<&'static FixtureKey> {
    KEYS.iter().find(|k| k.alg_name() == alg)
}

/// The JOSE name of an algorithm (`jsonwebtoken` parses the names but does not print
/// them); `None` for one added to its non-exhaustive enum since.
pub fn alg_name(alg: Algorithm) -> Option<&'static str> {
    Some(match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => return None,
    })
}

impl FixtureKey {
    pub fn is_hmac(&self) -> bool {
        matches!(
            self.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        )
    }

    /// The JOSE name of its algorithm (every fixture key's has one).
    pub fn alg_name(&self) -> &'static str {
        alg_name(self.alg).unwrap_or("?")
    }

    /// This key as one entry of a provider's `keys:` list, a one-line flow mapping (JSON,
    /// so that any path is quoted right) with the files under `dir`.
    pub fn config_entry(&self, dir: &Path) -> String {
        let path = |name: &str| dir.join(name).display().to_string();
        let entry = if self.is_hmac() {
            serde_json::json!({"kid": self.kid, "secret_file": path(self.public)})
        } else {
            serde_json::json!({
                "kid": self.kid,
                "public_key_file": path(self.public),
                "private_key_file": path(self.private),
            })
        };
        entry.to_string()
    }

    /// The signing key, read from `dir` (an HMAC secret file's one trailing newline is
    /// not part of the secret, as tokengate reads it).
    pub fn encoding_key(&self, dir: &Path) -> anyhow::Result<EncodingKey> {
        let path = dir.join(self.private);
        let mut bytes =
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = match self.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                EncodingKey::from_secret(&bytes)
            }
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&bytes)?,
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&bytes)?,
            _ => EncodingKey::from_rsa_pem(&bytes)?,
        };
        Ok(key)
    }
}

/// One entry of a top-level `providers:` list (indented for it): `name` trusting
/// `issuer` for `audience`, accepting exactly the algorithms of `keys`, which it lists.
pub fn provider_yaml(
    name: &str,
    issuer: &str,
    audience: &str,
    keys: &[&FixtureKey],
    dir: &Path,
) -> String {
    let mut algs: Vec<&str> = Vec::new();
    for k in keys {
        if !algs.contains(&k.alg_name()) {
            algs.push(k.alg_name());
        }
    }
    let mut yaml = format!(
        "  - name: {name}\n    issuer: {issuer}\n    audiences: [{audience}]\n    algorithms: [{}]\n    keys:\n",
        algs.join(", ")
    );
    for k in keys {
        yaml.push_str(&format!("      - {}\n", k.config_entry(dir)));
    }
    yaml
}
