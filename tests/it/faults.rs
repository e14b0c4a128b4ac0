//! Fault injection: Redis made slow by a delay proxy (the deadline cuts it off), the pub/sub
//! connection cut while revocations continue (the cache falls back, then catches up),
//! and tokengate sent SIGTERM under load (in-flight requests finish, exit 0).

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::outage::{assert_store_unavailable, wait_fresh_checks_allowed, RECOVERY};
use support::proxy::Proxy;
use support::redis::{store_yaml, RedisServer};
use support::serve::Served;
use support::*;

fn addr(r: &RedisServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], r.port))
}

/// The middle value of `d` (sorted in place).
fn median(d: &mut [Duration]) -> Duration {
    d.sort();
    d[d.len() / 2]
}

/// A Redis that answers, but only after 2 s, is cut off at the store deadline (50 ms):
/// every check fails closed, and the answers take the deadline plus what a check costs
/// with a healthy Redis, not a multiple of the deadline (a retry, a second call). The
/// baseline is measured at the same moment, checks alternating between a tokengate
/// behind a delaying proxy and one behind a proxy without delay: load on the machine
/// slows both alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_redis_is_cut_off_at_the_deadline_not_waited_for() {
    let r = RedisServer::start_async().await;
    let (slow_proxy, fast_proxy) = (Proxy::start(addr(&r)).await, Proxy::start(addr(&r)).await);
    let store = |p: &Proxy| config_yaml(&store_yaml(&p.url(), "  store_timeout_ms: 50\n"));
    let slow = TestServer::start(&store(&slow_proxy)).await;
    let fast = TestServer::start(&store(&fast_proxy)).await;
    let (mut cs, mut cf) = (slow.grpc().await, fast.grpc().await);
    // the first check of each also loads the script into Redis: not part of a sample
    for c in [&mut cs, &mut cf] {
        assert!(check_token(c, &token("ec256", "alice", json!({})))
            .await
            .allowed());
    }

    let delay = Duration::from_secs(2);
    slow_proxy.set_delay(delay.as_millis() as u64);
    let (mut slow_times, mut fast_times) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        // fresh tokens: each check is a cache miss, so a store call
        let started = Instant::now();
        let a = check_token(&mut cf, &token("ec256", "alice", json!({}))).await;
        fast_times.push(started.elapsed());
        assert!(a.allowed(), "the baseline is a healthy check: {a:?}");

        let started = Instant::now();
        let a = check_token(&mut cs, &token("ec256", "alice", json!({}))).await;
        slow_times.push(started.elapsed());
        // Redis would have answered "not revoked" (an allow) after the delay: a
        // `store_unavailable` shows the check did not wait for it.
        assert_store_unavailable(&a);
    }
    let deadline = Duration::from_millis(slow.config.revocation.store_timeout_ms);
    let (slow_median, fast_median) = (median(&mut slow_times), median(&mut fast_times));
    println!(
        "Redis delayed {delay:?}: median answer {slow_median:?} (slowest {:?}); \
         healthy baseline median {fast_median:?}; deadline {deadline:?}",
        slow_times.last().copied().unwrap_or_default()
    );
    // 4 × the baseline for what a check costs around its store call, 2 ms for the
    // timer's millisecond ticks.
    let bound = deadline + fast_median * 4 + Duration::from_millis(2);
    assert!(
        slow_median <= bound,
        "answers with a slow Redis took {slow_median:?} (median), more than the deadline \
         {deadline:?} plus 4 × a healthy check ({fast_median:?}) plus 2 ms"
    );

    slow_proxy.set_delay(0);
    wait_fresh_checks_allowed(&cs, "checks to recover once Redis is fast again").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_subscription_falls_back_then_catches_up() {
    let r = RedisServer::start_async().await;
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
        wait_for("B to deny a token revoked during the cut", PROPAGATION, || {
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
    wait_for("B's subscription to be back", RECOVERY, || async {
        let text = reqwest::get(b.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("tokengate_invalidation_subscription_up 1")
    })
    .await;
    assert_eq!(logout(&a, "/v1/auth/logout", &later).await.0, 200);
    wait_for("B to get the next event", PROPAGATION, || {
        let (mut cb, later) = (cb.clone(), later.clone());
        async move { check_token(&mut cb, &later).await.reason().as_deref() == Some("jti_revoked") }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_lets_in_flight_checks_finish_and_exits_zero() {
    let r = RedisServer::start_async().await;
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
