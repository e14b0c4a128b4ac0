//! The `jti` replay guard of SETs, shared by every replica through the revocation store.
//!
//! Interim form until the store has a "remember once" operation: a SET's
//! `{issuer}#{jti}` is kept as a revoked `jti` in a namespace no provider can have (`!`
//! is not a namespace character, so no token's scoped id can ever equal it). It is
//! looked up before the SET's revocations and written after them: a SET whose
//! revocation failed is not remembered, so the transmitter's retry is not mistaken for
//! a replay. Two replicas receiving the same SET at the same instant may both apply it;
//! applying it twice revokes the same subject twice, which is harmless.

use crate::revocation::{Kind, RevocationStore, StoreError, Target};

/// The namespace of remembered SETs: outside the namespaces providers may use.
const NAMESPACE: &str = "ssf!set";

/// Remembers SET `jti`s in `store`.
pub struct ReplayGuard<'s, S> {
    store: &'s S,
}

impl<'s, S: RevocationStore> ReplayGuard<'s, S> {
    pub fn new(store: &'s S) -> Self {
        ReplayGuard { store }
    }

    /// Whether the SET `key` was applied before.
    pub async fn seen(&self, key: &str) -> Result<bool, StoreError> {
        let id = crate::revocation::scope::scoped(NAMESPACE, key);
        Ok(self.store.status(Kind::Jti, &id).await?.is_some())
    }

    /// Remembers `key` until `until` (unix seconds), past which its `iat` is too old.
    pub async fn remember(&self, key: &str, until: i64) -> Result<(), StoreError> {
        let id = crate::revocation::scope::scoped(NAMESPACE, key);
        let record = crate::revocation::Record::now("ssf-replay-guard", None);
        self.store
            .revoke(
                &Target::Jti {
                    id: &id,
                    expires_at: until,
                },
                &record,
            )
            .await
            .map(|_| ())
    }
}
