//! What only a shared store can show, against a real `redis-server`: a logout on one
//! replica ends the session on another through the invalidation event, the cache saves
//! Redis calls, a miss is one round trip, Redis outages fail closed (or open) and recover
//! by themselves, and acknowledged revocations survive a restart.

use crate::support;

use std::time::Instant;

use serde_json::{json, Value};
use support::outage::{assert_store_unavailable, wait_fresh_checks_allowed};
use support::redis::{store_yaml, RedisServer};
use support::*;
use tokengate::metrics::StoreOp;
use tokio_util::sync::CancellationToken;

async fn redis(aof: bool) -> RedisServer {
    if aof {
        RedisServer::start_with_aof_async().await
    } else {
        RedisServer::start_async().await
    }
}

fn yaml(url: &str, revocation_extra: &str) -> String {
    config_yaml(&store_yaml(url, revocation_extra))
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_on_one_replica_is_enforced_by_the_other_through_the_event() {
    let r = redis(false).await;
    // A long cache TTL: only the invalidation event can make B notice in time.
    let y = yaml(&r.url(), "  cache:\n    ttl_seconds: 600\n");
    let a = TestServer::start(&y).await;
    let b = TestServer::start(&y).await;
    let mut cb = b.grpc().await;

    let t = token("ec256", "alice", json!({}));
    let other = token("ec256", "bob", json!({}));
    assert!(check_token(&mut cb, &t).await.allowed());
    assert!(check_token(&mut cb, &other).await.allowed());
    let calls = b.engine.store().metrics().store_calls(StoreOp::Check);
    assert!(check_token(&mut cb, &t).await.allowed());
    assert_eq!(
        b.engine.store().metrics().store_calls(StoreOp::Check),
        calls,
        "B answers from its cache"
    );

    let started = Instant::now();
    assert_eq!(logout(&a, "/v1/auth/logout", &t).await.0, 200);
    wait_for(
        "replica B to deny the logged-out token",
        PROPAGATION,
        || {
            let t = t.clone();
            let mut cb = cb.clone();
            async move { check_token(&mut cb, &t).await.reason().as_deref() == Some("jti_revoked") }
        },
    )
    .await;
    println!(
        "propagation A → B: {:?} (one sample; see scripts/bench.sh)",
        started.elapsed()
    );

    // logout-all on A ends every older session of that user on B too
    assert_eq!(logout(&a, "/v1/auth/logout-all", &other).await.0, 200);
    wait_for("replica B to deny the user's tokens", PROPAGATION, || {
        let other = other.clone();
        let mut cb = cb.clone();
        async move { check_token(&mut cb, &other).await.reason().as_deref() == Some("user_revoked") }
    })
    .await;
}

/// `INFO commandstats` calls per command, leaving out the ones the test itself sends.
fn commands_since_reset(r: &RedisServer) -> Vec<(String, u64)> {
    r.cli(&["info", "commandstats"])
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .filter(|(name, _)| !name.starts_with("config") && name != "info")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_token_costs_no_redis_call_and_a_miss_costs_one_round_trip() {
    let r = redis(false).await;
    // legacy_keys: read (the default) reads the four keys of both layouts, off only the
    // current ones: one round trip either way.
    for (legacy, reads) in [("", 6), ("  legacy_keys: off\n", 4)] {
        let s = TestServer::start(&yaml(&r.url(), legacy)).await;
        let mut c = s.grpc().await;
        let stats = || s.engine.store().metrics().store_calls(StoreOp::Check);

        // the first check also loads the script into Redis
        let warm = token("ec256", "alice", json!({"tid": "acme", "fam": "f1"}));
        assert!(check_token(&mut c, &warm).await.allowed());
        let before = stats();
        for _ in 0..5 {
            assert!(check_token(&mut c, &warm).await.allowed());
        }
        assert_eq!(stats(), before, "a cached token makes no store call");

        r.cli(&["config", "resetstat"]);
        let fresh = token("ec256", "bob", json!({"tid": "globex", "fam": "f2"}));
        assert!(check_token(&mut c, &fresh).await.allowed());
        assert_eq!(stats(), before + 1);
        // INFO commandstats also counts the commands a script runs inside Redis: the
        // client sent one EVALSHA (one round trip) and the script did the reads.
        let commands: std::collections::BTreeMap<String, u64> =
            commands_since_reset(&r).into_iter().collect();
        assert_eq!(commands.get("evalsha"), Some(&1), "{commands:?}");
        let inside: u64 = commands
            .iter()
            .filter(|(name, _)| *name != "evalsha")
            .map(|(name, n)| {
                assert!(
                    name == "exists" || name == "hmget",
                    "unexpected {name}: {commands:?}"
                );
                n
            })
            .sum();
        assert_eq!(
            inside, reads,
            "{legacy:?}: jti and family (one EXISTS each) and user and tenant (one HMGET per layout)"
        );
        s.stop().await;
    }
}

/// Checks fresh tokens (cache misses) until `stop`, returning (grpc code, reason) of each.
fn background_load(
    s: &TestServer,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Vec<(i32, Option<String>)>> {
    let addr = s.addrs.grpc;
    tokio::spawn(async move {
        let mut c = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
            format!("http://{addr}"),
        )
        .await
        .expect("connects");
        let mut answers = Vec::new();
        while !stop.is_cancelled() && answers.len() < 20_000 {
            let a = check_token(&mut c, &token("ec256", "load", json!({}))).await;
            answers.push((a.grpc_code, a.reason()));
        }
        answers
    })
}

/// Redis killed under load: every answer is an allow (a cached "not revoked") or the
/// fail-closed 503, a logout is refused rather than half done, and checks recover by
/// themselves once Redis is back. How long an outage answer takes is not asserted here
/// (a dead Redis refuses connections at once): tests/it/faults.rs holds the deadline
/// against a slow Redis, relative to a baseline.
#[tokio::test(flavor = "multi_thread")]
async fn redis_down_fails_closed_and_recovers_by_itself() {
    let mut r = redis(false).await;
    let s = TestServer::start(&yaml(&r.url(), "  store_timeout_ms: 50\n")).await;
    let mut c = s.grpc().await;
    assert!(check_token(&mut c, &token("ec256", "alice", json!({})))
        .await
        .allowed());
    let stop = CancellationToken::new();
    let load: Vec<_> = (0..2).map(|_| background_load(&s, stop.clone())).collect();

    r.kill_now();
    for _ in 0..30 {
        let a = check_token(&mut c, &token("ec256", "alice", json!({}))).await;
        assert_store_unavailable(&a);
    }

    // a logout while Redis is down is refused, and nothing is claimed
    let kept = token("ec256", "alice", json!({}));
    let (status, body) = logout(&s, "/v1/auth/logout", &kept).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("store_unavailable"))
    );

    r.restart_now();
    let back = Instant::now();
    wait_fresh_checks_allowed(&c, "checks to recover after Redis restarts").await;
    println!("recovered {:?} after Redis answered again", back.elapsed());
    assert!(
        check_token(&mut c, &kept).await.allowed(),
        "the refused logout claimed nothing"
    );

    stop.cancel();
    let mut outcomes = std::collections::BTreeMap::new();
    for task in load {
        for (code, reason) in task.await.expect("load task") {
            assert!(
                matches!(
                    (code, reason.as_deref()),
                    (0, None) | (14, Some("store_unavailable"))
                ),
                "unexpected answer during the outage: {code} {reason:?}"
            );
            *outcomes.entry(code).or_insert(0u32) += 1;
        }
    }
    println!("background answers by grpc code: {outcomes:?}");
    assert!(outcomes.contains_key(&14), "the load saw the outage");
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_open_allows_during_an_outage_but_known_revocations_still_deny() {
    let mut r = redis(false).await;
    let s = TestServer::start(&yaml(&r.url(), "  on_store_error: allow\n")).await;
    let mut c = s.grpc().await;
    let revoked = token("ec256", "alice", json!({}));
    assert_eq!(logout(&s, "/v1/auth/logout", &revoked).await.0, 200);

    r.kill_now();
    let a = check_token(&mut c, &token("ec256", "alice", json!({}))).await;
    assert!(
        a.allowed(),
        "fail-open lets an unknown token through: {a:?}"
    );
    let a = check_token(&mut c, &revoked).await;
    assert_eq!(
        a.reason().as_deref(),
        Some("jti_revoked"),
        "a cached revocation still holds"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_revocations_survive_a_redis_restart_with_aof() {
    let mut r = redis(true).await;
    let y = yaml(&r.url(), "");
    let s = TestServer::start(&y).await;
    let t = token("ec256", "alice", json!({}));
    let zoe = token("ec256", "zoe", json!({}));
    assert_eq!(logout(&s, "/v1/auth/logout", &t).await.0, 200);
    assert_eq!(logout(&s, "/v1/auth/logout-all", &zoe).await.0, 200);
    s.stop().await;
    // docs/spec.md §3's layout: {prefix}{kind}@{namespace}:{id}, the provider's name by default
    let jti = decode_part(&t, 1)["jti"].as_str().unwrap().to_string();
    for key in [
        format!("tokengate:jti@test:{jti}"),
        "tokengate:user@test:zoe".into(),
    ] {
        assert_eq!(r.cli(&["exists", &key]).trim(), "1", "{key}");
    }
    let mut keys: Vec<String> = r
        .cli(&["--scan", "--pattern", "tokengate:*"])
        .lines()
        .map(str::to_string)
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 2, "nothing in the legacy layout: {keys:?}");

    tokio::task::block_in_place(|| {
        r.kill();
        r.restart();
    });
    // a new tokengate: nothing comes from a cache
    let s = TestServer::start(&y).await;
    let mut c = s.grpc().await;
    assert_eq!(
        check_token(&mut c, &t).await.reason().as_deref(),
        Some("jti_revoked")
    );
    assert_eq!(
        check_token(&mut c, &zoe).await.reason().as_deref(),
        Some("user_revoked")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_does_not_wait_for_redis_and_readiness_says_why() {
    let mut r = redis(false).await;
    r.kill_now();
    let s = TestServer::start_unready(parse(&yaml(&r.url(), ""))).await;

    let health = reqwest::get(s.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "alive while the store is not");
    let ready = reqwest::get(s.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["not_ready"], json!(["store"]));
    let why = body["store"].as_str().unwrap_or_default();
    assert!(why.contains(&format!("127.0.0.1:{}", r.port)), "{body}");
    let mut c = s.grpc().await;
    let a = check_token(&mut c, &token("ec256", "alice", json!({}))).await;
    assert_eq!(a.reason().as_deref(), Some("store_unavailable"));

    r.restart_now();
    s.wait_ready().await;
    assert!(check_token(&mut c, &token("ec256", "alice", json!({})))
        .await
        .allowed());
}
