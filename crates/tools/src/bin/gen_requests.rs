//! Benchmark inputs: mints distinct tokens in-process (`tokengate_tools::token::Minter`,
//! the code behind `tokengate token mint`) and writes, per token, the gRPC-framed
//! `CheckRequest` Envoy's ext_authz filter would send for a request carrying it
//! (`tokengate_tools::request::bench_request`, which the criterion bench sends too).
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

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use clap::Parser;
use tokengate_tools::request::{bench_request, grpc_frame};
use tokengate_tools::token::{Minter, Population};

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
    // The `kid`s match scripts/bench/tokengate.yaml, which verifies all four.
    let minter = Minter::fixture(&args.alg, &args.keys, &args.issuer, &args.audience)?;
    let population = Population {
        sub_prefix: args.sub_prefix.clone(),
        tenants: args.tenants,
        ttl_seconds: args.ttl,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = std::time::Instant::now();
    let tokens = minter.pool(&population, args.count, threads)?;
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
            .map(|(i, t)| grpc_frame(&bench_request(t, i)))
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
