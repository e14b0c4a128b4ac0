//! End to end through a real nginx (`auth_request`, the ingress-nginx `auth-url`
//! mechanism): client → nginx → subrequest to tokengate's HTTP-mode check → an upstream
//! that echoes the headers it received. The nginx configuration is
//! `support::nginx::TEMPLATE`.

use crate::support;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use support::envoy::{echoed, EchoUpstream};
use support::nginx::Nginx;
use support::*;

/// tokengate (memory store, the test config), the echo upstream and nginx in front.
struct Stack {
    // Held so that tokengate and the upstream run for the test's duration.
    _server: TestServer,
    _app: EchoUpstream,
    nginx: Nginx,
    client: reqwest::Client,
}

impl Stack {
    async fn start() -> Stack {
        let server = TestServer::start(&behind("nginx", &config_yaml(MEMORY_STORE))).await;
        let app = EchoUpstream::start().await;
        let nginx = Nginx::start(server.addrs.http, app.addr).await;
        Stack {
            _server: server,
            _app: app,
            nginx,
            client: reqwest::Client::new(),
        }
    }

    /// Sends `method path` through nginx with `headers` (a name given twice is sent
    /// twice); returns status, headers and the JSON body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, HeaderMap, Value) {
        let url = self.nginx.url(path);
        send_json(&self.client, method, url, headers, || self.nginx.log()).await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Value) {
        self.send(reqwest::Method::GET, path, headers).await
    }
}

/// Every value of header `name` in a response.
fn all(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ASCII header").to_string())
        .collect()
}

/// True when the echo upstream produced this body (the request got through).
fn reached_upstream(body: &Value) -> bool {
    body.get("headers").is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_is_401_with_tokengates_challenge_passed_to_the_client() {
    let stack = Stack::start().await;

    let (status, headers, body) = stack.get("/api/x", &[]).await;

    assert_eq!(status, 401, "body: {body}");
    assert!(
        !reached_upstream(&body),
        "denied yet answered by the app: {body}"
    );
    assert_eq!(
        all(&headers, "www-authenticate"),
        ["Bearer realm=\"tokengate\""],
        "exactly tokengate's challenge, once"
    );

    // An invalid token: the challenge carries tokengate's error and description.
    let (status, headers, body) = stack
        .get("/api/x", &[("authorization", "Bearer not-a-jwt")])
        .await;
    assert_eq!(status, 401, "body: {body}");
    assert!(!reached_upstream(&body), "{body}");
    assert_eq!(
        all(&headers, "www-authenticate"),
        ["Bearer realm=\"tokengate\", error=\"invalid_token\", error_description=\"Token is malformed\""]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_scope_is_403_with_the_scope_challenge() {
    let stack = Stack::start().await;
    let auth = bearer(&token("ec256", "alice", json!({"scope": "read"})));

    let (status, headers, body) = stack.get("/admin/users", &[("authorization", &auth)]).await;

    assert_eq!(status, 403, "body: {body}");
    assert!(!reached_upstream(&body), "{body}");
    let challenge = all(&headers, "www-authenticate");
    assert_eq!(challenge.len(), 1, "{challenge:?}");
    assert!(
        challenge[0].starts_with("Bearer realm=\"tokengate\", error=\"insufficient_scope\"")
            && challenge[0].ends_with("scope=\"admin\""),
        "{challenge:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_token_reaches_upstream_with_x_user_id_from_the_token() {
    let stack = Stack::start().await;
    let auth = bearer(&token("ec256", "alice", json!({"tid": "acme"})));

    let (status, headers, body) = stack
        .get("/api/items?page=2", &[("authorization", &auth)])
        .await;

    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["path"], "/api/items", "the upstream answered: {body}");
    assert_eq!(echoed(&body, "x-user-id"), ["alice"], "{body}");
    assert_eq!(echoed(&body, "x-tenant-id"), ["acme"], "{body}");
    assert_eq!(echoed(&body, "authorization"), [auth], "{body}");
    assert!(
        headers.get("www-authenticate").is_none(),
        "no challenge on an allowed request"
    );

    // Every algorithm family gets through the same way.
    for kid in ["hs", "rsa", "ps", "ec384", "ed"] {
        let auth = bearer(&token(kid, &format!("user-{kid}"), json!({})));
        let (status, _, body) = stack.get("/api/items", &[("authorization", &auth)]).await;
        assert_eq!(status, 200, "{kid}: {body}");
        assert_eq!(
            echoed(&body, "x-user-id"),
            [format!("user-{kid}")],
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_through_nginx_revokes_the_token() {
    let stack = Stack::start().await;
    let auth = bearer(&token("ec256", "alice", json!({})));

    let (status, _, body) = stack.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(status, 200, "before logout: {body}");
    assert_eq!(echoed(&body, "x-user-id"), ["alice"], "{body}");

    let (status, _, body) = stack
        .send(
            reqwest::Method::POST,
            "/v1/auth/logout",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(status, 200, "logout through nginx: {body}");
    assert_eq!(
        body,
        json!({"message": "Successfully logged out", "success": true})
    );

    let (status, headers, body) = stack.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(status, 401, "after logout: {body}");
    assert!(!reached_upstream(&body), "{body}");
    assert_eq!(
        all(&headers, "www-authenticate"),
        ["Bearer realm=\"tokengate\", error=\"invalid_token\", error_description=\"Token has been revoked\""]
    );

    // tokengate answers logout itself (no auth_request in front): its own 401 body.
    let (status, _, body) = stack
        .send(
            reqwest::Method::POST,
            "/v1/auth/logout",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["reason"], "jti_revoked", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_sent_x_user_id_never_reaches_the_upstream() {
    let stack = Stack::start().await;
    let spoof = [
        ("x-user-id", "mallory"),
        ("X-User-Id", "eve"),
        ("x-tenant-id", "evil-corp"),
        // Control: a harmless header sent twice arrives twice, so a smuggled second
        // x-user-id would show in the echo too.
        ("x-probe", "1"),
        ("x-probe", "2"),
    ];

    // A valid token without a tenant: x-user-id is the token's, x-tenant-id is gone.
    let auth = bearer(&token("ec256", "alice", json!({})));
    let mut headers = spoof.to_vec();
    headers.push(("authorization", &auth));
    let (status, _, body) = stack.get("/api/x", &headers).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(echoed(&body, "x-probe"), ["1", "2"], "{body}");
    assert_eq!(echoed(&body, "x-user-id"), ["alice"], "{body}");
    assert_eq!(echoed(&body, "x-tenant-id"), Vec::<String>::new(), "{body}");

    // An exempt route, no token: tokengate allows with empty identity headers, and
    // nginx sends none at all.
    let (status, _, body) = stack.get("/public/logo.png", &spoof).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/public/logo.png", "{body}");
    assert_eq!(echoed(&body, "x-user-id"), Vec::<String>::new(), "{body}");
    assert_eq!(echoed(&body, "x-tenant-id"), Vec::<String>::new(), "{body}");

    // Denied requests never reach the app at all, whatever the path.
    for path in ["/", "/api/x", "/admin/users", "/authz", "/healthz"] {
        let (status, _, body) = stack.get(path, &spoof).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(!reached_upstream(&body), "{path}: {body}");
    }
    // The subrequest's location is internal: clients get nginx's 404 page.
    let resp = stack
        .client
        .get(stack.nginx.url("/_authz"))
        .send()
        .await
        .expect("request through nginx");
    assert_eq!(resp.status(), 404);
    let text = resp.text().await.expect("body");
    assert!(!text.contains("\"headers\""), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_cannot_pick_the_route_tokengate_checks() {
    let stack = Stack::start().await;
    // Headers that name the original request to tokengate: nginx sets X-Original-*
    // itself (proxy_set_header replaces a client's copy: a copy passed through would be
    // a second value, refused with 400), and tokengate behind nginx reads no
    // X-Forwarded-*, so claiming an exempt path gets a protected request nowhere.
    let claims = support::forwarded::LIES;

    let (status, _, body) = stack.get("/api/x", &claims).await;
    assert_eq!(status, 401, "{body}");
    assert!(!reached_upstream(&body), "{body}");

    // Same for the scope rule: a plain token claiming a non-admin path stays 403.
    let auth = bearer(&token("ec256", "alice", json!({"scope": "read"})));
    let mut headers = claims.to_vec();
    headers.push(("authorization", &auth));
    let (status, _, body) = stack.get("/admin/users", &headers).await;
    assert_eq!(status, 403, "{body}");
    assert!(!reached_upstream(&body), "{body}");
}

/// `support::raw_get` through this stack's nginx.
async fn raw_get(stack: &Stack, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    support::raw_get(stack.nginx.addr, target, "localhost", headers).await
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_and_escapes_do_not_dodge_the_route_rules() {
    // nginx sends tokengate `$request_uri`, the target as the client wrote it (what
    // ingress-nginx does too), and passes the same raw target to the app, which may well
    // resolve `..` and `%61` itself. So a target that *names* an exempt prefix but
    // *means* a protected path must not be allowed without a token, and one that means
    // a scoped path must not be allowed without the scope.
    let stack = Stack::start().await;
    let mut failures = Vec::new();

    for target in [
        "/public/../api/items",
        "/public/%2e%2e/api/items",
        "/public/%2E%2E/api/items",
        "/public/..%2fapi/items",
    ] {
        let (status, response) = raw_get(&stack, target, &[]).await;
        if status == 200 || response.contains("\"headers\"") {
            failures.push(format!(
                "{target}, no token: {status}, reached the app:\n{response}"
            ));
        }
    }

    let plain = bearer(&token("ec256", "alice", json!({"scope": "read"})));
    for target in ["/%61dmin/users", "//admin/users", "/api/../admin/users"] {
        let (status, response) = raw_get(&stack, target, &[("authorization", &plain)]).await;
        if status == 200 || response.contains("\"headers\"") {
            failures.push(format!(
                "{target}, token without the admin scope: {status}, reached the app:\n{response}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_utf8_in_the_path_does_not_drop_the_route_rules() {
    // nginx accepts raw UTF-8 in the request line and copies it into X-Original-URI as
    // non-ASCII bytes. The path is under /admin all the same: a token without the admin
    // scope must be refused (403, or any 4xx if such paths are refused outright), and
    // the request must not reach the app.
    let stack = Stack::start().await;
    let plain = bearer(&token("ec256", "alice", json!({"scope": "read"})));

    let (status, response) = raw_get(
        &stack,
        "/admin/users/caf\u{e9}",
        &[("authorization", &plain)],
    )
    .await;

    assert!(
        (400..500).contains(&status) && !response.contains("\"headers\""),
        "/admin/users/caf\u{e9} with a token without the admin scope: {status}\n{response}"
    );
    let (status, _) = raw_get(&stack, "/admin/users/cafe", &[("authorization", &plain)]).await;
    assert_eq!(status, 403, "control: the same path in ASCII");
}
