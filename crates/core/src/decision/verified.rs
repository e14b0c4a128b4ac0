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

/// The adapters' renderings of an allow for one verified token, made the first time it
/// is allowed and kept in its cache entry, so that a token seen again costs no
/// rendering. Valid under the policy that verified the token: that policy owns the
/// verified-token cache, and a reload starts a new one. Not part of what the token
/// says: two entries for equal claims may hold different memos.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The encoded gRPC `CheckResponse` of an allow.
    grpc: std::sync::OnceLock<bytes::Bytes>,
    /// The response headers of an HTTP-mode allow.
    http: std::sync::OnceLock<http::HeaderMap>,
}

impl Rendered {
    /// The gRPC allow, made by `render` the first time.
    pub fn grpc(&self, render: impl FnOnce() -> bytes::Bytes) -> bytes::Bytes {
        self.grpc.get_or_init(render).clone()
    }

    /// The HTTP allow's headers, made by `render` the first time.
    pub fn http(&self, render: impl FnOnce() -> http::HeaderMap) -> http::HeaderMap {
        self.http.get_or_init(render).clone()
    }
}

/// A verified token as the cache keeps it: its claims and the memo of its answers.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Arc<Claims>,
    pub rendered: Arc<Rendered>,
}

impl Verified {
    /// Claims just verified, with nothing rendered yet.
    pub fn new(claims: Claims) -> Self {
        Verified {
            claims: Arc::new(claims),
            rendered: Arc::default(),
        }
    }
}

#[derive(Clone)]
struct Entry {
    token: Verified,
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

    /// A token verified earlier and not yet expired at `now`.
    pub fn get(&self, key: &[u8; 32], now: i64) -> Option<Verified> {
        self.cache
            .get(key)
            .filter(|e| now <= e.dies)
            .map(|e| e.token)
    }

    pub fn insert(&self, key: [u8; 32], token: Verified, dies: i64) {
        self.cache.insert(key, Entry { token, dies });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Verified {
        Verified::new(Claims {
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
