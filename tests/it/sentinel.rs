//! Redis behind Sentinel, failing over for real: the primary is SIGKILLed while checks
//! run, Sentinel promotes the replica, and tokengate must follow it without ever letting
//! a revoked token through, keep every revocation it acknowledged before the failover,
//! and get its invalidation events back from the new primary. The revocation suite
//! itself runs against Sentinel in tests/it/revocation.rs (`redis_sentinel`).
//!
//! What "acknowledged" means is set by `revocation.redis.wait_replicas`: these tests run
//! with 1, so an acknowledged revocation is on the replica Sentinel promotes.

use crate::support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::json;
use support::outage::{wait_fresh_checks_allowed, RECOVERY};
use support::redis::{store_yaml_with, RedisServer};
use support::sentinel::RedisSentinel;
use support::*;
use tokio_util::sync::CancellationToken;

/// How long one check may take before the load calls it hung: four store deadlines
/// ([`STORE_DEADLINE`]). A check waiting on a dead primary, or on Sentinel, would
/// exceed it; a slow debug build on a busy machine does not come near.
const HUNG: Duration = Duration::from_secs(8);

/// The store deadline of these tests: WAIT gets half of it, and a replica's
/// acknowledgement on a loaded 2-core machine running the suite in parallel can take a
/// few hundred milliseconds, and more than 500 ms when other builds share the cores (a
/// CI run saw a first write refused at 1000 ms; production keeps 50 ms and a LAN
/// replica).
const STORE_DEADLINE: &str = "  store_timeout_ms: 2000\n";

/// What the load saw, per token class.
#[derive(Default, Debug)]
struct Tally {
    fresh: BTreeMap<String, u32>,
    revoked: BTreeMap<String, u32>,
    /// Checks of revoked tokens that were allowed: must stay 0.
    revoked_allowed: u32,
    /// Checks that did not answer within [`HUNG`]: must stay 0.
    hung: u32,
    slowest: Duration,
}

/// `allow`, or the deny's reason.
fn outcome(a: &Answer) -> String {
    match (a.grpc_code, a.reason()) {
        (0, _) => "allow".into(),
        (code, reason) => reason.unwrap_or_else(|| format!("grpc {code}")),
    }
}

/// Checks until `stop`: a never-seen token (a store call, unless the cache has it) and
/// the next revoked one, in turn. The replica under load caches one entry per kind, so
/// revoked tokens keep going to the store rather than being answered from its cache.
fn load(
    addr: std::net::SocketAddr,
    revoked: Arc<Vec<String>>,
    offset: usize,
    done: Arc<AtomicU64>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Tally> {
    tokio::spawn(async move {
        let mut c = AuthorizationClient::connect(format!("http://{addr}"))
            .await
            .expect("connects");
        let mut tally = Tally::default();
        let mut i = offset;
        while !stop.is_cancelled() {
            for (is_revoked, t) in [
                (false, token("ec256", "load", json!({}))),
                (true, revoked[i % revoked.len()].clone()),
            ] {
                let started = Instant::now();
                done.fetch_add(1, Ordering::Relaxed);
                let Ok(a) = tokio::time::timeout(HUNG, check_token(&mut c, &t)).await else {
                    tally.hung += 1;
                    continue;
                };
                tally.slowest = tally.slowest.max(started.elapsed());
                let o = outcome(&a);
                if is_revoked {
                    tally.revoked_allowed += u32::from(a.allowed());
                    *tally.revoked.entry(o).or_default() += 1;
                } else {
                    *tally.fresh.entry(o).or_default() += 1;
                }
            }
            i += 1;
        }
        tally
    })
}

fn yaml(url: &str, extra: &str) -> String {
    config_yaml(&store_yaml_with(
        url,
        "    wait_replicas: 1\n",
        &format!("{STORE_DEADLINE}{extra}"),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_under_load_loses_no_acknowledged_revocation_and_events_follow() {
    let mut d = RedisSentinel::start_async().await;
    tokio::task::block_in_place(|| d.wait_failover_ready());
    let long_cache = "  cache:\n    ttl_seconds: 600\n";
    let a = TestServer::start(&yaml(&d.url(), long_cache)).await;
    let b = TestServer::start(&yaml(&d.url(), long_cache)).await;

    // Acknowledged before the failover: on the primary and (WAIT 1) on the replica.
    let mut revoked = Vec::new();
    for i in 0..50 {
        let t = token("ec256", &format!("gone-{i}"), json!({}));
        assert_eq!(logout(&a, "/v1/auth/logout", &t).await.0, 200);
        revoked.push(t);
    }
    let revoked = Arc::new(revoked);

    // The replica under load started after those writes: it has no event of them, and
    // a one-entry cache per kind keeps sending revoked tokens to the store.
    let c = TestServer::start(&yaml(&d.url(), "  cache:\n    max_entries: 1\n")).await;
    let cc = c.grpc().await;
    let stop = CancellationToken::new();
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..2)
        .map(|n| {
            load(
                c.addrs.grpc,
                revoked.clone(),
                n * 25,
                done.clone(),
                stop.clone(),
            )
        })
        .collect();
    // Load before, during and after: a few hundred checks on each side of the failover.
    let at_least = |n: u64| {
        let done = done.clone();
        move || {
            let done = done.clone();
            async move { done.load(Ordering::Relaxed) >= n }
        }
    };
    wait_for("load before the failover", PROPAGATION, at_least(200)).await;

    let killed = Instant::now();
    tokio::task::block_in_place(|| d.kill_primary());
    let promoted_at = tokio::task::block_in_place(|| d.wait_for_failover(Duration::from_secs(30)));
    let promoted = killed.elapsed();
    wait_fresh_checks_allowed(&cc, "checks to recover after the failover").await;
    let recovered = killed.elapsed();
    println!(
        "failover: Sentinel promoted {promoted_at} {promoted:?} after the kill; \
         uncached checks allowed again {recovered:?} after it"
    );
    let later = done.load(Ordering::Relaxed) + 200;
    wait_for("load after the failover", PROPAGATION, at_least(later)).await;
    stop.cancel();
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.expect("load task");
        for (k, n) in t.fresh {
            *all.fresh.entry(k).or_default() += n;
        }
        for (k, n) in t.revoked {
            *all.revoked.entry(k).or_default() += n;
        }
        all.revoked_allowed += t.revoked_allowed;
        all.hung += t.hung;
        all.slowest = all.slowest.max(t.slowest);
    }
    println!("load through the failover: {all:?}");
    assert_eq!(
        all.revoked_allowed, 0,
        "a revoked token was allowed: {all:?}"
    );
    assert_eq!(
        all.hung, 0,
        "a check did not answer within {HUNG:?}: {all:?}"
    );
    for (o, _) in all.fresh.iter() {
        assert!(
            o == "allow" || o == "store_unavailable",
            "unexpected answer to a fresh token: {o} ({all:?})"
        );
    }
    for (o, _) in all.revoked.iter() {
        assert!(
            o == "jti_revoked" || o == "store_unavailable",
            "unexpected answer to a revoked token: {o} ({all:?})"
        );
    }
    assert!(
        all.revoked.contains_key("jti_revoked") && all.fresh.contains_key("allow"),
        "the load reached the store: {all:?}"
    );

    // Every revocation acknowledged before the failover, read from the new primary by a
    // replica with nothing cached.
    let fresh = TestServer::start(&yaml(&d.url(), "")).await;
    let mut fc = fresh.grpc().await;
    for t in revoked.iter() {
        assert_eq!(
            check_token(&mut fc, t).await.reason().as_deref(),
            Some("jti_revoked")
        );
    }

    // The new primary has no replica yet: a revocation cannot be confirmed, so it is
    // refused rather than acknowledged (a second failover now would lose it).
    let t2 = token("ec256", "after", json!({}));
    let (status, body) = logout(&a, "/v1/auth/logout", &t2).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("store_unavailable"))
    );

    // The old primary comes back empty; Sentinel makes it the new primary's replica.
    tokio::task::block_in_place(|| {
        d.replica().restart();
        let primary = d.primary();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !primary
            .cli(&["info", "replication"])
            .contains("state=online")
        {
            assert!(Instant::now() < deadline, "the old primary never rejoined");
            std::thread::sleep(Duration::from_millis(50));
        }
    });

    // B's subscription re-attached to the new primary: a revocation written through A
    // reaches B's cache (600 s TTL) by the event alone.
    let mut cb = b.grpc().await;
    wait_fresh_checks_allowed(&cb, "B to recover").await;
    wait_for("B's subscription to be up", PROPAGATION, || async {
        b.engine.store().metrics().subscription_up.get() == 1
    })
    .await;
    let t3 = token("ec256", "after", json!({}));
    assert!(check_token(&mut cb, &t3).await.allowed(), "cached on B");
    let started = Instant::now();
    assert_eq!(logout(&a, "/v1/auth/logout", &t3).await.0, 200);
    wait_for("B to deny through the event", PROPAGATION, || {
        let (t3, mut cb) = (t3.clone(), cb.clone());
        async move { check_token(&mut cb, &t3).await.reason().as_deref() == Some("jti_revoked") }
    })
    .await;
    println!(
        "propagation A → B after the failover: {:?}",
        started.elapsed()
    );
}

/// `wait_replicas: 1` makes "acknowledged" mean "on a replica": with the replica
/// stopped, every kind of revocation write (a marker script and a subject script,
/// through logout and the admin API) is refused with 503, and the same request succeeds
/// once the replica is back.
#[tokio::test(flavor = "multi_thread")]
async fn with_wait_replicas_a_revocation_no_replica_confirmed_is_not_acknowledged() {
    let primary = tokio::task::spawn_blocking(|| {
        RedisServer::start_with(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-sync-delay",
            "0",
        ])
    })
    .await
    .expect("primary starts");
    let port = primary.port.to_string();
    let mut replica = tokio::task::spawn_blocking(move || {
        RedisServer::start_with(&[
            "--save",
            "",
            "--appendonly",
            "no",
            "--replicaof",
            "127.0.0.1",
            &port,
        ])
    })
    .await
    .expect("replica starts");
    // Attached is not enough: WAIT counts a replica once its initial sync is done.
    let synced = || {
        primary
            .cli(&["info", "replication"])
            .contains("state=online")
    };
    wait_for("the replica to attach", PROPAGATION, || async { synced() }).await;
    let s = TestServer::start(&support::issuers::with_admin(
        &yaml(&primary.url(), ""),
        &["test"],
    ))
    .await;
    let mut c = s.grpc().await;

    let before = token("ec256", "alice", json!({}));
    let (status, body) = logout(&s, "/v1/auth/logout", &before).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        replica.cli(&["dbsize"]).trim(),
        "1",
        "the write is on the replica"
    );

    replica.kill_now();
    // One token per write: a refused write may still have reached the primary (it is
    // not acknowledged, not undone), and would make the next request's token revoked.
    let t = token("ec256", "bob", json!({}));
    for (path, who) in [
        ("/v1/auth/logout", "carol"),
        ("/v1/auth/logout-all", "dave"),
    ] {
        let (status, body) = logout(&s, path, &token("ec256", who, json!({}))).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (503, Some("store_unavailable")),
            "{path}: {body}"
        );
    }
    // The admin API writes through the same path: tenant (a subject) and family (a
    // marker) cut-offs are refused alike.
    let admin = token("ec256", "ops-admin", json!({"scope": "tokengate:admin"}));
    for body in [json!({"tenant": "acme"}), json!({"family": "f9"})] {
        let resp = reqwest::Client::new()
            .post(s.admin_url("/v1/admin/revocations"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("admin request");
        assert_eq!(resp.status().as_u16(), 503, "{body}");
    }
    // Refused, not forgotten: the primary may hold the write, and the caller retries.
    replica.restart_now();
    wait_for("the replica to attach again", PROPAGATION, || async {
        synced()
    })
    .await;
    assert_eq!(logout(&s, "/v1/auth/logout-all", &t).await.0, 200);
    assert_eq!(
        check_token(&mut c, &t).await.reason().as_deref(),
        Some("user_revoked")
    );
}

/// A failover that leaves the old primary running (`SENTINEL FAILOVER`, or a partition
/// that heals): the old primary is demoted to a replica and still answers PING, reads
/// and subscriptions, but refuses writes (READONLY). tokengate must notice the demotion
/// itself, not only a dead node: writes go to the new primary, and events still reach
/// every replica.
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_that_demotes_a_live_primary_moves_writes_and_keeps_events() {
    let mut d = RedisSentinel::start_async().await;
    tokio::task::block_in_place(|| d.wait_failover_ready());
    let long_cache = "  cache:\n    ttl_seconds: 600\n";
    let a = TestServer::start(&yaml(&d.url(), long_cache)).await;
    let b = TestServer::start(&yaml(&d.url(), long_cache)).await;
    let mut cb = b.grpc().await;
    let old = d.primary().port;

    let out = support::redis::cli(d.sentinels[0].port, &["sentinel", "failover", "tgmaster"]);
    assert_eq!(out.trim(), "OK", "{out}");
    let new_primary = tokio::task::block_in_place(|| d.wait_for_failover(Duration::from_secs(30)));
    let demoted = d.replica().port;
    assert_eq!(demoted, old);
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d
            .primary()
            .cli(&["info", "replication"])
            .contains("state=online")
        {
            assert!(
                Instant::now() < deadline,
                "the old primary never became a replica"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    println!("manual failover to {new_primary}; {old} is now its replica");

    // Checks work again on B (with a watch that only pinged, B's uncached checks still
    // failed here).
    wait_fresh_checks_allowed(&cb, "B to answer after the failover").await;
    // Writes through A reach the new primary. While A moves over, a logout may be
    // refused (503), possibly after its write landed: each attempt uses a new token,
    // cached on B as not revoked first.
    let started = Instant::now();
    let t = loop {
        assert!(
            started.elapsed() < RECOVERY,
            "A never acknowledged a logout again"
        );
        let t = token("ec256", "alice", json!({}));
        assert!(check_token(&mut cb, &t).await.allowed(), "cached on B");
        if logout(&a, "/v1/auth/logout", &t).await.0 == 200 {
            break t;
        }
    };
    let jti = decode_part(&t, 1)["jti"].as_str().unwrap().to_string();
    let key = format!("tokengate:jti@test:{jti}");
    assert_eq!(
        d.primary().cli(&["exists", &key]).trim(),
        "1",
        "on the new primary"
    );
    // B learns of it by the event alone (600 s cache), wherever its subscription is.
    wait_for("B to deny through the event", PROPAGATION, || {
        let (t, mut cb) = (t.clone(), cb.clone());
        async move { check_token(&mut cb, &t).await.reason().as_deref() == Some("jti_revoked") }
    })
    .await;
}
