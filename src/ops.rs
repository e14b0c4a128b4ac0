//! `tokengate revoke`, `status` and `migrate`: operators' access to the configured store
//! without going through a running tokengate (the same writes, events and audit line).
//! Identifiers are named as tokens carry them; `--provider` says whose (the namespace of
//! that provider), and may be left out only when every provider shares one namespace.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{self, Config};
use crate::revocation::{
    audit, operator_expiry, scope, Kind, Record, RevocationStore, Store, Target, Written,
};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(
        "revocation.store is memory: that store lives inside one tokengate process; \
         use its admin API (POST /v1/admin/revocations) or configure redis"
    )]
    MemoryStore,
    #[error(transparent)]
    Start(#[from] crate::StartError),
    #[error(transparent)]
    Store(#[from] crate::revocation::StoreError),
    #[error("{0}")]
    Invalid(String),
}

/// Opens the configured store and waits (up to 5 s) until it answers.
async fn open(
    config: &Config,
) -> Result<crate::revocation::cache::CachedStore<crate::revocation::Store>, OpsError> {
    if config.revocation.store == config::Store::Memory {
        return Err(OpsError::MemoryStore);
    }
    let metrics =
        std::sync::Arc::new(crate::metrics::Metrics::new(&[]).map_err(crate::StartError::from)?);
    let store = crate::build_store(config, metrics)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match store.ping().await {
            Ok(()) => return Ok(store),
            // Connecting (or a failover) may end within the deadline; anything else won't.
            Err(e) if !e.is_transient() || tokio::time::Instant::now() >= deadline => {
                return Err(OpsError::Store(e))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The namespace `--provider` names, or the only one configured.
fn namespace<'c>(config: &'c Config, provider: Option<&str>) -> Result<&'c str, OpsError> {
    let providers = config
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.namespace()));
    scope::resolve(providers, provider)
        .map_err(|why| OpsError::Invalid(format!("--provider: {}", why.message())))
}

/// What an operator asks to revoke: a kind, the id as tokens carry it, and for a `jti`
/// the token's `exp`.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub kind: Kind,
    pub id: &'a str,
    pub expires_at: Option<i64>,
    pub provider: Option<&'a str>,
}

/// Writes one revocation; returns what was written, as JSON for stdout.
pub async fn revoke(
    config: &Config,
    request: Request<'_>,
    reason: &str,
    actor: &str,
) -> Result<Value, OpsError> {
    let namespace = namespace(config, request.provider)?;
    let scoped = scope::scoped(namespace, request.id);
    let target = match request.kind {
        Kind::Jti => {
            let expires_at = request.expires_at.unwrap_or(0);
            operator_expiry(expires_at, crate::jwt::now_unix())
                .map_err(|why| OpsError::Invalid(format!("--expires-at {why}")))?;
            Target::Jti {
                id: &scoped,
                expires_at,
            }
        }
        Kind::User => Target::User(&scoped),
        Kind::Tenant => Target::Tenant(&scoped),
        Kind::Family => Target::Family(&scoped),
        Kind::Session => Target::Session(&scoped),
    };
    let store = open(config).await?;
    let record = Record::now(reason, Some(actor.to_string()));
    let written = store.revoke(&target, &record).await?;
    audit(&target, reason, Some(actor), "cli");
    let mut out = json!({
        "success": true,
        "kind": request.kind.as_str(),
        "id": request.id,
        "namespace": namespace,
    });
    if let (Written::Subject(s), Some(map)) = (written, out.as_object_mut()) {
        map.insert("version".into(), s.version.into());
        map.insert("revoked_before".into(), s.before_ms.into());
    }
    Ok(out)
}

/// Reads what the store holds about one identifier of one namespace.
pub async fn status(
    config: &Config,
    kind: Kind,
    id: &str,
    provider: Option<&str>,
) -> Result<Value, OpsError> {
    let namespace = namespace(config, provider)?;
    let store = open(config).await?;
    let status = store.status(kind, &scope::scoped(namespace, id)).await?;
    let mut out = json!({"kind": kind.as_str(), "id": id, "namespace": namespace});
    out["revoked"] = status.is_some().into();
    if let Some(s) = status {
        out["state"] = json!(s);
    }
    Ok(out)
}

/// Copies every revocation of the layout before issuer namespaces into every configured
/// namespace and deletes the legacy keys (docs/operations.md, "Upgrading to
/// issuer-scoped revocations"); with `dry_run` only counts them.
pub async fn migrate(config: &Config, dry_run: bool) -> Result<Value, OpsError> {
    let mut namespaces: Vec<String> = config
        .providers
        .iter()
        .map(|p| p.namespace().to_string())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let store = open(config).await?;
    let Store::Redis(redis) = store.inner() else {
        return Err(OpsError::MemoryStore);
    };
    let report = redis.migrate(&namespaces, dry_run).await?;
    tracing::info!(
        target: "audit",
        dry_run,
        written = report.written,
        deleted = report.deleted,
        source = "cli",
        "legacy revocations migrated"
    );
    Ok(json!(report))
}
