//! Every live revocation in Redis, for the revocation feed's snapshot (issue 20): one
//! SCAN walk per kind over the namespaced layout, then one pipeline per batch of keys
//! (`PTTL` of markers, `HMGET ver before` of users and tenants). Legacy keys are not
//! listed: the fast path reads only the namespaced layout (docs/operations.md).

use redis::RedisResult;

use super::migrate::scan;
use super::{unavailable, Conn, RedisStore};
use crate::revocation::feed::{Entry, Live};
use crate::revocation::{now_ms, Kind, StoreError, Subject};

/// Keys per pipeline.
const BATCH: usize = 500;

impl RedisStore {
    pub async fn live_entries(&self) -> Result<Vec<Live>, StoreError> {
        let conn = self.conn()?;
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let keys = scan(&conn, &self.pattern(kind))
                .await
                .map_err(unavailable)?;
            let prefix = format!("{}{}@", self.keys.prefix(), kind.as_str());
            for batch in keys.chunks(BATCH) {
                read(&conn, kind, &prefix, batch, &mut out)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(out)
    }

    /// `{prefix}{kind}@*`, the prefix's glob characters escaped.
    fn pattern(&self, kind: Kind) -> String {
        let mut p = String::new();
        for c in self.keys.prefix().chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push_str(kind.as_str());
        p.push_str("@*");
        p
    }
}

async fn read(
    conn: &Conn,
    kind: Kind,
    prefix: &str,
    keys: &[String],
    out: &mut Vec<Live>,
) -> RedisResult<()> {
    let now = now_ms() / 1000;
    match kind {
        Kind::Jti | Kind::Family | Kind::Session => {
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.cmd("PTTL").arg(k);
            }
            let ttls: Vec<i64> = pipe.query_async(&mut conn.clone()).await?;
            for (k, ttl) in keys.iter().zip(ttls) {
                // -2: gone since the scan; -1: no expiry (kept until removed).
                let exp = match ttl {
                    -2 => continue,
                    -1 => i64::MAX,
                    ms => now.saturating_add(ms / 1000 + 1),
                };
                if let Some(id) = k.strip_prefix(prefix) {
                    out.push(Live::new(kind, id, Entry::Marker { exp }));
                }
            }
        }
        Kind::User | Kind::Tenant => {
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.cmd("HMGET").arg(k).arg("ver").arg("before");
            }
            let rows: Vec<(Option<i64>, Option<i64>)> = pipe.query_async(&mut conn.clone()).await?;
            for (k, (ver, before)) in keys.iter().zip(rows) {
                if ver.is_none() && before.is_none() {
                    continue;
                }
                if let Some(id) = k.strip_prefix(prefix) {
                    let s = Subject::new(ver.unwrap_or(0).max(0) as u64, before.unwrap_or(0));
                    out.push(Live::new(kind, id, Entry::Subject(s)));
                }
            }
        }
    }
    Ok(())
}
