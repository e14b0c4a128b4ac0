//! Cache-safe answers (issue 15): every HTTP answer says `Cache-Control: no-store` unless
//! the operator opted in to caching allows, and then `private, max-age=N` with N bounded
//! by the setting, the revocation cache TTL and the token's remaining life. A proxy that
//! caches auth answers (nginx `proxy_cache` on the `auth_request` location) then cannot
//! keep allowing a token after its logout.
//!
//! The attack class: a revoked token replayed while some cache still holds the answer
//! for it, on any answer an HTTP listener gives (allow, deny, error, unknown path,
//! logout, introspection, admin).

use std::time::Duration;

use serde_json::json;

use crate::support::envoy::EchoUpstream;
use crate::support::nginx::{Nginx, TEMPLATE};
use crate::support::*;

fn cache_control(r: &reqwest::Response) -> String {
    let all: Vec<_> = r.headers().get_all("cache-control").iter().collect();
    assert!(all.len() <= 1, "one Cache-Control, got {all:?}");
    all.first()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_string()
}

#[tokio::test]
async fn every_http_answer_says_no_store_by_default() {
    let yaml = behind("envoy", &config_yaml(MEMORY_STORE));
    let server = TestServer::start(&yaml).await;
    let c = reqwest::Client::new();
    let t = token("hs", "alice", json!({}));
    let http = |p: &str| server.http_url(p);
    let admin = |p: &str| server.admin_url(p);
    let cases = vec![
        ("allow", c.get(http("/authz/api/items")).bearer_auth(&t)),
        ("deny: no token", c.get(http("/authz/api/items"))),
        (
            "deny: bad token",
            c.get(http("/authz/api/items")).bearer_auth("x.y.z"),
        ),
        ("exempt route", c.get(http("/authz/public/x"))),
        ("unknown path", c.get(http("/nope"))),
        ("wrong method", c.get(http("/v1/auth/logout"))),
        ("logout without a token", c.post(http("/v1/auth/logout"))),
        (
            "introspection without a client",
            c.post(http("/v1/oauth/introspect")).form(&[("token", "x")]),
        ),
        (
            "revocation (RFC 7009) without a client",
            c.post(http("/v1/oauth/revoke")).form(&[("token", "x")]),
        ),
        ("metrics", c.get(admin("/metrics"))),
        ("readyz", c.get(admin("/readyz"))),
        ("healthz", c.get(admin("/healthz"))),
        (
            "admin API without a token",
            c.post(admin("/v1/admin/revocations")),
        ),
        ("admin unknown path", c.get(admin("/nope"))),
    ];
    for (what, req) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(cache_control(&r), "no-store", "{what} ({})", r.status());
    }
    // the logout itself, answered 200
    let r = c
        .post(http("/v1/auth/logout"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(cache_control(&r), "no-store", "logout");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// The `max-age` an opted-in allow of a token living `life` seconds gets.
async fn max_age(setting: u64, cache_ttl: u64, life: i64) -> String {
    let yaml = behind("envoy", &config_yaml(MEMORY_STORE)).replace(
        "  store: memory",
        &format!("  store: memory\n  cache:\n    ttl_seconds: {cache_ttl}"),
    ) + &format!("  allow_max_age_seconds: {setting}\n");
    let server = TestServer::start(&yaml).await;
    let exp = tokengate::jwt::now_unix() + life;
    let t = token("hs", "alice", json!({"exp": exp}));
    let r = reqwest::Client::new()
        .get(server.http_url("/authz/api/items"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    cache_control(&r)
}

#[tokio::test]
async fn an_opted_in_allow_is_cacheable_no_longer_than_the_setting_the_cache_ttl_or_the_token() {
    assert_eq!(
        max_age(30, 600, 3600).await,
        "private, max-age=30",
        "the setting"
    );
    assert_eq!(
        max_age(30, 5, 3600).await,
        "private, max-age=5",
        "the revocation cache TTL"
    );
    let short = max_age(30, 600, 10).await;
    let n: u64 = short
        .strip_prefix("private, max-age=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{short}"));
    assert!((1..=10).contains(&n), "the token's remaining life: {short}");
}

#[tokio::test]
async fn an_opted_in_server_still_says_no_store_on_denies_and_exempt_routes() {
    let yaml = behind("envoy", &config_yaml(MEMORY_STORE)) + "  allow_max_age_seconds: 30\n";
    let server = TestServer::start(&yaml).await;
    let c = reqwest::Client::new();
    let t = token("hs", "alice", json!({}));
    c.post(server.http_url("/v1/auth/logout"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    for (what, req) in [
        (
            "revoked token",
            c.get(server.http_url("/authz/api/items")).bearer_auth(&t),
        ),
        ("no token", c.get(server.http_url("/authz/api/items"))),
        ("exempt route", c.get(server.http_url("/authz/public/x"))),
        (
            "missing scope",
            c.get(server.http_url("/authz/admin/x"))
                .bearer_auth(token("hs", "bob", json!({}))),
        ),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(cache_control(&r), "no-store", "{what} ({})", r.status());
    }
}

/// nginx's test template with `proxy_cache` on the `auth_request` location, keyed by the
/// credentials and the request, keeping 200s for ten minutes unless the answer says
/// otherwise; with `ignore_cache_control` nginx also ignores what the answer says.
fn caching_nginx(ignore_cache_control: bool) -> String {
    let ignore = if ignore_cache_control {
        "proxy_ignore_headers Cache-Control Expires;"
    } else {
        ""
    };
    TEMPLATE
        .replace(
            "    upstream tokengate {",
            "    proxy_cache_path {dir}/authcache keys_zone=auth:1m;\n\n    upstream tokengate {",
        )
        .replace(
            "            proxy_pass http://tokengate/authz;",
            &format!(
                "            proxy_pass http://tokengate/authz;\n            proxy_cache auth;\n            proxy_cache_key \"$http_authorization $request_method $request_uri\";\n            proxy_cache_valid 200 10m;\n            {ignore}"
            ),
        )
}

/// Sends one GET with `token` through nginx: the status, and whether tokengate was asked.
async fn through(nginx: &Nginx, server: &TestServer, token: &str) -> (u16, bool) {
    // every decision, allow or deny, is one observation
    let decisions = "tokengate_decision_duration_seconds_count{transport=\"http\"}";
    let before = server.metric(decisions).await;
    let r = reqwest::Client::new()
        .get(nginx.url("/api/items"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let after = server.metric(decisions).await;
    (r.status().as_u16(), after > before)
}

/// Through nginx caching auth answers: a token asked for twice, logged out, and asked
/// for again. Each answer: its status, and whether tokengate was asked.
async fn ask_twice_log_out_ask_again(ignore_cache_control: bool) -> [(u16, bool); 3] {
    let server = TestServer::start(&behind("nginx", &config_yaml(MEMORY_STORE))).await;
    let app = EchoUpstream::start().await;
    let template = caching_nginx(ignore_cache_control);
    let nginx = Nginx::start_template(&template, server.addrs.http, app.addr).await;
    let t = token("hs", "alice", json!({}));
    let first = through(&nginx, &server, &t).await;
    let second = through(&nginx, &server, &t).await;
    let out = reqwest::Client::new()
        .post(nginx.url("/v1/auth/logout"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200, "logout; nginx log:\n{}", nginx.log());
    [first, second, through(&nginx, &server, &t).await]
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_caching_auth_answers_still_enforces_a_logout() {
    assert_eq!(
        ask_twice_log_out_ask_again(false).await,
        [(200, true), (200, true), (401, true)],
        "every answer is asked for, and the logout is enforced at once"
    );
}

/// The control that shows the cache in the test above is real: the same nginx told to
/// ignore tokengate's Cache-Control keeps allowing the logged-out token.
#[tokio::test(flavor = "multi_thread")]
async fn nginx_ignoring_cache_control_keeps_allowing_a_logged_out_token() {
    assert_eq!(
        ask_twice_log_out_ask_again(true).await,
        [(200, true), (200, false), (200, false)],
        "served from nginx's cache, the stale allow included: what no-store prevents"
    );
}
