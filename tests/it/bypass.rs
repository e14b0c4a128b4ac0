//! No way around the gate (issue 13, docs/security.md): every class of "spell the request
//! another way" tried on every way tokengate is asked — gRPC Check, and the HTTP-mode
//! check behind each proxy it can trust (Envoy HTTP ext_authz, nginx `auth_request`,
//! ingress-nginx `auth-url`, Traefik `forwardAuth`). Each class is a generator of
//! spellings, not one example; each case asserts the documented status and reason.

use crate::support;

use std::collections::HashMap;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use support::forwarded::{subrequest, Proxy, LIES};
use support::*;

/// The routes every server here runs with: an exempt prefix, a GET-only exempt prefix,
/// a scoped prefix, and a host-specific rule shadowing an exempt one.
const ROUTES: &str = "routes:
  - path_prefix: /public
    exempt: true
  - path_prefix: /reports
    methods: [GET]
    exempt: true
  - path_prefix: /admin
    require_scopes: [admin]
  - path_prefix: /billing
    host: api.example.com
    require_scopes: [billing]
  - path_prefix: /billing
    exempt: true
";

fn yaml_with(routes: &str, extra: &str) -> String {
    let base = config_yaml(MEMORY_STORE);
    let start = base.find("routes:\n").expect("routes in the test config");
    let end = base
        .find("revocation:\n")
        .expect("revocation in the test config");
    format!("{}{routes}{}{extra}", &base[..start], &base[end..])
}

/// How the question reaches tokengate.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    Grpc,
    EnvoyHttp,
    Nginx,
    IngressNginx,
    Traefik,
}

const EVERY_WAY: [Via; 5] = [
    Via::Grpc,
    Via::EnvoyHttp,
    Via::Nginx,
    Via::IngressNginx,
    Via::Traefik,
];

/// What came back: the HTTP status the client would see and the JSON `reason`.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    status: u16,
    reason: Option<String>,
    /// Headers of an allow (to set upstream), lower-case names.
    upstream: HashMap<String, String>,
    /// Headers the proxy is told to remove.
    removed: Vec<String>,
}

impl Outcome {
    fn allowed(&self) -> bool {
        self.status == 200
    }
}

/// The original request.
struct Ask<'a> {
    method: &'a str,
    host: &'a str,
    /// Path and query, exactly as the client wrote them.
    target: &'a str,
    headers: Vec<(&'a str, String)>,
}

impl<'a> Ask<'a> {
    fn get(target: &'a str) -> Self {
        Ask {
            method: "GET",
            host: "app.example.com",
            target,
            headers: Vec::new(),
        }
    }

    fn with(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn token(self, token: &str) -> Self {
        self.with("authorization", bearer(token))
    }
}

/// One tokengate per trusted proxy (the setting is per listener); the Envoy one also
/// answers gRPC.
struct Gate {
    servers: HashMap<&'static str, TestServer>,
}

impl Gate {
    async fn start(yaml: &str) -> Gate {
        let mut servers = HashMap::new();
        for proxy in ["envoy", "nginx", "ingress-nginx", "traefik"] {
            servers.insert(proxy, TestServer::start(&behind(proxy, yaml)).await);
        }
        Gate { servers }
    }

    async fn ask(&self, via: Via, a: &Ask<'_>) -> Outcome {
        let (proxy, server) = match via {
            Via::Grpc => return self.grpc(a).await,
            Via::EnvoyHttp => (Proxy::EnvoyHttp, "envoy"),
            Via::Nginx => (Proxy::Nginx, "nginx"),
            Via::IngressNginx => (Proxy::IngressNginx, "ingress-nginx"),
            Via::Traefik => (Proxy::Traefik, "traefik"),
        };
        let (method, target, mut headers) = subrequest(proxy, a.method, a.host, a.target);
        headers.extend(a.headers.iter().map(|(k, v)| (*k, v.clone())));
        raw_http(&self.servers[server], &method, &target, &headers).await
    }

    async fn grpc(&self, a: &Ask<'_>) -> Outcome {
        let mut client = self.servers["envoy"].grpc().await;
        // The builder joins a repeated header's values with commas, as Envoy's `headers`
        // map does.
        let headers: Vec<(&str, &str)> = a.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let req = tokengate_tools::request::check_request(a.method, a.target, a.host, &headers);
        let answer = check(&mut client, req).await;
        let status = if answer.allowed() {
            200
        } else {
            answer.http_status.unwrap_or(0) as u16
        };
        Outcome {
            status,
            reason: answer.reason(),
            upstream: answer
                .headers
                .iter()
                .filter(|_| status == 200)
                .map(|(k, v, _)| (k.clone(), v.clone()))
                .collect(),
            removed: answer.headers_to_remove.clone(),
        }
    }
}

/// [`raw_request`] to the server's HTTP listener, its answer read as an [`Outcome`].
async fn raw_http(
    server: &TestServer,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
) -> Outcome {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, text) = raw_request(server.addrs.http, method, target, &headers).await;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let lines = head.lines().skip(1);
    let mut upstream = HashMap::new();
    let mut removed = Vec::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "x-envoy-auth-headers-to-remove" {
                removed.extend(v.split(',').map(|s| s.trim().to_string()));
            } else if status == 200 {
                upstream.insert(k, v);
            }
        }
    }
    let reason = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string));
    Outcome {
        status,
        reason,
        upstream,
        removed,
    }
}

/// Spellings of `path` (which starts with `/`) that a server behind tokengate may
/// resolve to `path`: dot segments through an exempt prefix, encoded dots, path
/// parameters, repeated slashes, backslashes, encoded slashes and letters.
fn spellings(path: &str) -> Vec<String> {
    let rest = &path[1..];
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!("/{tail}")
    };
    let encoded_first: String = first
        .bytes()
        .map(|b| format!("%{b:02x}"))
        .collect::<String>();
    vec![
        path.to_string(),
        format!("/public/..{path}"),
        format!("/public/./..{path}"),
        format!("/public/x/../..{path}"),
        format!("/public/%2e%2e{path}"),
        format!("/public/%2E%2E{path}"),
        format!("/public/.%2e{path}"),
        format!("/public/..;{path}"),
        format!("/public/..;x=1{path}"),
        format!("/public;x/..{path}"),
        format!("/{first};jsessionid=0{tail}"),
        format!("/{first};{tail}"),
        format!("/{first}/;{tail}"),
        format!("/{path}"),
        format!("/{first}//{}", tail.trim_start_matches('/')),
        format!("/public//..{path}"),
        format!("/public/..%2f{rest}"),
        format!("/public/..%2F{rest}"),
        format!("/public\\..{}", path.replace('/', "\\")),
        format!("/public%5c..%5c{first}{tail}"),
        format!("/{encoded_first}{tail}"),
        format!("/./{first}{tail}"),
        format!("/{first}/.{tail}"),
        format!("/../{first}{tail}"),
        format!("{path}?x=/public"),
    ]
}

/// Spellings that stay encoded after one decoding: refused, not guessed at.
fn double_encoded(path: &str) -> Vec<String> {
    let rest = &path[1..];
    vec![
        format!("/public/%252e%252e{path}"),
        format!("/public/%252E%252E/{rest}"),
        format!("/public/..%252f{rest}"),
        format!("/public/..%255c{rest}"),
        format!("/public/%2e%252e/{rest}"),
    ]
}

fn admin_scope() -> String {
    token("ec256", "root", json!({"scope": "read admin"}))
}

fn plain() -> String {
    token("ec256", "alice", json!({"scope": "read"}))
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_protected_path_is_let_through_without_what_it_requires() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    let (plain, admin) = (plain(), admin_scope());
    let mut failures = Vec::new();
    let mut tried = 0;
    for via in EVERY_WAY {
        // a path that needs a token
        for target in spellings("/api/items") {
            let o = gate.ask(via, &Ask::get(&target)).await;
            tried += 1;
            if o.allowed() || !matches!(o.status, 400 | 401) {
                failures.push(format!("{via:?} {target} without a token: {o:?}"));
            }
        }
        // a path that needs a scope
        for target in spellings("/admin/users") {
            let o = gate.ask(via, &Ask::get(&target).token(&plain)).await;
            tried += 1;
            if o.allowed() || !matches!(o.status, 400 | 403) {
                failures.push(format!("{via:?} {target} without the scope: {o:?}"));
            }
            let o = gate.ask(via, &Ask::get(&target)).await;
            tried += 1;
            if o.allowed() {
                failures.push(format!("{via:?} {target} without a token: {o:?}"));
            }
        }
        // and the same spellings with what the route requires are not refused for it
        // (the class is about dodging rules, not about refusing odd but clean paths)
        for target in ["/admin/users", "/admin;x=1/users", "//admin/users"] {
            let o = gate.ask(via, &Ask::get(target).token(&admin)).await;
            tried += 1;
            if !o.allowed() {
                failures.push(format!("{via:?} {target} with the admin scope: {o:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_stays_encoded_after_one_decoding_is_refused_as_malformed_request() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    let mut failures = Vec::new();
    for via in EVERY_WAY {
        for target in double_encoded("/admin/users")
            .into_iter()
            .chain(["/a%00b".to_string(), "/public/%0d%0a/../admin".to_string()])
        {
            let o = gate
                .ask(via, &Ask::get(&target).token(&admin_scope()))
                .await;
            if (o.status, o.reason.as_deref()) != (400, Some("malformed_request")) {
                failures.push(format!("{via:?} {target}: {o:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn exempt_prefixes_cover_their_segments_and_nothing_else() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    for via in EVERY_WAY {
        for (target, status) in [
            ("/public", 200),
            ("/public/", 200),
            ("/public/logo.png", 200),
            ("/public/a/../b", 200),
            ("/publicity", 401),
            ("/public-x/logo.png", 401),
            ("/publi", 401),
            // the path as sent does not name /public on a segment boundary, and the
            // stricter of the two forms wins
            ("/public;x/logo.png", 401),
        ] {
            let o = gate.ask(via, &Ask::get(target)).await;
            assert_eq!(o.status, status, "{via:?} {target}: {o:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_spelling_of_a_host_dodges_its_host_rule() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    let billing = token("ec256", "carol", json!({"scope": "billing"}));
    let mut failures = Vec::new();
    for via in EVERY_WAY {
        for host in [
            "api.example.com",
            "API.EXAMPLE.COM",
            "Api.Example.Com",
            "api.example.com.",
            "api.example.com:443",
            "api.example.com.:8443",
            "API.example.com.:80",
        ] {
            let mut ask = Ask::get("/billing/invoices");
            ask.host = host;
            let o = gate.ask(via, &ask).await;
            if o.status != 401 {
                failures.push(format!("{via:?} host {host:?} without a token: {o:?}"));
            }
            let ask = Ask {
                host,
                ..Ask::get("/billing/invoices")
            }
            .token(&plain());
            let o = gate.ask(via, &ask).await;
            if o.status != 403 {
                failures.push(format!("{via:?} host {host:?} without the scope: {o:?}"));
            }
            let ask = Ask {
                host,
                ..Ask::get("/billing/invoices")
            }
            .token(&billing);
            let o = gate.ask(via, &ask).await;
            if o.status != 200 {
                failures.push(format!("{via:?} host {host:?} with the scope: {o:?}"));
            }
        }
        // another host is under the exempt rule
        let ask = Ask {
            host: "www.example.com",
            ..Ask::get("/billing/invoices")
        };
        assert_eq!(gate.ask(via, &ask).await.status, 200, "{via:?} other host");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_method_override_brings_the_rules_of_that_method() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    let valid = plain();
    for via in EVERY_WAY {
        assert_eq!(
            gate.ask(via, &Ask::get("/reports/q3")).await.status,
            200,
            "{via:?} control"
        );
        for header in [
            "x-http-method-override",
            "X-HTTP-Method",
            "x-method-override",
        ] {
            for method in ["POST", "DELETE", "put"] {
                let o = gate
                    .ask(via, &Ask::get("/reports/q3").with(header, method))
                    .await;
                assert_eq!(
                    (o.status, o.reason.as_deref()),
                    (401, Some("missing_token")),
                    "{via:?} {header}: {method}"
                );
                let o = gate
                    .ask(
                        via,
                        &Ask::get("/reports/q3").with(header, method).token(&valid),
                    )
                    .await;
                assert_eq!(o.status, 200, "{via:?} {header}: {method} with a token");
            }
        }
        for target in [
            "/reports/q3?_method=DELETE",
            "/reports/q3?a=1&_method=PATCH",
        ] {
            let o = gate.ask(via, &Ask::get(target)).await;
            assert_eq!(o.status, 401, "{via:?} {target}");
        }
        for ask in [
            Ask::get("/reports/q3")
                .with("x-http-method-override", "GET")
                .with("x-http-method-override", "DELETE"),
            Ask::get("/reports/q3?_method=GET&_method=DELETE"),
            Ask::get("/reports/q3?_method=%44ELETE"),
        ] {
            let o = gate.ask(via, &ask).await;
            assert_eq!(
                (o.status, o.reason.as_deref()),
                (400, Some("malformed_request")),
                "{via:?} {} {:?}",
                ask.target,
                ask.headers
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn case_insensitive_matching_covers_every_case_spelling() {
    let yaml = yaml_with(ROUTES, "route_matching:\n  case_insensitive: true\n");
    let gate = Gate::start(&yaml).await;
    for via in EVERY_WAY {
        for target in [
            "/ADMIN/users",
            "/Admin/users",
            "/aDmIn",
            "/public/../ADMIN/x",
            "/%41dmin/x",
        ] {
            let o = gate.ask(via, &Ask::get(target).token(&plain())).await;
            assert_eq!(o.status, 403, "{via:?} {target}: {o:?}");
        }
        let o = gate.ask(via, &Ask::get("/PUBLIC/logo.png")).await;
        assert_eq!(o.status, 200, "{via:?} exempt in another case");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_declared_proxys_headers_name_the_original_request() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    // Every forwarded header any proxy uses, each claiming an exempt path, host and
    // method: whichever are not the declared proxy's must change nothing.
    for via in [Via::EnvoyHttp, Via::Nginx, Via::IngressNginx, Via::Traefik] {
        for (name, value) in LIES {
            // The declared proxy's own header is set by the proxy (Gate::ask puts it
            // first); a client's copy of it arrives as a second value.
            let mut ask = Ask::get("/admin/users").with(name, value);
            ask.method = "DELETE";
            let o = gate.ask(via, &ask).await;
            let trusted = matches!(
                (via, name),
                (
                    Via::Nginx,
                    "x-original-uri" | "x-original-method" | "x-original-host"
                ) | (Via::IngressNginx, "x-original-url" | "x-original-method")
                    | (
                        Via::Traefik,
                        "x-forwarded-uri" | "x-forwarded-method" | "x-forwarded-host"
                    )
            );
            let want = if trusted {
                (400, Some("malformed_request"))
            } else {
                (401, Some("missing_token"))
            };
            assert_eq!(
                (o.status, o.reason.as_deref()),
                want,
                "{via:?} with {name}: {value}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_header_missing_or_listing_two_values_is_refused() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    let valid = bearer(&plain());
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "nginx",
            vec![("x-original-method", "GET"), ("x-original-host", "h")],
        ),
        (
            "nginx",
            vec![("x-original-uri", "/api"), ("x-original-host", "h")],
        ),
        (
            "nginx",
            vec![("x-original-uri", "/api"), ("x-original-method", "GET")],
        ),
        (
            "nginx",
            vec![
                ("x-original-uri", "/api"),
                ("x-original-method", "GET, DELETE"),
                ("x-original-host", "h"),
            ],
        ),
        (
            "nginx",
            vec![
                ("x-original-uri", "/api"),
                ("x-original-method", "GET"),
                ("x-original-host", "a, b"),
            ],
        ),
        ("ingress-nginx", vec![("x-original-method", "GET")]),
        (
            "ingress-nginx",
            vec![("x-original-url", "/api"), ("x-original-method", "GET")],
        ),
        (
            "ingress-nginx",
            vec![
                ("x-original-url", "ftp://h/api"),
                ("x-original-method", "GET"),
            ],
        ),
        (
            "ingress-nginx",
            vec![
                ("x-original-url", "https://u@h/api"),
                ("x-original-method", "GET"),
            ],
        ),
        (
            "traefik",
            vec![("x-forwarded-uri", "/api"), ("x-forwarded-host", "h")],
        ),
        (
            "traefik",
            vec![("x-forwarded-method", "GET"), ("x-forwarded-host", "h")],
        ),
        (
            "traefik",
            vec![("x-forwarded-method", "GET"), ("x-forwarded-uri", "/api")],
        ),
    ];
    for (proxy, headers) in cases {
        let mut all: Vec<(&str, String)> = vec![
            ("host", "tokengate".into()),
            ("authorization", valid.clone()),
        ];
        all.extend(headers.iter().map(|(k, v)| (*k, v.to_string())));
        let o = raw_http(&gate.servers[proxy], "GET", "/authz", &all).await;
        assert_eq!(
            (o.status, o.reason.as_deref()),
            (400, Some("malformed_request")),
            "{proxy}: {headers:?}"
        );
    }
    // Envoy mode: a Host that disagrees with the request target's authority.
    let o = raw_http(
        &gate.servers["envoy"],
        "GET",
        "http://www.example.com/authz/billing/x",
        &[("host", "api.example.com".into())],
    )
    .await;
    assert_eq!(
        (o.status, o.reason.as_deref()),
        (400, Some("malformed_request"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_parameter_sent_twice_is_malformed_on_both_transports() {
    let extra = "";
    let yaml = yaml_with(ROUTES, extra).replace(
        "providers:",
        "tokens:\n  sources:\n    - header: authorization\n      scheme: Bearer\n    - query: access_token\nproviders:",
    );
    let gate = Gate::start(&yaml).await;
    let (a, b) = (plain(), token("ec256", "bob", json!({})));
    for via in EVERY_WAY {
        let once = format!("/api/items?access_token={a}");
        assert_eq!(
            gate.ask(via, &Ask::get(&once)).await.status,
            200,
            "{via:?} control"
        );
        for twice in [
            format!("/api/items?access_token={a}&access_token={b}"),
            format!("/api/items?access_token={a}&access_token={a}"),
            format!("/api/items?access_token={a}&%61ccess_token={b}"),
        ] {
            let o = gate.ask(via, &Ask::get(&twice)).await;
            assert_eq!(
                (o.status, o.reason.as_deref()),
                (401, Some("malformed")),
                "{via:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_that_is_no_header_value_is_never_forwarded_on_either_transport() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    for bad in [
        "alice\r\nx-admin: 1",
        "alice\n",
        "al\0ice",
        "al\tice",
        "al\u{1}ice",
        "al\u{7f}ice",
    ] {
        let t = token("ec256", bad, json!({"tid": "acme"}));
        for via in [Via::Grpc, Via::EnvoyHttp] {
            let o = gate.ask(via, &Ask::get("/api/items").token(&t)).await;
            assert_eq!(o.status, 200, "{via:?} {bad:?}");
            assert!(
                !o.upstream.contains_key("x-user-id") || o.upstream["x-user-id"].is_empty(),
                "{via:?} {bad:?}: {o:?}"
            );
            assert!(
                o.removed.iter().any(|h| h == "x-user-id"),
                "{via:?} {bad:?}: {o:?}"
            );
            assert_eq!(
                o.upstream.get("x-tenant-id").map(String::as_str),
                Some("acme"),
                "{via:?}"
            );
        }
    }
    // UTF-8 beyond ASCII is a valid header value, and forwarded alike on both.
    let t = token("ec256", "José", json!({}));
    let grpc = gate.ask(Via::Grpc, &Ask::get("/api/items").token(&t)).await;
    let http = gate
        .ask(Via::EnvoyHttp, &Ask::get("/api/items").token(&t))
        .await;
    assert_eq!(
        grpc.upstream.get("x-user-id").map(String::as_str),
        Some("José")
    );
    assert_eq!(
        http.upstream.get("x-user-id").map(String::as_str),
        Some("José")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_issued_in_the_future_is_not_yet_valid_and_cannot_outlive_logout_all() {
    let gate = Gate::start(&yaml_with(ROUTES, "")).await;
    let now = tokengate::jwt::now_unix();
    let server = &gate.servers["envoy"];
    let first = token("ec256", "erin", json!({}));
    let (status, body) = logout(server, "/v1/auth/logout-all", &first).await;
    assert_eq!(status, 200, "{body}");
    for via in [Via::Grpc, Via::EnvoyHttp] {
        for (iat, want) in [
            (now + 3600, "not_yet_valid"),
            (now + 60, "not_yet_valid"),
            (now + 3600 * 24 * 365, "not_yet_valid"),
        ] {
            let t = token("ec256", "erin", json!({"iat": iat, "exp": iat + 600}));
            let o = gate.ask(via, &Ask::get("/api/items").token(&t)).await;
            assert_eq!(
                (o.status, o.reason.as_deref()),
                (401, Some(want)),
                "{via:?} iat {iat}"
            );
        }
        // within the leeway (5 s in the test config) and after the cut-off: valid
        let t = token("ec256", "erin", json!({"iat": now + 2}));
        let o = gate.ask(via, &Ask::get("/api/items").token(&t)).await;
        assert_eq!(o.status, 200, "{via:?}: {o:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_listed_token_types_pass_when_a_provider_lists_them() {
    let yaml = yaml_with(ROUTES, "").replace(
        "    leeway_seconds: 5\n",
        "    leeway_seconds: 5\n    token_types: [at+jwt]\n",
    );
    let gate = Gate::start(&yaml).await;
    let (alg, key) = signing_key("ec256");
    let with_typ = |typ: Option<&str>| {
        let mut header = json!({"alg": "ES256", "kid": "ec256"});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        sign(header, claims("alice"), alg, &key)
    };
    for via in [Via::Grpc, Via::EnvoyHttp] {
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            let o = gate
                .ask(via, &Ask::get("/api/items").token(&with_typ(Some(typ))))
                .await;
            assert_eq!(o.status, 200, "{via:?} typ {typ}");
        }
        for typ in [
            Some("JWT"),
            Some("id_token+jwt"),
            Some("at+jwt+x"),
            Some("application/jwt"),
            Some(""),
            None,
        ] {
            let o = gate
                .ask(via, &Ask::get("/api/items").token(&with_typ(typ)))
                .await;
            assert_eq!(
                (o.status, o.reason.as_deref()),
                (401, Some("wrong_token_type")),
                "{via:?} typ {typ:?}"
            );
        }
    }
}

/// A cookie token reaches the state-changing endpoints only on requests no browser
/// sends cross-site unasked.
#[tokio::test(flavor = "multi_thread")]
async fn cookie_tokens_need_a_non_simple_type_or_an_allowed_origin_to_change_state() {
    let yaml = yaml_with(ROUTES, "csrf:\n  allowed_origins: [\"https://app.example.com\"]\n").replace(
        "providers:",
        "tokens:\n  sources:\n    - header: authorization\n      scheme: Bearer\n    - cookie: at\nproviders:",
    );
    let server = TestServer::start(&yaml).await;
    let http = reqwest::Client::new();
    for path in ["/v1/auth/logout", "/v1/auth/logout-all"] {
        let refused: Vec<Vec<(&'static str, &'static str)>> = vec![
            vec![],
            vec![("content-type", "text/plain")],
            vec![("content-type", "application/x-www-form-urlencoded")],
            vec![("content-type", "multipart/form-data; boundary=x")],
            vec![("origin", "https://evil.example")],
            vec![("origin", "https://app.example.com.evil.example")],
            vec![("origin", "null")],
            vec![
                ("content-type", "text/plain"),
                ("origin", "https://evil.example"),
            ],
        ];
        // A fresh user per request: a logout-all must not revoke the next request's token.
        let post = |extra: Vec<(&'static str, &'static str)>| {
            let t = token("ec256", &uuid(), json!({}));
            let mut req = http
                .post(server.http_url(path))
                .header("cookie", format!("at={t}"));
            for (k, v) in &extra {
                req = req.header(*k, *v);
            }
            async move {
                let resp = req.send().await.expect("answer");
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                (t, status, body)
            }
        };
        for extra in refused {
            let (t, status, body) = post(extra.clone()).await;
            assert_eq!(
                (status, body["reason"].as_str()),
                (403, Some("cross_site_request")),
                "{path} {extra:?}"
            );
            // and the token was not revoked
            let mut c = server.grpc().await;
            assert!(
                check_token(&mut c, &t).await.allowed(),
                "{path} {extra:?} revoked anyway"
            );
        }
        let accepted: Vec<Vec<(&'static str, &'static str)>> = vec![
            vec![("content-type", "application/json")],
            vec![("origin", "https://app.example.com")],
            vec![
                ("content-type", "text/plain"),
                ("origin", "https://app.example.com"),
            ],
        ];
        for extra in accepted {
            let (_, status, body) = post(extra.clone()).await;
            assert_eq!(status, 200, "{path} {extra:?}: {body}");
        }
        // a bearer header is no ambient credential: no CSRF rule
        let t = token("ec256", "grace", json!({}));
        let status = http
            .post(server.http_url(path))
            .header("authorization", bearer(&t))
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16();
        assert_eq!(status, 200, "{path} bearer");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hmac_secret_file_with_crlf_verifies_the_tokens_of_the_secret() {
    let dir = support::redis::TempDir::new("crlf");
    let secret = "0123456789abcdef0123456789abcdef-crlf";
    let mut served = Vec::new();
    for (name, text) in [
        ("lf", format!("{secret}\n")),
        ("crlf", format!("{secret}\r\n")),
        ("none", secret.to_string()),
    ] {
        let path = dir.0.join(name);
        std::fs::write(&path, text).expect("write secret");
        let yaml = format!(
            "listen:\n  grpc: 127.0.0.1:0\n  http: 127.0.0.1:0\n  admin: 127.0.0.1:0\n\
             providers:\n  - name: t\n    algorithms: [HS256]\n    keys:\n      - secret_file: {}\n\
             log:\n  level: warn\n",
            path.display()
        );
        served.push((name, TestServer::start(&yaml).await));
    }
    let t = sign(
        json!({"alg": "HS256"}),
        claims("hank"),
        Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    );
    for (name, server) in &served {
        let mut c = server.grpc().await;
        let a = check_token(&mut c, &t).await;
        assert!(a.allowed(), "secret file ending {name}: {:?}", a.reason());
    }
}

/// The ways a server behind tokengate might resolve a path: each combination of
/// decoding once or not, reading `\` as `/` or not, dropping `;params` or not, merging
/// slashes or not; dot segments always removed (RFC 3986 §5.2.4). Written here, apart
/// from src/decision/canonical.rs, as the model the canonicaliser is held to.
fn resolutions(path: &str) -> Vec<String> {
    let decode = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if b[i] == b'%' && i + 2 < b.len() {
                if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let mut all = Vec::new();
    for decoded in [false, true] {
        for backslash in [false, true] {
            for params in [false, true] {
                for merge in [false, true] {
                    let mut s = if decoded {
                        decode(path)
                    } else {
                        path.to_string()
                    };
                    if backslash {
                        s = s.replace('\\', "/");
                    }
                    let mut out: Vec<&str> = Vec::new();
                    for seg in s.split('/').skip(1) {
                        let seg = if params {
                            seg.split(';').next().unwrap_or("")
                        } else {
                            seg
                        };
                        match seg {
                            "." => {}
                            "" if merge => {}
                            ".." => {
                                out.pop();
                            }
                            s => out.push(s),
                        }
                    }
                    all.push(format!("/{}", out.join("/")));
                }
            }
        }
    }
    all
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

fn path_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let atom = prop::sample::select(vec![
        "admin",
        "public",
        "api",
        "users",
        ".",
        "..",
        "",
        "%2e",
        "%2E%2e",
        ".%2e",
        "..;",
        "..;x=1",
        ";x",
        "admin;p",
        "public;p",
        "%61dmin",
        "%70ublic",
        "%2f",
        "..%2f",
        "%5c",
        "\\",
        "..\\admin",
        "%252e",
        "%2e%2e%2fadmin",
        "ADMIN",
        "Public",
    ]);
    let sep = prop::sample::select(vec!["/", "/", "/", "\\", "%2f", "//"]);
    prop::collection::vec((sep, atom), 1..7).prop_map(|parts| {
        let mut p = String::new();
        for (i, (sep, atom)) in parts.into_iter().enumerate() {
            p.push_str(if i == 0 { "/" } else { sep });
            p.push_str(atom);
        }
        p
    })
}

/// No generated path that any resolution above puts outside `/public` is allowed without
/// a token, and none that any resolution puts under `/admin` is allowed without the
/// `admin` scope.
#[test]
fn property_no_resolution_of_a_protected_path_is_allowed_without_what_it_requires() {
    use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
    use tokengate::decision::{Decision, Request};
    use tokengate::metrics::Transport;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(TestServer::start(&yaml_with(ROUTES, "")));
    let engine = server.engine.clone();
    let plain = reqwest::header::HeaderMap::from_iter([(
        reqwest::header::AUTHORIZATION,
        bearer(&plain()).parse().expect("header"),
    )]);
    let none = reqwest::header::HeaderMap::new();
    let decide = |path: &str, headers: &reqwest::header::HeaderMap| {
        rt.block_on(engine.check(&Request {
            transport: Transport::Grpc,
            method: "GET",
            path,
            host: Some("app.example.com"),
            scheme: None,
            client_cert: None,
            headers,
            required_scopes: None,
            request_id: None,
        }))
    };
    let mut runner = TestRunner::new(PtConfig {
        cases: 3000,
        ..PtConfig::default()
    });
    runner
        .run(&path_strategy(), |path| {
            let resolved = resolutions(&path);
            let allowed = |d: Decision| matches!(d, Decision::Allow(_));
            if resolved.iter().any(|r| !under(r, "/public")) && allowed(decide(&path, &none)) {
                return Err(TestCaseError::fail(format!(
                    "{path:?} allowed without a token; resolves to {resolved:?}"
                )));
            }
            if resolved.iter().any(|r| under(r, "/admin")) && allowed(decide(&path, &plain)) {
                return Err(TestCaseError::fail(format!(
                    "{path:?} allowed without the admin scope; resolves to {resolved:?}"
                )));
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    drop(server);
}

/// Fail-open is for Check only: with `on_store_error: allow` and Redis down, a Check is
/// allowed (and counted), but introspection never vouches for a token whose revocation
/// state nobody could read (503), and it accepts `basic` in any case.
#[tokio::test(flavor = "multi_thread")]
async fn introspection_never_vouches_blind_even_when_checks_fail_open() {
    use support::redis::{RedisServer, TempDir};
    let mut redis = RedisServer::start();
    let dir = TempDir::new("introspect");
    let secret = dir.0.join("client.secret");
    std::fs::write(&secret, "introspection-secret-0123456789\r\n").expect("secret");
    let store = support::redis::store_yaml(&redis.url(), "  on_store_error: allow\n");
    let yaml = format!(
        "{}oauth:\n  introspection_clients:\n    - id: api\n      secret_file: {}\n",
        config_yaml(&store),
        secret.display()
    );
    let server = TestServer::start(&yaml).await;
    let t = token("ec256", "ivan", json!({}));
    let http = reqwest::Client::new();
    let introspect = |scheme: &'static str, t: String| {
        let (http, url) = (http.clone(), server.http_url("/v1/oauth/introspect"));
        async move {
            use base64::Engine as _;
            let creds = base64::engine::general_purpose::STANDARD
                .encode("api:introspection-secret-0123456789");
            let resp = http
                .post(url)
                .header("authorization", format!("{scheme} {creds}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("token={t}"))
                .send()
                .await
                .expect("introspection answers");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for scheme in ["Basic", "basic", "BASIC"] {
        let (status, body) = introspect(scheme, t.clone()).await;
        assert_eq!(
            (status, body["active"].as_bool()),
            (200, Some(true)),
            "{scheme}: {body}"
        );
    }
    redis.kill();
    let mut grpc = server.grpc().await;
    let fresh = token("ec256", "judy", json!({}));
    assert!(
        check_token(&mut grpc, &fresh).await.allowed(),
        "Check fails open"
    );
    // a token the cache knows nothing of: its revocation state cannot be read
    let (status, body) = introspect("Basic", token("ec256", "kate", json!({}))).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
}
