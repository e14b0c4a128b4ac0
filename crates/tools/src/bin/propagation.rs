//! Revocation propagation between two tokengate replicas sharing one Redis: for each of
//! `--count` tokens,
//!
//! 1. Check it on replica B (must be allowed: B now holds a cached "not revoked");
//! 2. `POST /v1/auth/logout` with it on replica A, and at the same moment start asking B
//!    again, one Check in flight, until B denies it with `jti_revoked`;
//! 3. record the time from sending the logout to B's first deny (and to A's 200).
//!
//! B's cached "not revoked" answer lives for the cache TTL (seconds), so a deny within
//! milliseconds can only come from the invalidation event A published. Prints one JSON
//! line with p50/p90/p99/max; exits 3 when any revocation did not reach B within
//! `--timeout-ms` or any answer was unexpected.
//!
//!     cargo run --release -p tokengate-tools --bin propagation -- --tokens prop.tokens \
//!         --a-http http://127.0.0.1:19122 --b-grpc http://127.0.0.1:19131
//!
//! With `--idp ISSUER` (issue 16) the session ends at the identity provider instead:
//! each token comes from the provider's token endpoint carrying its own `sid`
//! (tests/oidc/provider.mjs), and step 2 asks the provider to send its back-channel
//! logout token for that session to replica A (`/v1/oidc/backchannel-logout`); B must
//! then deny with `session_revoked`. The time runs from asking the provider to B's
//! first deny: the provider's signing and delivery are in it.
//! (scripts/bench-backchannel.sh starts everything.)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tokengate_tools::request::{bearer, check_request};
use tonic::transport::Channel;

#[derive(Parser)]
struct Args {
    /// Tokens, one per line (gen_requests --tokens); each is revoked once. Not with --idp.
    #[arg(long, required_unless_present = "idp")]
    tokens: Option<PathBuf>,
    /// The OpenID provider (tests/oidc/provider.mjs) that issues the tokens and ends
    /// their sessions by back-channel logout to replica A.
    #[arg(long)]
    idp: Option<String>,
    /// Replica A's HTTP listener (logout).
    #[arg(long)]
    a_http: String,
    /// Replica B's gRPC listener (Check).
    #[arg(long)]
    b_grpc: String,
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Give up on one revocation after this long.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// `Ok(None)` on allow, `Ok(Some(body))` on deny (the JSON body names the reason).
async fn check(
    client: &mut AuthorizationClient<Channel>,
    token: &str,
) -> anyhow::Result<Option<(i32, String)>> {
    let auth = bearer(token);
    let request = check_request("GET", "/api/items", "", &[("authorization", &auth)]);
    let resp = client.check(request).await?.into_inner();
    let code = resp.status.map_or(-1, |s| s.code);
    Ok(match resp.http_response {
        Some(HttpResponse::OkResponse(_)) if code == 0 => None,
        Some(HttpResponse::DeniedResponse(d)) => Some((code, d.body)),
        _ => Some((code, String::new())),
    })
}

/// The session of the `i`th token in --idp mode.
fn sid(i: usize) -> String {
    format!("prop-session-{i}")
}

/// `count` access tokens from the provider's token endpoint, the `i`th carrying
/// [`sid`]`(i)`, one per line.
async fn idp_tokens(http: &reqwest::Client, idp: &str, count: usize) -> anyhow::Result<String> {
    let mut out = String::new();
    for i in 0..count {
        let body: serde_json::Value = http
            .post(format!("{idp}/token"))
            .basic_auth("tokengate-test", Some("tokengate-test-client-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", "https://api.test"),
                ("scope", "read"),
                ("sid", &sid(i)),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no access_token: {body}"))?;
        out.push_str(token);
        out.push('\n');
    }
    Ok(out)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.total_cmp(b));
    serde_json::json!({
        "p50_ms": pct(&v, 50.0), "p90_ms": pct(&v, 90.0), "p99_ms": pct(&v, 99.0),
        "max_ms": v.last().copied().unwrap_or(f64::NAN), "n": v.len(),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut b = AuthorizationClient::connect(args.b_grpc.clone()).await?;
    tokengate_core::crypto::install_provider();
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let a_http = args.a_http.trim_end_matches('/');
    let logout_url = format!("{a_http}/v1/auth/logout");
    let backchannel_url = format!("{a_http}/v1/oidc/backchannel-logout");
    let text = match (&args.tokens, &args.idp) {
        (_, Some(idp)) => idp_tokens(&http, idp, args.count).await?,
        (Some(path), None) => std::fs::read_to_string(path)?,
        (None, None) => anyhow::bail!("--tokens or --idp"),
    };
    let tokens: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    anyhow::ensure!(
        tokens.len() >= args.count,
        "{} tokens, {} needed",
        tokens.len(),
        args.count
    );
    let expected = if args.idp.is_some() {
        "session_revoked"
    } else {
        "jti_revoked"
    };
    let timeout = Duration::from_millis(args.timeout_ms);

    let (mut to_deny, mut to_ack, mut ack_to_deny) = (Vec::new(), Vec::new(), Vec::new());
    let (mut not_allowed_before, mut logout_failed, mut timed_out, mut wrong_reason) =
        (0u64, 0u64, 0u64, 0u64);
    let mut polls = 0u64;
    let started = Instant::now();
    for (i, token) in tokens.iter().take(args.count).enumerate() {
        // 1. B caches "not revoked" for this token.
        if check(&mut b, token).await?.is_some() {
            not_allowed_before += 1;
            continue;
        }
        // 2. Logout on A; meanwhile poll B until it denies.
        let t0 = Instant::now();
        let logout = async {
            let r = match &args.idp {
                None => http
                    .post(&logout_url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16()),
                // The provider answers {"ok":true} once A answered 200.
                Some(idp) => {
                    let sent = http
                        .post(format!("{idp}/__test/backchannel-logout"))
                        .query(&[
                            ("uri", backchannel_url.as_str()),
                            ("sub", "tokengate-test"),
                            ("sid", &sid(i)),
                        ])
                        .send()
                        .await;
                    match sent {
                        Ok(r) => match r.json::<serde_json::Value>().await {
                            Ok(v) if v["ok"] == true => Ok(200),
                            Ok(_) => Ok(0),
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
            };
            (r, t0.elapsed())
        };
        let poll = async {
            loop {
                if t0.elapsed() > timeout {
                    return None;
                }
                polls += 1;
                match check(&mut b, token).await {
                    Ok(Some(deny)) => return Some((deny, t0.elapsed())),
                    Ok(None) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        };
        let ((status, acked), denied) = tokio::join!(logout, poll);
        if !matches!(status, Ok(200)) {
            logout_failed += 1;
            continue;
        }
        match denied {
            None => timed_out += 1,
            Some(((code, body), at)) => {
                if code != 16 || !body.contains(expected) {
                    wrong_reason += 1;
                }
                to_deny.push(at.as_secs_f64() * 1000.0);
                to_ack.push(acked.as_secs_f64() * 1000.0);
                ack_to_deny.push((at.as_secs_f64() - acked.as_secs_f64()) * 1000.0);
            }
        }
    }
    let ok = to_deny.len() == args.count
        && not_allowed_before == 0
        && logout_failed == 0
        && timed_out == 0
        && wrong_reason == 0;
    println!(
        "{}",
        serde_json::json!({
            "revocations": args.count,
            "measured": to_deny.len(),
            "logout_to_first_deny_on_b": stats(to_deny),
            "logout_to_ack_on_a": stats(to_ack),
            "ack_on_a_to_first_deny_on_b": stats(ack_to_deny),
            "checks_on_b_while_waiting": polls,
            "not_allowed_before_logout": not_allowed_before,
            "logout_failed": logout_failed,
            "timed_out": timed_out,
            "wrong_reason": wrong_reason,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "valid": ok,
        })
    );
    std::process::exit(if ok { 0 } else { 3 });
}
