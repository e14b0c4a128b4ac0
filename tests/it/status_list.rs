//! Token Status List (draft-ietf-oauth-status-list-20) with lists made by another
//! implementation: npm `@sd-jwt/jwt-status-list` builds and compresses each list and
//! npm `jose` signs it (tests/status-list/make.mjs, installed into .tools/status-list by
//! scripts/install-test-deps.sh). An axum server on loopback serves them and counts the
//! fetches; checks go through the real gRPC server.

use crate::support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use support::procs::{repo, tool};
use support::*;

/// The lists the test serves, by name, and what was fetched.
#[derive(Default)]
struct Lists {
    bodies: Mutex<HashMap<String, (StatusCode, Vec<u8>)>>,
    hits: Mutex<HashMap<String, u64>>,
    first_hit: Mutex<HashMap<String, Instant>>,
    total: AtomicU64,
    /// Name → where it redirects (302).
    redirects: Mutex<HashMap<String, String>>,
    /// How long each answer takes, to hold concurrent misses together.
    delay_ms: AtomicU64,
    /// The JWKS served at `/jwks`, and how often it was fetched.
    jwks: Mutex<Vec<Value>>,
    jwks_hits: AtomicU64,
}

async fn serve_jwks(State(lists): State<Arc<Lists>>) -> Response {
    lists.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let keys = lists.jwks.lock().unwrap().clone();
    axum::Json(json!({ "keys": keys })).into_response()
}

impl Lists {
    fn set(&self, name: &str, body: impl Into<Vec<u8>>) {
        let mut b = self.bodies.lock().unwrap();
        b.insert(name.into(), (StatusCode::OK, body.into()));
    }
    fn fail(&self, name: &str, status: StatusCode) {
        let mut b = self.bodies.lock().unwrap();
        b.insert(name.into(), (status, b"down".to_vec()));
    }
    fn hits(&self, name: &str) -> u64 {
        *self.hits.lock().unwrap().get(name).unwrap_or(&0)
    }
}

async fn serve_list(State(lists): State<Arc<Lists>>, Path(name): Path<String>) -> Response {
    lists.total.fetch_add(1, Ordering::SeqCst);
    *lists.hits.lock().unwrap().entry(name.clone()).or_default() += 1;
    lists
        .first_hit
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_insert_with(Instant::now);
    let delay = lists.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(to) = lists.redirects.lock().unwrap().get(&name).cloned() {
        return (StatusCode::FOUND, [("location", to)]).into_response();
    }
    let body = lists.bodies.lock().unwrap().get(&name).cloned();
    match body {
        Some((status, body)) => (
            status,
            [("content-type", "application/statuslist+jwt")],
            body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the list server; returns it and its base URL `http://127.0.0.1:PORT/lists`.
async fn start_lists() -> (Arc<Lists>, String) {
    let lists = Arc::new(Lists::default());
    let app = axum::Router::new()
        .route("/lists/{name}", axum::routing::get(serve_list))
        .route("/jwks", axum::routing::get(serve_jwks))
        .with_state(lists.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/lists", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (lists, base)
}

fn module_dir() -> std::path::PathBuf {
    let dir = repo().join(".tools/status-list");
    assert!(
        dir.join("node_modules/@sd-jwt/jwt-status-list/package.json")
            .is_file(),
        "@sd-jwt/jwt-status-list is not installed in .tools/status-list: run \
         scripts/install-test-deps.sh"
    );
    dir
}

/// A Status List Token made by the npm implementation: `statuses` one per index,
/// `claims` merged over iss/sub/iat/ttl defaults (a `null` removes one), signed with
/// fixture key `key` under `kid`.
fn make(
    bits: u8,
    statuses: &[u8],
    claims: Value,
    key: &str,
    kid: &str,
    typ: Option<&str>,
) -> String {
    let now = tokengate::jwt::now_unix();
    let base = json!({"iss": ISSUER, "iat": now, "ttl": 60});
    let mut spec = json!({
        "bits": bits,
        "statuses": statuses,
        "key": key_path(key),
        "alg": if key.starts_with("rsa") { "RS256" } else { "ES256" },
        "kid": kid,
        "claims": with_claims(base, claims),
    });
    if let Some(typ) = typ {
        spec["typ"] = json!(typ);
    }
    let mut cmd = Command::new(tool("node", "nodejs (Node 20)"));
    cmd.arg(repo().join("tests/status-list/make.mjs"))
        .arg("--module-dir")
        .arg(module_dir());
    let out = crate::support::procs::pipe_through(cmd, spec.to_string().as_bytes(), "make.mjs");
    String::from_utf8(out).unwrap()
}

/// A list signed by the test provider's ES256 key for `uri`.
fn list(bits: u8, statuses: &[u8], uri: &str, extra: Value) -> String {
    let claims = with_claims(json!({"sub": uri}), extra);
    make(bits, statuses, claims, "ec256-private.pem", "ec256", None)
}

/// The test configuration with `status_list` on the provider and `revocation_extra`
/// appended under `revocation:`.
fn yaml(status_list: &str, revocation_extra: &str) -> String {
    let base = config_yaml(&format!("{MEMORY_STORE}\n{revocation_extra}"));
    base.replacen(
        "    leeway_seconds: 5\n",
        &format!("    leeway_seconds: 5\n    status_list:\n{status_list}"),
        1,
    )
}

const STATUS_LIST: &str =
    "      allowed_hosts: [127.0.0.1]\n      min_ttl_seconds: 0\n      max_ttl_seconds: 60\n";

fn token_at(uri: &str, idx: u64) -> String {
    token(
        "ec256",
        "alice",
        json!({"status": {"status_list": {"idx": idx, "uri": uri}}}),
    )
}

async fn reason_of(s: &TestServer, token: &str) -> Option<String> {
    let answer = check_token(&mut s.grpc().await, token).await;
    if answer.allowed() {
        None
    } else {
        Some(
            answer
                .reason()
                .unwrap_or_else(|| format!("code {}", answer.grpc_code)),
        )
    }
}

#[tokio::test]
async fn every_bits_width_is_read_and_each_status_enforced() {
    let (lists, base) = start_lists().await;
    let s = TestServer::start(&yaml(STATUS_LIST, "")).await;
    for bits in [1u8, 2, 4, 8] {
        let uri = format!("{base}/b{bits}");
        let statuses: Vec<u8> = if bits == 1 {
            vec![0, 1, 0, 1, 1, 0, 0, 1, 0]
        } else {
            vec![0, 1, 2, 3, 0, 2, 1, 0, 0]
        };
        lists.set(&format!("b{bits}"), list(bits, &statuses, &uri, json!({})));
        for (idx, status) in statuses.iter().enumerate() {
            let want = match status {
                0 => None,
                1 => Some("token_status_invalid"),
                2 => Some("token_status_suspended"),
                _ => Some("token_status_unknown"),
            };
            let got = reason_of(&s, &token_at(&uri, idx as u64)).await;
            assert_eq!(got.as_deref(), want, "bits {bits} idx {idx}");
        }
        // past the end of the list (the library pads to whole bytes; 4096 is beyond)
        let got = reason_of(&s, &token_at(&uri, 4096)).await;
        assert_eq!(got.as_deref(), Some("token_status_unknown"), "bits {bits}");
        assert_eq!(
            lists.hits(&format!("b{bits}")),
            1,
            "one fetch per list, then the cache"
        );
    }
    // the outage reason is 503 / UNAVAILABLE, the status reasons 401 / UNAUTHENTICATED
    let answer = check_token(&mut s.grpc().await, &token_at(&format!("{base}/b2"), 1)).await;
    assert_eq!((answer.grpc_code, answer.http_status), (16, Some(401)));
    // a token without a status claim is not affected
    assert!(
        check_token(&mut s.grpc().await, &token("ec256", "bob", json!({})))
            .await
            .allowed()
    );
    assert_eq!(
        s.metric("tokengate_status_list_fetches_total{provider=\"test\",result=\"ok\"}")
            .await,
        4.0
    );
    s.stop().await;
}

#[tokio::test]
async fn a_bit_flipped_to_invalid_is_enforced_after_the_ttl_and_not_before() {
    let (lists, base) = start_lists().await;
    let s = TestServer::start(&yaml(STATUS_LIST, "")).await;
    let uri = format!("{base}/flip");
    lists.set("flip", list(1, &[0, 0, 0], &uri, json!({"ttl": 2})));
    let t = token_at(&uri, 1);
    assert_eq!(reason_of(&s, &t).await, None);
    // the issuer revokes index 1: the cached list still says VALID until its ttl
    lists.set("flip", list(1, &[0, 1, 0], &uri, json!({"ttl": 2})));
    assert_eq!(reason_of(&s, &t).await, None, "the cached list is used");
    assert_eq!(lists.hits("flip"), 1, "no fetch within the ttl");
    wait_for(
        "the flipped bit to be enforced",
        Duration::from_secs(15),
        || {
            let (s, t) = (&s, &t);
            async move { reason_of(s, t).await.as_deref() == Some("token_status_invalid") }
        },
    )
    .await;
    let first = *lists.first_hit.lock().unwrap().get("flip").unwrap();
    assert!(
        first.elapsed() >= Duration::from_secs(2),
        "enforced before the list's ttl ran out"
    );
    assert_eq!(
        lists.hits("flip"),
        2,
        "exactly one more fetch once the ttl ran out"
    );
    // other indexes of the same list are unaffected
    assert_eq!(reason_of(&s, &token_at(&uri, 0)).await, None);
    s.stop().await;
}

#[tokio::test]
async fn lists_the_provider_did_not_issue_for_that_uri_are_unavailable() {
    let (lists, base) = start_lists().await;
    let s = TestServer::start(&yaml(STATUS_LIST, "")).await;
    let uri = |n: &str| format!("{base}/{n}");
    // signed with a key the provider does not have, under one of its kids
    lists.set(
        "other-key",
        make(
            1,
            &[0],
            json!({"sub": uri("other-key")}),
            "rsa2-private.pem",
            "rsa",
            None,
        ),
    );
    // another issuer's list (right key, wrong iss)
    lists.set(
        "other-iss",
        list(
            1,
            &[0],
            &uri("other-iss"),
            json!({"iss": "https://other.test"}),
        ),
    );
    // a list for another uri replayed here
    lists.set("wrong-sub", list(1, &[0], &uri("elsewhere"), json!({})));
    // the provider's access token (typ JWT) served as a list
    lists.set(
        "wrong-typ",
        make(
            1,
            &[0],
            json!({"sub": uri("wrong-typ")}),
            "ec256-private.pem",
            "ec256",
            Some("JWT"),
        ),
    );
    // a tampered signature
    let good = list(1, &[0], &uri("tampered"), json!({}));
    let (signed, sig) = good.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    lists.set("tampered", format!("{signed}.{flipped}{}", &sig[1..]));
    // expired, no iat, not a JWT at all
    let now = tokengate::jwt::now_unix();
    lists.set(
        "expired",
        list(1, &[0], &uri("expired"), json!({"exp": now - 60})),
    );
    lists.set("garbage", "<html>not a list</html>");
    // the npm list re-signed by the provider's key with one claim broken: no iat, bits 3,
    // lst not zlib, an access token's typ
    let (alg, key) = signing_key("ec256");
    let npm = list(1, &[0], &uri("x"), json!({}));
    let resign = |name: &str, header: Value, edit: Value| {
        let payload = decode_part(&npm, 1);
        let mut payload = with_claims(payload, edit);
        payload["sub"] = json!(uri(name));
        sign(header, payload, alg, &key)
    };
    let h = json!({"alg": "ES256", "kid": "ec256", "typ": "statuslist+jwt"});
    lists.set("no-iat", resign("no-iat", h.clone(), json!({"iat": null})));
    lists.set(
        "bits-3",
        resign(
            "bits-3",
            h.clone(),
            json!({"status_list": {"bits": 3, "lst": decode_part(&npm, 1)["status_list"]["lst"]}}),
        ),
    );
    lists.set(
        "not-zlib",
        resign(
            "not-zlib",
            h.clone(),
            json!({"status_list": {"bits": 1, "lst": "AAAA"}}),
        ),
    );
    lists.set(
        "at-jwt",
        resign(
            "at-jwt",
            json!({"alg": "ES256", "kid": "ec256", "typ": "at+jwt"}),
            json!({}),
        ),
    );
    for name in [
        "other-key",
        "other-iss",
        "wrong-sub",
        "wrong-typ",
        "tampered",
        "expired",
        "garbage",
        "no-iat",
        "bits-3",
        "not-zlib",
        "at-jwt",
    ] {
        let answer = check_token(&mut s.grpc().await, &token_at(&uri(name), 0)).await;
        assert_eq!(
            answer.reason().as_deref(),
            Some("status_list_unavailable"),
            "{name}"
        );
        assert_eq!(
            (answer.grpc_code, answer.http_status),
            (14, Some(503)),
            "{name}"
        );
    }
    assert_eq!(
        s.metric("tokengate_status_list_fetches_total{provider=\"test\",result=\"invalid\"}")
            .await,
        11.0
    );
    // a failure is not cached as an answer: the next request fetches again
    lists.set("garbage", list(1, &[0], &uri("garbage"), json!({})));
    assert_eq!(reason_of(&s, &token_at(&uri("garbage"), 0)).await, None);
    s.stop().await;
}

#[tokio::test]
async fn uris_outside_the_allowed_hosts_are_refused_without_a_fetch() {
    let (lists, base) = start_lists().await;
    let s = TestServer::start(&yaml(STATUS_LIST, "")).await;
    let port = base
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap();
    lists.set("l", list(1, &[0], &format!("{base}/l"), json!({})));
    // the same server under other names, and other ways to smuggle a host in
    for uri in [
        format!("http://localhost:{port}/lists/l"),
        format!("http://[::1]:{port}/lists/l"),
        format!("http://127.0.0.2:{port}/lists/l"),
        format!("http://user@127.0.0.1.evil.test:{port}/lists/l"),
        format!("http://127.0.0.1.nip.io:{port}/lists/l"),
        format!("http://x:y@127.0.0.1:{port}/lists/l"),
        format!("ftp://127.0.0.1:{port}/lists/l"),
        "file:///lists/l".to_string(),
        "not a url".to_string(),
    ] {
        let got = reason_of(&s, &token_at(&uri, 0)).await;
        assert_eq!(got.as_deref(), Some("token_status_unknown"), "{uri}");
    }
    // unreadable status claims
    for status in [
        json!("x"),
        json!({"status_list": {"idx": -1, "uri": format!("{base}/l")}}),
        json!({"status_list": {"uri": format!("{base}/l")}}),
    ] {
        let t = token("ec256", "alice", json!({"status": status}));
        assert_eq!(
            reason_of(&s, &t).await.as_deref(),
            Some("token_status_unknown"),
            "{status}"
        );
    }
    assert_eq!(lists.total.load(Ordering::SeqCst), 0, "nothing was fetched");
    s.stop().await;
}

#[tokio::test]
async fn a_list_server_down_fails_closed_or_open_like_the_store() {
    let (lists, base) = start_lists().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let refused = format!("http://{closed}/lists/x");
    lists.fail("500", StatusCode::INTERNAL_SERVER_ERROR);
    let failing = format!("{base}/500");
    let closed_server = TestServer::start(&yaml(STATUS_LIST, "")).await;
    for uri in [&refused, &failing] {
        let answer = check_token(&mut closed_server.grpc().await, &token_at(uri, 0)).await;
        assert_eq!(
            answer.reason().as_deref(),
            Some("status_list_unavailable"),
            "{uri}"
        );
        assert_eq!(answer.http_status, Some(503));
    }
    closed_server.stop().await;
    let open = TestServer::start(&yaml(STATUS_LIST, "  on_store_error: allow\n")).await;
    for uri in [&refused, &failing] {
        assert!(
            check_token(&mut open.grpc().await, &token_at(uri, 0))
                .await
                .allowed(),
            "{uri}"
        );
    }
    assert_eq!(
        open.metric("tokengate_decisions_total{decision=\"allow\",reason=\"status_list_unavailable\",transport=\"grpc\"}")
            .await,
        2.0
    );
    // fail-open is for outages only: a list that says INVALID still denies
    lists.set("bad", list(1, &[1], &format!("{base}/bad"), json!({})));
    assert_eq!(
        reason_of(&open, &token_at(&format!("{base}/bad"), 0))
            .await
            .as_deref(),
        Some("token_status_invalid")
    );
    open.stop().await;
}

#[tokio::test]
async fn zlib_bombs_and_oversized_lists_are_refused() {
    let (lists, base) = start_lists().await;
    let small = "      allowed_hosts: [127.0.0.1]\n      min_ttl_seconds: 0\n      max_ttl_seconds: 60\n      max_bytes: 4096\n";
    let s = TestServer::start(&yaml(small, "")).await;
    // 1 MiB of VALID statuses: a few hundred bytes compressed, 1 MiB inflated
    let bomb = list(8, &vec![0u8; 1 << 20], &format!("{base}/bomb"), json!({}));
    assert!(bomb.len() < 4096, "the bomb itself fits: {}", bomb.len());
    lists.set("bomb", bomb);
    // statuses that do not compress: the token itself is larger than max_bytes
    let mut x: u32 = 0x9E37_79B9;
    let noise: Vec<u8> = (0..16_384)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0x03) as u8
        })
        .collect();
    let big = list(2, &noise, &format!("{base}/big"), json!({}));
    assert!(big.len() > 4096);
    lists.set("big", big);
    for name in ["bomb", "big"] {
        let got = reason_of(&s, &token_at(&format!("{base}/{name}"), 0)).await;
        assert_eq!(got.as_deref(), Some("status_list_unavailable"), "{name}");
    }
    assert_eq!(
        s.metric("tokengate_status_list_fetches_total{provider=\"test\",result=\"too_large\"}")
            .await,
        2.0
    );
    s.stop().await;
}

#[tokio::test]
async fn without_status_list_configured_the_claim_is_ignored() {
    let (lists, base) = start_lists().await;
    lists.set("l", list(1, &[1], &format!("{base}/l"), json!({})));
    let s = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    assert_eq!(
        reason_of(&s, &token_at(&format!("{base}/l"), 0)).await,
        None
    );
    assert_eq!(lists.total.load(Ordering::SeqCst), 0);
    s.stop().await;
}

#[tokio::test]
async fn redirects_are_followed_only_to_allowed_hosts() {
    let (lists, base) = start_lists().await;
    let s = TestServer::start(&yaml(STATUS_LIST, "")).await;
    let port = base
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    // the list names the uri the token references, wherever it is served from
    let uri = format!("{base}/moved");
    lists.set("target", list(1, &[0, 1], &uri, json!({})));
    lists
        .redirects
        .lock()
        .unwrap()
        .insert("moved".into(), format!("{base}/target"));
    assert_eq!(reason_of(&s, &token_at(&uri, 0)).await, None);
    assert_eq!(
        reason_of(&s, &token_at(&uri, 1)).await.as_deref(),
        Some("token_status_invalid")
    );
    assert_eq!(lists.hits("target"), 1);
    // to the same server under a name not allowed, and in a loop: the fetch fails
    let away = format!("{base}/away");
    lists.set("elsewhere", list(1, &[0], &away, json!({})));
    lists.redirects.lock().unwrap().insert(
        "away".into(),
        format!("http://localhost:{port}/lists/elsewhere"),
    );
    let looping = format!("{base}/loop");
    lists
        .redirects
        .lock()
        .unwrap()
        .insert("loop".into(), looping.clone());
    for uri in [&away, &looping] {
        let got = reason_of(&s, &token_at(uri, 0)).await;
        assert_eq!(got.as_deref(), Some("status_list_unavailable"), "{uri}");
    }
    assert_eq!(
        lists.hits("elsewhere"),
        0,
        "a host not allowed is never asked"
    );
    assert_eq!(lists.hits("loop"), 4, "the first request and 3 redirects");
    s.stop().await;
}

#[tokio::test]
async fn concurrent_misses_for_one_list_share_one_fetch() {
    let (lists, base) = start_lists().await;
    let s = TestServer::start(&yaml(STATUS_LIST, "")).await;
    let uri = format!("{base}/shared");
    lists.set("shared", list(1, &[0, 1], &uri, json!({})));
    lists.delay_ms.store(300, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let (mut client, token) = (s.grpc().await, token_at(&uri, i % 2));
        tasks.push(tokio::spawn(async move {
            (i % 2, check_token(&mut client, &token).await.reason())
        }));
    }
    for t in tasks {
        let (idx, reason) = t.await.unwrap();
        let want = (idx == 1).then(|| "token_status_invalid".to_string());
        assert_eq!(reason, want, "idx {idx}");
    }
    assert_eq!(
        lists.hits("shared"),
        1,
        "one fetch for all the waiting requests"
    );
    // and a failing list: the waiters share the failure, not 16 timeouts in a row
    lists.fail("down", StatusCode::BAD_GATEWAY);
    let down = format!("{base}/down");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (mut client, token) = (s.grpc().await, token_at(&down, 0));
        tasks.push(tokio::spawn(async move {
            check_token(&mut client, &token).await.reason()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().as_deref(), Some("status_list_unavailable"));
    }
    assert!(
        lists.hits("down") < 16,
        "waiters reused the failed fetch: {} fetches",
        lists.hits("down")
    );
    s.stop().await;
}

#[tokio::test]
async fn the_http_mode_check_answers_the_same() {
    let (lists, base) = start_lists().await;
    let s = TestServer::start(&yaml(STATUS_LIST, "")).await;
    let uri = format!("{base}/http");
    lists.set("http", list(2, &[0, 1, 2], &uri, json!({})));
    let client = reqwest::Client::new();
    let authz = |t: String| {
        client
            .get(s.http_url("/authz/api/items"))
            .bearer_auth(t)
            .send()
    };
    assert_eq!(authz(token_at(&uri, 0)).await.unwrap().status(), 200);
    for (idx, reason) in [(1, "token_status_invalid"), (2, "token_status_suspended")] {
        let r = authz(token_at(&uri, idx)).await.unwrap();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["reason"], reason);
    }
    let r = authz(token_at(&format!("{base}/missing"), 0))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.headers().get("www-authenticate").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "status_list_unavailable");
    s.stop().await;
}

/// The public JWK of a fixture RSA key under `kid`.
fn rsa_jwk(private_pem: &str, kid: &str) -> Value {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&read_key(private_pem)).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

#[tokio::test]
async fn a_list_signed_with_a_key_rotated_in_since_the_last_jwks_fetch_is_verified() {
    let (lists, base) = start_lists().await;
    *lists.jwks.lock().unwrap() = vec![rsa_jwk("rsa-private.pem", "a")];
    let jwks = base.replace("/lists", "/jwks");
    let yaml = format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
  - name: remote
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    algorithms: [RS256]
    keys:
      - jwks_uri: {jwks}
    jwks:
      refresh_seconds: 600
      min_refresh_seconds: 600
    status_list:
{STATUS_LIST}log:
  level: warn
"#
    );
    let s = TestServer::start(&yaml).await;
    let uri = format!("{base}/rotated");
    let (alg, key) = (
        jsonwebtoken::Algorithm::RS256,
        jsonwebtoken::EncodingKey::from_rsa_pem(&read_key("rsa-private.pem")).unwrap(),
    );
    let token = |idx: u64| {
        let c = with_claims(
            claims("alice"),
            json!({"status": {"status_list": {"idx": idx, "uri": uri}}}),
        );
        sign(json!({"alg": "RS256", "kid": "a"}), c, alg, &key)
    };
    // the issuer signs its list with a new key "b", published after tokengate's fetch
    let signed = make(
        1,
        &[0, 1],
        json!({"sub": uri}),
        "rsa2-private.pem",
        "b",
        None,
    );
    lists.set("rotated", signed);
    let before = lists.jwks_hits.load(Ordering::SeqCst);
    *lists.jwks.lock().unwrap() = vec![
        rsa_jwk("rsa-private.pem", "a"),
        rsa_jwk("rsa2-private.pem", "b"),
    ];
    assert_eq!(reason_of(&s, &token(0)).await, None);
    assert_eq!(
        reason_of(&s, &token(1)).await.as_deref(),
        Some("token_status_invalid")
    );
    assert_eq!(
        lists.jwks_hits.load(Ordering::SeqCst) - before,
        1,
        "one early JWKS fetch for the list's unknown kid"
    );
    // a list signed with a key the issuer never published stays unavailable
    let forged = format!("{base}/forged");
    lists.set(
        "forged",
        make(
            1,
            &[0],
            json!({"sub": forged}),
            "rsa2-private.pem",
            "c",
            None,
        ),
    );
    let t = with_claims(
        claims("bob"),
        json!({"status": {"status_list": {"idx": 0, "uri": forged}}}),
    );
    let t = sign(json!({"alg": "RS256", "kid": "a"}), t, alg, &key);
    assert_eq!(
        reason_of(&s, &t).await.as_deref(),
        Some("status_list_unavailable")
    );
    s.stop().await;
}
