//! The verified-token cache: claims of tokens that passed verification, keyed by the
//! token's SHA-256 and kept until the token expires, so that a token seen again skips the
//! signature work (docs/spec.md §2 step 3).
//!
//! Only what verification concluded is cached, never a revocation answer: revocation is
//! always asked by `jti` and the other claims. A differently encoded copy of the same
//! token (ECDSA signatures are malleable) is only a cache miss, then verified on its own.
//! Denials are not cached, so junk tokens cannot fill it.

use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::jwt::Claims;

#[derive(Clone)]
struct Entry {
    claims: Arc<Claims>,
    /// Unix seconds after which the token is expired (exp + leeway).
    dies: i64,
}

pub struct VerifiedCache {
    /// Expired entries are never served and are evicted like any other once the cache
    /// is full. quick_cache's CLOCK-Pro admits every newcomer: a token is typically
    /// seen again soon after its first check (moka's TinyLFU admission turned exactly
    /// those away once full, and its lookups cost several times more).
    cache: Cache<[u8; 32], Entry>,
}

impl VerifiedCache {
    pub fn new(max_entries: u64) -> Option<Self> {
        (max_entries > 0).then(|| VerifiedCache {
            cache: Cache::new(usize::try_from(max_entries).unwrap_or(usize::MAX)),
        })
    }

    pub fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The claims of a token verified earlier and not yet expired at `now`.
    pub fn get(&self, key: &[u8; 32], now: i64) -> Option<Arc<Claims>> {
        self.cache
            .get(key)
            .filter(|e| now <= e.dies)
            .map(|e| e.claims)
    }

    pub fn insert(&self, key: [u8; 32], claims: Arc<Claims>, dies: i64) {
        self.cache.insert(key, Entry { claims, dies });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Arc<Claims> {
        Arc::new(Claims {
            provider: 0,
            jti: Some("j".into()),
            user: None,
            tenant: None,
            family: None,
            user_version: None,
            tenant_version: None,
            iat_ms: None,
            exp,
            scoped: Default::default(),
            payload: Default::default(),
            payload_b64: String::new(),
            rendered: Default::default(),
        })
    }

    #[test]
    fn hit_until_expiry_and_never_after() {
        let c = VerifiedCache::new(10).unwrap();
        let now = crate::jwt::now_unix();
        let k = VerifiedCache::key("a.b.c");
        assert_ne!(k, VerifiedCache::key("a.b.d"));
        c.insert(k, claims(now + 60), now + 65);
        assert!(c.get(&k, now).is_some());
        assert!(c.get(&k, now + 65).is_some());
        assert!(
            c.get(&k, now + 66).is_none(),
            "an expired token is never served"
        );
        assert!(VerifiedCache::new(0).is_none());
    }
}
