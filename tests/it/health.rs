//! gRPC health (`grpc.health.v1`) follows readiness, through a real tonic health client:
//! NOT_SERVING while `/readyz` would be 503 (store down when failing closed, shutting
//! down), SERVING when ready, and unmoved by a store outage when failing open. The keys
//! side (no key set yet) is in `tests/it/idp.rs` against a real OpenID provider.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::outage::RECOVERY;
use support::redis::{store_yaml, RedisServer};
use support::*;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;
/// The overall status and the one service.
const SERVICES: [&str; 2] = ["", "envoy.service.auth.v3.Authorization"];

/// The status of every service, as Envoy's health checker would ask for it.
async fn statuses(h: &mut HealthClient<Channel>) -> [i32; 2] {
    let mut out = [0; 2];
    for (i, service) in SERVICES.iter().enumerate() {
        out[i] = h
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status;
    }
    out
}

async fn readyz(s: &TestServer) -> (u16, Value) {
    let resp = reqwest::get(s.admin_url("/readyz")).await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_outage_turns_health_not_serving_when_failing_closed() {
    let mut r = RedisServer::start_async().await;
    let s = TestServer::start(&config_yaml(&store_yaml(&r.url(), ""))).await;
    let mut h = s.health().await;
    assert_eq!(statuses(&mut h).await, [SERVING; 2]);

    r.kill_now();
    // nobody asks /readyz: the health task notices by itself
    wait_for("NOT_SERVING", RECOVERY, || {
        let mut h = h.clone();
        async move { statuses(&mut h).await == [NOT_SERVING; 2] }
    })
    .await;
    assert_eq!(readyz(&s).await.0, 503, "the two agree");

    r.restart_now();
    wait_for("SERVING again", RECOVERY, || {
        let mut h = h.clone();
        async move { statuses(&mut h).await == [SERVING; 2] }
    })
    .await;
    assert_eq!(readyz(&s).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_outage_leaves_health_serving_when_failing_open() {
    let mut r = RedisServer::start_async().await;
    let store = store_yaml(&r.url(), "  on_store_error: allow\n");
    let s = TestServer::start(&config_yaml(&store)).await;
    let mut h = s.health().await;
    r.kill_now();
    // once readiness has seen the outage (and said so in its body)…
    wait_for("readiness to see the outage", RECOVERY, || async {
        let (status, body) = readyz(&s).await;
        status == 200 && body["store"].is_string()
    })
    .await;
    // …health, which follows the same verdict, still says SERVING
    assert_eq!(statuses(&mut h).await, [SERVING; 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutting_down_turns_health_not_serving_for_watchers() {
    let s = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    let mut h = s.health().await;
    let mut watch = h
        .watch(HealthCheckRequest {
            service: SERVICES[1].to_string(),
        })
        .await
        .expect("watch starts")
        .into_inner();
    let first = watch.message().await.unwrap().expect("a first status");
    assert_eq!(first.status, SERVING);
    let stopping = tokio::spawn(s.stop());
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("an update before the grace period ends");
    let next = next.unwrap().expect("the stream is still open");
    assert_eq!(next.status, NOT_SERVING);
    drop(watch);
    stopping.await.unwrap();
}
