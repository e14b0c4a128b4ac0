//! `tokengate migrate`: rewrites the layout before issuer namespaces
//! (`{prefix}{kind}:{id}`) into the current one (`{prefix}{kind}@{namespace}:{id}`).
//!
//! A legacy revocation was written without its issuer, so it cannot be given back to
//! one: it is copied into EVERY configured namespace, the reading that keeps it enforced
//! for whichever issuer it was meant (a user of two issuers with the same `sub` stays
//! revoked under both: more than was asked, never less). Each copy merges with what the
//! current layout already holds (the higher version, the later cut-off, the longer
//! lifetime), keeps the legacy lifetime, and publishes its event so that running
//! replicas see it at once. The legacy key is deleted only if it still holds what was
//! copied; an older replica that wrote it meanwhile gets it copied again. Running it
//! twice changes nothing the second time: it is idempotent.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncCommands, RedisResult};
use serde::Serialize;

use super::{scripts, unavailable, Conn, RedisStore};
use crate::revocation::events::Event;
use crate::revocation::{now_ms, scope, Kind, StoreError, MAX_JTI_AHEAD_SECONDS};

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub dry_run: bool,
    /// The namespaces every legacy key is copied into.
    pub namespaces: Vec<String>,
    /// Legacy keys found, by kind.
    pub found: std::collections::BTreeMap<&'static str, u64>,
    /// Current-layout keys written (created or merged): found × namespaces.
    pub written: u64,
    /// Of those, keys that did not exist before.
    pub created: u64,
    /// Legacy keys deleted after their copy.
    pub deleted: u64,
    /// Keys under the prefix that look legacy but hold something else (left alone).
    pub skipped: u64,
}

/// How often a legacy key rewritten during its own migration is copied again before
/// the run gives up on it (it is then left in place, still read with `legacy_keys:
/// read`, and the run fails so the operator runs it again).
const ATTEMPTS: u32 = 5;

/// One legacy key's content.
#[derive(Debug, Clone, PartialEq)]
enum Legacy {
    Marker { record: String, ttl_ms: i64 },
    Subject { ver: i64, before: i64, ttl_ms: i64 },
}

impl RedisStore {
    /// Copies every legacy key into each of `namespaces` and deletes it; see the module
    /// doc. With `dry_run`, only counts.
    pub async fn migrate(
        &self,
        namespaces: &[String],
        dry_run: bool,
    ) -> Result<Report, StoreError> {
        let conn = self.conn()?;
        let mut report = Report {
            dry_run,
            namespaces: namespaces.to_vec(),
            ..Report::default()
        };
        // Sessions came after the namespaced layout: there is no legacy key of them.
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::Session) {
            let keys = scan(&conn, &self.keys.legacy_pattern(kind))
                .await
                .map_err(unavailable)?;
            let mut found = 0;
            for key in keys {
                let Some((k, raw)) = self.keys.parse_legacy(&key) else {
                    continue;
                };
                if k != kind {
                    continue;
                }
                found += 1;
                if dry_run {
                    report.written += namespaces.len() as u64;
                    continue;
                }
                self.migrate_key(&conn, kind, &key, raw, namespaces, &mut report)
                    .await?;
            }
            report.found.insert(kind.as_str(), found);
        }
        Ok(report)
    }

    async fn migrate_key(
        &self,
        conn: &Conn,
        kind: Kind,
        key: &str,
        raw: &str,
        namespaces: &[String],
        report: &mut Report,
    ) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let Some(legacy) = read(conn, kind, key).await.map_err(unavailable)? else {
                // gone (expired meanwhile) or not ours: nothing to keep
                report.skipped += u64::from(exists(conn, key).await.map_err(unavailable)?);
                return Ok(());
            };
            for ns in namespaces {
                let created = self
                    .write(conn, kind, &scope::scoped(ns, raw), &legacy)
                    .await
                    .map_err(unavailable)?;
                report.written += 1;
                report.created += u64::from(created);
            }
            let mut del = scripts::DELETE_IF_SAME.key(key);
            match &legacy {
                Legacy::Marker { record, .. } => del.arg("marker").arg(record),
                Legacy::Subject { ver, before, .. } => del.arg("subject").arg(ver).arg(before),
            };
            let deleted: i64 = invoke(conn, &del).await.map_err(unavailable)?;
            if deleted == 1 {
                report.deleted += 1;
                return Ok(());
            }
        }
        Err(StoreError::Unexpected(format!(
            "{key} kept changing during its migration; run migrate again"
        )))
    }

    /// Merges one legacy value into the current key of `scoped`; true when created.
    async fn write(
        &self,
        conn: &Conn,
        kind: Kind,
        scoped: &str,
        legacy: &Legacy,
    ) -> RedisResult<bool> {
        let key = self.keys.key(kind, scoped);
        let channel = self.keys.events();
        match legacy {
            Legacy::Marker { record, ttl_ms } => {
                let event = match kind {
                    Kind::Jti => {
                        let ahead = if *ttl_ms < 0 {
                            MAX_JTI_AHEAD_SECONDS
                        } else {
                            ttl_ms / 1000 + 1
                        };
                        Event::Jti {
                            id: scoped.to_string(),
                            exp: now_ms() / 1000 + ahead,
                        }
                    }
                    _ => Event::Family {
                        id: scoped.to_string(),
                    },
                };
                let mut inv = scripts::MERGE_MARKER.key(&key);
                inv.arg(record)
                    .arg(ttl_ms)
                    .arg(&channel)
                    .arg(event.to_json());
                let created: i64 = invoke(conn, &inv).await?;
                Ok(created == 1)
            }
            Legacy::Subject {
                ver,
                before,
                ttl_ms,
            } => {
                let mut inv = scripts::MERGE_SUBJECT.key(&key);
                inv.arg(ver)
                    .arg(before)
                    .arg(ttl_ms)
                    .arg(&channel)
                    .arg(Event::subject_head(kind, scoped));
                let (created, _, _): (i64, i64, i64) = invoke(conn, &inv).await?;
                Ok(created == 1)
            }
        }
    }
}

async fn invoke<T: redis::FromRedisValue>(
    conn: &Conn,
    inv: &redis::ScriptInvocation<'_>,
) -> RedisResult<T> {
    inv.invoke_async(&mut conn.clone()).await
}

async fn exists(conn: &Conn, key: &str) -> RedisResult<bool> {
    conn.clone().exists(key).await
}

/// A legacy key's value and remaining lifetime (ms, -1 for none); `None` when it is
/// gone or is not of the type its kind writes.
async fn read(conn: &Conn, kind: Kind, key: &str) -> RedisResult<Option<Legacy>> {
    let mut head = redis::pipe();
    head.cmd("TYPE").arg(key).cmd("PTTL").arg(key);
    let (ty, ttl_ms): (String, i64) = query(conn, &head).await?;
    let expected = match kind {
        Kind::Jti | Kind::Family | Kind::Session => "string",
        Kind::User | Kind::Tenant => "hash",
    };
    if ty != expected {
        return Ok(None);
    }
    let mut body = redis::pipe();
    Ok(match kind {
        Kind::Jti | Kind::Family | Kind::Session => {
            body.get(key);
            let (record,): (Option<String>,) = query(conn, &body).await?;
            record.map(|record| Legacy::Marker { record, ttl_ms })
        }
        Kind::User | Kind::Tenant => {
            body.hget(key, "ver").hget(key, "before");
            let (ver, before): (Option<i64>, Option<i64>) = query(conn, &body).await?;
            (ver.is_some() || before.is_some()).then(|| Legacy::Subject {
                ver: ver.unwrap_or(0).max(0),
                before: before.unwrap_or(0),
                ttl_ms,
            })
        }
    })
}

async fn query<T: redis::FromRedisValue>(conn: &Conn, pipe: &redis::Pipeline) -> RedisResult<T> {
    pipe.query_async(&mut conn.clone()).await
}

/// Every key matching `pattern`: one SCAN walk on a standalone server, one per master
/// in a Cluster (keys live on the master of their slot).
pub(super) async fn scan(conn: &Conn, pattern: &str) -> RedisResult<Vec<String>> {
    let mut keys = std::collections::BTreeSet::new();
    match conn.clone() {
        Conn::Single(mut c) => {
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Conn::Cluster(mut c) => {
            let nodes: String = redis::from_redis_value(
                c.route_command(
                    redis::cmd("CLUSTER").arg("NODES").clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
                )
                .await?,
            )?;
            for (host, port) in masters(&nodes) {
                let mut cursor = 0u64;
                loop {
                    let mut cmd = redis::cmd("SCAN");
                    cmd.arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(1000);
                    let at = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port,
                    });
                    let (next, batch): (u64, Vec<String>) =
                        redis::from_redis_value(c.route_command(cmd, at).await?)?;
                    keys.extend(batch);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
        }
    }
    Ok(keys.into_iter().collect())
}

/// The masters of a `CLUSTER NODES` reply that are not failing: (host, port).
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            let master = flags.split(',').any(|f| f == "master");
            let down = flags
                .split(',')
                .any(|f| matches!(f, "fail" | "fail?" | "noaddr"));
            if !master || down {
                return None;
            }
            let (host, port) = addr.split(['@', ',']).next()?.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some((host.to_string(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let nodes = "\
a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:30002@40002,host-b master - 0 0 2 connected 5461-10922
c3 127.0.0.1:30003@40003 slave a1 0 0 1 connected
d4 127.0.0.1:30004@40004 master,fail - 0 0 3 disconnected
e5 [::1]:30005@40005 master - 0 0 4 connected 10923-16383
";
        assert_eq!(
            masters(nodes),
            vec![
                ("127.0.0.1".to_string(), 30001),
                ("127.0.0.1".to_string(), 30002),
                ("::1".to_string(), 30005),
            ]
        );
    }
}
