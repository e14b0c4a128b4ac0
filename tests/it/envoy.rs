//! End to end through a real Envoy on envoy/envoy.yaml (ports rewritten): client →
//! Envoy → ext_authz gRPC Check to tokengate → an upstream that echoes the headers it
//! received. (`envoy --mode validate` on every shipped Envoy config, and on broken
//! copies, is in tests/it/deploy.rs with the other validators.)

use crate::support;

use serde_json::{json, Value};
use support::envoy::{echoed, EchoUpstream, Envoy};
use support::procs;
use support::*;

/// tokengate (memory store), the echo upstream and Envoy in front of both.
struct Stack {
    server: TestServer,
    envoy: Envoy,
    // Held so the upstream keeps running for the test's duration.
    _app: EchoUpstream,
    client: reqwest::Client,
}

impl Stack {
    async fn start() -> Stack {
        Self::start_yaml(&config_yaml(MEMORY_STORE)).await
    }

    async fn start_yaml(yaml: &str) -> Stack {
        let server = TestServer::start(yaml).await;
        let app = EchoUpstream::start().await;
        let envoy = Envoy::start(&server.addrs, app.addr).await;
        Stack {
            server,
            envoy,
            _app: app,
            client: reqwest::Client::new(),
        }
    }

    /// Sends `method path` through Envoy with `headers`; returns status, headers, body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = self.envoy.url(path);
        send_json(&self.client, method, url, headers, || self.envoy.log()).await
    }

    async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::GET, path, headers).await
    }
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_token_reaches_upstream_with_x_user_id_from_the_token_not_the_client() {
    let stack = Stack::start().await;
    let token = token("ec256", "alice", json!({}));
    let auth = bearer(&token);

    // The client tries to smuggle an identity, twice, and a tenant the token lacks.
    let (status, _, body) = stack
        .get(
            "/api/x",
            &[
                ("authorization", &auth),
                ("x-user-id", "mallory"),
                ("x-user-id", "eve"),
                ("x-tenant-id", "evil-corp"),
                // Control: a harmless header sent twice arrives twice, so a second
                // x-user-id would be visible in the echo too.
                ("x-probe", "1"),
                ("x-probe", "2"),
            ],
        )
        .await;

    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["path"], "/api/x", "the upstream answered: {body}");
    assert_eq!(echoed(&body, "x-probe"), ["1", "2"], "{body}");
    assert_eq!(
        echoed(&body, "x-user-id"),
        ["alice"],
        "exactly one x-user-id, from the token's sub: {body}"
    );
    assert_eq!(
        echoed(&body, "x-tenant-id"),
        Vec::<String>::new(),
        "a client x-tenant-id is removed when the token has no tenant: {body}"
    );
    assert_eq!(echoed(&body, "authorization"), [auth], "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn valid_token_with_tenant_sets_x_tenant_id_from_the_token() {
    let stack = Stack::start().await;
    let token = token("ec256", "alice", json!({"tid": "acme"}));
    let auth = bearer(&token);

    let (status, _, body) = stack
        .get(
            "/api/x",
            &[("authorization", &auth), ("x-tenant-id", "evil-corp")],
        )
        .await;

    assert_eq!(status, 200, "body: {body}");
    assert_eq!(echoed(&body, "x-user-id"), ["alice"], "{body}");
    assert_eq!(echoed(&body, "x-tenant-id"), ["acme"], "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_is_401_with_tokengates_challenge_and_never_reaches_upstream() {
    let stack = Stack::start().await;

    let (status, headers, body) = stack.get("/api/x", &[]).await;

    assert_eq!(status, 401, "body: {body}");
    // The test config leaves `responses.realm` at its default.
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some("Bearer realm=\"tokengate\"")
    );
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(body["reason"], "missing_token", "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(
        body.get("headers").is_none(),
        "the upstream must not answer a denied request: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_through_envoy_revokes_the_token() {
    let stack = Stack::start().await;
    let token = token("ec256", "alice", json!({}));
    let auth = bearer(&token);

    let (status, _, body) = stack.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(status, 200, "before logout the token is accepted: {body}");

    let (status, _, body) = stack
        .send(
            reqwest::Method::POST,
            "/v1/auth/logout",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(status, 200, "logout: {body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["message"], "Successfully logged out", "{body}");

    let (status, headers, body) = stack.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(status, 401, "after logout: {body}");
    assert_eq!(body["reason"], "jti_revoked", "{body}");
    assert_eq!(body["error"], "invalid_token", "{body}");
    let challenge = header(&headers, "www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("Bearer realm=\"tokengate\", error=\"invalid_token\""),
        "{challenge}"
    );

    // Logging out again with the revoked token is refused the same way.
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
async fn healthz_reaches_the_app_without_a_token() {
    let stack = Stack::start().await;

    // The test config does not exempt /healthz in tokengate, so a 200 here means Envoy
    // did not ask tokengate at all (ext_authz disabled on the route).
    let (status, _, body) = stack.get("/healthz", &[]).await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(body["path"], "/healthz", "the upstream answered: {body}");

    // The route matches the exact path only; anything below it is still protected.
    let (status, _, body) = stack.get("/healthz/more", &[]).await;
    assert_eq!(status, 401, "body: {body}");
    assert_eq!(body["reason"], "missing_token", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_route_requires_the_admin_scope_from_context_extensions() {
    // Without the test config's own `/admin` rule (it would also match /admin-api/),
    // so that only Envoy's per-route context_extensions can require the scope.
    let rule = "  - path_prefix: /admin\n    require_scopes: [admin]\n";
    let yaml = config_yaml(MEMORY_STORE);
    assert!(yaml.contains(rule), "the test config changed: {yaml}");
    let stack = Stack::start_yaml(&yaml.replace(rule, "")).await;

    let plain = bearer(&token("ec256", "alice", json!({"scope": "read"})));
    let (status, headers, body) = stack
        .get("/admin-api/users", &[("authorization", &plain)])
        .await;
    assert_eq!(status, 403, "body: {body}");
    assert_eq!(body["reason"], "insufficient_scope", "{body}");
    let challenge = header(&headers, "www-authenticate").expect("challenge");
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("admin"),
        "{challenge}"
    );

    // The same token elsewhere is fine: the requirement comes from the route.
    let (status, _, body) = stack.get("/api/x", &[("authorization", &plain)]).await;
    assert_eq!(status, 200, "body: {body}");

    let admin = bearer(&token("ec256", "root", json!({"scope": "read admin"})));
    let (status, _, body) = stack
        .get("/admin-api/users", &[("authorization", &admin)])
        .await;
    assert_eq!(status, 200, "body: {body}");
    assert_eq!(echoed(&body, "x-user-id"), ["root"], "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokengate_unreachable_is_503_not_401_or_403() {
    let stack = Stack::start().await;
    let auth = bearer(&token("ec256", "alice", json!({})));
    let (status, _, body) = stack.get("/api/x", &[("authorization", &auth)]).await;
    assert_eq!(status, 200, "while tokengate runs: {body}");

    let Stack {
        server,
        envoy,
        _app,
        client,
    } = stack;
    server.stop().await;

    let resp = client
        .get(envoy.url("/api/x"))
        .header("authorization", &auth)
        .send()
        .await
        .expect("request through Envoy");
    assert_eq!(
        resp.status().as_u16(),
        503,
        "Envoy's status_on_error must be 503 (fail closed, but not an auth failure)"
    );
}

/// `support::raw_get` through Envoy: the echo upstream answers with the headers and path
/// it received, so reaching it shows as `"headers"`.
async fn raw_through(envoy: &Envoy, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    raw_get(envoy.listener, target, "app.example.com", headers).await
}

/// Through the real Envoy with each shipped config (gRPC and HTTP mode), whose
/// normalisation runs before ext_authz: no spelling of a scoped path reaches the app
/// without the scope, a client's forwarded headers name nothing, and what reaches the
/// app is the path tokengate judged.
#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_path_gets_through_either_shipped_envoy_config() {
    for config in ["envoy/envoy.yaml", "envoy/envoy-http-mode.yaml"] {
        let server = TestServer::start(&config_yaml(MEMORY_STORE)).await;
        let app = EchoUpstream::start().await;
        let envoy = Envoy::start_config(&procs::repo().join(config), &server.addrs, app.addr).await;
        let plain = bearer(&token("ec256", "alice", json!({"scope": "read"})));
        let auth = [("authorization", plain.as_str())];
        let mut failures = Vec::new();
        for target in [
            "/admin/users",
            "/public/../admin/users",
            "/public/./../admin/users",
            "/public/%2e%2e/admin/users",
            "/public/%2E%2E/admin/users",
            "/public/..%2fadmin/users",
            "/public/..%2Fadmin/users",
            "//admin/users",
            // (not `/public//../admin`: Envoy resolves the dot segment before merging
            // slashes, RFC 3986's order, and sends `/public/admin/users`, exempt for both)
            "/public/..;/admin/users",
            "/admin;x=1/users",
            "/%61dmin/users",
            "/public/%252e%252e/admin/users",
            "/public%5c..%5cadmin/users",
        ] {
            let (status, text) = raw_through(&envoy, target, &auth).await;
            if status == 200 || text.contains("\"headers\"") {
                failures.push(format!("{config} {target}: {status}\n{text}"));
            }
        }
        // a client's forwarded headers claiming an exempt path are ignored
        let mut lies = vec![("authorization", plain.as_str())];
        lies.extend(support::forwarded::LIES);
        let (status, text) = raw_through(&envoy, "/admin/users", &lies).await;
        if status != 403 || text.contains("\"headers\"") {
            failures.push(format!("{config} forwarded-header lies: {status}\n{text}"));
        }
        // and the app receives the normalised path that tokengate allowed
        let (status, text) = raw_through(&envoy, "/api/./items//x/../y", &auth).await;
        if status != 200 || !text.contains("/api/items/y") {
            failures.push(format!("{config} normalised path: {status}\n{text}"));
        }
        assert!(
            failures.is_empty(),
            "{}\nenvoy log:\n{}",
            failures.join("\n\n"),
            envoy.log()
        );
    }
}
