//! Resident memory per cached entry: fills tokengate's caches with `--entries` distinct
//! entries through the library's own API and divides the growth of the process's
//! resident set (`/proc/self/statm`) by the number of entries the cache holds.
//!
//! Modes (one per process, so that each starts from a clean heap):
//! - `jti`: revocation cache entries. `CachedStore::check` (the store built by
//!   `tokengate::build_store`, memory store behind) with a query naming only a fresh
//!   `jti`: one cached "not revoked" marker per check.
//! - `token`: what one realistic token costs in the revocation cache: a fresh `jti` and a
//!   fresh user, tenant one of 16 (about two entries per token).
//! - `verified`: the verified-token cache (claims kept by the token's SHA-256): HS256
//!   tokens minted and verified one at a time through `Engine::verify_token`.
//!
//! Identifiers and tokens are generated one at a time and dropped, so the only thing that
//! grows is what the cache keeps. Prints one JSON line.
//!
//!     cargo run --release -p tokengate-tools --bin cache_memory -- --mode jti --entries 1000000

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use tokengate::config::Config;
use tokengate::metrics::Metrics;
use tokengate::revocation::{Query, RevocationStore};
use tokengate_tools::fixture;
use tokengate_tools::token::{Minter, Population};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "jti")]
    mode: String,
    /// Entries (jti), tokens (token, verified) to insert.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    #[arg(long, default_value = "tests/fixtures/keys")]
    keys: String,
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn config(args: &Args) -> anyhow::Result<Config> {
    // Caches large enough that nothing is evicted, TTLs long enough that nothing expires.
    let cap = args.entries + args.entries / 10 + 1000;
    let hs = fixture::for_alg("HS256").ok_or_else(|| anyhow::anyhow!("no HS256 fixture key"))?;
    let yaml = format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
{provider}tokens:
  verified_cache_entries: {cap}
revocation:
  store: memory
  cache:
    ttl_seconds: 3600
    max_entries: {cap}
log:
  level: warn
"#,
        provider = fixture::provider_yaml(
            "bench",
            "https://issuer.bench",
            "bench-api",
            &[hs],
            std::path::Path::new(&args.keys),
        )
    );
    Ok(Config::parse("cache_memory", &yaml)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = config(&args)?;
    let far = tokengate::jwt::now_unix() + 7200;
    let started = Instant::now();
    let (before, after, held, what) = match args.mode.as_str() {
        "jti" | "token" => {
            let store = tokengate::build_store(&config, Arc::new(Metrics::new(&["bench"])?))?;
            // Prime allocator and cache internals with one entry, then take the baseline.
            store
                .check(&Query {
                    jti: Some("prime"),
                    user: None,
                    tenant: None,
                    family: None,
                    session: None,
                    expires_at: far,
                })
                .await?;
            store.entry_count();
            let before = rss_bytes();
            let token_mode = args.mode == "token";
            let mut jti = String::with_capacity(64);
            let mut user = String::with_capacity(32);
            let mut tenant = String::with_capacity(16);
            for i in 0..args.entries {
                jti.clear();
                jti.push_str(&uuid::Uuid::new_v4().to_string());
                let q = if token_mode {
                    user.clear();
                    user.push_str(&format!("user-{i:07}"));
                    tenant.clear();
                    tenant.push_str(&format!("tenant-{:02}", i % 16));
                    Query {
                        jti: Some(&jti),
                        user: Some(&user),
                        tenant: Some(&tenant),
                        family: None,
                        session: None,
                        expires_at: far,
                    }
                } else {
                    Query {
                        jti: Some(&jti),
                        user: None,
                        tenant: None,
                        family: None,
                        session: None,
                        expires_at: far,
                    }
                };
                let state = store.check(&q).await?;
                anyhow::ensure!(!state.jti, "fresh jti reported revoked");
            }
            let held = store.entry_count().saturating_sub(1);
            let after = rss_bytes();
            (before, after, held, "revocation cache entries")
        }
        "verified" => {
            let server = tokengate::Server::bind(&config).await?;
            let engine = server.engine().clone();
            let minter = Minter::new(config.clone())?;
            let population = Population::default();
            let mint = |i: u64| minter.numbered(&population, i as usize);
            engine
                .verify_token(&mint(u64::MAX)?)
                .await
                .map_err(|r| anyhow::anyhow!("{r:?}"))?;
            let before = rss_bytes();
            for i in 0..args.entries {
                let token = mint(i)?;
                engine
                    .verify_token(&token)
                    .await
                    .map_err(|r| anyhow::anyhow!("{r:?}"))?;
            }
            let after = rss_bytes();
            // The verified cache's count is not public: every token was distinct and
            // verified, and the cache is larger than their number.
            (
                before,
                after,
                args.entries,
                "verified-token cache entries (HS256 tokens, 7 claims)",
            )
        }
        other => anyhow::bail!("unknown --mode {other} (jti, token, verified)"),
    };
    let grown = after.saturating_sub(before);
    println!(
        "{}",
        serde_json::json!({
            "mode": args.mode,
            "what": what,
            "inserted": args.entries,
            "entries_held": held,
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "bytes_per_entry": if held > 0 { grown as f64 / held as f64 } else { f64::NAN },
            "bytes_per_inserted": grown as f64 / args.entries.max(1) as f64,
            "elapsed_s": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
