//! Criterion microbenchmarks of the decision pipeline, no sockets involved:
//!
//! - `check/hit/{alg}`: `Engine::check` on a token seen before: verified-token cache hit
//!   and revocation cache hit (the steady state of a warm sidecar);
//! - `check/verify/{alg}`: the signature verified every time (verified-token cache off),
//!   revocation cache hit;
//! - `check/miss/{alg}`: a token never seen: signature work, a revocation cache miss and
//!   a call to the (memory) store, then the cache inserts;
//! - `grpc/hit/ES256`: the whole per-request work of the gRPC transport minus the socket:
//!   decode the `CheckRequest` bytes, `grpc::answer`, write the encoded `CheckResponse`;
//! - `grpc/bare`: the same decode/encode with an allow built by hand (what the bare
//!   server of scripts/bench.sh does): the floor under `grpc/hit`.
//!
//! Engines are built by `tokengate::Server::bind` from a configuration accepting HS256,
//! RS256, ES256 and EdDSA with the fixture keys (like tests/it/support `config_yaml`), memory
//! store. Run: `cargo bench --bench decision` (add `-- check/hit` to filter).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse, OkHttpResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use prost::Message;
use tokengate::config::Config;
use tokengate::decision::{Decision, Engine, Request};
use tokengate::jwt::mint::{mint_with, MintRequest};
use tokengate::jwt::Verifier;
use tokengate::metrics::Transport;
use tokio::runtime::Runtime;

const ALGS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];
const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "bench-api";

fn keys() -> String {
    format!("{}/tests/fixtures/keys", env!("CARGO_MANIFEST_DIR"))
}

fn key_lines(alg: &str) -> (&'static str, String) {
    let k = keys();
    match alg {
        "HS256" => ("hs", format!("secret_file: {k}/hs.secret")),
        "RS256" => (
            "rsa",
            format!("public_key_file: {k}/rsa-public.pem\n        private_key_file: {k}/rsa-private.pem"),
        ),
        "ES256" => (
            "ec256",
            format!("public_key_file: {k}/ec256-public.pem\n        private_key_file: {k}/ec256-private.pem"),
        ),
        "EdDSA" => (
            "ed",
            format!("public_key_file: {k}/ed25519-public.pem\n        private_key_file: {k}/ed25519-private.pem"),
        ),
        other => panic!("no fixture key for {other}"),
    }
}

/// One provider accepting the four algorithms, memory store.
fn engine_config(verified_cache_entries: u64) -> Config {
    let keys: String = ALGS
        .iter()
        .map(|a| {
            let (kid, lines) = key_lines(a);
            format!("      - kid: {kid}\n        {lines}\n")
        })
        .collect();
    let yaml = format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
  - name: bench
    issuer: {ISSUER}
    audiences: [{AUDIENCE}]
    algorithms: [HS256, RS256, ES256, EdDSA]
    keys:
{keys}
tokens:
  verified_cache_entries: {verified_cache_entries}
revocation:
  store: memory
  cache:
    ttl_seconds: 3600
log:
  level: warn
"#
    );
    Config::parse("benches/decision.rs", &yaml).expect("bench config parses")
}

/// Mints with one algorithm's fixture key.
struct Minter {
    config: Config,
    verifier: Verifier,
}

impl Minter {
    fn new(alg: &str) -> Self {
        let (kid, lines) = key_lines(alg);
        let yaml = format!(
            "providers:\n  - name: bench\n    issuer: {ISSUER}\n    audiences: [{AUDIENCE}]\n    algorithms: [{alg}]\n    keys:\n      - kid: {kid}\n        {lines}\n"
        );
        let config = Config::parse("mint", &yaml).expect("mint config");
        let verifier = Verifier::from_config(&config).expect("mint keys");
        Minter { config, verifier }
    }

    fn mint(&self, i: usize) -> String {
        let req = MintRequest {
            provider: None,
            sub: format!("user-{i:07}"),
            tenant: Some(format!("tenant-{:02}", i % 16)),
            ttl_seconds: 3600,
            claims: Vec::new(),
        };
        mint_with(&self.verifier, &self.config, &req).expect("mint")
    }

    /// `n` distinct tokens, minted on every core (RSA signing is slow).
    fn pool(&self, n: usize) -> Vec<String> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = n.div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|from| {
                    s.spawn(move || {
                        (from..(from + chunk).min(n))
                            .map(|i| self.mint(i))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    }
}

fn engine(rt: &Runtime, verified_cache_entries: u64) -> (tokengate::Server, Arc<Engine>) {
    rt.block_on(async {
        let server = tokengate::Server::bind(&engine_config(verified_cache_entries))
            .await
            .expect("engine builds");
        let engine = server.engine().clone();
        (server, engine)
    })
}

fn headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

async fn check_allowed(engine: &Engine, h: &HeaderMap) {
    let req = Request {
        transport: Transport::Grpc,
        method: "GET",
        path: "/api/items",
        host: None,
        headers: h,
        required_scopes: None,
        request_id: None,
    };
    match engine.check(&req).await {
        Decision::Allow(_) => {}
        Decision::Deny(d) => panic!("bench token denied: {:?}", d.reason),
    }
}

fn check_request(token: &str) -> CheckRequest {
    let headers: HashMap<String, String> = [
        (":authority", "app.bench.local".to_string()),
        (":method", "GET".to_string()),
        (":path", "/api/items".to_string()),
        (":scheme", "http".to_string()),
        ("accept", "*/*".to_string()),
        ("user-agent", "bench/1.0".to_string()),
        ("x-forwarded-proto", "http".to_string()),
        (
            "x-request-id",
            "00000000-0000-4000-8000-000000000001".to_string(),
        ),
        ("authorization", format!("Bearer {token}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    id: "0000001".into(),
                    method: "GET".into(),
                    path: "/api/items".into(),
                    host: "app.bench.local".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn bench_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut hit = c.benchmark_group("check/hit");
    hit.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let (_server, warm) = engine(&rt, 100_000);
    for alg in ALGS {
        let h = headers(&Minter::new(alg).mint(0));
        rt.block_on(check_allowed(&warm, &h));
        hit.bench_function(BenchmarkId::from_parameter(alg), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        check_allowed(&warm, &h).await;
                    }
                    t.elapsed()
                })
            })
        });
    }
    hit.finish();

    let mut verify = c.benchmark_group("check/verify");
    verify
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let (_server2, unverified) = engine(&rt, 0);
    for alg in ALGS {
        let h = headers(&Minter::new(alg).mint(1));
        rt.block_on(check_allowed(&unverified, &h));
        verify.bench_function(BenchmarkId::from_parameter(alg), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        check_allowed(&unverified, &h).await;
                    }
                    t.elapsed()
                })
            })
        });
    }
    verify.finish();

    // Every iteration a token this engine never saw: chunks of a pre-minted pool, each
    // chunk against a fresh engine (built outside the timed section).
    let mut miss = c.benchmark_group("check/miss");
    miss.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for alg in ALGS {
        let pool_size = if alg == "RS256" { 2_000 } else { 20_000 };
        let pool: Vec<HeaderMap> = Minter::new(alg)
            .pool(pool_size)
            .iter()
            .map(|t| headers(t))
            .collect();
        miss.bench_function(BenchmarkId::from_parameter(alg), |b| {
            b.iter_custom(|iters| {
                let mut left = iters as usize;
                let mut spent = Duration::ZERO;
                while left > 0 {
                    let n = left.min(pool.len());
                    let (server, fresh) = engine(&rt, 100_000);
                    spent += rt.block_on(async {
                        let t = Instant::now();
                        for h in &pool[..n] {
                            check_allowed(&fresh, h).await;
                        }
                        t.elapsed()
                    });
                    drop((server, fresh));
                    left -= n;
                }
                spent
            })
        });
    }
    miss.finish();

    let mut grpc = c.benchmark_group("grpc");
    grpc.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let body = check_request(&Minter::new("ES256").mint(2)).encode_to_vec();
    let decode = || CheckRequest::decode(body.as_slice()).expect("decodes");
    let first = rt.block_on(tokengate::grpc::check_once(&warm, decode()));
    assert_eq!(
        first.status.map(|s| s.code),
        Some(0),
        "grpc bench token allowed"
    );
    grpc.bench_function("hit/ES256", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                let mut out = Vec::with_capacity(1024);
                for _ in 0..iters {
                    let answer = tokengate::grpc::answer(&warm, decode()).await;
                    out.clear();
                    answer.write(&mut out).expect("encodes");
                    std::hint::black_box(&out);
                }
                t.elapsed()
            })
        })
    });
    grpc.bench_function("bare", |b| {
        b.iter(|| {
            let req = decode();
            std::hint::black_box(&req);
            let resp = CheckResponse {
                status: Some(envoy_types::pb::google::rpc::Status::default()),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
                dynamic_metadata: None,
            };
            std::hint::black_box(resp.encode_to_vec())
        })
    });
    grpc.finish();
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
