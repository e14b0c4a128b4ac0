//! One table of requests, three transports, one answer: every case is asked of
//! tokengate as Envoy's gRPC ext_authz Check, as Traefik's `forwardAuth` (`GET /authz`
//! naming the original request in `X-Forwarded-*`) and as Envoy's HTTP ext_authz
//! (`<METHOD> /authz<original path>`). The three must agree on allow or deny, the status,
//! the JSON deny body (so the `reason`), the `WWW-Authenticate` challenge, and on allow the
//! identity headers sent upstream — and each must be what the case expects.

use crate::support;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::forwarded::{subrequest, Proxy};
use support::*;

/// The identity headers tokengate sets upstream (the test config's defaults).
const UPSTREAM: [&str; 2] = ["x-user-id", "x-tenant-id"];

/// What a case must give, on every transport.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Allowed, with these upstream `x-user-id` and `x-tenant-id` ("" = none).
    Allow(&'static str, &'static str),
    /// Denied with this HTTP status and reason.
    Deny(u16, &'static str),
}

struct Case {
    name: &'static str,
    method: &'static str,
    /// The original request's path and query.
    path: &'static str,
    /// The client's headers (distinct names: gRPC's `headers` map merges repeats).
    headers: Vec<(&'static str, String)>,
    expect: Expect,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
) -> Case {
    Case {
        name,
        method,
        path,
        headers,
        expect,
    }
}

/// One transport's answer, in terms all three share. Upstream header values: the value
/// set, "" when the header is removed (gRPC `headers_to_remove`) or sent empty (HTTP),
/// `None` when the answer says nothing about it (which no allow may do).
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    allowed: bool,
    /// 200 on allow; the deny's HTTP status (gRPC: `denied_response.status`).
    status: u16,
    /// The deny's JSON body (`error`, `reason`, `message`, `scope`).
    body: Option<Value>,
    www_authenticate: Option<String>,
    content_type: Option<String>,
    retry_after: Option<String>,
    upstream: Vec<(&'static str, Option<String>)>,
}

impl Outcome {
    fn reason(&self) -> Option<&str> {
        self.body.as_ref()?.get("reason")?.as_str()
    }
}

async fn via_grpc(
    client: &mut envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        tonic::transport::Channel,
    >,
    c: &Case,
) -> Outcome {
    let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = check(client, check_request(c.method, c.path, &headers)).await;
    let allowed = a.allowed();
    let upstream = if allowed {
        UPSTREAM
            .iter()
            .map(|name| {
                let value = match a.header(name) {
                    Some(v) => Some(v.to_string()),
                    None if a.headers_to_remove.iter().any(|h| h == name) => Some(String::new()),
                    None => None,
                };
                (*name, value)
            })
            .collect()
    } else {
        vec![]
    };
    Outcome {
        allowed,
        status: if allowed {
            200
        } else {
            a.http_status
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0)
        },
        body: (!allowed).then(|| serde_json::from_str(&a.body).unwrap_or(Value::Null)),
        www_authenticate: a.header("www-authenticate").map(str::to_string),
        content_type: (!allowed)
            .then(|| a.header("content-type").map(str::to_string))
            .flatten(),
        retry_after: a.header("retry-after").map(str::to_string),
        upstream,
    }
}

async fn outcome_of(resp: reqwest::Response) -> Outcome {
    let status = resp.status().as_u16();
    let allowed = resp.status().is_success();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_string())
    };
    let www_authenticate = header("www-authenticate");
    let content_type = (!allowed).then(|| header("content-type")).flatten();
    let retry_after = header("retry-after");
    let upstream = if allowed {
        UPSTREAM.iter().map(|name| (*name, header(name))).collect()
    } else {
        vec![]
    };
    let text = resp.text().await.expect("response body");
    Outcome {
        allowed,
        status,
        body: (!allowed).then(|| serde_json::from_str(&text).unwrap_or(Value::Null)),
        www_authenticate,
        content_type,
        retry_after,
        upstream,
    }
}

/// Traefik `forwardAuth`: always `GET` to the auth address, the original request in
/// `X-Forwarded-*`, the client's headers copied.
async fn via_traefik(http: &reqwest::Client, server: &TestServer, c: &Case) -> Outcome {
    let (_, target, forwarded) = subrequest(Proxy::Traefik, c.method, "api.example.com", c.path);
    let mut req = http.get(server.http_url(&target));
    // the client sets `host` to the listener's address
    for (k, v) in forwarded.iter().filter(|(k, _)| *k != "host") {
        req = req.header(*k, v);
    }
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    outcome_of(req.send().await.expect("forwardAuth request")).await
}

/// Envoy's HTTP ext_authz with `path_prefix: /authz`: the original method, the prefix
/// before the original path, the client's (allowed) headers.
async fn via_envoy_http(http: &reqwest::Client, server: &TestServer, c: &Case) -> Outcome {
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).expect("method");
    let mut req = http.request(method, server.http_url(&format!("/authz{}", c.path)));
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    outcome_of(req.send().await.expect("HTTP ext_authz request")).await
}

/// What `expect` means as an outcome's essentials, checked against `o`.
fn meets(o: &Outcome, expect: Expect) -> bool {
    match expect {
        Expect::Allow(user, tenant) => {
            o.allowed
                && o.status == 200
                && o.upstream
                    == [
                        ("x-user-id", Some(user.to_string())),
                        ("x-tenant-id", Some(tenant.to_string())),
                    ]
        }
        Expect::Deny(status, reason) => {
            !o.allowed
                && o.status == status
                && o.reason() == Some(reason)
                && o.content_type.as_deref() == Some("application/json")
                && o.www_authenticate
                    .as_deref()
                    .is_some_and(|c| c.starts_with("Bearer realm=\"tokengate\""))
        }
    }
}

fn auth(t: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", bearer(t))]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_case_gets_the_same_decision_on_grpc_traefik_and_envoy_http() {
    let servers = Servers::start().await;
    let now = tokengate::jwt::now_unix();

    // Revoked before the table runs: one token by logout, one user by logout-all (the
    // second token was issued before the cut-off). Each server has its own memory store.
    let revoked = token("ec256", "carol", json!({}));
    let dave_1 = token("ec256", "dave", json!({}));
    let dave_2 = token("rsa", "dave", json!({"jti": uuid()}));
    for server in [&servers.envoy, &servers.traefik] {
        let (status, body) = logout(server, "/v1/auth/logout", &revoked).await;
        assert_eq!(status, 200, "logout: {body}");
        let (status, body) = logout(server, "/v1/auth/logout-all", &dave_1).await;
        assert_eq!(status, 200, "logout-all: {body}");
    }

    let bad_signature = {
        let t = token("ec256", "alice", json!({}));
        let other = token("ec256", "alice", json!({}));
        let (head, _) = t.rsplit_once('.').expect("three parts");
        format!("{head}.{}", other.rsplit_once('.').expect("three parts").1)
    };
    let (_, hs_key) = signing_key("hs");
    let hs512 = sign(
        json!({"alg": "HS512", "kid": "hs"}),
        claims("alice"),
        Algorithm::HS512,
        &hs_key,
    );
    let unknown_kid = sign(
        json!({"alg": "HS256", "kid": "nope"}),
        claims("alice"),
        Algorithm::HS256,
        &hs_key,
    );
    let valid = token("ec256", "alice", json!({"tid": "acme"}));
    let spoof = |mut h: Vec<(&'static str, String)>| {
        h.push(("x-user-id", "mallory".into()));
        h.push(("x-tenant-id", "evil-corp".into()));
        h
    };

    use Expect::{Allow, Deny};
    #[rustfmt::skip]
    let cases = vec![
        // every algorithm family, with and without a tenant claim
        case("HS256", "GET", "/api/items", auth(&token("hs", "u-hs", json!({"tid": "t-hs"}))), Allow("u-hs", "t-hs")),
        case("RS256", "GET", "/api/items", auth(&token("rsa", "u-rsa", json!({}))), Allow("u-rsa", "")),
        case("PS256", "GET", "/api/items", auth(&token("ps", "u-ps", json!({"tid": "t-ps"}))), Allow("u-ps", "t-ps")),
        case("ES256", "GET", "/api/items", auth(&token("ec256", "u-ec", json!({}))), Allow("u-ec", "")),
        case("ES384", "GET", "/api/items", auth(&token("ec384", "u-ec384", json!({"tid": "t-384"}))), Allow("u-ec384", "t-384")),
        case("EdDSA", "GET", "/api/items", auth(&token("ed", "u-ed", json!({}))), Allow("u-ed", "")),
        // the request's shape
        case("POST with a query string", "POST", "/api/items?page=2&sort=desc", auth(&valid), Allow("alice", "acme")),
        case("DELETE", "DELETE", "/api/items/7", auth(&valid), Allow("alice", "acme")),
        case("lower-case scheme", "GET", "/api/items", vec![("authorization", format!("bearer {valid}"))], Allow("alice", "acme")),
        case("client-sent x-user-id and x-tenant-id", "GET", "/api/items", spoof(auth(&valid)), Allow("alice", "acme")),
        case("client-sent x-tenant-id, token without tenant", "GET", "/api/items", spoof(auth(&token("ec256", "bob", json!({})))), Allow("bob", "")),
        // exempt and scoped routes
        case("exempt route, no token, spoofed identity", "GET", "/public/logo.png", spoof(vec![]), Allow("", "")),
        case("exempt route, invalid token", "GET", "/public/logo.png", auth("not-a-jwt"), Allow("", "")),
        case("insufficient scope", "GET", "/admin/users", auth(&token("ec256", "alice", json!({"scope": "read"}))), Deny(403, "insufficient_scope")),
        case("admin scope", "POST", "/admin/users", auth(&token("ec256", "root", json!({"scope": "read admin"}))), Allow("root", "")),
        case("scoped route, no token", "DELETE", "/admin/users", vec![], Deny(401, "missing_token")),
        // denies
        case("missing token", "GET", "/api/items", vec![], Deny(401, "missing_token")),
        case("other scheme", "GET", "/api/items", vec![("authorization", "Basic YTpi".into())], Deny(401, "missing_token")),
        case("malformed", "GET", "/api/items", auth("not-a-jwt"), Deny(401, "malformed")),
        case("bad signature", "GET", "/api/items", auth(&bad_signature), Deny(401, "bad_signature")),
        case("unknown kid", "GET", "/api/items", auth(&unknown_kid), Deny(401, "unknown_key")),
        case("disallowed algorithm", "GET", "/api/items", auth(&hs512), Deny(401, "disallowed_algorithm")),
        case("expired", "GET", "/api/items", auth(&token("ec256", "alice", json!({"exp": now - 60, "iat": now - 120}))), Deny(401, "expired")),
        case("not yet valid", "GET", "/api/items", auth(&token("ec256", "alice", json!({"nbf": now + 600}))), Deny(401, "not_yet_valid")),
        case("wrong issuer", "GET", "/api/items", auth(&token("ec256", "alice", json!({"iss": "https://evil.test"}))), Deny(401, "wrong_issuer")),
        case("wrong audience", "GET", "/api/items", auth(&token("ec256", "alice", json!({"aud": "someone-else"}))), Deny(401, "wrong_audience")),
        case("no jti", "GET", "/api/items", auth(&token("ec256", "alice", json!({"jti": null}))), Deny(401, "missing_claim")),
        case("too large", "GET", "/api/items", auth(&token("ec256", "alice", json!({"pad": "x".repeat(9000)}))), Deny(401, "token_too_large")),
        case("revoked by logout", "GET", "/api/items", auth(&revoked), Deny(401, "jti_revoked")),
        case("revoked by logout-all", "GET", "/api/items", auth(&dave_2), Deny(401, "user_revoked")),
        case("revoked, client-sent x-user-id", "GET", "/api/items", spoof(auth(&revoked)), Deny(401, "jti_revoked")),
    ];
    assert!(cases.len() >= 15);
    assert_agree(&servers, &cases).await;
}

/// The root path is a path like any other: Envoy's HTTP ext_authz (`path_prefix:
/// /authz`, envoy/envoy-http-mode.yaml) asks `GET /authz/` for a client's `GET /`, and
/// `GET /authz/?q=1` for `GET /?q=1`; Traefik and gRPC name `/` directly.
#[tokio::test(flavor = "multi_thread")]
async fn the_root_path_gets_the_same_decision_on_every_transport() {
    let servers = Servers::start().await;
    let valid = token("ec256", "alice", json!({"tid": "acme"}));
    use Expect::{Allow, Deny};
    let cases = vec![
        case(
            "GET /, valid token",
            "GET",
            "/",
            auth(&valid),
            Allow("alice", "acme"),
        ),
        case(
            "GET /?q=1, valid token",
            "GET",
            "/?q=1",
            auth(&valid),
            Allow("alice", "acme"),
        ),
        case(
            "GET /, no token",
            "GET",
            "/",
            vec![],
            Deny(401, "missing_token"),
        ),
    ];
    assert_agree(&servers, &cases).await;
}

/// One tokengate per trusted proxy (`http_check.proxy` is per listener): the default
/// (Envoy, which also serves gRPC) and one behind Traefik.
struct Servers {
    envoy: TestServer,
    traefik: TestServer,
}

impl Servers {
    async fn start() -> Servers {
        Servers {
            envoy: TestServer::start(&config_yaml(MEMORY_STORE)).await,
            traefik: TestServer::start(&behind("traefik", &config_yaml(MEMORY_STORE))).await,
        }
    }
}

/// Runs every case on the three transports; panics listing each case whose gRPC answer
/// is not what it expects or whose HTTP answers differ from the gRPC one.
async fn assert_agree(servers: &Servers, cases: &[Case]) {
    let server = &servers.envoy;
    let mut grpc = server.grpc().await;
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for c in cases {
        let grpc_out = via_grpc(&mut grpc, c).await;
        let traefik = via_traefik(&http, &servers.traefik, c).await;
        let envoy_http = via_envoy_http(&http, server, c).await;
        let mut wrong = Vec::new();
        if !meets(&grpc_out, c.expect) {
            wrong.push(format!("gRPC is not {:?}", c.expect));
        }
        if traefik != grpc_out {
            wrong.push("Traefik differs from gRPC".to_string());
        }
        if envoy_http != grpc_out {
            wrong.push("Envoy HTTP differs from gRPC".to_string());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{} ({} {}): {}\n  gRPC:       {grpc_out:?}\n  Traefik:    {traefik:?}\n  Envoy HTTP: {envoy_http:?}",
                c.name,
                c.method,
                c.path,
                wrong.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
