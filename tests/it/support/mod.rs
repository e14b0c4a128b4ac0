//! Test harness: a tokengate server in-process on free loopback ports, a real tonic
//! client and a real HTTP client against it, fixture keys, and token builders (including
//! hostile ones that no honest signer would produce).

pub mod certs;
pub mod check_recorder;
pub mod envoy;
pub mod fastpath;
pub mod forwarded;
pub mod issuers;
pub mod logs;
pub mod nginx;
pub mod oidc;
pub mod otel;
pub mod outage;
pub mod procs;
pub mod proxy;
pub mod redis;
pub mod sentinel;
pub mod serve;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tokengate::config::Config;
use tokengate::decision::Engine;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "api";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn key_path(name: &str) -> String {
    fixture(&format!("keys/{name}")).display().to_string()
}

pub fn read_key(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("keys/{name}"))).expect("fixture key")
}

/// The test configuration: one provider accepting every supported family, each key with
/// its own `kid`, the memory store, and free ports. `store` is spliced in verbatim
/// under `revocation:` so the same suite can run against other stores.
pub fn config_yaml(store: &str) -> String {
    format!(
        r#"
listen:
  grpc: 127.0.0.1:0
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
providers:
  - name: test
    issuer: {ISSUER}
    audiences: [{AUDIENCE}, other-api]
    algorithms: [HS256, RS256, PS256, ES256, ES384, EdDSA]
    leeway_seconds: 5
    keys:
      - kid: hs
        secret_file: {hs}
      - kid: rsa
        public_key_file: {rsa_pub}
        private_key_file: {rsa_priv}
      - kid: ec256
        public_key_file: {ec_pub}
        private_key_file: {ec_priv}
      - kid: ec384
        public_key_file: {ec384_pub}
        private_key_file: {ec384_priv}
      - kid: ed
        public_key_file: {ed_pub}
        private_key_file: {ed_priv}
routes:
  - path_prefix: /public
    exempt: true
  - path_prefix: /admin
    require_scopes: [admin]
revocation:
{store}
server:
  shutdown_grace_seconds: 5
log:
  level: warn
"#,
        hs = key_path("hs.secret"),
        rsa_pub = key_path("rsa-public.pem"),
        rsa_priv = key_path("rsa-private.pem"),
        ec_pub = key_path("ec256-public.pem"),
        ec_priv = key_path("ec256-private.pem"),
        ec384_pub = key_path("ec384-public.pem"),
        ec384_priv = key_path("ec384-private.pem"),
        ed_pub = key_path("ed25519-public.pem"),
        ed_priv = key_path("ed25519-private.pem"),
    )
}

pub const MEMORY_STORE: &str = "  store: memory";

/// `yaml` with the HTTP-mode check trusting `proxy`'s forwarded headers
/// (`envoy`, `nginx`, `ingress-nginx`, `traefik`).
pub fn behind(proxy: &str, yaml: &str) -> String {
    format!("{yaml}http_check:\n  proxy: {proxy}\n")
}

pub fn parse(yaml: &str) -> Config {
    Config::parse("test.yaml", yaml).expect("test config parses")
}

/// A running tokengate, stopped when dropped.
pub struct TestServer {
    pub addrs: tokengate::Addrs,
    pub config: Config,
    pub engine: Arc<Engine>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), tokengate::RunError>>>,
}

impl TestServer {
    pub async fn start(yaml: &str) -> Self {
        Self::start_config(parse(yaml)).await
    }

    pub async fn start_config(config: Config) -> Self {
        let s = Self::start_unready(config).await;
        s.wait_ready().await;
        s
    }

    /// Starts without waiting for readiness (e.g. to watch it wait for a store).
    pub async fn start_unready(config: Config) -> Self {
        let server = tokengate::Server::bind(&config)
            .await
            .expect("server binds");
        let addrs = server.addrs();
        let engine = server.engine().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        TestServer {
            addrs,
            config,
            engine,
            shutdown,
            task: Some(task),
        }
    }

    /// Waits until `/readyz` answers 200 with its store answering too. A fail-open
    /// replica is ready before its store connects (it can answer without one), and
    /// `/readyz` names the store while it does not answer: a test that then writes a
    /// revocation would meet a store still connecting.
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.addrs.admin);
        wait_for("tokengate /readyz", Duration::from_secs(10), || async {
            let Ok(r) = reqwest::get(&url).await else {
                return false;
            };
            r.status() == 200
                && r.json::<Value>()
                    .await
                    .is_ok_and(|body| body.get("store").is_none())
        })
        .await;
    }

    /// A `grpc.health.v1` client on the gRPC listener.
    pub async fn health(&self) -> tonic_health::pb::health_client::HealthClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addrs.grpc))
            .expect("grpc address")
            .connect()
            .await
            .expect("grpc connects");
        tonic_health::pb::health_client::HealthClient::new(channel)
    }

    pub async fn grpc(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.addrs.grpc))
            .await
            .expect("grpc connects")
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addrs.http, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addrs.admin, path)
    }

    /// One series (`name{labels}` exactly as exposed) from a fresh scrape; 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("scrape body");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The private key and algorithm of a fixture key ("hs", "rsa", "ps", "ec256", "ec384",
/// "ed", "rsa2": see `tokengate_tools::fixture::KEYS`).
pub fn signing_key(name: &str) -> (Algorithm, EncodingKey) {
    let key = fixture_key(name);
    let encoding = key
        .encoding_key(&fixture("keys"))
        .unwrap_or_else(|e| panic!("fixture key {name}: {e}"));
    (key.alg, encoding)
}

fn fixture_key(name: &str) -> &'static tokengate_tools::fixture::FixtureKey {
    tokengate_tools::fixture::named(name).unwrap_or_else(|| panic!("no fixture key {name}"))
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    tokengate_tools::fixture::alg_name(alg).unwrap_or_else(|| panic!("no name for {alg:?}"))
}

pub use tokengate_tools::request::bearer;
pub use tokengate_tools::token::b64;

/// Signs arbitrary header and payload JSON: for hostile tokens.
pub fn sign(header: Value, payload: Value, alg: Algorithm, key: &EncodingKey) -> String {
    tokengate_tools::token::sign(&header, &payload, alg, key).expect("sign")
}

/// Signs arbitrary header and payload bytes (not necessarily JSON).
pub fn sign_raw(header: &[u8], payload: &[u8], alg: Algorithm, key: &EncodingKey) -> String {
    tokengate_tools::token::sign_raw(header, payload, alg, key).expect("sign")
}

/// Decodes part `i` (0 header, 1 payload) of a token as JSON.
pub fn decode_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("b64")).expect("json")
}

/// Standard valid claims for hand-built tokens.
pub fn claims(sub: &str) -> Value {
    let now = tokengate::jwt::now_unix();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub,
        "iat": now, "exp": now + 600, "jti": uuid(),
    })
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `base` with `extra`'s claims merged in; a `null` in `extra` removes that claim.
pub fn with_claims(mut base: Value, extra: Value) -> Value {
    if let (Some(map), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

/// A valid token from the test provider signed with the fixture key `name` ("hs", "rsa",
/// "ps", "ec256", "ec384", "ed"); `extra` claims are merged in, a `null` removes one.
pub fn token(name: &str, sub: &str, extra: Value) -> String {
    let c = with_claims(claims(sub), extra);
    let (alg, key) = signing_key(name);
    sign(
        json!({"alg": alg_name(alg), "kid": fixture_key(name).kid, "typ": "JWT"}),
        c,
        alg,
        &key,
    )
}

/// A CheckRequest as Envoy sends it with default settings (lower-case `headers` map, a
/// repeated header's values joined by commas), with the request id `req-1`.
pub fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut req = tokengate_tools::request::check_request(method, path, "", headers);
    if let Some(http) = tokengate_tools::request::http_mut(&mut req) {
        http.id = "req-1".into();
    }
    req
}

/// A CheckRequest as Envoy sends it with `encode_raw_headers: true`: values only in
/// `raw_value`, repeated headers not merged.
pub fn check_request_raw(method: &str, path: &str, headers: &[(&str, &[u8])]) -> CheckRequest {
    let list = headers
        .iter()
        .map(|(k, v)| HeaderValue {
            key: k.to_string(),
            value: String::new(),
            raw_value: v.to_vec(),
        })
        .collect();
    tokengate_tools::request::wrap(HttpRequest {
        id: "req-raw".into(),
        method: method.into(),
        path: path.into(),
        header_map: Some(HeaderMap { headers: list }),
        ..Default::default()
    })
}

/// A Check answer reduced to what tests assert on.
#[derive(Debug)]
pub struct Answer {
    pub grpc_code: i32,
    pub http_status: Option<i32>,
    /// Headers of the allow (to set upstream) or deny (to the client) response.
    pub headers: Vec<(String, String, i32)>,
    pub headers_to_remove: Vec<String>,
    pub body: String,
    pub metadata: Option<envoy_types::pb::google::protobuf::Struct>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _, _)| k == name)
            .map(|(_, v, _)| v.as_str())
    }

    pub fn reason(&self) -> Option<String> {
        let v: Value = serde_json::from_str(&self.body).ok()?;
        v.get("reason")?.as_str().map(str::to_string)
    }

    pub fn allowed(&self) -> bool {
        self.grpc_code == 0
    }
}

pub async fn check(client: &mut AuthorizationClient<Channel>, req: CheckRequest) -> Answer {
    let resp: CheckResponse = client.check(req).await.expect("Check answers").into_inner();
    answer_of(resp)
}

/// A Check whose `headers` map carries `headers` as bytes, repeats joined with commas as
/// Envoy joins them. Envoy's map is `map<string, string>`, yet a value it copies from
/// the request may not be UTF-8, which envoy-types' typed map cannot carry: sent here as
/// raw wire bytes (tokengate's own partial message, `grpc::wire`, encodes them).
pub async fn check_bytes_map(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Answer {
    use tokengate::grpc::wire;
    let mut merged: Vec<wire::Header> = Vec::new();
    for (k, v) in headers {
        match merged.iter_mut().find(|h| h.key[..] == *k.as_bytes()) {
            Some(h) => h.value = [&h.value[..], b",", v].concat().into(),
            None => merged.push(wire::Header {
                key: k.as_bytes().to_vec().into(),
                value: v.to_vec().into(),
            }),
        }
    }
    let check = wire::Check {
        attributes: Some(wire::Attributes {
            request: Some(wire::AttributeRequest {
                http: Some(wire::HttpRequest {
                    id: "req-bytes".into(),
                    method: method.into(),
                    path: path.into(),
                    headers: merged,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("grpc connects");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("grpc ready");
    let codec = tonic_prost::ProstCodec::<wire::Check, CheckResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/envoy.service.auth.v3.Authorization/Check",
    );
    let resp = grpc
        .unary(tonic::Request::new(check), path, codec)
        .await
        .expect("Check answers");
    answer_of(resp.into_inner())
}

fn answer_of(resp: CheckResponse) -> Answer {
    let status = resp.status.expect("status is always set");
    let mut answer = Answer {
        grpc_code: status.code,
        http_status: None,
        headers: vec![],
        headers_to_remove: vec![],
        body: String::new(),
        metadata: resp.dynamic_metadata,
    };
    match resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            answer.headers = flatten(&ok.headers);
            answer.headers_to_remove = ok.headers_to_remove;
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            answer.http_status = d.status.map(|s| s.code);
            answer.headers = flatten(&d.headers);
            answer.body = d.body;
        }
        Some(HttpResponse::ErrorResponse(_)) | None => {}
    }
    answer
}

fn flatten(h: &[envoy_types::ext_authz::v3::pb::HeaderValueOption]) -> Vec<(String, String, i32)> {
    h.iter()
        .filter_map(|o| {
            let hv = o.header.as_ref()?;
            Some((hv.key.clone(), hv.value.clone(), o.append_action))
        })
        .collect()
}

/// Checks a token the way Envoy would, on a protected path.
pub async fn check_token(client: &mut AuthorizationClient<Channel>, token: &str) -> Answer {
    let auth = bearer(token);
    check(
        client,
        check_request("GET", "/api/items", &[("authorization", &auth)]),
    )
    .await
}

/// How long a revocation may take to reach another replica before a test calls it lost.
/// Generous, and far below the 600 s cache TTL the propagation tests configure: a deny
/// within it can still only come from the invalidation path under test. How fast it is
/// is measured by scripts/bench.sh (`propagation`), not asserted.
pub const PROPAGATION: Duration = Duration::from_secs(30);

/// Waits until `cond` holds, polling; panics with `what` after `deadline`.
pub async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A loopback port that was free a moment ago: bound, then released, so another process
/// can take it before the caller binds it. Only for servers that cannot be handed a
/// socket or report the port they bound (redis-server, nginx): their starters retry on
/// another port when the start fails on a taken one. Everything else binds port 0 and
/// reads the port back (tokengate from its start-up line, `support::serve`; Envoy from
/// `--admin-address-path`; the OpenID provider from its issuer file).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a: SocketAddr| a.port())
        .expect("free port")
}

/// Sends `GET target` to `addr` with the request target exactly as given (an HTTP client
/// library would resolve `..` and some escapes itself); returns the status and the whole
/// raw response.
pub async fn raw_get(
    addr: SocketAddr,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut all = vec![("host", host)];
    all.extend_from_slice(headers);
    raw_request(addr, "GET", target, &all).await
}

/// One HTTP/1.1 request with the request line and the header lines exactly as given
/// (`host` included by the caller, `connection: close` added); returns the status and
/// the whole raw response.
pub async fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("connection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("send");
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.expect("receive");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    (status, response)
}

/// Logs out `token` through the HTTP listener and returns (status, body).
/// Sends `method url` with `headers` (`header` appends: a name given twice is sent
/// twice); returns status, headers and the JSON body. A body that is not JSON fails the
/// test with `proxy_log()`, the log of the proxy the request went through.
pub async fn send_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    headers: &[(&str, &str)],
    proxy_log: impl FnOnce() -> String,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client.request(method, &url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request through the proxy");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!(
            "{url}: body is not JSON ({status}): {text:?}\nproxy log:\n{}",
            proxy_log()
        )
    });
    (status, headers, body)
}

pub async fn logout(server: &TestServer, path: &str, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(server.http_url(path))
        .header("authorization", bearer(token))
        .send()
        .await
        .expect("logout request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}
