//! The in-proxy fast path (issue 20) through a real Envoy: jwt_authn, then the proxy-wasm
//! filter judging revocation from the set its singleton keeps current from tokengate's
//! revocation feed, then ext_authz only for what the fast path did not judge. Every
//! revocation kind, the feed's protocol and guard, staleness (fall back, or 503), and
//! tokengate and Redis restarted under load without one revoked token let through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::envoy::{echoed, EchoUpstream, Scratch};
use crate::support::fastpath::{self, Options, FEED_TOKEN};
use crate::support::redis::{store_yaml, RedisServer};
use crate::support::{config_yaml, free_port, token, wait_for, TestServer, MEMORY_STORE};
use tokengate::reason::{Deny, Reason};
use tokengate::revocation::Target;

const WAIT: Duration = Duration::from_secs(15);

/// A request through Envoy: status, headers, body.
async fn get(
    url: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Bearer {token}"));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request through Envoy");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap_or_default())
}

async fn status(url: &str, token: &str) -> u16 {
    get(url, token, &[]).await.0
}

/// tokengate (memory store) with the feed on.
async fn tokengate_with_feed(dir: &Scratch) -> TestServer {
    TestServer::start(&fastpath::with_feed(&config_yaml(MEMORY_STORE), dir)).await
}

fn feed_url(server: &TestServer, query: &str) -> String {
    server.http_url(&format!("/v1/revocations/changes{query}"))
}

async fn feed(server: &TestServer, query: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(feed_url(server, query));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.expect("feed request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn header_line(body: &str) -> Value {
    serde_json::from_str(body.lines().next().expect("a header line")).expect("header JSON")
}

#[tokio::test]
async fn the_feed_needs_its_token_and_resumes_from_a_cursor() {
    let dir = Scratch::new("feed");
    let server = tokengate_with_feed(&dir).await;
    let engine = server.engine.clone();
    for wrong in [None, Some("feed-token-of-the-test"), Some("")] {
        let (code, body) = feed(&server, "", wrong).await;
        assert_eq!(code, 401, "{wrong:?}: {body}");
        assert!(!body.contains(FEED_TOKEN));
    }
    let exp = tokengate::jwt::now_unix() + 600;
    engine
        .revoke(
            Target::Jti {
                id: "test:j0",
                expires_at: exp,
            },
            "t",
            None,
            "admin",
        )
        .await
        .unwrap();
    let (code, snap) = feed(&server, "", Some(FEED_TOKEN)).await;
    assert_eq!(code, 200, "{snap}");
    let head = header_line(&snap);
    assert_eq!(head["reset"], true);
    assert!(snap.contains(r#""kind":"jti","id":"test:j0""#), "{snap}");
    let cursor = head["cursor"].as_str().unwrap().to_string();

    // Nothing new: the long poll ends with a heartbeat at the same cursor.
    let (code, beat) = feed(
        &server,
        &format!("?cursor={cursor}&wait_ms=50"),
        Some(FEED_TOKEN),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        header_line(&beat),
        json!({"cursor": cursor, "reset": false})
    );
    assert_eq!(beat.lines().count(), 1);

    // A long poll in progress is answered by the next revocation, as a delta.
    let poll = {
        let url = feed_url(&server, &format!("?cursor={cursor}&wait_ms=2000"));
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("authorization", format!("Bearer {FEED_TOKEN}"))
                .send()
                .await
                .unwrap();
            r.text().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    engine
        .revoke(Target::Family("test:f1"), "t", None, "admin")
        .await
        .unwrap();
    let delta = poll.await.unwrap();
    assert_eq!(header_line(&delta)["reset"], false, "{delta}");
    assert!(
        delta.contains(r#""kind":"family","id":"test:f1""#),
        "{delta}"
    );
    assert!(
        !delta.contains("test:j0"),
        "a delta carries only what changed: {delta}"
    );

    // A cursor this replica cannot continue (another replica's, a restart's, garbage)
    // gets the whole snapshot, never an empty delta.
    for other in ["0123456789abcdef.1", "x", ""] {
        let (code, body) = feed(&server, &format!("?cursor={other}"), Some(FEED_TOKEN)).await;
        assert_eq!(code, 200);
        assert_eq!(header_line(&body)["reset"], true, "{other}: {body}");
        assert!(
            body.contains("test:j0") && body.contains("test:f1"),
            "{body}"
        );
    }
    let (code, _) = feed(&server, "?cursor=a&cursor=b", Some(FEED_TOKEN)).await;
    assert_eq!(code, 400);

    // Off by default: no route.
    let plain = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    let r = reqwest::get(plain.http_url("/v1/revocations/snapshot"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Envoy whose ext_authz points at a port where nothing listens: a request that reached
/// ext_authz would be a 503, so a 200 or a 401 is the fast path's own answer.
async fn fast_path_only(server: &TestServer, app: &EchoUpstream) -> crate::support::envoy::Envoy {
    let mut o = Options::new(&server.addrs);
    o.grpc_port = free_port();
    fastpath::start_envoy(server.addrs.http.port(), app.addr, &o).await
}

/// Revokes `id` (a scoped jti) on `server` as an operator would, until `expires_at`.
async fn revoke_jti(server: &TestServer, id: &str, expires_at: i64) {
    let target = Target::Jti { id, expires_at };
    server
        .engine
        .revoke(target, "t", None, "admin")
        .await
        .unwrap();
}

async fn wait_status(url: &str, token: &str, want: u16, what: &str) {
    wait_for(what, WAIT, || async { status(url, token).await == want }).await;
}

#[tokio::test]
async fn every_revocation_kind_is_enforced_by_the_fast_path() {
    let dir = Scratch::new("fastpath-kinds");
    let server = tokengate_with_feed(&dir).await;
    let app = EchoUpstream::start().await;
    let envoy = fast_path_only(&server, &app).await;
    let url = envoy.url("/orders");
    let ok = token("ec256", "carol", json!({}));
    wait_status(&url, &ok, 200, "the fast path to have its first set").await;

    let realm = server.config.responses.realm.clone();
    let exp = tokengate::jwt::now_unix() + 600;
    let cases: Vec<(Value, Target<'static>, Reason)> = vec![
        (
            json!({"jti": "j-1"}),
            Target::Jti {
                id: "test:j-1",
                expires_at: exp,
            },
            Reason::JtiRevoked,
        ),
        (json!({}), Target::User("test:alice"), Reason::UserRevoked),
        (
            json!({"sub": "dave", "tid": "t-1"}),
            Target::Tenant("test:t-1"),
            Reason::TenantRevoked,
        ),
        (
            json!({"sub": "erin", "fam": "f-1"}),
            Target::Family("test:f-1"),
            Reason::FamilyRevoked,
        ),
        (
            json!({"sub": "finn", "sid": "s-1"}),
            Target::Session("test:s-1"),
            Reason::SessionRevoked,
        ),
    ];
    for (claims, target, reason) in cases {
        let t = token("ec256", "alice", claims);
        assert_eq!(status(&url, &t).await, 200, "{reason}: allowed before");
        server
            .engine
            .revoke(target, "test", None, "admin")
            .await
            .unwrap();
        wait_status(&url, &t, 401, reason.as_str()).await;
        let (code, headers, body) = get(&url, &t, &[]).await;
        let deny = Deny::from(reason);
        assert_eq!(
            (code, body.as_str()),
            (401, deny.body().as_str()),
            "{reason}"
        );
        assert_eq!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            deny.www_authenticate(&realm).as_deref(),
            "{reason}: tokengate's own challenge"
        );
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    }
    // Issued after the user's cut-off: allowed again (tokengate's rule, not a blanket ban).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = token("ec256", "alice", json!({}));
    assert_eq!(status(&url, &later).await, 200);
    // The fast path allowed it without tokengate: upstream sees jwt_authn's claims and
    // the marker, never a client's copy of either.
    let (code, _, body) = get(
        &url,
        &ok,
        &[("x-user-id", "mallory"), ("x-tokengate-fast-path", "0")],
    )
    .await;
    assert_eq!(code, 200);
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed(&seen, "x-user-id"), vec!["carol"], "{seen}");
    assert_eq!(echoed(&seen, "x-tokengate-fast-path"), vec!["1"], "{seen}");
}

#[tokio::test]
async fn each_worker_can_keep_its_own_set_where_no_singleton_exists() {
    let dir = Scratch::new("fastpath-self");
    let server = tokengate_with_feed(&dir).await;
    let app = EchoUpstream::start().await;
    let mut o = Options::new(&server.addrs);
    o.grpc_port = free_port();
    o.self_sync = true;
    let envoy = fastpath::start_envoy(server.addrs.http.port(), app.addr, &o).await;
    let config = envoy.dir.read("envoy.yaml");
    assert!(
        !config.contains("envoy.bootstrap.wasm"),
        "no singleton in this Envoy"
    );
    let url = envoy.url("/orders");
    let ok = token("ec256", "mona", json!({}));
    wait_status(&url, &ok, 200, "the worker's own first set").await;
    let revoked = token("ec256", "mona", json!({"fam": "f-self"}));
    server
        .engine
        .revoke(Target::Family("test:f-self"), "t", None, "admin")
        .await
        .unwrap();
    wait_status(
        &url,
        &revoked,
        401,
        "the worker's own poll to bring the revocation",
    )
    .await;
    assert_eq!(status(&url, &ok).await, 200);
}

#[tokio::test]
async fn a_revoked_token_cannot_slip_past_in_another_form() {
    let dir = Scratch::new("fastpath-forms");
    let server = tokengate_with_feed(&dir).await;
    let app = EchoUpstream::start().await;
    let envoy = fast_path_only(&server, &app).await;
    let url = envoy.url("/orders");
    let revoked = token("ec256", "gina", json!({"jti": "j-forms"}));
    let exp = tokengate::jwt::now_unix() + 600;
    revoke_jti(&server, "test:j-forms", exp).await;
    wait_status(&url, &revoked, 401, "the revocation to reach the fast path").await;
    // A payload header of the client's own: jwt_authn writes over it.
    let clean = crate::support::b64(br#"{"iss":"https://issuer.test","jti":"fresh"}"#);
    let (code, _, _) = get(&url, &revoked, &[("x-jwt-payload", &clean)]).await;
    assert_eq!(
        code, 401,
        "a forged payload header must not replace the verified one"
    );
    // The marker that makes ext_authz skip a request: set by the client, removed.
    let (code, _, _) = get(&url, &revoked, &[("x-tokengate-fast-path", "1")]).await;
    assert_eq!(code, 401);
    // The same id in a number-typed claim of another name means another token; the
    // same jti in another issuer's namespace is not this one: both stay allowed.
    let other_user = token("ec256", "gina", json!({"jti": "j-forms2"}));
    assert_eq!(status(&url, &other_user).await, 200);
    // The feed itself is never routed from outside through this Envoy.
    let r = reqwest::Client::new()
        .get(envoy.url("/v1/revocations/snapshot"))
        .header("authorization", format!("Bearer {FEED_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_stale_set_falls_back_to_ext_authz() {
    let dir = Scratch::new("fastpath-stale");
    let server = tokengate_with_feed(&dir).await;
    let app = EchoUpstream::start().await;
    // The singleton's token is refused: the set never becomes fresh.
    let mut o = Options::new(&server.addrs);
    o.token = "not-the-feed-token".into();
    let envoy = fastpath::start_envoy(server.addrs.http.port(), app.addr, &o).await;
    let url = envoy.url("/orders");
    let revoked = token("ec256", "hana", json!({"jti": "j-stale"}));
    let exp = tokengate::jwt::now_unix() + 600;
    revoke_jti(&server, "test:j-stale", exp).await;
    let checks =
        "tokengate_decisions_total{decision=\"deny\",reason=\"jti_revoked\",transport=\"grpc\"}";
    let before = server.metric(checks).await;
    for extra in [vec![], vec![("x-tokengate-fast-path", "1")]] {
        let (code, _, body) = get(&url, &revoked, &extra).await;
        assert_eq!(code, 401, "{extra:?}: {body}");
    }
    assert_eq!(
        server.metric(checks).await - before,
        2.0,
        "both denies came from tokengate's ext_authz, the spoofed marker removed"
    );
    let ok = token("ec256", "hana", json!({}));
    let (code, _, body) = get(&url, &ok, &[]).await;
    assert_eq!(code, 200);
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert!(echoed(&seen, "x-tokengate-fast-path").is_empty(), "{seen}");
}

#[tokio::test]
async fn a_stale_set_answers_503_when_configured() {
    let dir = Scratch::new("fastpath-503");
    let server = tokengate_with_feed(&dir).await;
    let app = EchoUpstream::start().await;
    let mut o = Options::new(&server.addrs);
    o.on_stale = "deny";
    o.grpc_port = free_port();
    let envoy = fastpath::start_envoy(server.addrs.http.port(), app.addr, &o).await;
    let url = envoy.url("/orders");
    let ok = token("ec256", "ivan", json!({}));
    wait_status(&url, &ok, 200, "a fresh set").await;
    let revoked = token("ec256", "ivan", json!({"jti": "j-503"}));
    let exp = tokengate::jwt::now_unix() + 600;
    revoke_jti(&server, "test:j-503", exp).await;
    wait_status(&url, &revoked, 401, "the revocation").await;
    // No sync any more: after stale_after_ms every request is refused with 503, the
    // revoked token too (never a 200), and nothing says the token is bad.
    server.stop().await;
    wait_status(&url, &ok, 503, "the set to go stale").await;
    let (code, headers, body) = get(&url, &ok, &[]).await;
    assert_eq!(
        (code, body.as_str()),
        (503, Deny::from(Reason::StoreUnavailable).body().as_str())
    );
    assert!(headers.get("www-authenticate").is_none());
    assert!(headers.get("retry-after").is_some());
    assert_eq!(status(&url, &revoked).await, 503);
}

/// tokengate on fixed ports (so Envoy's clusters find it again after a restart).
fn fixed_ports_yaml(redis: &RedisServer, dir: &Scratch, http: u16, grpc: u16) -> String {
    let yaml = config_yaml(&store_yaml(&redis.url(), ""))
        .replace("  grpc: 127.0.0.1:0", &format!("  grpc: 127.0.0.1:{grpc}"))
        .replace("  http: 127.0.0.1:0", &format!("  http: 127.0.0.1:{http}"));
    fastpath::with_feed(&yaml, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_during_load_never_let_a_revoked_token_through() {
    let dir = Scratch::new("fastpath-restarts");
    let mut redis = RedisServer::start_with_aof_async().await;
    let (http, grpc) = (free_port(), free_port());
    let yaml = fixed_ports_yaml(&redis, &dir, http, grpc);
    let server = TestServer::start(&yaml).await;
    let app = EchoUpstream::start().await;
    let envoy = fastpath::start_envoy(http, app.addr, &Options::new(&server.addrs)).await;
    let url = envoy.url("/orders");
    let good = token("ec256", "judy", json!({}));
    wait_status(&url, &good, 200, "a fresh set").await;

    let exp = tokengate::jwt::now_unix() + 600;
    let mut revoked = Vec::new();
    for i in 0..10 {
        let jti = format!("j-load-{i}");
        revoked.push(token("ec256", "judy", json!({"jti": jti})));
        let id = format!("test:{jti}");
        let target = Target::Jti {
            id: &id,
            expires_at: exp,
        };
        server
            .engine
            .revoke(target, "t", None, "admin")
            .await
            .unwrap();
    }
    server
        .engine
        .revoke(Target::User("test:kate"), "t", None, "admin")
        .await
        .unwrap();
    revoked.push(token("ec256", "kate", json!({})));
    for t in &revoked {
        wait_status(&url, t, 401, "every revocation in the set").await;
    }

    let allowed_revoked = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (url, revoked) = (url.clone(), revoked.clone());
        let (allowed_revoked, sent, stop) = (allowed_revoked.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.is_cancelled() {
                for t in &revoked {
                    let r = client
                        .get(&url)
                        .header("authorization", format!("Bearer {t}"))
                        .send()
                        .await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if matches!(r, Ok(r) if r.status().is_success()) {
                        allowed_revoked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    // tokengate restarted: the singleton reconnects and gets a snapshot (new epoch).
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server = TestServer::start(&yaml).await;
    // Redis restarted (AOF: the revocations survive), tokengate reconnects.
    redis.kill_now();
    redis.restart_now();
    server.wait_ready().await;
    // Sync resumed: a revocation made now reaches the fast path.
    let fresh = token("ec256", "liam", json!({"jti": "j-after"}));
    assert_eq!(status(&url, &fresh).await, 200);
    let target = Target::Jti {
        id: "test:j-after",
        expires_at: exp,
    };
    wait_for("tokengate to write again", WAIT, || async {
        server
            .engine
            .revoke(target, "t", None, "admin")
            .await
            .is_ok()
    })
    .await;
    wait_status(&url, &fresh, 401, "a revocation after both restarts").await;
    stop.cancel();
    load.await.unwrap();
    assert!(
        sent.load(Ordering::Relaxed) > revoked.len() as u64,
        "the load ran"
    );
    assert_eq!(
        allowed_revoked.load(Ordering::Relaxed),
        0,
        "revoked tokens allowed during restarts"
    );
    assert_eq!(status(&url, &good).await, 200);
}
