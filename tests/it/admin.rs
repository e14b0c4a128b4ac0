//! Revocation administration: the admin API, the `revoke`/`status` commands against a
//! real Redis, the audit events, and the RFC 7009 / RFC 7662 endpoints.

use crate::support;

use std::process::Command;

use serde_json::{json, Value};
use support::redis::{store_yaml, RedisServer};
use support::*;

const ADMIN_SCOPE: &str = "tokengate:admin";
const INTROSPECTION_SECRET: &str = "introspection-secret-for-tests";

/// Every log line of the test binary, as JSON, for asserting audit events.
fn logs() -> &'static support::logs::Captured {
    support::logs::capture()
}

/// Audit events (as JSON) whose id is `id`.
fn audit_events(id: &str) -> Vec<Value> {
    logs()
        .text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "audit" && v["fields"]["id"] == id)
        .map(|v| v["fields"].clone())
        .collect()
}

fn admin_yaml(store: &str, secret_file: &std::path::Path) -> String {
    format!(
        "{}admin_api:\n  enabled: true\n  scope: {ADMIN_SCOPE}\n  providers: [test]\noauth:\n  introspection_clients:\n    - id: billing\n      secret_file: {}\n",
        config_yaml(store),
        secret_file.display()
    )
}

struct Setup {
    server: TestServer,
    _dir: support::redis::TempDir,
}

async fn setup(store: &str) -> Setup {
    logs();
    let dir = support::redis::TempDir::new("admin");
    let secret = dir.0.join("introspection.secret");
    std::fs::write(&secret, format!("{INTROSPECTION_SECRET}\n")).unwrap();
    Setup {
        server: TestServer::start(&admin_yaml(store, &secret)).await,
        _dir: dir,
    }
}

fn admin_token() -> String {
    token(
        "ec256",
        "ops-alice",
        json!({"scope": format!("read {ADMIN_SCOPE}")}),
    )
}

async fn admin_post(s: &TestServer, bearer_token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(s.admin_url("/v1/admin/revocations"))
        .json(&body);
    if let Some(t) = bearer_token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_refuses_callers_without_the_admin_scope() {
    let s = setup(MEMORY_STORE).await;
    let (status, body) = admin_post(&s.server, None, json!({"user": "bob"})).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (401, Some("missing_token"))
    );
    let plain = token("ec256", "mallory", json!({"scope": "read"}));
    let (status, body) = admin_post(&s.server, Some(&plain), json!({"user": "bob"})).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert_eq!(body["scope"], ADMIN_SCOPE);
    let resp = reqwest::Client::new()
        .get(s.server.admin_url("/v1/admin/revocations/user/bob"))
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_is_absent_unless_enabled() {
    let s = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    let resp = reqwest::Client::new()
        .post(s.admin_url("/v1/admin/revocations"))
        .bearer_auth(admin_token())
        .json(&json!({"user": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_admin_revocation_takes_effect_on_the_next_check_and_is_audited() {
    let s = setup(MEMORY_STORE).await;
    let server = &s.server;
    let mut c = server.grpc().await;
    let admin = admin_token();
    let unique = uuid();
    let (user, tenant, family) = (
        format!("user-{unique}"),
        format!("tenant-{unique}"),
        format!("family-{unique}"),
    );
    let by_jti = token("ec256", "carol", json!({}));
    let jti = decode_part(&by_jti, 1)["jti"].as_str().unwrap().to_string();
    let exp = decode_part(&by_jti, 1)["exp"].as_i64().unwrap();
    let by_user = token("ec256", &user, json!({}));
    let by_tenant = token("ec256", "dave", json!({"tid": tenant}));
    let by_family = token("ec256", "erin", json!({"fam": family}));
    for t in [&by_jti, &by_user, &by_tenant, &by_family] {
        assert!(check_token(&mut c, t).await.allowed());
    }

    let cases = [
        (
            json!({"jti": jti, "expires_at": exp, "reason": "leaked"}),
            &by_jti,
            "jti_revoked",
            &jti,
        ),
        (json!({"user": user}), &by_user, "user_revoked", &user),
        (
            json!({"tenant": tenant, "reason": "breach"}),
            &by_tenant,
            "tenant_revoked",
            &tenant,
        ),
        (
            json!({"family": family}),
            &by_family,
            "family_revoked",
            &family,
        ),
    ];
    for (body, t, reason, id) in cases {
        let (status, out) = admin_post(server, Some(&admin), body.clone()).await;
        assert_eq!(status, 200, "{body}: {out}");
        assert_eq!(out["success"], true);
        assert_eq!(
            check_token(&mut c, t).await.reason().as_deref(),
            Some(reason)
        );

        let events = audit_events(id);
        assert_eq!(events.len(), 1, "one audit event for {id}: {events:?}");
        let e = &events[0];
        assert_eq!(e["namespace"], "test", "{e}");
        assert_eq!(e["actor"], "ops-alice");
        assert_eq!(e["source"], "admin");
        assert_eq!(e["reason"], body["reason"].as_str().unwrap_or("admin"));
        assert_eq!(e["kind"], reason.trim_end_matches("_revoked"));
    }

    // inspection
    let resp = reqwest::Client::new()
        .get(server.admin_url(&format!("/v1/admin/revocations/jti/{jti}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["revoked"], true);
    assert_eq!(
        (body["namespace"].as_str(), body["id"].as_str()),
        (Some("test"), Some(jti.as_str()))
    );
    assert_eq!(body["state"]["record"]["reason"], "leaked");
    assert_eq!(body["state"]["record"]["actor"], "ops-alice");
    let resp = reqwest::Client::new()
        .get(server.admin_url(&format!("/v1/admin/revocations/user/{user}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["state"]["ver"], 1);
    let resp = reqwest::Client::new()
        .get(server.admin_url("/v1/admin/revocations/user/nobody-at-all"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_validation_errors_name_the_field() {
    let s = setup(MEMORY_STORE).await;
    let admin = admin_token();
    let now = tokengate::jwt::now_unix();
    let cases = [
        (json!({"jti": "abc"}), "expires_at"),
        (json!({"jti": "abc", "expires_at": now - 10}), "expires_at"),
        (json!({"user": 42}), "user"),
        (json!({"user": ""}), "user"),
        (json!({"user": "x".repeat(600)}), "user"),
        (json!({"user": "a", "tenant": "b"}), "body"),
        (json!({}), "body"),
        (json!({"usr": "a"}), "usr"),
        (json!({"user": "a", "expires_at": now + 10}), "expires_at"),
        (json!({"user": "a", "reason": 5}), "reason"),
        (json!(["user"]), "body"),
    ];
    for (body, field) in cases {
        let (status, out) = admin_post(&s.server, Some(&admin), body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(out["error"], "invalid_request", "{body}");
        assert_eq!(out["field"], field, "{body}: {out}");
    }
    let resp = reqwest::Client::new()
        .get(s.server.admin_url("/v1/admin/revocations/sessions/abc"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

/// Admin rights come from the providers listed in `admin_api.providers`, never from a
/// scope alone: any trusted issuer can mint any scope. Sharing a subject namespace
/// with an admin provider does not make a provider one.
#[tokio::test(flavor = "multi_thread")]
async fn only_listed_providers_may_administer_whatever_scope_their_tokens_carry() {
    use support::issuers::{other_token, two_issuers, with_admin};
    for namespaces in [None, Some(("idp", "idp"))] {
        let yaml = with_admin(
            &two_issuers(&config_yaml(MEMORY_STORE), namespaces),
            &["test"],
        );
        let s = TestServer::start(&yaml).await;
        let scope = json!({"scope": format!("read {ADMIN_SCOPE}")});
        let foreign = other_token("ops-alice", scope.clone());
        let body = json!({"user": "bob", "provider": "test"});
        let (status, out) = admin_post(&s, Some(&foreign), body.clone()).await;
        assert_eq!(
            (status, out["reason"].as_str()),
            (403, Some("insufficient_scope")),
            "{namespaces:?}: {out}"
        );
        let resp = reqwest::Client::new()
            .get(s.admin_url("/v1/admin/revocations/user/bob?provider=test"))
            .bearer_auth(&foreign)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{namespaces:?}");
        // the same claims from a listed provider administer
        let (status, out) = admin_post(&s, Some(&admin_token()), body).await;
        assert_eq!(status, 200, "{namespaces:?}: {out}");
    }
}

/// A body two parsers could read two ways is refused before anything is written, at
/// any depth, with the path of the duplicated key.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_with_duplicate_keys_are_refused_naming_the_key() {
    let s = setup(MEMORY_STORE).await;
    let post = |body: &'static str, bearer: Option<String>| {
        let mut req = reqwest::Client::new()
            .post(s.server.admin_url("/v1/admin/revocations"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        async move {
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let cases = [
        (r#"{"user":"dup-a","user":"dup-b"}"#, "user"),
        (r#"{"user":"dup-a","\u0075ser":"dup-b"}"#, "user"),
        (r#"{"user":"dup-a","reason":"x","reason":"y"}"#, "reason"),
        (
            r#"{"provider":"test","user":"dup-a","provider":"test"}"#,
            "provider",
        ),
        (r#"{"user":"dup-a","reason":{"k":1,"k":2}}"#, "reason.k"),
        (
            r#"{"jti":"dup-j","expires_at":1,"expires_at":99999999999}"#,
            "expires_at",
        ),
    ];
    for (body, field) in cases {
        let (status, out) = post(body, Some(admin_token())).await;
        assert_eq!(status, 400, "{body}: {out}");
        assert_eq!(
            (out["error"].as_str(), out["field"].as_str()),
            (Some("invalid_request"), Some(field)),
            "{body}"
        );
        // authentication still comes first
        let (status, _) = post(body, None).await;
        assert_eq!(status, 401, "{body}");
    }
    for id in ["dup-a", "dup-b"] {
        let resp = reqwest::Client::new()
            .get(
                s.server
                    .admin_url(&format!("/v1/admin/revocations/user/{id}")),
            )
            .bearer_auth(admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "nothing was revoked for {id}");
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

async fn post_form(url: &str, body: String, basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc7009_revocation_revokes_the_posted_token_and_accepts_unknown_ones() {
    let s = setup(MEMORY_STORE).await;
    let server = &s.server;
    let mut c = server.grpc().await;
    let url = server.http_url("/v1/oauth/revoke");
    let t = token("ec256", "frank", json!({"fam": "fam-frank"}));
    let sibling = token("ec256", "frank", json!({"fam": "fam-frank"}));

    let (status, _) = post_form(
        &url,
        form(&[("token", &t), ("token_type_hint", "access_token")]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        check_token(&mut c, &t).await.reason().as_deref(),
        Some("jti_revoked")
    );
    assert!(
        check_token(&mut c, &sibling).await.allowed(),
        "only the posted token"
    );

    // a refresh token revokes its family (RFC 7009 §2.1: the grant's other tokens)
    let (status, _) = post_form(
        &url,
        form(&[("token", &sibling), ("token_type_hint", "refresh_token")]),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let other_of_family = token("ec256", "frank", json!({"fam": "fam-frank"}));
    assert_eq!(
        check_token(&mut c, &other_of_family)
            .await
            .reason()
            .as_deref(),
        Some("family_revoked")
    );

    // unknown, invalid and already revoked tokens: 200 all the same (§2.2)
    for junk in ["not-a-token", "a.b.c", t.as_str()] {
        let (status, _) = post_form(&url, form(&[("token", junk)]), None).await;
        assert_eq!(status, 200, "{junk}");
    }
    // a request without a token is malformed (§2.2.1 invalid_request)
    let (status, body) = post_form(&url, form(&[("token_type_hint", "access_token")]), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc7662_introspection_needs_the_client_credential_and_reports_activity() {
    let s = setup(MEMORY_STORE).await;
    let server = &s.server;
    let url = server.http_url("/v1/oauth/introspect");
    let creds = Some(("billing", INTROSPECTION_SECRET));
    let t = token("ec256", "gina", json!({"scope": "read"}));

    // client authentication (§2.1): none, wrong secret, unknown client
    for bad in [
        None,
        Some(("billing", "wrong")),
        Some(("nobody", INTROSPECTION_SECRET)),
    ] {
        let (status, body) = post_form(&url, form(&[("token", &t)]), bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{bad:?}"
        );
    }

    let (status, body) = post_form(&url, form(&[("token", &t)]), creds).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "gina");
    assert_eq!(body["scope"], "read");
    assert!(body["exp"].is_i64() && body["jti"].is_string());

    assert_eq!(logout(server, "/v1/auth/logout", &t).await.0, 200);
    let expired = token(
        "ec256",
        "gina",
        json!({"exp": tokengate::jwt::now_unix() - 60}),
    );
    for inactive in [t.as_str(), expired.as_str(), "garbage"] {
        let (status, body) = post_form(&url, form(&[("token", inactive)]), creds).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"active": false}),
            "only `active` for inactive tokens"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_is_off_without_a_configured_client() {
    let s = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    let t = token("ec256", "gina", json!({}));
    let (status, _) = post_form(
        &s.http_url("/v1/oauth/introspect"),
        form(&[("token", &t)]),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// Writes `yaml` to a file in `dir` and runs `tokengate ARGS… --config FILE`.
fn run_cli(dir: &std::path::Path, yaml: &str, args: &[&str]) -> (bool, Value, String) {
    let file = dir.join("tokengate.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(procs::tokengate_bin())
        .args(args)
        .arg("--config")
        .arg(&file)
        .env("USER", "ops-bob")
        .output()
        .expect("tokengate runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_and_status_commands_write_to_redis_and_every_replica_enforces_them() {
    let r = RedisServer::start_async().await;
    let yaml = config_yaml(&store_yaml(&r.url(), "  cache:\n    ttl_seconds: 600\n"));
    let s = TestServer::start(&yaml).await;
    let mut c = s.grpc().await;
    let dir = support::redis::TempDir::new("cli");
    let victim = token("ec256", "henry", json!({"tid": "initech"}));
    assert!(check_token(&mut c, &victim).await.allowed());

    let (ok, out, stderr) = run_cli(
        &dir.0,
        &yaml,
        &["revoke", "--tenant", "initech", "--reason", "incident-42"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(out["success"], true);
    assert_eq!(out["version"], 1);
    assert_eq!(out["namespace"], "test", "the only namespace");
    assert!(
        stderr.contains("revoked") && stderr.contains("incident-42") && stderr.contains("ops-bob"),
        "audit line on stderr: {stderr}"
    );
    assert!(
        stderr.contains("neither AOF nor RDB"),
        "a Redis without persistence is warned about: {stderr}"
    );
    wait_for(
        "the running replica to enforce the CLI revocation",
        std::time::Duration::from_secs(2),
        || {
            let (mut c, victim) = (c.clone(), victim.clone());
            async move {
                check_token(&mut c, &victim).await.reason().as_deref() == Some("tenant_revoked")
            }
        },
    )
    .await;

    let (ok, out, _) = run_cli(&dir.0, &yaml, &["status", "--tenant", "initech"]);
    assert!(ok);
    assert_eq!(out["revoked"], true);
    assert_eq!(out["state"]["ver"], 1);
    let (ok, out, _) = run_cli(&dir.0, &yaml, &["status", "--user", "never-revoked"]);
    assert!(ok);
    assert_eq!(out["revoked"], false);

    let exp = (tokengate::jwt::now_unix() + 600).to_string();
    let (ok, out, _) = run_cli(
        &dir.0,
        &yaml,
        &["revoke", "--jti", "leaked-1", "--expires-at", &exp],
    );
    assert!(ok);
    assert_eq!(out["kind"], "jti");
    let (_, out, _) = run_cli(&dir.0, &yaml, &["status", "--jti", "leaked-1"]);
    assert_eq!(out["state"]["record"]["actor"], "ops-bob");

    // refusals: --jti without --expires-at (clap), and the memory store
    let (ok, _, stderr) = run_cli(&dir.0, &yaml, &["revoke", "--jti", "x"]);
    assert!(!ok && stderr.contains("--expires-at"), "{stderr}");
    let (ok, _, stderr) = run_cli(
        &dir.0,
        &config_yaml(MEMORY_STORE),
        &["revoke", "--user", "x"],
    );
    assert!(!ok && stderr.contains("memory"), "{stderr}");
    let far = (tokengate::jwt::now_unix() + 20 * 366 * 86_400).to_string();
    let (ok, _, stderr) = run_cli(
        &dir.0,
        &yaml,
        &["revoke", "--jti", "far-1", "--expires-at", &far],
    );
    assert!(!ok && stderr.contains("10 years"), "{stderr}");
}

/// The commands name identifiers as tokens carry them and the provider whose they are:
/// with two namespaces `--provider` is required, and each revocation reaches only its
/// own namespace, also on a running replica.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_and_status_commands_act_in_the_named_providers_namespace() {
    use support::issuers::{other_token, two_issuers};
    let r = RedisServer::start_async().await;
    let yaml = two_issuers(&config_yaml(&store_yaml(&r.url(), "")), None);
    let s = TestServer::start(&yaml).await;
    let mut c = s.grpc().await;
    let dir = support::redis::TempDir::new("cli-ns");
    let (test, other) = (
        token("ec256", "ivan", json!({})),
        other_token("ivan", json!({})),
    );

    let (ok, _, stderr) = run_cli(&dir.0, &yaml, &["revoke", "--user", "ivan"]);
    assert!(!ok && stderr.contains("--provider"), "{stderr}");
    let (ok, _, stderr) = run_cli(
        &dir.0,
        &yaml,
        &["revoke", "--user", "ivan", "--provider", "nope"],
    );
    assert!(!ok && stderr.contains("--provider"), "{stderr}");

    let (ok, out, stderr) = run_cli(
        &dir.0,
        &yaml,
        &["revoke", "--user", "ivan", "--provider", "other"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        (out["namespace"].as_str(), out["id"].as_str()),
        (Some("other"), Some("ivan"))
    );
    assert!(
        stderr.contains("namespace") && stderr.contains("other"),
        "audit names it: {stderr}"
    );
    wait_for("the replica to deny the other issuer's ivan", std::time::Duration::from_secs(2), || {
        let (mut c, other) = (c.clone(), other.clone());
        async move { check_token(&mut c, &other).await.reason().as_deref() == Some("user_revoked") }
    })
    .await;
    assert!(
        check_token(&mut c, &test).await.allowed(),
        "the test issuer's ivan is someone else"
    );

    let (_, out, _) = run_cli(
        &dir.0,
        &yaml,
        &["status", "--user", "ivan", "--provider", "test"],
    );
    assert_eq!(
        (out["revoked"].as_bool(), out["namespace"].as_str()),
        (Some(false), Some("test"))
    );
    let (_, out, _) = run_cli(
        &dir.0,
        &yaml,
        &["status", "--user", "ivan", "--provider", "other"],
    );
    assert_eq!(out["revoked"], true, "{out}");
    let key: String = r.cli(&["exists", "tokengate:user@other:ivan"]);
    assert_eq!(key.trim(), "1", "the namespaced key");
}
