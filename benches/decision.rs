//! Criterion microbenchmarks of the decision pipeline, no sockets involved:
//!
//! - `check/hit/{alg}`: `Engine::check` on a token seen before: verified-token cache hit
//!   and revocation cache hit (the steady state of a warm sidecar);
//! - `check/verify/{alg}`: the signature verified every time (verified-token cache off),
//!   revocation cache hit;
//! - `check/miss/{alg}`: a token never seen: signature work, a revocation cache miss and
//!   a call to the (memory) store, then the cache inserts;
//! - `grpc/hit/ES256`: the whole per-request work of the gRPC transport minus the socket:
//!   decode the parts of the `CheckRequest` tokengate reads (`grpc::wire::Check`),
//!   `grpc::answer`, write the encoded `CheckResponse`;
//! - `grpc/bare`: the whole `CheckRequest` decoded and an allow built by hand and
//!   encoded (what the bare server of scripts/bench.sh does).
//!
//! Engines are built by `tokengate::Server::bind` from a configuration accepting HS256,
//! RS256, ES256 and EdDSA with the fixture keys, memory store. Tokens and the
//! `CheckRequest` come from `tokengate_tools` (what `gen_requests` feeds scripts/bench.sh).
//! Run: `cargo bench --bench decision` (add `-- check/hit` to filter).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse, OkHttpResponse};
use prost::Message;
use tokengate::config::Config;
use tokengate::decision::{Decision, Engine, Request};
use tokengate::metrics::Transport;
use tokengate_tools::fixture;
use tokengate_tools::request::bench_request;
use tokengate_tools::token::{Minter, Population};
use tokio::runtime::Runtime;

const ALGS: [&str; 4] = ["HS256", "RS256", "ES256", "EdDSA"];
const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "bench-api";

/// One provider accepting the four algorithms, memory store.
fn engine_config(verified_cache_entries: u64) -> Config {
    let keys: Vec<_> = ALGS
        .iter()
        .map(|a| fixture::for_alg(a).expect("a fixture key"))
        .collect();
    let provider = fixture::provider_yaml("bench", ISSUER, AUDIENCE, &keys, &fixture::dir());
    let yaml = format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
{provider}tokens:
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
fn minter(alg: &str) -> Minter {
    Minter::fixture(alg, &fixture::dir(), ISSUER, AUDIENCE).expect("mint keys")
}

/// Token `i` of the bench population (the tokens of scripts/bench.sh).
fn mint(alg: &str, i: usize) -> String {
    minter(alg)
        .numbered(&Population::default(), i)
        .expect("mint")
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
        scheme: None,
        client_cert: None,
        headers: h,
        required_scopes: None,
        request_id: None,
    };
    match engine.check(&req).await {
        Decision::Allow(_) => {}
        Decision::Deny(d) => panic!("bench token denied: {:?}", d.reason),
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
        let h = headers(&mint(alg, 0));
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
        let h = headers(&mint(alg, 1));
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
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool: Vec<HeaderMap> = minter(alg)
            .pool(&Population::default(), pool_size, threads)
            .expect("mint")
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
    let body = bench_request(&mint("ES256", 2), 1).encode_to_vec();
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
                    let check =
                        tokengate::grpc::wire::Check::decode(body.as_slice()).expect("decodes");
                    let answer = tokengate::grpc::answer(&warm, &check).await;
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
