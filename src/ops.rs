//! `tokengate revoke` and `tokengate status`: operators' access to the configured store
//! without going through a running tokengate (the same writes, events and audit line).

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{Config, StoreKind};
use crate::revocation::{audit, Kind, Record, RevocationStore, Target, Written};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(
        "revocation.store is memory: that store lives inside one tokengate process; \
         use its admin API (POST /v1/admin/revocations) or configure redis"
    )]
    MemoryStore,
    #[error("{0}")]
    Store(String),
    #[error("{0}")]
    Invalid(String),
}

/// Opens the configured store and waits (up to 5 s) until it answers.
async fn open(
    config: &Config,
) -> Result<crate::revocation::cache::CachedStore<crate::revocation::Store>, OpsError> {
    if config.revocation.store == StoreKind::Memory {
        return Err(OpsError::MemoryStore);
    }
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::new(&[]));
    let store = crate::build_store(config, metrics).map_err(|e| OpsError::Store(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match store.ping().await {
            Ok(()) => return Ok(store),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(OpsError::Store(e.to_string()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Writes one revocation; returns what was written, as JSON for stdout.
pub async fn revoke(
    config: &Config,
    target: Target<'_>,
    reason: &str,
    actor: &str,
) -> Result<Value, OpsError> {
    if let Target::Jti { expires_at, .. } = target {
        if expires_at <= crate::jwt::now_unix() {
            return Err(OpsError::Invalid(
                "--expires-at is in the past: that token is already dead".into(),
            ));
        }
    }
    let store = open(config).await?;
    let record = Record::now(reason, Some(actor.to_string()));
    let written = store
        .revoke(&target, &record)
        .await
        .map_err(|e| OpsError::Store(e.to_string()))?;
    audit(&target, reason, Some(actor), "cli");
    let mut out = json!({"success": true, "kind": target.kind().as_str(), "id": target.id()});
    if let (Written::Subject(s), Some(map)) = (written, out.as_object_mut()) {
        map.insert("version".into(), s.version.into());
        map.insert("revoked_before".into(), s.before_ms.into());
    }
    Ok(out)
}

/// Reads what the store holds about one identifier.
pub async fn status(config: &Config, kind: Kind, id: &str) -> Result<Value, OpsError> {
    let store = open(config).await?;
    let status = store
        .status(kind, id)
        .await
        .map_err(|e| OpsError::Store(e.to_string()))?;
    Ok(match status {
        Some(s) => json!({"kind": kind.as_str(), "id": id, "revoked": true, "state": s}),
        None => json!({"kind": kind.as_str(), "id": id, "revoked": false}),
    })
}
