//! DPoP benchmark inputs (scripts/bench-dpop.sh, issue 18): per request a fresh proof,
//! as a DPoP client sends one per request, over a small pool of tokens bound to one
//! client key; and the bearer baseline, the same requests with unbound tokens of the
//! same population and no proof. Both as gRPC-framed `CheckRequest`s for `loadgen`,
//! built from `bench_request` so that they differ from the plain bench's requests only
//! in the authorization scheme and the `dpop` header.
//!
//! The client key is made here (aws-lc-rs), the proofs signed with it; each proof's
//! `iat` is the generation time, so tokengate's `dpop.max_age_seconds` must cover the
//! run (scripts/bench-dpop.sh sets an hour). Every proof is used once: `loadgen` must
//! not be asked for more Checks than there are requests.
//!
//!     cargo run --release -p tokengate-tools --bin gen_dpop -- --alg ES256 --count 50000 \
//!         --dpop es256.dpop.grpc --bearer bearer.grpc

use std::io::Write;
use std::path::PathBuf;

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use clap::Parser;
use serde_json::json;
use tokengate_tools::request::{bench_request, grpc_frame, http_mut};
use tokengate_tools::token::{Minter, Population};

#[derive(Parser)]
struct Args {
    /// Proof algorithm: ES256 | EdDSA.
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// Requests (and proofs) to write.
    #[arg(long, default_value_t = 50_000)]
    count: usize,
    /// Distinct access tokens the requests cycle through (all warm after one pass).
    #[arg(long, default_value_t = 100)]
    tokens: usize,
    /// Signing algorithm of the access tokens (a fixture key).
    #[arg(long, default_value = "ES256")]
    token_alg: String,
    #[arg(long, default_value = "tests/fixtures/keys")]
    keys: PathBuf,
    #[arg(long, default_value = "https://issuer.bench")]
    issuer: String,
    #[arg(long, default_value = "bench-api")]
    audience: String,
    /// The DPoP requests.
    #[arg(long)]
    dpop: Option<PathBuf>,
    /// The bearer baseline: the same population, unbound, no proof.
    #[arg(long)]
    bearer: Option<PathBuf>,
}

/// `bench_request`'s URI: `http` on `app.bench.local`, `GET /api/items`.
const HTU: &str = "http://app.bench.local/api/items";

enum ClientKey {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl ClientKey {
    fn new(alg: &str) -> anyhow::Result<ClientKey> {
        let rng = SystemRandom::new();
        Ok(match alg {
            "ES256" => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| anyhow::anyhow!("P-256 key"))?;
                ClientKey::Ec(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                        .map_err(|_| anyhow::anyhow!("P-256 key"))?,
                )
            }
            "EdDSA" => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| anyhow::anyhow!("Ed25519 key"))?;
                ClientKey::Ed(
                    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                        .map_err(|_| anyhow::anyhow!("Ed25519 key"))?,
                )
            }
            other => anyhow::bail!("--alg {other}: ES256 or EdDSA"),
        })
    }

    fn jwk(&self) -> serde_json::Value {
        let b = |x: &[u8]| URL_SAFE_NO_PAD.encode(x);
        match self {
            ClientKey::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b(&p[1..33]), "y": b(&p[33..65])})
            }
            ClientKey::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b(k.public_key().as_ref())})
            }
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            ClientKey::Ec(_) => "ES256",
            ClientKey::Ed(_) => "EdDSA",
        }
    }

    fn sign(&self, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
        Ok(match self {
            ClientKey::Ec(k) => k
                .sign(&SystemRandom::new(), msg)
                .map_err(|_| anyhow::anyhow!("signing"))?
                .as_ref()
                .to_vec(),
            ClientKey::Ed(k) => k.sign(msg).as_ref().to_vec(),
        })
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn write(path: &PathBuf, frames: impl Iterator<Item = Vec<u8>>) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for fr in frames {
        f.write_all(&fr)?;
    }
    f.flush()?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key = ClientKey::new(&args.alg)?;
    let jwk = key.jwk();
    let jkt = tokengate::jwt::dpop::thumbprint(jwk.as_object().expect("an object"))
        .ok_or_else(|| anyhow::anyhow!("thumbprint"))?;
    let minter = Minter::fixture(&args.token_alg, &args.keys, &args.issuer, &args.audience)?;
    let population = Population::default();
    let n = args.tokens.max(1);
    if let Some(path) = &args.bearer {
        let tokens = minter.pool(&population, n, 1)?;
        write(
            path,
            (0..args.count).map(|i| grpc_frame(&bench_request(&tokens[i % n], i))),
        )?;
    }
    if let Some(path) = &args.dpop {
        let mut bound = Vec::with_capacity(n);
        for i in 0..n {
            let mut req = population.request(i);
            req.claims.push(("cnf".into(), json!({"jkt": jkt})));
            bound.push(minter.mint(&req)?);
        }
        let header = b64(json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": jwk})
            .to_string()
            .as_bytes());
        let now = tokengate::jwt::now_unix();
        let started = std::time::Instant::now();
        let mut frames = Vec::with_capacity(args.count);
        for i in 0..args.count {
            let token = &bound[i % n];
            let ath = b64(digest(&SHA256, token.as_bytes()).as_ref());
            let claims = json!({
                "jti": format!("{i:012}-{}", uuid::Uuid::new_v4()),
                "htm": "GET", "htu": HTU, "iat": now, "ath": ath,
            });
            let msg = format!("{header}.{}", b64(claims.to_string().as_bytes()));
            let proof = format!("{msg}.{}", b64(&key.sign(msg.as_bytes())?));
            let mut req = bench_request(token, i);
            if let Some(http) = http_mut(&mut req) {
                http.headers
                    .insert("authorization".into(), format!("DPoP {token}"));
                http.headers.insert("dpop".into(), proof);
            }
            frames.push(grpc_frame(&req));
        }
        eprintln!(
            "gen_dpop: {} {} proofs in {:.1}s",
            args.count,
            key.alg(),
            started.elapsed().as_secs_f64()
        );
        write(path, frames.into_iter())?;
    }
    Ok(())
}
