//! Observability (docs/spec.md §5): exact counter movements after a mixed run, a real scrape
//! through `promtool check metrics`, the Grafana dashboard against a real scrape, and no
//! token in logs or metrics even at trace level.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value};
use support::redis::{store_yaml, RedisServer};
use support::*;

/// One scrape: `name{labels}` → value.
fn scrape_map(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(s: &TestServer) -> String {
    let resp = reqwest::get(s.admin_url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    resp.text().await.unwrap()
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

fn decisions(m: &BTreeMap<String, f64>, transport: &str, decision: &str, reason: &str) -> f64 {
    value(
        m,
        &format!(
            "tokengate_decisions_total{{decision=\"{decision}\",reason=\"{reason}\",transport=\"{transport}\"}}"
        ),
    )
}

async fn authz(s: &TestServer, path: &str, bearer_token: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(s.http_url(&format!("/authz{path}")));
    if let Some(t) = bearer_token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_by_exactly_what_a_mixed_run_did() {
    let mut r = RedisServer::start_async().await;
    let s = TestServer::start(&config_yaml(&store_yaml(&r.url(), ""))).await;
    let mut c = s.grpc().await;
    let before = scrape_map(&scrape(&s).await);

    // 3 gRPC allows (one token twice: the second is a cache hit), 2 HTTP allows
    let t = token("ec256", "alice", json!({"scope": "read"}));
    for tok in [&t, &t, &token("rsa", "bob", json!({}))] {
        assert!(check_token(&mut c, tok).await.allowed());
    }
    assert_eq!(authz(&s, "/api", Some(&t)).await, 200);
    assert_eq!(authz(&s, "/public/x", None).await, 200);
    // one of each deny family
    let now = tokengate::jwt::now_unix();
    check(&mut c, check_request("GET", "/api", &[])).await;
    check_token(&mut c, "garbage").await;
    check_token(&mut c, &token("ec256", "alice", json!({"exp": now - 60}))).await;
    check(
        &mut c,
        check_request("GET", "/admin/x", &[("authorization", &bearer(&t))]),
    )
    .await;
    assert_eq!(authz(&s, "/api", None).await, 401);
    // a revocation, then its deny
    let gone = token("ec256", "carol", json!({}));
    assert_eq!(logout(&s, "/v1/auth/logout", &gone).await.0, 200);
    assert_eq!(
        check_token(&mut c, &gone).await.reason().as_deref(),
        Some("jti_revoked")
    );
    // a store error
    r.kill_now();
    let a = check_token(&mut c, &token("ec256", "dave", json!({}))).await;
    assert_eq!(a.reason().as_deref(), Some("store_unavailable"));

    let after = scrape_map(&scrape(&s).await);
    let delta = |series: &str| value(&after, series) - value(&before, series);
    let d = |transport, decision, reason| {
        decisions(&after, transport, decision, reason)
            - decisions(&before, transport, decision, reason)
    };
    assert_eq!(d("grpc", "allow", "none"), 3.0);
    assert_eq!(d("http", "allow", "none"), 2.0);
    assert_eq!(d("grpc", "deny", "missing_token"), 1.0);
    assert_eq!(d("http", "deny", "missing_token"), 1.0);
    assert_eq!(d("grpc", "deny", "malformed"), 1.0);
    assert_eq!(d("grpc", "deny", "expired"), 1.0);
    assert_eq!(d("grpc", "deny", "insufficient_scope"), 1.0);
    assert_eq!(d("grpc", "deny", "jti_revoked"), 1.0);
    assert_eq!(d("grpc", "deny", "store_unavailable"), 1.0);
    assert_eq!(
        delta("tokengate_decision_duration_seconds_count{transport=\"grpc\"}"),
        9.0
    );
    assert_eq!(
        delta("tokengate_revocations_total{kind=\"jti\",source=\"logout\"}"),
        1.0
    );
    assert_eq!(
        delta("tokengate_store_requests_total{op=\"revoke\",result=\"ok\"}"),
        1.0
    );
    let failed = delta("tokengate_store_requests_total{op=\"check\",result=\"error\"}")
        + delta("tokengate_store_requests_total{op=\"check\",result=\"timeout\"}");
    assert_eq!(failed, 1.0, "exactly one store call failed");
    // the token checked twice was a verified-cache hit the second time
    assert!(delta("tokengate_cache_requests_total{cache=\"verified\",result=\"hit\"}") >= 1.0);
    assert!(
        delta("tokengate_invalidation_events_total") >= 1.0,
        "the logout's own event"
    );
    assert_eq!(
        value(&after, "tokengate_build_info{version=\"0.1.0\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_scrape_passes_promtool_and_has_no_unbounded_label() {
    let s = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    let mut c = s.grpc().await;
    let t = token(
        "ec256",
        "user-with-a-distinct-id",
        json!({"tid": "tenant-distinct"}),
    );
    assert!(check_token(&mut c, &t).await.allowed());
    logout(&s, "/v1/auth/logout", &t).await;
    let text = scrape(&s).await;

    let mut promtool = Command::new(procs::tool(
        "promtool",
        "promtool (Debian package prometheus)",
    ));
    promtool.args(["check", "metrics"]);
    procs::pipe_through(promtool, text.as_bytes(), "promtool check metrics");
    for family in [
        "tokengate_decisions_total",
        "tokengate_decision_duration_seconds",
        "tokengate_cache_requests_total",
        "tokengate_store_requests_total",
        "tokengate_store_duration_seconds",
        "tokengate_revocations_total",
        "tokengate_invalidation_events_total",
        "tokengate_jwks_refresh_total",
        "tokengate_build_info",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} exported"
        );
    }
    for id in ["user-with-a-distinct-id", "tenant-distinct"] {
        assert!(!text.contains(id), "{id} must never be a label value");
    }
    let le: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("tokengate_decision_duration_seconds_bucket{")
                && l.contains("transport=\"grpc\"")
        })
        .collect();
    assert!(
        le.first().is_some_and(|l| l.contains("le=\"0.00005\"")),
        "{le:?}"
    );
    assert!(le.iter().any(|l| l.contains("le=\"1\"")), "{le:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_expression_names_only_exported_families() {
    let s = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    let text = scrape(&s).await;
    let exported: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let path = procs::repo().join("deploy/grafana/tokengate.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 9);
    let mut seen = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| exported.contains(f)))
                    .unwrap_or(&name);
                assert!(
                    exported.contains(&family),
                    "panel {:?} uses {name}, which tokengate does not export",
                    panel["title"]
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 12);
    // The latency panel shows exemplars: a point links to the trace of a sampled check
    // (issue 17; deploy/grafana/datasources.yaml maps `trace_id` to Tempo).
    let latency: Vec<&Value> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter(|t| {
            t["expr"]
                .as_str()
                .is_some_and(|e| e.contains("tokengate_decision_duration_seconds_bucket"))
        })
        .collect();
    assert!(!latency.is_empty());
    assert!(latency.iter().all(|t| t["exemplar"] == true), "{latency:?}");
}

/// Identifiers in a PromQL expression that look like metric names.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut word = String::new();
    let mut in_braces = false;
    let mut in_quotes = false;
    for ch in expr.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
            continue;
        }
        if !in_braces
            && !in_quotes
            && (word.starts_with("tokengate_") || word.starts_with("process_"))
        {
            names.push(word.clone());
        }
        word.clear();
        match ch {
            '"' => in_quotes = !in_quotes,
            '{' if !in_quotes => in_braces = true,
            '}' if !in_quotes => in_braces = false,
            _ => {}
        }
    }
    names
}

/// The log output of the test binary (at trace level while a test holds
/// [`support::logs::at_trace`]).
fn logs() -> &'static support::logs::Captured {
    support::logs::capture()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_or_piece_of_one_reaches_logs_or_metrics_at_trace_level() {
    let _trace = support::logs::at_trace();
    let s =
        TestServer::start(&config_yaml(MEMORY_STORE).replace("level: warn", "level: trace")).await;
    let mut c = s.grpc().await;
    let (hs, hs_key) = signing_key("hs");
    let now = tokengate::jwt::now_unix();
    let mut tokens = vec![
        token("ec256", "alice", json!({})),
        token("rsa", "alice", json!({"exp": now - 100})),
        token("ec256", "alice", json!({"aud": "elsewhere"})),
        sign(
            json!({"alg": "HS256", "kid": "nope"}),
            claims("alice"),
            hs,
            &hs_key,
        ),
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(claims("alice").to_string().as_bytes())
        ),
        "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24gYXQgYWxs.c2lnbmF0dXJlLXRoYXQtaXMtd3Jvbmc".to_string(),
    ];
    for t in &tokens {
        check_token(&mut c, t).await;
        authz(&s, "/api", Some(t)).await;
    }
    let out = token("ec256", "erin", json!({}));
    assert_eq!(logout(&s, "/v1/auth/logout", &out).await.0, 200);
    assert_eq!(
        logout(
            &s,
            "/v1/auth/logout-all",
            &token("ec256", "erin", json!({}))
        )
        .await
        .0,
        200
    );
    tokens.push(out);

    let captured = logs();
    let logs = captured.text();
    assert!(
        logs.contains("revoked"),
        "the capture works: the audit events are in it"
    );
    assert!(
        logs.contains("check"),
        "decision events were logged at debug"
    );
    assert!(
        captured.any(&[("request_id", json!("req-1"))]),
        "decision events carry Envoy's request id"
    );
    assert!(
        captured.any(&[("reason", json!("bad_signature"))])
            || captured.any(&[("reason", json!("unknown_key"))])
    );
    let metrics = scrape(&s).await;
    for t in &tokens {
        // every 20-character piece of the signature and payload (the header is shared
        // by many tokens and says nothing about one)
        let secret_part = &t[t.find('.').map_or(0, |i| i + 1)..];
        let bytes = secret_part.as_bytes();
        for start in 0..bytes.len().saturating_sub(20) {
            let piece = &secret_part[start..start + 20];
            assert!(
                !logs.contains(piece),
                "a piece of a token reached the logs: {piece}"
            );
            assert!(
                !metrics.contains(piece),
                "a piece of a token reached the metrics"
            );
        }
    }
}
