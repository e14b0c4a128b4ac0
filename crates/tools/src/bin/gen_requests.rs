//! Benchmark inputs: mints distinct tokens in-process (`tokengate::jwt::mint::mint_with`,
//! the code behind `tokengate token mint`) and writes, per token, the gRPC-framed
//! `CheckRequest` Envoy's ext_authz filter would send for a request carrying it.
//!
//! Outputs (any subset):
//! - `--tokens FILE`: one token per line (wrk's Lua script, the propagation example);
//! - `--requests FILE`: every request as a gRPC length-prefixed message (1 flag byte,
//!   4 length bytes, the protobuf), concatenated: self-delimiting, read by `loadgen`;
//! - `--single FILE`: the first request alone, an h2load `-d` body;
//! - `--jwks FILE`: the ES256 fixture public key as a JWKS (for Envoy's `jwt_authn`).
//!
//! Every token of a run has the same length (fixed-width `sub`, uuid `jti`, same-width
//! times), so every allow answer to them has the same size: scripts/bench.sh verifies
//! h2load runs by the exact number of response bytes.
//!
//!     cargo run --release -p tokengate-tools --bin gen_requests -- --alg ES256 --count 10000 \
//!         --keys tests/fixtures/keys --issuer https://issuer.bench --audience bench-api \
//!         --tokens es256.tokens --requests es256.grpc --single es256.one.grpc

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use clap::Parser;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use prost::Message;
use tokengate::config::Config;
use tokengate::jwt::mint::{mint_with, MintRequest};
use tokengate::jwt::Verifier;

#[derive(Parser)]
struct Args {
    /// HS256 | RS256 | ES256 | EdDSA
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// Number of distinct tokens (and requests).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Directory of the fixture keys (hs.secret, rsa-*.pem, ec256-*.pem, ed25519-*.pem).
    #[arg(long, default_value = "tests/fixtures/keys")]
    keys: PathBuf,
    #[arg(long, default_value = "https://issuer.bench")]
    issuer: String,
    #[arg(long, default_value = "bench-api")]
    audience: String,
    /// `sub` of token i is `{sub_prefix}{i:07}`: every token has its own user.
    #[arg(long, default_value = "user-")]
    sub_prefix: String,
    /// Tokens are spread over this many tenants (`tid`).
    #[arg(long, default_value_t = 16)]
    tenants: usize,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Minting threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long)]
    tokens: Option<PathBuf>,
    #[arg(long)]
    requests: Option<PathBuf>,
    #[arg(long)]
    single: Option<PathBuf>,
    #[arg(long)]
    jwks: Option<PathBuf>,
}

/// The fixture key of each algorithm, as `(kid, key lines of the provider's YAML)`.
fn key_yaml(alg: &str, keys: &Path) -> anyhow::Result<(&'static str, String)> {
    let k = |name: &str| keys.join(name).display().to_string();
    Ok(match alg {
        "HS256" => ("hs", format!("secret_file: {}", k("hs.secret"))),
        "RS256" => (
            "rsa",
            format!(
                "public_key_file: {}\n        private_key_file: {}",
                k("rsa-public.pem"),
                k("rsa-private.pem")
            ),
        ),
        "ES256" => (
            "ec256",
            format!(
                "public_key_file: {}\n        private_key_file: {}",
                k("ec256-public.pem"),
                k("ec256-private.pem")
            ),
        ),
        "EdDSA" => (
            "ed",
            format!(
                "public_key_file: {}\n        private_key_file: {}",
                k("ed25519-public.pem"),
                k("ed25519-private.pem")
            ),
        ),
        other => anyhow::bail!("unsupported --alg {other} (HS256, RS256, ES256, EdDSA)"),
    })
}

/// A one-provider, one-key configuration that signs with `alg`'s fixture key. The `kid`s
/// match scripts/bench/tokengate.yaml, which verifies all four.
fn mint_config(args: &Args) -> anyhow::Result<Config> {
    let (kid, key) = key_yaml(&args.alg, &args.keys)?;
    let yaml = format!(
        "providers:\n  - name: bench\n    issuer: {}\n    audiences: [{}]\n    algorithms: [{}]\n    keys:\n      - kid: {kid}\n        {key}\n",
        args.issuer, args.audience, args.alg
    );
    Ok(Config::parse("gen_requests (mint config)", &yaml)?)
}

/// What Envoy's ext_authz filter sends for `GET /api/items` with this bearer token
/// (default settings: lower-case `headers` map, pseudo-headers included).
fn check_request(token: &str, i: usize) -> CheckRequest {
    let headers: HashMap<String, String> = [
        (":authority", "app.bench.local".to_string()),
        (":method", "GET".to_string()),
        (":path", "/api/items".to_string()),
        (":scheme", "http".to_string()),
        ("accept", "*/*".to_string()),
        ("user-agent", "bench/1.0".to_string()),
        ("x-forwarded-proto", "http".to_string()),
        ("x-request-id", format!("00000000-0000-4000-8000-{i:012}")),
        ("authorization", format!("Bearer {token}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    id: format!("{i:07}"),
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

fn grpc_frame(msg: &CheckRequest) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The P-256 fixture public key as a JWKS: the last 64 bytes of its SubjectPublicKeyInfo
/// are the uncompressed point's X and Y.
fn es256_jwks(keys: &Path) -> anyhow::Result<String> {
    let pem = std::fs::read_to_string(keys.join("ec256-public.pem"))?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64.trim())?;
    anyhow::ensure!(der.len() == 91 && der[26] == 4, "not a P-256 SPKI");
    let (x, y) = (&der[27..59], &der[59..91]);
    Ok(serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "ec256", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    }]})
    .to_string())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.jwks {
        std::fs::write(path, es256_jwks(&args.keys)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.tokens.is_none() && args.requests.is_none() && args.single.is_none() {
        return Ok(());
    }
    let config = mint_config(&args)?;
    let verifier = Verifier::from_config(&config)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let chunk = args.count.div_ceil(threads).max(1);
    let started = std::time::Instant::now();
    let mut tokens: Vec<String> = Vec::with_capacity(args.count);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..args.count)
            .step_by(chunk)
            .map(|from| {
                let (config, verifier, args) = (&config, &verifier, &args);
                s.spawn(move || -> anyhow::Result<Vec<String>> {
                    (from..(from + chunk).min(args.count))
                        .map(|i| {
                            let request = MintRequest {
                                provider: None,
                                sub: format!("{}{i:07}", args.sub_prefix),
                                tenant: Some(format!("tenant-{:02}", i % args.tenants.max(1))),
                                ttl_seconds: args.ttl,
                                claims: Vec::new(),
                            };
                            Ok(mint_with(verifier, config, &request)?)
                        })
                        .collect()
                })
            })
            .collect();
        for h in handles {
            tokens.extend(h.join().expect("minting thread")?);
        }
        Ok(())
    })?;
    let lengths: std::collections::BTreeSet<usize> = tokens.iter().map(String::len).collect();
    eprintln!(
        "gen_requests: {} {} tokens in {:.1}s, token length {:?}",
        tokens.len(),
        args.alg,
        started.elapsed().as_secs_f64(),
        lengths
    );

    if let Some(path) = &args.tokens {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for t in &tokens {
            writeln!(f, "{t}")?;
        }
        f.flush()?;
    }
    if args.requests.is_some() || args.single.is_some() {
        let frames: Vec<Vec<u8>> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| grpc_frame(&check_request(t, i)))
            .collect();
        if let Some(path) = &args.requests {
            let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
            for fr in &frames {
                f.write_all(fr)?;
            }
            f.flush()?;
        }
        if let (Some(path), Some(first)) = (&args.single, frames.first()) {
            std::fs::write(path, first)?;
        }
    }
    Ok(())
}
