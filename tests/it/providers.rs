//! Identity providers in production: remote JWKS with rotation, rate-limited unknown-kid
//! fetches and an identity provider that goes down; several issuers; route rules by
//! host, role and claim; claim forwarding; live reload under load.

use crate::support;

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use support::*;

const IDP: &str = "https://idp.test";

/// A JWKS endpoint the test controls: which keys it publishes, whether it is up, and
/// how many times it was asked.
#[derive(Default)]
struct Idp {
    keys: Mutex<Vec<Value>>,
    status: AtomicU16,
    hits: AtomicU64,
}

async fn jwks(State(idp): State<Arc<Idp>>) -> Response {
    idp.hits.fetch_add(1, Ordering::SeqCst);
    let status = StatusCode::from_u16(idp.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK);
    if status != StatusCode::OK {
        return status.into_response();
    }
    let body = json!({"keys": *idp.keys.lock().unwrap()}).to_string();
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=600"),
    );
    r
}

async fn start_idp() -> (Arc<Idp>, String) {
    let idp = Arc::new(Idp::default());
    idp.status.store(200, Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/jwks", axum::routing::get(jwks))
        .with_state(idp.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (idp, url)
}

/// The public JWK of a fixture RSA key, with `kid`.
fn jwk(private_pem: &str, kid: &str) -> Value {
    let key = EncodingKey::from_rsa_pem(&read_key(private_pem)).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

fn idp_token(private_pem: &str, kid: &str, sub: &str) -> String {
    let key = EncodingKey::from_rsa_pem(&read_key(private_pem)).unwrap();
    let mut c = claims(sub);
    c["iss"] = IDP.into();
    sign(
        json!({"alg": "RS256", "kid": kid}),
        c,
        Algorithm::RS256,
        &key,
    )
}

fn idp_yaml(url: &str, refresh: u64) -> String {
    format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
  - name: idp
    issuer: {IDP}
    audiences: [{AUDIENCE}]
    algorithms: [RS256]
    keys:
      - jwks_uri: {url}
    jwks:
      refresh_seconds: {refresh}
      min_refresh_seconds: 1
      max_refresh_seconds: {refresh}
      unknown_kid_min_interval_seconds: 60
      unknown_kid_burst: 2
      unknown_kid_refill_ms: 60000
      timeout_ms: 500
log:
  level: warn
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_is_followed_without_a_failed_check() {
    let (idp, url) = start_idp().await;
    *idp.keys.lock().unwrap() = vec![jwk("rsa-private.pem", "a")];
    let s = TestServer::start(&idp_yaml(&url, 600)).await;
    let mut c = s.grpc().await;
    assert!(check_token(&mut c, &idp_token("rsa-private.pem", "a", "u"))
        .await
        .allowed());

    // the IdP publishes B and starts signing with it at once
    *idp.keys.lock().unwrap() = vec![jwk("rsa-private.pem", "a"), jwk("rsa2-private.pem", "b")];
    let a = check_token(&mut c, &idp_token("rsa2-private.pem", "b", "u")).await;
    assert!(
        a.allowed(),
        "the first token signed by the new key passes: {a:?}"
    );

    // then retires A: tokens of the current key keep passing
    *idp.keys.lock().unwrap() = vec![jwk("rsa2-private.pem", "b")];
    for _ in 0..5 {
        assert!(
            check_token(&mut c, &idp_token("rsa2-private.pem", "b", "u"))
                .await
                .allowed()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_kid_flood_costs_the_idp_at_most_the_global_burst() {
    let (idp, url) = start_idp().await;
    *idp.keys.lock().unwrap() = vec![jwk("rsa-private.pem", "a")];
    let s = TestServer::start(&idp_yaml(&url, 600)).await;
    let mut c = s.grpc().await;
    let before = idp.hits.load(Ordering::SeqCst);
    for i in 0..200 {
        let t = idp_token("rsa-private.pem", &format!("garbage-{i}-{}", uuid()), "u");
        assert_eq!(
            check_token(&mut c, &t).await.reason().as_deref(),
            Some("unknown_key")
        );
    }
    let fetches = idp.hits.load(Ordering::SeqCst) - before;
    assert!(
        fetches <= 2,
        "200 garbage kids caused {fetches} JWKS fetches (limit: a burst of 2, then 1 per 60 s)"
    );
    assert!(check_token(&mut c, &idp_token("rsa-private.pem", "a", "u"))
        .await
        .allowed());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_idp_going_down_keeps_the_last_keys_working() {
    let (idp, url) = start_idp().await;
    *idp.keys.lock().unwrap() = vec![jwk("rsa-private.pem", "a")];
    let s = TestServer::start(&idp_yaml(&url, 1)).await;
    let mut c = s.grpc().await;
    idp.status.store(503, Ordering::SeqCst);
    wait_for("a failed JWKS refresh", Duration::from_secs(10), || async {
        s.metric("tokengate_jwks_refresh_total{provider=\"idp\",result=\"error\"}")
            .await
            >= 1.0
    })
    .await;
    for _ in 0..3 {
        assert!(check_token(&mut c, &idp_token("rsa-private.pem", "a", "u"))
            .await
            .allowed());
    }
    let ready = reqwest::get(s.admin_url("/readyz")).await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "keys once loaded keep the replica ready"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_the_first_jwks() {
    let (idp, url) = start_idp().await;
    *idp.keys.lock().unwrap() = vec![jwk("rsa-private.pem", "a")];
    idp.status.store(503, Ordering::SeqCst);
    let s = TestServer::start_unready(parse(&idp_yaml(&url, 1))).await;
    wait_for("a first failed fetch", Duration::from_secs(5), || async {
        idp.hits.load(Ordering::SeqCst) >= 1
    })
    .await;
    let resp = reqwest::get(s.admin_url("/readyz")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["keys"]["waiting_for"], json!(["idp"]), "{body}");
    let why = body["keys"]["errors"]["idp"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("http_status") && why.contains("503"),
        "{body}"
    );
    // meanwhile its tokens are an outage, not bad tokens
    let token = idp_token("rsa-private.pem", "a", "u");
    let a = check_token(&mut s.grpc().await, &token).await;
    assert_eq!(a.reason().as_deref(), Some("keys_unavailable"), "{a:?}");
    assert_eq!((a.grpc_code, a.http_status), (14, Some(503)));
    idp.status.store(200, Ordering::SeqCst);
    s.wait_ready().await;
    assert!(check_token(&mut s.grpc().await, &token).await.allowed());
}

/// The public JWK of a fixture EC key, with `kid`.
fn ec_jwk(kid: &str) -> Value {
    let key = EncodingKey::from_ec_pem(&read_key("ec256-private.pem")).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_without_a_key_for_the_algorithms_is_never_installed() {
    let logs = support::logs::capture();
    let (idp, url) = start_idp().await;
    // RSA keys only, for a provider that allows ES256 only
    *idp.keys.lock().unwrap() = vec![jwk("rsa-private.pem", "a")];
    let yaml = idp_yaml(&url, 1).replace("algorithms: [RS256]", "algorithms: [ES256]");
    let s = TestServer::start_unready(parse(&yaml)).await;
    wait_for("a refused key set", Duration::from_secs(10), || async {
        let body: Value = reqwest::get(s.admin_url("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["keys"]["errors"]["idp"]
            .as_str()
            .is_some_and(|e| e.starts_with("no_usable_key") && e.contains("ES256"))
    })
    .await;
    assert_eq!(
        reqwest::get(s.admin_url("/readyz")).await.unwrap().status(),
        503
    );
    assert!(
        logs.any(&[
            ("provider", json!("idp")),
            ("algorithms", json!("ES256")),
            ("cause", json!("no_usable_key")),
        ]),
        "the log names the provider and its algorithms:\n{}",
        logs.text()
    );
    // an ES256 token can be judged by no installed key: an outage, not a 401
    let key = EncodingKey::from_ec_pem(&read_key("ec256-private.pem")).unwrap();
    let mut c = claims("u");
    c["iss"] = IDP.into();
    let t = sign(
        json!({"alg": "ES256", "kid": "e"}),
        c,
        Algorithm::ES256,
        &key,
    );
    let a = check_token(&mut s.grpc().await, &t).await;
    assert_eq!(a.reason().as_deref(), Some("keys_unavailable"), "{a:?}");

    // a usable set is installed; a later unusable one does not replace it
    *idp.keys.lock().unwrap() = vec![ec_jwk("e")];
    s.wait_ready().await;
    *idp.keys.lock().unwrap() = vec![jwk("rsa-private.pem", "a")];
    let errors = "tokengate_jwks_refresh_total{provider=\"idp\",result=\"error\"}";
    let failed = s.metric(errors).await;
    wait_for("a refused refresh", Duration::from_secs(10), || async {
        s.metric(errors).await > failed
    })
    .await;
    assert_eq!(
        reqwest::get(s.admin_url("/readyz")).await.unwrap().status(),
        200
    );
    assert!(check_token(&mut s.grpc().await, &t).await.allowed());
}

#[tokio::test(flavor = "multi_thread")]
async fn static_keys_none_usable_with_the_algorithms_keep_readiness_503() {
    let logs = support::logs::capture();
    let dir = std::env::temp_dir().join(format!("tokengate-providers-{}", uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rsa.jwks");
    std::fs::write(
        &file,
        json!({"keys": [jwk("rsa-private.pem", "a")]}).to_string(),
    )
    .unwrap();
    let yaml = format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
  - name: static
    issuer: {IDP}
    algorithms: [ES256]
    keys:
      - jwks_file: {}
log:
  level: warn
"#,
        file.display()
    );
    let s = TestServer::start_unready(parse(&yaml)).await;
    let resp = reqwest::get(s.admin_url("/readyz")).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["keys"]["waiting_for"], json!(["static"]), "{body}");
    let why = body["keys"]["errors"]["static"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("no_usable_key") && why.contains("ES256"),
        "{body}"
    );
    assert!(
        logs.any(&[
            ("provider", json!("static")),
            ("algorithms", json!("ES256")),
            ("key_families", json!("RSA")),
        ]),
        "logged at load, naming the provider and its algorithms:\n{}",
        logs.text()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_providers_verify_only_with_their_own_keys_and_algorithms() {
    let yaml = format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
  - name: alpha
    issuer: https://alpha.test
    algorithms: [RS256]
    keys: [{{public_key_file: {rsa}}}]
  - name: beta
    issuer: https://beta.test
    algorithms: [ES256]
    keys: [{{kid: b1, public_key_file: {ec}}}]
log: {{level: warn}}
"#,
        rsa = key_path("rsa-public.pem"),
        ec = key_path("ec256-public.pem"),
    );
    let s = TestServer::start(&yaml).await;
    let mut c = s.grpc().await;
    let with_iss = |iss: &str| {
        let mut v = claims("u");
        v["iss"] = iss.into();
        v
    };
    let (rs, rsa) = signing_key("rsa");
    let (es, ec) = signing_key("ec256");
    let (_, rsa2) = signing_key("rsa2");
    let cases = [
        (
            "alpha's own",
            sign(
                json!({"alg": "RS256"}),
                with_iss("https://alpha.test"),
                rs,
                &rsa,
            ),
            None,
        ),
        (
            "beta's own",
            sign(
                json!({"alg": "ES256", "kid": "b1"}),
                with_iss("https://beta.test"),
                es,
                &ec,
            ),
            None,
        ),
        (
            "alpha token signed with beta's key",
            sign(
                json!({"alg": "ES256", "kid": "b1"}),
                with_iss("https://alpha.test"),
                es,
                &ec,
            ),
            Some("disallowed_algorithm"),
        ),
        (
            "beta token signed with alpha's key",
            sign(
                json!({"alg": "RS256"}),
                with_iss("https://beta.test"),
                rs,
                &rsa,
            ),
            Some("disallowed_algorithm"),
        ),
        (
            "alpha token signed with a stranger's RSA key",
            sign(
                json!({"alg": "RS256"}),
                with_iss("https://alpha.test"),
                rs,
                &rsa2,
            ),
            Some("bad_signature"),
        ),
        (
            "unknown issuer",
            sign(
                json!({"alg": "RS256"}),
                with_iss("https://gamma.test"),
                rs,
                &rsa,
            ),
            Some("wrong_issuer"),
        ),
    ];
    for (name, t, want) in cases {
        let a = check_token(&mut c, &t).await;
        assert_eq!(a.reason().as_deref(), want, "{name}: {a:?}");
    }
}

fn with_host(
    mut req: envoy_types::ext_authz::v3::pb::CheckRequest,
    host: &str,
) -> envoy_types::ext_authz::v3::pb::CheckRequest {
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.host = host.into();
    }
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn route_rules_by_host_role_and_claim_and_forwarding_by_dotted_path() {
    let yaml = config_yaml(MEMORY_STORE).replace(
        "routes:\n",
        r#"forward:
  headers:
    x-user-id: sub
    x-org-plan: org.plan
    x-roles: roles
  payload_header: x-jwt-payload
routes:
  - path_prefix: /reports
    host: "*.example.com"
    require_roles: [analyst]
  - path_prefix: /billing
    methods: [POST]
    require_claims: {"org.plan": enterprise}
"#,
    );
    let s = TestServer::start(&yaml).await;
    let mut c = s.grpc().await;
    let plain = bearer(&token(
        "ec256",
        "u",
        json!({"roles": ["viewer"], "org": {"plan": "free"}}),
    ));
    let analyst = token(
        "ec256",
        "u",
        json!({"roles": ["viewer", "analyst"], "org": {"plan": "enterprise"}}),
    );
    let analyst_h = bearer(&analyst);

    let req = |path: &str, method: &str, auth: &str, host: &str| {
        with_host(
            check_request(method, path, &[("authorization", auth)]),
            host,
        )
    };
    let a = check(
        &mut c,
        req("/reports/q3", "GET", &plain, "reports.example.com"),
    )
    .await;
    assert_eq!(
        (a.http_status, a.reason().as_deref()),
        (Some(403), Some("insufficient_scope"))
    );
    assert!(check(
        &mut c,
        req("/reports/q3", "GET", &analyst_h, "reports.example.com:443")
    )
    .await
    .allowed());
    // the rule is for *.example.com only
    assert!(check(
        &mut c,
        req("/reports/q3", "GET", &plain, "reports.other.org")
    )
    .await
    .allowed());
    // claim requirement, POST only
    let a = check(&mut c, req("/billing/pay", "POST", &plain, "x")).await;
    assert_eq!(a.reason().as_deref(), Some("insufficient_scope"));
    assert!(check(&mut c, req("/billing/pay", "GET", &plain, "x"))
        .await
        .allowed());
    let a = check(&mut c, req("/billing/pay", "POST", &analyst_h, "x")).await;
    assert!(a.allowed());
    // forwarding: nested claim, array joined, the payload as in the token
    assert_eq!(a.header("x-org-plan"), Some("enterprise"));
    assert_eq!(a.header("x-roles"), Some("viewer,analyst"));
    assert_eq!(a.header("x-jwt-payload"), analyst.split('.').nth(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_under_load_changes_rules_with_no_failed_request_and_refuses_a_bad_file() {
    let dir = support::redis::TempDir::new("reload");
    let file = dir.0.join("tokengate.yaml");
    let original = config_yaml(MEMORY_STORE);
    std::fs::write(&file, &original).unwrap();
    let config = tokengate::config::Config::load(&file).unwrap();
    let s = TestServer::start_config(config).await;
    let t = bearer(&token("ec256", "u", json!({"scope": "read"})));

    // bounded load across the reload: every answer must be a proper decision
    let stop = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for _ in 0..2 {
        let (stop, mut c, t) = (stop.clone(), s.grpc().await, t.clone());
        load.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.is_cancelled() && answers.len() < 20_000 {
                let r = c
                    .check(check_request("GET", "/api/items", &[("authorization", &t)]))
                    .await;
                answers.push(r.map(|r| r.into_inner().status.map(|s| s.code)));
            }
            answers
        }));
    }

    let mut c = s.grpc().await;
    assert!(check(
        &mut c,
        check_request("GET", "/api/items", &[("authorization", &t)])
    )
    .await
    .allowed());
    let stricter = original.replace(
        "routes:\n",
        "routes:\n  - path_prefix: /api\n    require_scopes: [write]\n",
    );
    std::fs::write(&file, &stricter).unwrap();
    wait_for("the new rule to apply", Duration::from_secs(10), || {
        let (mut c, t) = (c.clone(), t.clone());
        async move {
            check(
                &mut c,
                check_request("GET", "/api/items", &[("authorization", &t)]),
            )
            .await
            .reason()
            .as_deref()
                == Some("insufficient_scope")
        }
    })
    .await;
    stop.cancel();
    let mut total = 0;
    for task in load {
        for answer in task.await.unwrap() {
            let code = answer.expect("no request failed during the reload");
            assert!(
                matches!(code, Some(0) | Some(7)),
                "allow before, 403 after: {code:?}"
            );
            total += 1;
        }
    }
    assert!(total > 0);

    // a broken file is refused and the rules in force stay
    std::fs::write(&file, "providers: [this is: not valid").unwrap();
    wait_for(
        "the refused reload to be counted",
        Duration::from_secs(10),
        || async {
            let text = reqwest::get(s.admin_url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains("tokengate_config_reloads_total{result=\"error\"} 1")
        },
    )
    .await;
    let a = check(
        &mut c,
        check_request("GET", "/api/items", &[("authorization", &t)]),
    )
    .await;
    assert_eq!(
        a.reason().as_deref(),
        Some("insufficient_scope"),
        "the old config keeps serving"
    );
}

/// An allow is rendered once per verified token and kept with it (gRPC bytes, HTTP
/// headers): a reload that changes forwarding must still change the answer for a token
/// that was answered before.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_changes_the_forwarded_headers_of_a_token_already_answered() {
    let dir = support::redis::TempDir::new("reload-forward");
    let file = dir.0.join("tokengate.yaml");
    let original = config_yaml(MEMORY_STORE);
    std::fs::write(&file, &original).unwrap();
    let s = TestServer::start_config(tokengate::config::Config::load(&file).unwrap()).await;
    let t = bearer(&token("ec256", "u-42", json!({})));
    let grpc_answer = || {
        let (s, t) = (&s, t.clone());
        async move {
            let mut c = s.grpc().await;
            check(
                &mut c,
                check_request("GET", "/api/items", &[("authorization", &t)]),
            )
            .await
        }
    };
    let http_headers = || {
        let (url, t) = (s.http_url("/authz/api/items"), t.clone());
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("authorization", t)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.headers().clone()
        }
    };
    // Twice each, so that the second answer comes from what was kept.
    for _ in 0..2 {
        assert_eq!(grpc_answer().await.header("x-user-id"), Some("u-42"));
        assert_eq!(http_headers().await.get("x-user-id").unwrap(), "u-42");
    }

    let renamed = original.replace(
        "routes:\n",
        "forward:\n  headers:\n    x-subject: sub\nroutes:\n",
    );
    std::fs::write(&file, &renamed).unwrap();
    wait_for(
        "the new forwarding to apply",
        Duration::from_secs(10),
        || async { grpc_answer().await.header("x-subject") == Some("u-42") },
    )
    .await;
    let a = grpc_answer().await;
    assert_eq!(a.header("x-user-id"), None, "{a:?}");
    let h = http_headers().await;
    assert_eq!(h.get("x-subject").unwrap(), "u-42");
    assert!(h.get("x-user-id").is_none(), "{h:?}");
}
