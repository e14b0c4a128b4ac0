//! Fault injection: Redis made slow by a delay proxy (the deadline holds), the pub/sub
//! connection cut while revocations continue (the cache falls back, then catches up),
//! and tokengate sent SIGTERM under load (in-flight requests finish, exit 0).

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::proxy::Proxy;
use support::redis::{store_yaml, RedisServer};
use support::serve::Served;
use support::*;

async fn redis() -> RedisServer {
    tokio::task::spawn_blocking(RedisServer::start)
        .await
        .unwrap()
}

fn addr(r: &RedisServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], r.port))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_redis_never_makes_a_check_wait_past_the_deadline() {
    let r = redis().await;
    let proxy = Proxy::start(addr(&r)).await;
    let s = TestServer::start(&config_yaml(&store_yaml(
        &proxy.url(),
        "  store_timeout_ms: 50\n",
    )))
    .await;
    let mut c = s.grpc().await;
    assert!(check_token(&mut c, &token("ec256", "alice", json!({})))
        .await
        .allowed());

    proxy.set_delay(250);
    let deadline = Duration::from_millis(s.config.revocation.store_timeout_ms + 20);
    let mut slowest = Duration::ZERO;
    let mut answers = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let started = Instant::now();
        let a = check_token(&mut c, &token("ec256", "alice", json!({}))).await;
        slowest = slowest.max(started.elapsed());
        *answers
            .entry(a.reason().unwrap_or_else(|| "allow".into()))
            .or_insert(0) += 1;
        assert_eq!(a.reason().as_deref(), Some("store_unavailable"), "{a:?}");
    }
    println!("slow Redis (250 ms): {answers:?}, slowest answer {slowest:?}");
    assert!(
        slowest <= deadline,
        "slowest {slowest:?} > deadline + 20 ms"
    );

    proxy.set_delay(0);
    wait_for(
        "checks to recover once Redis is fast again",
        Duration::from_secs(3),
        || {
            let mut c = c.clone();
            async move {
                check_token(&mut c, &token("ec256", "alice", json!({})))
                    .await
                    .allowed()
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_subscription_falls_back_then_catches_up() {
    let r = redis().await;
    // B's cache would keep "not revoked" for 10 minutes: only the gap handling (or the
    // re-subscription) can make B notice revocations in time
    let y = config_yaml(&store_yaml(&r.url(), "  cache:\n    ttl_seconds: 600\n"));
    let a = TestServer::start(&y).await;
    let b = TestServer::start(&y).await;
    let mut cb = b.grpc().await;
    let tokens: Vec<String> = (0..5)
        .map(|i| token("ec256", &format!("user{i}"), json!({})))
        .collect();
    for t in &tokens {
        assert!(check_token(&mut cb, t).await.allowed());
    }

    // Redis drops every pub/sub connection; revocations continue on A meanwhile
    let killed = r.cli(&["client", "kill", "type", "pubsub"]);
    assert!(
        killed.trim().parse::<u32>().unwrap_or(0) >= 2,
        "both replicas' subscriptions: {killed}"
    );
    for t in &tokens {
        assert_eq!(logout(&a, "/v1/auth/logout", t).await.0, 200);
    }
    for t in &tokens {
        let t = t.clone();
        wait_for("B to deny a token revoked during the cut", Duration::from_secs(3), || {
            let (mut cb, t) = (cb.clone(), t.clone());
            async move { check_token(&mut cb, &t).await.reason().as_deref() == Some("jti_revoked") }
        })
        .await;
    }
    assert!(
        b.metric("tokengate_invalidation_gaps_total").await >= 1.0,
        "B counted the gap"
    );

    // and after re-subscribing, events flow again
    let later = token("ec256", "zed", json!({}));
    assert!(check_token(&mut cb, &later).await.allowed());
    wait_for(
        "B's subscription to be back",
        Duration::from_secs(3),
        || async {
            let text = reqwest::get(b.admin_url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains("tokengate_invalidation_subscription_up 1")
        },
    )
    .await;
    assert_eq!(logout(&a, "/v1/auth/logout", &later).await.0, 200);
    wait_for("B to get the next event", Duration::from_secs(2), || {
        let (mut cb, later) = (cb.clone(), later.clone());
        async move { check_token(&mut cb, &later).await.reason().as_deref() == Some("jti_revoked") }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_lets_in_flight_checks_finish_and_exits_zero() {
    let r = redis().await;
    let proxy = Proxy::start(addr(&r)).await;
    // listeners on port 0 (config_yaml's), named by the start-up line: at level info
    let yaml = config_yaml(&store_yaml(&proxy.url(), "  store_timeout_ms: 2000\n"))
        .replace("log:\n  level: warn\n", "log:\n  level: info\n");
    let mut server = Served::start("sigterm", &yaml);
    let addrs = server.listening().await;
    server.wait_ready(addrs.admin).await;

    // every check now takes ~300 ms at Redis: start a batch, then SIGTERM mid-flight
    proxy.set_delay(300);
    let endpoint = format!("http://{}", addrs.grpc);
    let client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(endpoint.clone())
        .await
        .unwrap();
    let before = proxy.upstream_chunks();
    let in_flight: Vec<_> = (0..16)
        .map(|i| {
            let mut c = client.clone();
            let t = token("ec256", &format!("user{i}"), json!({}));
            tokio::spawn(async move { check_token(&mut c, &t).await })
        })
        .collect();
    wait_for("the checks to reach Redis", Duration::from_secs(5), || {
        let p = proxy.clone();
        async move { p.upstream_chunks() >= before + 4 }
    })
    .await;
    server.proc.signal("TERM");
    let mut finished = 0;
    for task in in_flight {
        let a = task.await.expect("check task");
        assert!(a.allowed(), "an in-flight check was cut short: {a:?}");
        finished += 1;
    }
    println!("{finished} in-flight checks finished after SIGTERM");
    let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(10)));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        std::net::TcpStream::connect(addrs.grpc).is_err(),
        "listener closed"
    );
}
