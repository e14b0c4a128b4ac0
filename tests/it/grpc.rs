//! Envoy ext_authz Check through a real tonic client over a socket: allow responses,
//! every deny reason's status, challenge and body, both header encodings, and hostile
//! tokens.

use crate::support;

use envoy_types::ext_authz::v3::pb::HeaderAppendAction;
use envoy_types::pb::google::protobuf::value::Kind;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use support::*;

const OVERWRITE: i32 = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;

async fn server() -> TestServer {
    TestServer::start(&config_yaml(MEMORY_STORE)).await
}

/// Asserts a deny: gRPC code, HTTP status, challenge and JSON body of docs/spec.md §2.
fn assert_deny(a: &Answer, reason: &str) {
    assert_eq!(a.reason().as_deref(), Some(reason), "answer: {a:?}");
    let body: Value = serde_json::from_str(&a.body).expect("JSON body");
    let (grpc, http, error) = match reason {
        "missing_token" => (16, 401, "invalid_request"),
        "insufficient_scope" => (7, 403, "insufficient_scope"),
        "store_unavailable" => (14, 503, "temporarily_unavailable"),
        _ => (16, 401, "invalid_token"),
    };
    assert_eq!(a.grpc_code, grpc, "{reason}");
    assert_eq!(a.http_status, Some(http), "{reason}");
    assert_eq!(body["error"], error, "{reason}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(a.header("content-type"), Some("application/json"));
    let challenge = a.header("www-authenticate");
    match reason {
        "missing_token" => assert_eq!(challenge, Some("Bearer realm=\"test\"")),
        "store_unavailable" => {
            assert_eq!(challenge, None);
            assert!(a.header("retry-after").is_some());
        }
        "insufficient_scope" => {
            let c = challenge.expect("challenge");
            assert!(
                c.starts_with("Bearer realm=\"test\", error=\"insufficient_scope\""),
                "{c}"
            );
            assert!(c.contains("scope=\""), "{c}");
        }
        _ => {
            let c = challenge.expect("challenge");
            assert!(
                c.starts_with(
                    "Bearer realm=\"test\", error=\"invalid_token\", error_description=\""
                ),
                "{c}"
            );
        }
    }
}

fn realm_test(yaml: String) -> String {
    format!("{yaml}responses:\n  realm: test\n")
}

async fn test_server() -> TestServer {
    TestServer::start(&realm_test(config_yaml(MEMORY_STORE))).await
}

#[tokio::test]
async fn allow_sets_upstream_headers_with_overwrite_and_dynamic_metadata() {
    let yaml = config_yaml(MEMORY_STORE);
    let s = TestServer::start(&format!("{yaml}forward:\n  dynamic_metadata: true\n")).await;
    let mut c = s.grpc().await;
    let t = token(
        "ec256",
        "alice",
        json!({"tid": "acme", "scope": "read write"}),
    );
    let auth = bearer(&t);
    let a = check(
        &mut c,
        check_request(
            "GET",
            "/api/items",
            &[("authorization", &auth), ("x-user-id", "mallory")],
        ),
    )
    .await;
    assert!(a.allowed(), "{a:?}");
    assert_eq!(a.header("x-user-id"), Some("alice"));
    assert_eq!(a.header("x-tenant-id"), Some("acme"));
    for (name, _, action) in &a.headers {
        assert_eq!(*action, OVERWRITE, "{name} must overwrite, never append");
    }
    let md = a.metadata.expect("dynamic metadata");
    let sub = md.fields.get("sub").and_then(|v| v.kind.clone());
    assert_eq!(sub, Some(Kind::StringValue("alice".into())));
    assert!(md.fields.contains_key("jti"));
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn the_default_sends_no_dynamic_metadata() {
    let s = server().await;
    let mut c = s.grpc().await;
    let auth = bearer(&token("ec256", "alice", json!({"tid": "acme"})));
    let a = check(
        &mut c,
        check_request("GET", "/api/items", &[("authorization", &auth)]),
    )
    .await;
    assert!(a.allowed(), "{a:?}");
    assert_eq!(
        a.header("x-user-id"),
        Some("alice"),
        "headers are still forwarded"
    );
    assert!(a.metadata.is_none(), "{:?}", a.metadata);
}

#[tokio::test]
async fn header_the_token_does_not_back_is_removed() {
    let s = server().await;
    let mut c = s.grpc().await;
    let auth = bearer(&token("ec256", "alice", json!({})));
    let a = check(
        &mut c,
        check_request(
            "GET",
            "/api/items",
            &[("authorization", &auth), ("x-tenant-id", "spoofed")],
        ),
    )
    .await;
    assert!(a.allowed());
    assert_eq!(a.header("x-tenant-id"), None);
    assert!(
        a.headers_to_remove.iter().any(|h| h == "x-tenant-id"),
        "{a:?}"
    );
}

#[tokio::test]
async fn every_algorithm_family_verifies() {
    let s = server().await;
    let mut c = s.grpc().await;
    for kid in ["hs", "rsa", "ps", "ec256", "ec384", "ed"] {
        let a = check_token(&mut c, &token(kid, "alice", json!({}))).await;
        assert!(a.allowed(), "{kid}: {a:?}");
    }
}

#[tokio::test]
async fn raw_header_map_is_read_when_envoy_encodes_raw_headers() {
    let s = server().await;
    let mut c = s.grpc().await;
    let auth = bearer(&token("ec256", "bob", json!({})));
    let a = check(
        &mut c,
        check_request_raw(
            "GET",
            "/api/items",
            &[
                ("Authorization", auth.as_bytes()),
                ("x-user-id", b"mallory"),
            ],
        ),
    )
    .await;
    assert!(a.allowed(), "{a:?}");
    assert_eq!(a.header("x-user-id"), Some("bob"));

    // repeated Authorization headers are not merged in header_map: ambiguous → malformed
    let other = bearer(&token("ec256", "carol", json!({})));
    let a = check(
        &mut c,
        check_request_raw(
            "GET",
            "/api/items",
            &[
                ("authorization", auth.as_bytes()),
                ("authorization", other.as_bytes()),
            ],
        ),
    )
    .await;
    assert_eq!(a.reason().as_deref(), Some("malformed"));
}

#[tokio::test]
async fn deny_reasons_have_the_spec_status_challenge_and_body() {
    let s = test_server().await;
    let mut c = s.grpc().await;
    let now = tokengate::jwt::now_unix();
    let (hs, hs_key) = signing_key("hs");

    // missing_token
    let a = check(&mut c, check_request("GET", "/api/items", &[])).await;
    assert_deny(&a, "missing_token");

    let cases: Vec<(&str, String)> = vec![
        ("malformed", "not-a-jwt".to_string()),
        ("bad_signature", {
            let t = token("ec256", "alice", json!({}));
            let (head, _) = t.rsplit_once('.').unwrap();
            let other = token("ec256", "alice", json!({}));
            format!("{head}.{}", other.rsplit_once('.').unwrap().1)
        }),
        (
            "unknown_key",
            sign(
                json!({"alg": "HS256", "kid": "nope"}),
                claims("alice"),
                hs,
                &hs_key,
            ),
        ),
        ("disallowed_algorithm", {
            let (_, k) = signing_key("hs");
            sign(
                json!({"alg": "HS512", "kid": "hs"}),
                claims("alice"),
                Algorithm::HS512,
                &k,
            )
        }),
        (
            "expired",
            token("ec256", "alice", json!({"exp": now - 60, "iat": now - 120})),
        ),
        (
            "not_yet_valid",
            token("ec256", "alice", json!({"nbf": now + 600})),
        ),
        (
            "wrong_issuer",
            token("ec256", "alice", json!({"iss": "https://evil.test"})),
        ),
        (
            "wrong_audience",
            token("ec256", "alice", json!({"aud": "someone-else"})),
        ),
        (
            "missing_claim",
            token("ec256", "alice", json!({"jti": null})),
        ),
        (
            "missing_claim",
            token("ec256", "alice", json!({"exp": null})),
        ),
        (
            "token_too_large",
            token("ec256", "alice", json!({"pad": "x".repeat(9000)})),
        ),
    ];
    for (reason, t) in cases {
        let a = check_token(&mut c, &t).await;
        assert_deny(&a, reason);
    }

    // insufficient_scope: a configured route rule …
    let auth = bearer(&token("ec256", "alice", json!({"scope": "read"})));
    let a = check(
        &mut c,
        check_request("GET", "/admin/users", &[("authorization", &auth)]),
    )
    .await;
    assert_deny(&a, "insufficient_scope");
    assert!(a
        .header("www-authenticate")
        .unwrap()
        .ends_with("scope=\"admin\""));
    // … and Envoy's per-route context_extensions
    let mut req = check_request("GET", "/api/items", &[("authorization", &auth)]);
    req.attributes
        .as_mut()
        .unwrap()
        .context_extensions
        .insert("tokengate.require_scopes".into(), "billing".into());
    let a = check(&mut c, req.clone()).await;
    assert_deny(&a, "insufficient_scope");
    let granted = bearer(&token("ec256", "alice", json!({"scp": ["billing"]})));
    let http = req
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.headers.insert("authorization".into(), granted);
    assert!(check(&mut c, req).await.allowed());
}

#[tokio::test]
async fn exempt_route_needs_no_token() {
    let s = server().await;
    let mut c = s.grpc().await;
    let a = check(
        &mut c,
        check_request("GET", "/public/logo.png", &[("x-user-id", "mallory")]),
    )
    .await;
    assert!(a.allowed());
    // even on an exempt route a client-sent identity header does not pass through
    assert!(a.headers_to_remove.iter().any(|h| h == "x-user-id"));
}

#[tokio::test]
async fn hostile_tokens_get_a_401_and_never_a_panic() {
    let s = test_server().await;
    let mut c = s.grpc().await;
    let rsa_public_pem = read_key("rsa-public.pem");
    let confusion = EncodingKey::from_secret(&rsa_public_pem);
    let mut string_exp = claims("alice");
    string_exp["exp"] = json!("9999999999");

    let cases: Vec<(&str, &str, String)> = vec![
        (
            "alg none",
            "disallowed_algorithm",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none"}"#),
                b64(claims("alice").to_string().as_bytes())
            ),
        ),
        (
            "alg none with a signature part",
            "disallowed_algorithm",
            format!(
                "{}.{}.c2ln",
                b64(br#"{"alg":"none","kid":"rsa"}"#),
                b64(claims("alice").to_string().as_bytes())
            ),
        ),
        (
            "HS256 with the RSA public key PEM as secret",
            "disallowed_algorithm",
            sign(
                json!({"alg": "HS256", "kid": "rsa"}),
                claims("alice"),
                Algorithm::HS256,
                &confusion,
            ),
        ),
        (
            "HS256 with the RSA public key PEM as secret, no kid",
            "bad_signature",
            sign(
                json!({"alg": "HS256"}),
                claims("alice"),
                Algorithm::HS256,
                &confusion,
            ),
        ),
        (
            "unknown kid",
            "unknown_key",
            sign(
                json!({"alg": "RS256", "kid": "../../etc/passwd"}),
                claims("alice"),
                Algorithm::RS256,
                &signing_key("rsa").1,
            ),
        ),
        ("1 MB token", "token_too_large", "a".repeat(1 << 20)),
        (
            "bad base64",
            "malformed",
            "eyJhbGciOiJFUzI1NiJ9.!!!.abc".into(),
        ),
        (
            "non-JSON payload",
            "malformed",
            sign_raw(
                br#"{"alg":"ES256","kid":"ec256"}"#,
                b"not json",
                Algorithm::ES256,
                &signing_key("ec256").1,
            ),
        ),
        (
            "exp as a string",
            "malformed",
            sign(
                json!({"alg": "ES256", "kid": "ec256"}),
                string_exp,
                Algorithm::ES256,
                &signing_key("ec256").1,
            ),
        ),
        (
            "another audience",
            "wrong_audience",
            token("ec256", "alice", json!({"aud": ["billing"]})),
        ),
        (
            "signed by a key tokengate does not have, with a kid it has",
            "bad_signature",
            sign(
                json!({"alg": "RS256", "kid": "rsa"}),
                claims("alice"),
                Algorithm::RS256,
                &signing_key("rsa2").1,
            ),
        ),
        ("two parts", "malformed", "eyJhbGciOiJIUzI1NiJ9.e30".into()),
        (
            "four parts",
            "malformed",
            format!("{}.x", token("ec256", "alice", json!({}))),
        ),
    ];
    for (name, reason, t) in cases {
        let a = check_token(&mut c, &t).await;
        assert_eq!(a.reason().as_deref(), Some(reason), "{name}: {a:?}");
        assert_eq!(a.http_status, Some(401), "{name}");
    }
    // the server is still answering
    assert!(check_token(&mut c, &token("ec256", "alice", json!({})))
        .await
        .allowed());
}

#[tokio::test]
async fn check_request_without_http_part_is_missing_token() {
    let s = server().await;
    let mut c = s.grpc().await;
    let a = check(&mut c, Default::default()).await;
    assert_eq!(a.reason().as_deref(), Some("missing_token"));
    assert_eq!(a.http_status, Some(401));
}

#[tokio::test]
async fn grpc_health_reports_serving() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let s = server().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.addrs.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(channel);
    let resp = h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status, 1, "SERVING");
}
