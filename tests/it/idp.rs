//! tokengate against a real OpenID provider (npm `oidc-provider`, see
//! `tests/it/support/oidc.rs`): keys found through OIDC discovery, real RFC 9068 access
//! tokens from its token endpoint, a rotation during a flood of garbage key ids, a
//! discovery document naming another issuer, and an identity provider that is down
//! when tokengate starts.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::oidc::OidcProvider;
use support::*;
use tonic_health::pb::HealthCheckRequest;

const BURST: u64 = 3;
const REFILL_MS: u64 = 1_000;
/// At most this many garbage-kid tokens in the rotation test's background flood.
const GARBAGE_CAP: u64 = 100_000;

/// tokengate with one provider found through discovery at `issuer`. The scheduled
/// refresh is far away, so only unknown kids (and the first load) cause fetches.
fn yaml(issuer: &str) -> String {
    format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
  - name: oidc
    issuer: {issuer}
    audiences: [{AUDIENCE}]
    algorithms: [RS256]
    keys:
      - oidc_discovery: true
    jwks:
      refresh_seconds: 3600
      min_refresh_seconds: 3600
      max_refresh_seconds: 3600
      unknown_kid_min_interval_seconds: 30
      unknown_kid_burst: {BURST}
      unknown_kid_refill_ms: {REFILL_MS}
      timeout_ms: 1000
log:
  level: warn
"#
    )
}

/// A token the provider never issued: its issuer and audience, a key id nobody
/// published (`None`: no `kid` at all), signed with a fixture key.
fn forged(issuer: &str, kid: Option<&str>) -> String {
    let mut c = claims("mallory");
    c["iss"] = issuer.into();
    let mut header = json!({"alg": "RS256", "typ": "at+jwt"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    sign(header, c, Algorithm::RS256, &signing_key("rsa2").1)
}

fn header_kid(token: &str) -> Value {
    decode_part(token, 0)["kid"].clone()
}

async fn health(s: &TestServer, service: &str) -> i32 {
    s.health()
        .await
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;
const AUTHZ: &str = "envoy.service.auth.v3.Authorization";

async fn readyz(s: &TestServer) -> (u16, Value) {
    let resp = reqwest::get(s.admin_url("/readyz")).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// The HTTP-mode check of `token`: (status, retry-after, www-authenticate, body).
async fn http_check(s: &TestServer, token: &str) -> (u16, Option<String>, Option<String>, Value) {
    let resp = reqwest::Client::new()
        .get(s.http_url("/authz/api/items"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (status, retry, challenge) = (
        resp.status().as_u16(),
        h("retry-after"),
        h("www-authenticate"),
    );
    (
        status,
        retry,
        challenge,
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// A check of a token whose provider has no keys yet: 503 keys_unavailable on both
/// transports, as an outage (retry-after, no challenge), never a 401.
async fn assert_keys_unavailable(s: &TestServer, token: &str) {
    let a = check_token(&mut s.grpc().await, token).await;
    assert_eq!(a.reason().as_deref(), Some("keys_unavailable"), "{a:?}");
    assert_eq!(a.grpc_code, 14, "UNAVAILABLE: {a:?}");
    assert_eq!(a.http_status, Some(503));
    assert!(a.header("retry-after").is_some(), "{a:?}");
    assert_eq!(a.header("www-authenticate"), None, "{a:?}");
    let (status, retry, challenge, body) = http_check(s, token).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry.is_some());
    assert_eq!(challenge, None);
    assert_eq!(body["reason"], "keys_unavailable");
    assert_eq!(body["error"], "temporarily_unavailable");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_during_a_garbage_kid_flood_is_accepted_while_the_flood_goes_on() {
    let mut idp = OidcProvider::start(&[("a", "rsa-private.pem")], "a").await;
    let s = TestServer::start(&yaml(&idp.issuer)).await;
    let mut c = s.grpc().await;
    let first = idp.token().await;
    assert_eq!(decode_part(&first, 0)["typ"], "at+jwt", "an RFC 9068 token");
    assert_eq!(header_kid(&first), "a");
    assert!(check_token(&mut c, &first).await.allowed());

    // The flood, every kind at once from 8 clients: distinct garbage kids, one garbage
    // kid repeated, very long kids. Each is refused as unknown_key.
    let (jwks_before, _) = idp.hits().await;
    let started = Instant::now();
    let mut clients = Vec::new();
    for worker in 0..8 {
        let issuer = idp.issuer.clone();
        let mut c = s.grpc().await;
        clients.push(tokio::spawn(async move {
            for i in 0..50 {
                let kid = match i % 5 {
                    0 => "the-same-garbage".to_string(),
                    1 => format!("{}-{worker}-{i}", "x".repeat(4000)),
                    _ => format!("garbage-{worker}-{i}-{}", uuid()),
                };
                let a = check_token(&mut c, &forged(&issuer, Some(&kid))).await;
                assert_eq!(a.reason().as_deref(), Some("unknown_key"), "{a:?}");
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let flood = started.elapsed();
    let (jwks_after, _) = idp.hits().await;
    let fetches = jwks_after - jwks_before;
    // burst, plus one per refill while the flood lasted
    let bound = BURST + flood.as_millis() as u64 / REFILL_MS + 1;
    assert!(
        fetches <= bound,
        "400 garbage kids over {flood:?} caused {fetches} JWKS fetches (bound {bound})"
    );

    // The provider publishes a new key b (and keeps a) and signs with b from now on,
    // while garbage kids keep coming.
    let ok_before = s
        .metric("tokengate_jwks_refresh_total{provider=\"oidc\",result=\"ok\"}")
        .await;
    let err_before = s
        .metric("tokengate_jwks_refresh_total{provider=\"oidc\",result=\"error\"}")
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let background = {
        let (issuer, stop, sent) = (idp.issuer.clone(), stop.clone(), sent.clone());
        let mut c = s.grpc().await;
        tokio::spawn(async move {
            // bounded (a safety net far beyond what the test needs), and it stops once
            // the test has its answer
            for i in 0..GARBAGE_CAP {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                check_token(&mut c, &forged(&issuer, Some(&format!("late-garbage-{i}")))).await;
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    idp.restart(&[("b", "rsa2-private.pem"), ("a", "rsa-private.pem")], "b")
        .await;
    let published = Instant::now();
    let rotated = idp.token().await;
    assert_eq!(header_kid(&rotated), "b");
    // Not timed against the clock: the new key must be accepted while the garbage still
    // comes (the flood cannot starve it), with the fetches bounded by the budget for the
    // time it actually took (below).
    wait_for(
        "the token of the new key to be allowed",
        support::outage::RECOVERY,
        || {
            let t = rotated.clone();
            let mut c = c.clone();
            async move { check_token(&mut c, &t).await.allowed() }
        },
    )
    .await;
    let waited = published.elapsed();
    let flooding = !background.is_finished();
    stop.store(true, Ordering::SeqCst);
    background.await.unwrap();
    let garbage = sent.load(Ordering::SeqCst);
    println!(
        "the new key was accepted {waited:?} after publication, {garbage} garbage kids meanwhile"
    );
    assert!(garbage > 0, "garbage kept coming during the rotation");
    assert!(
        flooding && garbage < GARBAGE_CAP,
        "the flood ({garbage} tokens) ended before the new key was accepted: the rotation \
         may have waited for it to end"
    );
    // the rotation did not cost more than the budget either
    let fetched = s
        .metric("tokengate_jwks_refresh_total{provider=\"oidc\",result=\"ok\"}")
        .await
        + s.metric("tokengate_jwks_refresh_total{provider=\"oidc\",result=\"error\"}")
            .await
        - ok_before
        - err_before;
    let bound = (BURST + waited.as_millis() as u64 / REFILL_MS + 2) as f64;
    assert!(
        fetched <= bound,
        "{fetched} fetches during a {waited:?} rotation (bound {bound})"
    );
    // and the old key still works
    assert!(check_token(&mut c, &first).await.allowed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discovery_document_naming_another_issuer_is_refused() {
    let idp = OidcProvider::start(&[("a", "rsa-private.pem")], "a").await;
    let token = idp.token().await;
    // The same provider reached under names that are not its issuer.
    for configured in [
        format!("http://localhost:{}", idp.port),
        format!("{}/", idp.issuer),
    ] {
        let s = TestServer::start_unready(parse(&yaml(&configured))).await;
        wait_for("a refused discovery", Duration::from_secs(10), || async {
            let (_, body) = readyz(&s).await;
            body["keys"]["errors"]["oidc"]
                .as_str()
                .is_some_and(|e| e.starts_with("issuer_mismatch"))
        })
        .await;
        let (status, body) = readyz(&s).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["keys"]["waiting_for"], json!(["oidc"]), "{body}");
        let why = body["keys"]["errors"]["oidc"].as_str().unwrap();
        assert!(
            why.contains(&idp.issuer),
            "names what the document said: {why}"
        );
        assert_keys_unavailable(&s, &token).await;
        assert_eq!(health(&s, "").await, NOT_SERVING);
        // a retry is refused the same way, and the JWKS is never even fetched
        let (_, discovered) = idp.hits().await;
        wait_for("another discovery try", Duration::from_secs(10), || async {
            idp.hits().await.1 > discovered
        })
        .await;
        let ok = s
            .metric("tokengate_jwks_refresh_total{provider=\"oidc\",result=\"ok\"}")
            .await;
        assert_eq!(ok, 0.0, "no fetch succeeded");
        assert_eq!(readyz(&s).await.0, 503);
        assert_keys_unavailable(&s, &token).await;
        s.stop().await;
    }
    let (jwks, _) = idp.hits().await;
    assert_eq!(jwks, 0, "keys of a refused discovery are never fetched");
}

#[tokio::test(flavor = "multi_thread")]
async fn checks_answer_503_until_the_provider_comes_up_then_allow() {
    let mut idp = OidcProvider::start(&[("a", "rsa-private.pem")], "a").await;
    let token = idp.token().await;
    let port = idp.port;
    idp.stop();

    let s = TestServer::start_unready(parse(&yaml(&idp.issuer))).await;
    assert_keys_unavailable(&s, &token).await;
    // the classes of token that do not need a key keep their own reasons
    let mut c = s.grpc().await;
    let a = check_token(&mut c, "not-a-jwt").await;
    assert_eq!(a.reason().as_deref(), Some("malformed"));
    let hs = {
        let (alg, key) = signing_key("hs");
        let mut claims = claims("mallory");
        claims["iss"] = idp.issuer.clone().into();
        sign(json!({"alg": "HS256", "kid": "a"}), claims, alg, &key)
    };
    assert_eq!(
        check_token(&mut c, &hs).await.reason().as_deref(),
        Some("disallowed_algorithm")
    );
    // any other key id or none: not judged without keys either
    for kid in [Some("a"), Some("garbage"), None] {
        assert_keys_unavailable(&s, &forged(&idp.issuer, kid)).await;
    }
    // logout and RFC 7009 revocation cannot judge the token: 503, not a silent 200
    let (status, body) = logout(&s, "/v1/auth/logout", &token).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("keys_unavailable"))
    );
    let resp = reqwest::Client::new()
        .post(s.http_url("/v1/oauth/revoke"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "revocation of an unjudged token");
    // readiness and gRPC health agree: not ready, and why
    wait_for("a failed first fetch", Duration::from_secs(10), || async {
        readyz(&s).await.1["keys"]["errors"]["oidc"]
            .as_str()
            .is_some_and(|e| e.starts_with("connection_refused"))
    })
    .await;
    assert_eq!(health(&s, "").await, NOT_SERVING);
    assert_eq!(health(&s, AUTHZ).await, NOT_SERVING);

    let _idp = OidcProvider::start_on(port, &[("a", "rsa-private.pem")], "a").await;
    wait_for(
        "the same token to be allowed",
        Duration::from_secs(15),
        || {
            let t = token.clone();
            let mut c = c.clone();
            async move { check_token(&mut c, &t).await.allowed() }
        },
    )
    .await;
    assert_eq!(http_check(&s, &token).await.0, 200);
    // gRPC health follows by itself, without anyone asking /readyz
    wait_for("gRPC health SERVING", Duration::from_secs(5), || async {
        health(&s, "").await == SERVING && health(&s, AUTHZ).await == SERVING
    })
    .await;
    assert_eq!(readyz(&s).await.0, 200);
}
