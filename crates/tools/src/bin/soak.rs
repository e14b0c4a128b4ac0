//! Soak test of two tokengate replicas sharing one Redis (issue 9). Normally started by
//! `scripts/soak.sh`, which builds, starts Redis and the two replicas, and stops them.
//!
//! For `--duration` seconds, `--concurrency` workers send a mix to BOTH replicas at once
//! (each operation goes to a randomly chosen replica):
//!
//! - gRPC ext_authz Checks of fresh, distinct tokens minted in-process with the dev key
//!   (one new `jti`, random user of `--users`, tenant = user mod `--tenants`);
//! - re-checks of recently seen tokens (on either replica);
//! - logouts (`POST /v1/auth/logout`) of recent tokens;
//! - logout-alls (`POST /v1/auth/logout-all`) of random users;
//! - and, every `--tenant-revoke-every-ms`, a tenant revocation through the admin API
//!   (`POST /v1/admin/revocations {"tenant":…}`, with a token carrying the admin scope).
//!
//! Every ACKNOWLEDGED (2xx) revocation is recorded with the tokens it must kill:
//!
//! - logout: the token logged out;
//! - logout-all / tenant: the user's (last 4) / tenant's (last 64) tokens minted before
//!   the request was sent, plus the token used for the logout-all, plus any token of that
//!   user/tenant minted later whose `iat` (whole seconds, in ms) is at or before the
//!   acknowledged cut-off `revoked_before`: such tokens are revoked by design. Tokens
//!   minted after the cut-off are not counted.
//!
//! While the load runs, re-checks of a token whose revocation was acknowledged more than
//! `--settle-ms` ago must be denied ("online lost" otherwise). At the end it waits
//! `--settle-ms` and checks every killed token on both replicas: `lost` counts tokens
//! still allowed by either. Fresh tokens denied as revoked are checked against the
//! cut-offs the run wrote ("false denials" otherwise).
//!
//! Memory: each replica's RSS is sampled every `--sample-every-s` (from /proc/PID/status
//! when `--pid-a/--pid-b` are given, else `process_resident_memory_bytes` from the admin
//! /metrics): start, at 25 % of the run ("warm"), peak, end of load. With
//! `--max-rss-mb` (peak) and `--max-growth-mb` (end minus warm) the run fails when a
//! replica goes beyond them.
//!
//! Exit status: 0 when lost = 0, online lost = 0, every killed token was verified, no
//! false denials and the memory bounds held; 1 otherwise; 2 on a set-up error. Only
//! loopback addresses are accepted; the run is bounded by `--duration` and
//! `--max-requests`.
//!
//!     cargo run --release -p tokengate-tools --bin soak -- --config soak.yaml \
//!         --grpc-a 127.0.0.1:9001 --http-a 127.0.0.1:8080 --admin-a 127.0.0.1:9090 \
//!         --grpc-b 127.0.0.1:9011 --http-b 127.0.0.1:8081 --admin-b 127.0.0.1:9091 \
//!         --duration 60

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::{json, Value};
use tokengate::config::Config;
use tokengate::jwt::mint::{mint_with, MintRequest};
use tokengate::jwt::Verifier;
use tokengate_tools::request::{bearer, check_request};
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(about = "Soak test of two tokengate replicas on one Redis (see the file's doc)")]
struct Args {
    /// Replica A: gRPC listener (loopback).
    #[arg(long)]
    grpc_a: SocketAddr,
    /// Replica A: public HTTP listener (logout).
    #[arg(long)]
    http_a: SocketAddr,
    /// Replica A: admin listener (admin API, /metrics, /readyz).
    #[arg(long)]
    admin_a: SocketAddr,
    #[arg(long)]
    grpc_b: SocketAddr,
    #[arg(long)]
    http_b: SocketAddr,
    #[arg(long)]
    admin_b: SocketAddr,
    /// PID of replica A, to read its RSS from /proc (else from its /metrics).
    #[arg(long)]
    pid_a: Option<u32>,
    #[arg(long)]
    pid_b: Option<u32>,
    /// The replicas' configuration: its provider's private key mints the tokens.
    #[arg(long, default_value = "config/tokengate.yaml")]
    config: PathBuf,
    /// Seconds of load (at most 7200).
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Workers with one operation in flight each.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Operations per second over all workers; 0: as fast as the machine allows.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Hard cap on operations sent during the load phase.
    #[arg(long, default_value_t = 20_000_000)]
    max_requests: u64,
    /// Distinct users (more than the replicas' cache bound exercises it).
    #[arg(long, default_value_t = 50_000)]
    users: u32,
    #[arg(long, default_value_t = 200)]
    tenants: u32,
    /// Share of operations (per mille) that re-check a recent token.
    #[arg(long, default_value_t = 150)]
    recheck_permille: u32,
    /// Share of operations (per mille) that log out a recent token.
    #[arg(long, default_value_t = 12)]
    logout_permille: u32,
    /// Share of operations (per mille) that log out all of a user's tokens.
    #[arg(long, default_value_t = 3)]
    logout_all_permille: u32,
    /// Interval between tenant revocations (admin API); 0: none.
    #[arg(long, default_value_t = 3000)]
    tenant_revoke_every_ms: u64,
    /// Propagation allowance: after an acknowledgement, how long a replica may still
    /// allow; also the wait before the final verification.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Checks in flight during the final verification.
    #[arg(long, default_value_t = 64)]
    verify_concurrency: usize,
    /// gRPC (HTTP/2) connections per replica.
    #[arg(long, default_value_t = 4)]
    channels: usize,
    /// Fail when a replica's RSS peak exceeds this (MiB); 0: report only.
    #[arg(long, default_value_t = 0)]
    max_rss_mb: u64,
    /// Fail when a replica's RSS grows more than this (MiB) from 25 % of the run to its
    /// end; 0: report only.
    #[arg(long, default_value_t = 0)]
    max_growth_mb: u64,
    /// The "warm" RSS sample (the base of the growth bound) is taken at 25 % of the
    /// run, and not before this many distinct tokens were minted (so that the caches
    /// are full by then: about 4 x the replicas' largest cache bound).
    #[arg(long, default_value_t = 0)]
    warm_tokens: u64,
    #[arg(long, default_value_t = 2)]
    sample_every_s: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 30)]
    progress_every_s: u64,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
}

const RECENT: usize = 8192;
const USER_RING: usize = 4;
const TENANT_RING: usize = 64;
const FRESH_DENIED_KEPT: usize = 200_000;
const REVOKED_REASONS: [&str; 4] = [
    "jti_revoked",
    "user_revoked",
    "tenant_revoked",
    "family_revoked",
];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// xorshift64*: the crate has no `rand` dependency and this needs no quality.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        Rng(uuid::Uuid::new_v4().as_u64_pair().0 | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One minted token and what the run knows about it.
struct Tok {
    token: String,
    user: u32,
    tenant: u32,
    /// `iat`, unix seconds.
    iat: i64,
    /// When an acknowledged revocation killed it (unix ms); 0: not known revoked.
    killed_at: AtomicI64,
}

impl Tok {
    fn kill(&self, at: i64) {
        let _ = self
            .killed_at
            .fetch_update(Relaxed, Relaxed, |k| (k == 0 || at < k).then_some(at));
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Kind {
    Logout,
    LogoutAll,
    Tenant,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Logout, Kind::LogoutAll, Kind::Tenant];
    fn name(self) -> &'static str {
        match self {
            Kind::Logout => "logout",
            Kind::LogoutAll => "logout-all",
            Kind::Tenant => "tenant",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// An acknowledged revocation and the tokens it must kill.
struct Rev {
    kind: Kind,
    tokens: Vec<Arc<Tok>>,
}

/// A revocation of a user or tenant, acknowledged or not, for explaining denials.
struct Cutoff {
    kind: Kind,
    id: u32,
    /// The acknowledged cut-off, or (no answer) the time the attempt ended.
    before_ms: i64,
}

#[derive(Default)]
struct RevStats {
    sent: AtomicU64,
    acked: AtomicU64,
    /// 401: the caller's token was already revoked (expected under churn).
    refused: AtomicU64,
    /// 503 store_unavailable.
    unavailable: AtomicU64,
    /// Anything else, transport errors included.
    errors: AtomicU64,
}

#[derive(Default)]
struct PerReplica {
    checks: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    /// Transport errors and answers that are neither allow nor deny.
    errors: AtomicU64,
    /// Re-checks that allowed a token revoked (acknowledged) more than settle-ms ago.
    online_lost: AtomicU64,
    /// Re-checks that allowed a token revoked less than settle-ms ago.
    stale: AtomicU64,
    /// Latency of the load's checks.
    latency: Latency,
}

/// A latency histogram: 4 buckets per power of two of microseconds.
struct Latency {
    buckets: Vec<AtomicU64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: (0..128).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Latency {
    fn record(&self, d: Duration) {
        let us = d.as_micros().max(1) as f64;
        let i = ((us.log2() * 4.0) as usize).min(self.buckets.len() - 1);
        self.buckets[i].fetch_add(1, Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q`.
    fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                let us = 2f64.powf((i + 1) as f64 / 4.0);
                return Some(Duration::from_micros(us as u64));
            }
        }
        None
    }
}

struct Replica {
    name: &'static str,
    grpc: Vec<AuthorizationClient<Channel>>,
    http: String,
    admin: String,
    pid: Option<u32>,
    stats: PerReplica,
}

struct Shared {
    args: Args,
    run: String,
    config: Config,
    verifier: Verifier,
    admin_token: String,
    token_ttl: u64,
    replicas: [Replica; 2],
    http: reqwest::Client,
    recent: Mutex<VecDeque<Arc<Tok>>>,
    by_user: Vec<Mutex<VecDeque<Arc<Tok>>>>,
    by_tenant: Vec<Mutex<VecDeque<Arc<Tok>>>>,
    revs: Mutex<Vec<Rev>>,
    cutoffs: Mutex<Vec<Cutoff>>,
    /// Fresh tokens denied with a revocation reason: (token, reason).
    fresh_denied: Mutex<Vec<(Arc<Tok>, String)>>,
    deny_reasons: Mutex<BTreeMap<String, u64>>,
    rev_stats: [RevStats; 3],
    /// Snapshot tokens whose iat was after the acknowledged cut-off (must never happen).
    cutoff_before_send: AtomicU64,
    /// Logouts acknowledged for a token whose revocation was acknowledged > settle ago.
    logout_of_revoked: AtomicU64,
    distinct: AtomicU64,
    fresh_store_unavailable: AtomicU64,
    requests: AtomicU64,
    stop: AtomicBool,
    started: Instant,
}

enum Outcome {
    Allow,
    Deny { code: i32, reason: String },
    Error(String),
}

fn user_id(run: &str, u: u32) -> String {
    format!("soak-{run}-u{u}")
}
fn tenant_id(run: &str, t: u32) -> String {
    format!("soak-{run}-t{t}")
}

impl Shared {
    fn mint(&self, user: u32) -> Arc<Tok> {
        let iat = tokengate::jwt::now_unix();
        let tenant = user % self.args.tenants;
        let request = MintRequest {
            provider: None,
            sub: user_id(&self.run, user),
            tenant: Some(tenant_id(&self.run, tenant)),
            ttl_seconds: self.token_ttl,
            claims: vec![("iat".into(), iat.into())],
        };
        let token = mint_with(&self.verifier, &self.config, &request).expect("mint");
        self.distinct.fetch_add(1, Relaxed);
        Arc::new(Tok {
            token,
            user,
            tenant,
            iat,
            killed_at: AtomicI64::new(0),
        })
    }

    /// Makes a token visible to user and tenant revocations (before it is sent anywhere).
    fn register_owner(&self, tok: &Arc<Tok>) {
        push(&self.by_user[tok.user as usize], tok.clone(), USER_RING);
        push(
            &self.by_tenant[tok.tenant as usize],
            tok.clone(),
            TENANT_RING,
        );
    }

    fn pick_recent(&self, rng: &mut Rng) -> Option<Arc<Tok>> {
        let recent = self.recent.lock().unwrap();
        if recent.is_empty() {
            return None;
        }
        recent.get(rng.below(recent.len() as u64) as usize).cloned()
    }

    fn count_deny(&self, reason: &str) {
        *self
            .deny_reasons
            .lock()
            .unwrap()
            .entry(reason.to_string())
            .or_default() += 1;
    }

    fn settled(&self, killed_at: i64, now: i64) -> bool {
        killed_at != 0 && now - killed_at > self.args.settle_ms as i64
    }
}

fn push(ring: &Mutex<VecDeque<Arc<Tok>>>, tok: Arc<Tok>, cap: usize) {
    let mut r = ring.lock().unwrap();
    if r.len() == cap {
        r.pop_front();
    }
    r.push_back(tok);
}

fn snapshot(ring: &Mutex<VecDeque<Arc<Tok>>>) -> Vec<Arc<Tok>> {
    ring.lock().unwrap().iter().cloned().collect()
}

async fn check(client: &AuthorizationClient<Channel>, token: &str) -> Outcome {
    let auth = bearer(token);
    let request = check_request(
        "GET",
        "/api/soak",
        "soak.local",
        &[("authorization", &auth)],
    );
    let mut client = client.clone();
    let call = tokio::time::timeout(Duration::from_secs(5), client.check(request)).await;
    let response = match call {
        Err(_) => return Outcome::Error("timeout".into()),
        Ok(Err(status)) => return Outcome::Error(format!("grpc {:?}", status.code())),
        Ok(Ok(r)) => r.into_inner(),
    };
    let code = response.status.as_ref().map_or(-1, |s| s.code);
    match response.http_response {
        Some(HttpResponse::OkResponse(_)) if code == 0 => Outcome::Allow,
        Some(HttpResponse::DeniedResponse(d)) if code != 0 => {
            let reason = serde_json::from_str::<Value>(&d.body)
                .ok()
                .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| "unparsable_body".into());
            Outcome::Deny { code, reason }
        }
        _ => Outcome::Error(format!("odd answer (status {code})")),
    }
}

async fn timed_check(replica: &Replica, chan: usize, token: &str) -> Outcome {
    let started = Instant::now();
    let outcome = check(&replica.grpc[chan], token).await;
    replica.stats.latency.record(started.elapsed());
    outcome
}

/// Median latency of `n` sequential re-checks of one token (nothing else in flight).
async fn sequential_latency(shared: &Shared, r: usize, n: usize) -> Duration {
    let tok = shared.mint(0);
    let client = &shared.replicas[r].grpc[0];
    let _ = check(client, &tok.token).await;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let _ = check(client, &tok.token).await;
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

/// What one revocation POST came back with.
enum Posted {
    /// 2xx, with `revoked_before` when the answer has it.
    Acked(Option<i64>),
    Refused,
    Unavailable,
    Error,
}

async fn post(shared: &Shared, url: &str, bearer: &str, body: Option<Value>) -> Posted {
    let mut req = shared.http.post(url).bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(_) => return Posted::Error,
    };
    let status = resp.status().as_u16();
    match status {
        200..=299 => {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            Posted::Acked(body.get("revoked_before").and_then(Value::as_i64))
        }
        401 => Posted::Refused,
        503 => Posted::Unavailable,
        _ => Posted::Error,
    }
}

impl Shared {
    fn tally(&self, kind: Kind, posted: &Posted) {
        let s = &self.rev_stats[kind.index()];
        s.sent.fetch_add(1, Relaxed);
        match posted {
            Posted::Acked(_) => &s.acked,
            Posted::Refused => &s.refused,
            Posted::Unavailable => &s.unavailable,
            Posted::Error => &s.errors,
        }
        .fetch_add(1, Relaxed);
    }

    /// Records an acknowledged user/tenant revocation: the snapshot taken before the
    /// request, plus the later tokens of the ring whose iat is at or before the cut-off.
    fn record_subject(
        &self,
        kind: Kind,
        id: u32,
        mut tokens: Vec<Arc<Tok>>,
        ring: &Mutex<VecDeque<Arc<Tok>>>,
        before_ms: Option<i64>,
        acked_at: i64,
    ) {
        let Some(before) = before_ms else {
            // An acknowledgement without its cut-off: only the snapshot is certain.
            self.cutoffs.lock().unwrap().push(Cutoff {
                kind,
                id,
                before_ms: acked_at,
            });
            self.push_rev(kind, tokens, acked_at);
            return;
        };
        for t in &tokens {
            if t.iat * 1000 > before {
                self.cutoff_before_send.fetch_add(1, Relaxed);
            }
        }
        for t in snapshot(ring) {
            if t.iat * 1000 <= before && !tokens.iter().any(|s| Arc::ptr_eq(s, &t)) {
                tokens.push(t);
            }
        }
        self.cutoffs.lock().unwrap().push(Cutoff {
            kind,
            id,
            before_ms: before,
        });
        self.push_rev(kind, tokens, acked_at);
    }

    fn push_rev(&self, kind: Kind, tokens: Vec<Arc<Tok>>, acked_at: i64) {
        for t in &tokens {
            t.kill(acked_at);
        }
        self.revs.lock().unwrap().push(Rev { kind, tokens });
    }
}

async fn fresh_check(shared: &Shared, rng: &mut Rng, chan: usize) {
    let user = rng.below(u64::from(shared.args.users)) as u32;
    let tok = shared.mint(user);
    shared.register_owner(&tok);
    let r = rng.below(2) as usize;
    let replica = &shared.replicas[r];
    replica.stats.checks.fetch_add(1, Relaxed);
    match timed_check(replica, chan, &tok.token).await {
        Outcome::Allow => {
            replica.stats.allowed.fetch_add(1, Relaxed);
        }
        Outcome::Deny { reason, .. } => {
            replica.stats.denied.fetch_add(1, Relaxed);
            shared.count_deny(&reason);
            if reason == "store_unavailable" {
                shared.fresh_store_unavailable.fetch_add(1, Relaxed);
            } else {
                let mut d = shared.fresh_denied.lock().unwrap();
                if d.len() < FRESH_DENIED_KEPT {
                    d.push((tok.clone(), reason));
                }
            }
        }
        Outcome::Error(_) => {
            replica.stats.errors.fetch_add(1, Relaxed);
        }
    }
    // Only now may a logout pick it: a fresh check is never raced by a logout.
    push(&shared.recent, tok, RECENT);
}

async fn recheck(shared: &Shared, rng: &mut Rng, chan: usize) {
    let Some(tok) = shared.pick_recent(rng) else {
        return;
    };
    let r = rng.below(2) as usize;
    let replica = &shared.replicas[r];
    replica.stats.checks.fetch_add(1, Relaxed);
    let killed_before = tok.killed_at.load(Relaxed);
    match timed_check(replica, chan, &tok.token).await {
        Outcome::Allow => {
            replica.stats.allowed.fetch_add(1, Relaxed);
            // Revoked before the check was sent, and long enough ago to have propagated.
            if shared.settled(killed_before, now_ms()) {
                replica.stats.online_lost.fetch_add(1, Relaxed);
            } else if killed_before != 0 {
                replica.stats.stale.fetch_add(1, Relaxed);
            }
        }
        Outcome::Deny { reason, .. } => {
            replica.stats.denied.fetch_add(1, Relaxed);
            shared.count_deny(&reason);
        }
        Outcome::Error(_) => {
            replica.stats.errors.fetch_add(1, Relaxed);
        }
    }
}

async fn logout(shared: &Shared, rng: &mut Rng) {
    let Some(tok) = shared.pick_recent(rng) else {
        return;
    };
    let replica = &shared.replicas[rng.below(2) as usize];
    let killed_before = tok.killed_at.load(Relaxed);
    let url = format!("{}/v1/auth/logout", replica.http);
    let posted = post(shared, &url, &tok.token, None).await;
    shared.tally(Kind::Logout, &posted);
    if let Posted::Acked(_) = posted {
        if shared.settled(killed_before, now_ms()) {
            shared.logout_of_revoked.fetch_add(1, Relaxed);
        }
        shared.push_rev(Kind::Logout, vec![tok], now_ms());
    }
}

async fn logout_all(shared: &Shared, rng: &mut Rng) {
    let user = rng.below(u64::from(shared.args.users)) as u32;
    let ring = &shared.by_user[user as usize];
    let mut tokens = snapshot(ring);
    // The caller's own token: issued before the request, so revoked by it.
    let own = shared.mint(user);
    shared.register_owner(&own);
    tokens.push(own.clone());
    let replica = &shared.replicas[rng.below(2) as usize];
    let url = format!("{}/v1/auth/logout-all", replica.http);
    let posted = post(shared, &url, &own.token, None).await;
    shared.tally(Kind::LogoutAll, &posted);
    match posted {
        Posted::Acked(before) => {
            shared.record_subject(Kind::LogoutAll, user, tokens, ring, before, now_ms())
        }
        // Not acknowledged, but it may have been written: it explains denials.
        Posted::Unavailable | Posted::Error => shared.cutoffs.lock().unwrap().push(Cutoff {
            kind: Kind::LogoutAll,
            id: user,
            before_ms: now_ms(),
        }),
        Posted::Refused => {}
    }
}

async fn tenant_revocation(shared: &Shared, rng: &mut Rng) {
    let tenant = rng.below(u64::from(shared.args.tenants)) as u32;
    let ring = &shared.by_tenant[tenant as usize];
    let tokens = snapshot(ring);
    let replica = &shared.replicas[rng.below(2) as usize];
    let url = format!("{}/v1/admin/revocations", replica.admin);
    let body = json!({"tenant": tenant_id(&shared.run, tenant), "reason": "soak"});
    let posted = post(shared, &url, &shared.admin_token, Some(body)).await;
    shared.tally(Kind::Tenant, &posted);
    match posted {
        Posted::Acked(before) => {
            shared.record_subject(Kind::Tenant, tenant, tokens, ring, before, now_ms())
        }
        Posted::Unavailable | Posted::Error => shared.cutoffs.lock().unwrap().push(Cutoff {
            kind: Kind::Tenant,
            id: tenant,
            before_ms: now_ms(),
        }),
        Posted::Refused => {}
    }
}

async fn worker(shared: Arc<Shared>, index: usize, deadline: Instant) {
    let mut rng = Rng::new();
    let chan = index % shared.args.channels;
    let a = &shared.args;
    let mut pacer = (a.rate > 0).then(|| {
        let period = Duration::from_secs_f64(a.concurrency as f64 / a.rate as f64);
        let mut i = tokio::time::interval(period);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    let recheck_at = a.recheck_permille;
    let logout_at = recheck_at + a.logout_permille;
    let logout_all_at = logout_at + a.logout_all_permille;
    while !shared.stop.load(Relaxed) && Instant::now() < deadline {
        if shared.requests.fetch_add(1, Relaxed) >= a.max_requests {
            shared.stop.store(true, Relaxed);
            break;
        }
        if let Some(p) = pacer.as_mut() {
            p.tick().await;
        }
        let roll = rng.below(1000) as u32;
        if roll < recheck_at {
            recheck(&shared, &mut rng, chan).await;
        } else if roll < logout_at {
            logout(&shared, &mut rng).await;
        } else if roll < logout_all_at {
            logout_all(&shared, &mut rng).await;
        } else {
            fresh_check(&shared, &mut rng, chan).await;
        }
    }
}

async fn tenant_task(shared: Arc<Shared>, deadline: Instant) {
    let every = shared.args.tenant_revoke_every_ms;
    if every == 0 {
        return;
    }
    let mut rng = Rng::new();
    let mut tick = tokio::time::interval(Duration::from_millis(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: let some tokens exist first
    let deadline = tokio::time::Instant::from_std(deadline);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(deadline) => return,
        }
        if shared.stop.load(Relaxed) || tokio::time::Instant::now() >= deadline {
            return;
        }
        tenant_revocation(&shared, &mut rng).await;
    }
}

// ---------------------------------------------------------------- memory sampling

#[derive(Clone, Copy, Default)]
struct Sample {
    at_s: f64,
    /// Distinct tokens minted so far.
    distinct: u64,
    rss: [Option<u64>; 2],
}

async fn rss(shared: &Shared, r: usize) -> Option<u64> {
    let replica = &shared.replicas[r];
    if let Some(pid) = replica.pid {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        return Some(kb * 1024);
    }
    let text = metrics_text(shared, r).await?;
    metric_sum(&text, "process_resident_memory_bytes", &[]).map(|v| v as u64)
}

async fn metrics_text(shared: &Shared, r: usize) -> Option<String> {
    let url = format!("{}/metrics", shared.replicas[r].admin);
    shared.http.get(url).send().await.ok()?.text().await.ok()
}

/// Sum of the samples of a metric family whose labels include every `label="value"`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if !labels.iter().all(|l| rest.contains(l)) {
            continue;
        }
        let v: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        *found.get_or_insert(0.0) += v;
    }
    found
}

async fn sample(shared: &Shared) -> Sample {
    Sample {
        at_s: shared.started.elapsed().as_secs_f64(),
        distinct: shared.distinct.load(Relaxed),
        rss: [rss(shared, 0).await, rss(shared, 1).await],
    }
}

async fn sampler(shared: Arc<Shared>, samples: Arc<Mutex<Vec<Sample>>>, done: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(shared.args.sample_every_s.max(1)));
    tick.tick().await;
    let progress_every = shared.args.progress_every_s.max(1) as f64;
    let mut next_progress = progress_every;
    let mut last = (0.0f64, 0u64);
    while !done.load(Relaxed) {
        tick.tick().await;
        let s = sample(&shared).await;
        samples.lock().unwrap().push(s);
        if s.at_s >= next_progress {
            next_progress += progress_every;
            let checks: u64 = shared
                .replicas
                .iter()
                .map(|r| r.stats.checks.load(Relaxed))
                .sum();
            let rate = (checks - last.1) as f64 / (s.at_s - last.0).max(0.001);
            last = (s.at_s, checks);
            let acked: Vec<u64> = shared
                .rev_stats
                .iter()
                .map(|r| r.acked.load(Relaxed))
                .collect();
            let online: u64 = shared
                .replicas
                .iter()
                .map(|r| r.stats.online_lost.load(Relaxed))
                .sum();
            println!(
                "[{:>6.0}s] checks {checks} ({rate:.0}/s) distinct tokens {} | acked logout {} logout-all {} tenant {} | online lost {online} | RSS A {} B {}",
                s.at_s,
                shared.distinct.load(Relaxed),
                acked[0],
                acked[1],
                acked[2],
                mib(s.rss[0]),
                mib(s.rss[1]),
            );
        }
    }
}

fn mib(v: Option<u64>) -> String {
    v.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

// ---------------------------------------------------------------- verification

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    /// Denied as revoked.
    Enforced,
    /// Denied, but for another reason (e.g. expired): not a loss, reported.
    DeniedOther,
    /// Allowed: a lost revocation.
    Lost,
    /// No clean answer after retries (errors, store unavailable).
    Unverified,
}

async fn verify_one(
    client: &AuthorizationClient<Channel>,
    token: &str,
) -> (Verdict, Option<String>) {
    let mut last = None;
    for attempt in 0..4 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
        match check(client, token).await {
            Outcome::Allow => return (Verdict::Lost, None),
            Outcome::Deny { reason, .. } if REVOKED_REASONS.contains(&reason.as_str()) => {
                return (Verdict::Enforced, Some(reason))
            }
            Outcome::Deny { code, reason } if code != 14 && reason != "store_unavailable" => {
                return (Verdict::DeniedOther, Some(reason))
            }
            Outcome::Deny { reason, .. } => last = Some(reason),
            Outcome::Error(e) => last = Some(e),
        }
    }
    (Verdict::Unverified, last)
}

struct Verification {
    unique: usize,
    verdicts: Vec<[Verdict; 2]>,
    reasons: [BTreeMap<String, u64>; 2],
    seconds: f64,
}

async fn verify(shared: &Arc<Shared>, tokens: Arc<Vec<Arc<Tok>>>) -> Verification {
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let out: Arc<Mutex<Vec<[Verdict; 2]>>> =
        Arc::new(Mutex::new(vec![[Verdict::Unverified; 2]; tokens.len()]));
    let reasons: Arc<Mutex<[BTreeMap<String, u64>; 2]>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..shared.args.verify_concurrency.max(1) {
        let (shared, tokens, next, out, reasons) = (
            shared.clone(),
            tokens.clone(),
            next.clone(),
            out.clone(),
            reasons.clone(),
        );
        tasks.spawn(async move {
            let chan = w % shared.args.channels;
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(tok) = tokens.get(i) else { return };
                let mut v = [Verdict::Unverified; 2];
                for (r, slot) in v.iter_mut().enumerate() {
                    let (verdict, reason) =
                        verify_one(&shared.replicas[r].grpc[chan], &tok.token).await;
                    *slot = verdict;
                    let key = match verdict {
                        Verdict::Lost => "ALLOWED".to_string(),
                        _ => reason.unwrap_or_default(),
                    };
                    *reasons.lock().unwrap()[r].entry(key).or_default() += 1;
                }
                out.lock().unwrap()[i] = v;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let verdicts = std::mem::take(&mut *out.lock().unwrap());
    let reasons = std::mem::take(&mut *reasons.lock().unwrap());
    Verification {
        unique: tokens.len(),
        verdicts,
        reasons,
        seconds: started.elapsed().as_secs_f64(),
    }
}

// ---------------------------------------------------------------- main

fn loopback(addrs: &[SocketAddr]) -> Result<(), String> {
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(a) => Err(format!(
            "{a} is not a loopback address: the soak only targets loopback"
        )),
        None => Ok(()),
    }
}

async fn wait_ready(http: &reqwest::Client, admin: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{admin}/readyz")).send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn connect(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<AuthorizationClient<Channel>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        out.push(AuthorizationClient::new(channel));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(mut args: Args) -> anyhow::Result<bool> {
    loopback(&[
        args.grpc_a,
        args.http_a,
        args.admin_a,
        args.grpc_b,
        args.http_b,
        args.admin_b,
    ])
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        args.duration >= 1 && args.duration <= 7200,
        "--duration must be 1..=7200 s"
    );
    anyhow::ensure!(
        args.users >= 1 && args.tenants >= 1,
        "--users and --tenants must be >= 1"
    );
    anyhow::ensure!(
        args.recheck_permille + args.logout_permille + args.logout_all_permille <= 1000,
        "the per-mille shares add up to more than 1000"
    );
    args.channels = args.channels.max(1);
    args.concurrency = args.concurrency.max(1);

    let config = Config::load(&args.config)?;
    let verifier = Verifier::from_config(&config)?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    // Every token outlives the load, the settle time and the verification.
    let token_ttl = args.duration + 1800;
    let admin_request = MintRequest {
        provider: None,
        sub: format!("soak-{run}-admin"),
        tenant: Some(format!("soak-{run}-admin-tenant")),
        ttl_seconds: token_ttl,
        claims: vec![("scope".into(), config.admin_api.scope.clone().into())],
    };
    let admin_token = mint_with(&verifier, &config, &admin_request)?;
    tokengate_core::crypto::install_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;

    let url = |a: SocketAddr| format!("http://{a}");
    for admin in [args.admin_a, args.admin_b] {
        anyhow::ensure!(
            wait_ready(&http, &url(admin)).await,
            "{admin}/readyz never answered 200"
        );
    }
    let replicas = [
        Replica {
            name: "A",
            grpc: connect(args.grpc_a, args.channels).await?,
            http: url(args.http_a),
            admin: url(args.admin_a),
            pid: args.pid_a,
            stats: PerReplica::default(),
        },
        Replica {
            name: "B",
            grpc: connect(args.grpc_b, args.channels).await?,
            http: url(args.http_b),
            admin: url(args.admin_b),
            pid: args.pid_b,
            stats: PerReplica::default(),
        },
    ];
    let ring = |n: u32| {
        (0..n)
            .map(|_| Mutex::new(VecDeque::new()))
            .collect::<Vec<_>>()
    };
    let shared = Arc::new(Shared {
        by_user: ring(args.users),
        by_tenant: ring(args.tenants),
        args,
        run,
        config,
        verifier,
        admin_token,
        token_ttl,
        replicas,
        http,
        recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        revs: Mutex::default(),
        cutoffs: Mutex::default(),
        fresh_denied: Mutex::default(),
        deny_reasons: Mutex::default(),
        rev_stats: Default::default(),
        cutoff_before_send: AtomicU64::new(0),
        logout_of_revoked: AtomicU64::new(0),
        distinct: AtomicU64::new(0),
        fresh_store_unavailable: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        started: Instant::now(),
    });
    let a = &shared.args;

    // A sanity check before the load: the admin token works, both replicas answer.
    for r in &shared.replicas {
        let t = shared.mint(0);
        match check(&r.grpc[0], &t.token).await {
            Outcome::Allow => {}
            Outcome::Deny { reason, .. } => {
                anyhow::bail!("replica {}: a fresh token was denied ({reason})", r.name)
            }
            Outcome::Error(e) => anyhow::bail!("replica {}: check failed: {e}", r.name),
        }
    }

    let seq = [
        sequential_latency(&shared, 0, 21).await,
        sequential_latency(&shared, 1, 21).await,
    ];
    println!(
        "soak: sequential check latency (median of 21, one request in flight): A {:?}, B {:?}",
        seq[0], seq[1]
    );
    println!(
        "soak: run {} for {} s, {} workers, rate {}, {} users, {} tenants, both replicas",
        shared.run,
        a.duration,
        a.concurrency,
        if a.rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{}/s", a.rate)
        },
        a.users,
        a.tenants
    );
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let start_sample = sample(&shared).await;
    samples.lock().unwrap().push(start_sample);
    let sampling_done = Arc::new(AtomicBool::new(false));
    let sampler_task = tokio::spawn(sampler(
        shared.clone(),
        samples.clone(),
        sampling_done.clone(),
    ));

    let load_started = Instant::now();
    let deadline = load_started + Duration::from_secs(a.duration);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.concurrency {
        tasks.spawn(worker(shared.clone(), i, deadline));
    }
    tasks.spawn(tenant_task(shared.clone(), deadline));
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    let load_seconds = load_started.elapsed().as_secs_f64();
    let end_sample = sample(&shared).await;
    samples.lock().unwrap().push(end_sample);
    // "Warm": a quarter into the load, when the caches have had time to fill.
    let warm_at = start_sample.at_s + load_seconds * 0.25;
    let warm_tokens = a.warm_tokens;

    println!("soak: load done after {load_seconds:.1} s; waiting {} ms, then verifying every killed token on both replicas", a.settle_ms);
    tokio::time::sleep(Duration::from_millis(a.settle_ms)).await;

    // Every token that an acknowledged revocation must have killed, once.
    let revs = std::mem::take(&mut *shared.revs.lock().unwrap());
    let mut index: HashMap<*const Tok, usize> = HashMap::new();
    let mut unique: Vec<Arc<Tok>> = Vec::new();
    let mut rev_tokens: Vec<(Kind, Vec<usize>)> = Vec::with_capacity(revs.len());
    for rev in &revs {
        let ids = rev
            .tokens
            .iter()
            .map(|t| {
                *index.entry(Arc::as_ptr(t)).or_insert_with(|| {
                    unique.push(t.clone());
                    unique.len() - 1
                })
            })
            .collect();
        rev_tokens.push((rev.kind, ids));
    }
    let verification = verify(&shared, Arc::new(unique)).await;
    sampling_done.store(true, Relaxed);
    let after_sample = sample(&shared).await;
    let _ = sampler_task.await;

    // Per kind: acknowledged revocations enforced on A, on B; tokens lost.
    let mut enforced = [[0u64; 2]; 3];
    let mut revs_lost = [0u64; 3];
    let mut killed_tokens = [0u64; 3];
    for (kind, ids) in &rev_tokens {
        let k = kind.index();
        killed_tokens[k] += ids.len() as u64;
        let mut any_lost = false;
        for (r, enforced_on) in enforced[k].iter_mut().enumerate() {
            let ok = ids.iter().all(|&i| {
                matches!(
                    verification.verdicts[i][r],
                    Verdict::Enforced | Verdict::DeniedOther
                )
            });
            if ok {
                *enforced_on += 1;
            }
            any_lost |= ids
                .iter()
                .any(|&i| verification.verdicts[i][r] == Verdict::Lost);
        }
        if any_lost {
            revs_lost[k] += 1;
        }
    }
    let count =
        |r: usize, v: Verdict| verification.verdicts.iter().filter(|x| x[r] == v).count() as u64;
    let lost = verification
        .verdicts
        .iter()
        .filter(|x| x.contains(&Verdict::Lost))
        .count() as u64;
    let unverified = verification
        .verdicts
        .iter()
        .filter(|x| x.contains(&Verdict::Unverified))
        .count() as u64;

    // Fresh tokens denied as revoked: each must be explained by a cut-off the run wrote
    // (or tried to write) for its user or tenant at or after its iat.
    let mut cut: HashMap<(Kind, u32), i64> = HashMap::new();
    for c in shared.cutoffs.lock().unwrap().iter() {
        let e = cut.entry((c.kind, c.id)).or_insert(i64::MIN);
        *e = (*e).max(c.before_ms);
    }
    let covered =
        |kind: Kind, id: u32, iat: i64| cut.get(&(kind, id)).is_some_and(|&b| iat * 1000 <= b);
    let fresh_denied = std::mem::take(&mut *shared.fresh_denied.lock().unwrap());
    let false_denials: Vec<&(Arc<Tok>, String)> = fresh_denied
        .iter()
        .filter(|(t, reason)| match reason.as_str() {
            "user_revoked" => !covered(Kind::LogoutAll, t.user, t.iat),
            "tenant_revoked" => !covered(Kind::Tenant, t.tenant, t.iat),
            _ => true,
        })
        .collect();

    // Memory.
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let mut mem = Vec::new();
    for r in 0..2 {
        let start = start_sample.rss[r];
        let peak = samples
            .iter()
            .filter_map(|s| s.rss[r])
            .chain(after_sample.rss[r])
            .max();
        let warm = samples
            .iter()
            .find(|s| s.at_s >= warm_at && s.distinct >= warm_tokens)
            .and_then(|s| s.rss[r]);
        let end = end_sample.rss[r];
        mem.push((start, warm, peak, end, after_sample.rss[r]));
    }

    // Replica-side counters.
    let mut server = Vec::new();
    for r in 0..2 {
        let text = metrics_text(&shared, r).await.unwrap_or_default();
        let m = |name: &str, labels: &[&str]| metric_sum(&text, name, labels).unwrap_or(0.0) as u64;
        server.push(json!({
            "store_ok": m("tokengate_store_requests_total", &["result=\"ok\""]),
            "store_error": m("tokengate_store_requests_total", &["result=\"error\""]),
            "store_timeout": m("tokengate_store_requests_total", &["result=\"timeout\""]),
            "invalidation_events": m("tokengate_invalidation_events_total", &[]),
            "invalidation_gaps": m("tokengate_invalidation_gaps_total", &[]),
            "subscription_up": m("tokengate_invalidation_subscription_up", &[]),
            "verified_cache_hit": m("tokengate_cache_requests_total", &["cache=\"verified\"", "result=\"hit\""]),
            "verified_cache_miss": m("tokengate_cache_requests_total", &["cache=\"verified\"", "result=\"miss\""]),
            "revocation_cache_hit": m("tokengate_cache_requests_total", &["cache=\"revocation\"", "result=\"hit\""]),
            "revocation_cache_miss": m("tokengate_cache_requests_total", &["cache=\"revocation\"", "result=\"miss\""]),
        }));
    }

    // ------------------------------------------------------------ the summary
    let mb = 1048576.0;
    let st = |r: usize| &shared.replicas[r].stats;
    let sum =
        |f: fn(&PerReplica) -> &AtomicU64| -> u64 { (0..2).map(|r| f(st(r)).load(Relaxed)).sum() };
    let checks = sum(|s| &s.checks);
    let online_lost = sum(|s| &s.online_lost);
    let distinct = shared.distinct.load(Relaxed);
    let cutoff_anomalies = shared.cutoff_before_send.load(Relaxed);
    let logout_of_revoked = shared.logout_of_revoked.load(Relaxed);

    let mut failures: Vec<String> = Vec::new();
    if lost > 0 {
        failures.push(format!(
            "lost = {lost}: acknowledged revocations not enforced"
        ));
    }
    if online_lost > 0 {
        failures.push(format!(
            "online lost = {online_lost}: revoked tokens allowed after {} ms",
            a.settle_ms
        ));
    }
    if logout_of_revoked > 0 {
        failures.push(format!(
            "{logout_of_revoked} logouts accepted a token revoked > {} ms before",
            a.settle_ms
        ));
    }
    if unverified > 0 {
        failures.push(format!(
            "{unverified} killed tokens could not be verified (errors)"
        ));
    }
    if !false_denials.is_empty() {
        failures.push(format!(
            "{} fresh tokens denied without a revocation covering them",
            false_denials.len()
        ));
    }
    // Not failures of the run (the verification above is what counts), but worth a look.
    let mut warnings: Vec<String> = Vec::new();
    for (r, m) in server.iter().enumerate() {
        let name = shared.replicas[r].name;
        if m["subscription_up"] != 1 {
            warnings.push(format!(
                "replica {name}: tokengate_invalidation_subscription_up = {} at the end (gaps {})",
                m["subscription_up"], m["invalidation_gaps"]
            ));
        }
        if m["invalidation_gaps"] != 0 {
            warnings.push(format!(
                "replica {name}: {} invalidation gaps",
                m["invalidation_gaps"]
            ));
        }
    }
    let unavailable = shared.fresh_store_unavailable.load(Relaxed);
    if unavailable > 0 {
        warnings.push(format!(
            "{unavailable} fresh checks answered 503 store_unavailable (store deadline exceeded?)"
        ));
    }
    if cutoff_anomalies > 0 {
        failures.push(format!("{cutoff_anomalies} tokens minted before a revocation was sent lie after its acknowledged cut-off"));
    }
    for (r, (_, warm, peak, end, _)) in mem.iter().enumerate() {
        let name = shared.replicas[r].name;
        if a.max_rss_mb > 0 {
            match peak {
                Some(p) if *p > a.max_rss_mb * 1048576 => failures.push(format!(
                    "replica {name}: RSS peak {:.1} MiB > bound {} MiB",
                    *p as f64 / mb,
                    a.max_rss_mb
                )),
                None => failures.push(format!("replica {name}: RSS could not be read")),
                _ => {}
            }
        }
        if a.max_growth_mb > 0 {
            if let (Some(w), Some(e)) = (warm, end) {
                let growth = *e as i64 - *w as i64;
                if growth > (a.max_growth_mb * 1048576) as i64 {
                    failures.push(format!(
                        "replica {name}: RSS grew {:.1} MiB from 25 % of the run to its end > bound {} MiB",
                        growth as f64 / mb,
                        a.max_growth_mb
                    ));
                }
            }
        }
    }

    let line = "-".repeat(78);
    println!("\n{line}\nSOAK SUMMARY (run {})\n{line}", shared.run);
    println!(
        "{:<44} {:.1} s load (+ {:.1} s verification)",
        "duration", load_seconds, verification.seconds
    );
    println!(
        "{:<44} {}",
        "operations sent (load)",
        shared.requests.load(Relaxed).min(a.max_requests)
    );
    println!(
        "{:<44} {:>12} {:>12} {:>12}",
        "checks (gRPC)", "A", "B", "total"
    );
    for (label, f) in [
        (
            "  sent",
            (|s: &PerReplica| &s.checks) as fn(&PerReplica) -> &AtomicU64,
        ),
        ("  allowed", |s| &s.allowed),
        ("  denied", |s| &s.denied),
        ("  errors", |s| &s.errors),
        ("  re-check allowed < settle after revoke", |s| &s.stale),
        ("  ONLINE LOST (allowed > settle after)", |s| &s.online_lost),
    ] {
        let (x, y) = (f(st(0)).load(Relaxed), f(st(1)).load(Relaxed));
        println!("{label:<44} {x:>12} {y:>12} {:>12}", x + y);
    }
    let q = |r: usize, q: f64| {
        st(r).latency.quantile(q).map_or("n/a".to_string(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        })
    };
    println!(
        "{:<44} {:>12} {:>12}",
        "  latency p50 (bucket upper bound)",
        q(0, 0.5),
        q(1, 0.5)
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "  latency p99",
        q(0, 0.99),
        q(1, 0.99)
    );
    println!(
        "{:<44} {:>12} {:>12}",
        "  sequential latency (median, 1 in flight)",
        format!("{:.1} ms", seq[0].as_secs_f64() * 1e3),
        format!("{:.1} ms", seq[1].as_secs_f64() * 1e3)
    );
    println!(
        "{:<44} {} ({:.0}/s)",
        "checks per second (both)",
        checks,
        checks as f64 / load_seconds
    );
    println!("{:<44} {distinct}", "distinct tokens minted");
    println!(
        "{:<44} {}",
        "deny reasons (load)",
        shared
            .deny_reasons
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<44} {}",
        "fresh checks denied store_unavailable",
        shared.fresh_store_unavailable.load(Relaxed)
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "revocations", "sent", "acked", "refused", "503", "errors"
    );
    for k in Kind::ALL {
        let s = &shared.rev_stats[k.index()];
        println!(
            "{:<44} {:>9} {:>9} {:>9} {:>9} {:>9}",
            format!("  {}", k.name()),
            s.sent.load(Relaxed),
            s.acked.load(Relaxed),
            s.refused.load(Relaxed),
            s.unavailable.load(Relaxed),
            s.errors.load(Relaxed)
        );
    }
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "verification (acknowledged)", "acked", "tokens", "enf. A", "enf. B", "lost"
    );
    for k in Kind::ALL {
        let i = k.index();
        let acked = rev_tokens.iter().filter(|(kind, _)| *kind == k).count();
        println!(
            "{:<44} {:>9} {:>9} {:>9} {:>9} {:>9}",
            format!("  {}", k.name()),
            acked,
            killed_tokens[i],
            enforced[i][0],
            enforced[i][1],
            revs_lost[i]
        );
    }
    println!(
        "{:<44} {}",
        "distinct killed tokens checked on A and B", verification.unique
    );
    for r in 0..2 {
        println!(
            "{:<44} enforced {} denied-other {} LOST {} unverified {}   [{}]",
            format!("  replica {}", shared.replicas[r].name),
            count(r, Verdict::Enforced),
            count(r, Verdict::DeniedOther),
            count(r, Verdict::Lost),
            count(r, Verdict::Unverified),
            verification.reasons[r]
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!("{:<44} {lost}", "LOST (killed tokens allowed on A or B)");
    println!(
        "{:<44} {}",
        "false denials (fresh, unexplained)",
        false_denials.len()
    );
    println!(
        "{:<44} {}",
        "cut-off before send (anomaly)", cutoff_anomalies
    );
    println!(
        "{:<44} {}",
        "logout acked for long-revoked token", logout_of_revoked
    );
    println!(
        "{:<44} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "RSS (MiB)", "start", "at 25 %", "peak", "end load", "end verif."
    );
    let f = |v: Option<u64>| v.map_or("n/a".to_string(), |b| format!("{:.1}", b as f64 / mb));
    for (r, (start, warm, peak, end, after)) in mem.iter().enumerate() {
        println!(
            "{:<44} {:>11} {:>11} {:>11} {:>11} {:>11}",
            format!("  replica {}", shared.replicas[r].name),
            f(*start),
            f(*warm),
            f(*peak),
            f(*end),
            f(*after)
        );
    }
    for (r, s) in server.iter().enumerate() {
        println!(
            "{:<44} {}",
            format!("  replica {} /metrics", shared.replicas[r].name),
            s
        );
    }
    if a.max_rss_mb > 0 || a.max_growth_mb > 0 {
        println!(
            "{:<44} peak <= {} MiB, growth (end - 25 %) <= {} MiB (0 = unchecked)",
            "memory bounds", a.max_rss_mb, a.max_growth_mb
        );
    }
    for (t, reason) in false_denials.iter().take(5) {
        println!(
            "  false denial example: user u{} tenant t{} iat {} reason {reason}",
            t.user, t.tenant, t.iat
        );
    }
    println!("{line}");
    for w in &warnings {
        println!("WARN: {w}");
    }
    if failures.is_empty() {
        println!("RESULT: PASS (lost = 0)");
    } else {
        for f in &failures {
            println!("FAIL: {f}");
        }
        println!("RESULT: FAIL");
    }

    if let Some(path) = &a.summary_json {
        let per_kind = |f: &dyn Fn(usize) -> Value| -> Value {
            Kind::ALL
                .iter()
                .map(|k| (k.name().to_string(), f(k.index())))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let summary = json!({
            "run": shared.run,
            "load_seconds": load_seconds,
            "verification_seconds": verification.seconds,
            "checks": (0..2).map(|r| json!({
                "replica": shared.replicas[r].name,
                "sent": st(r).checks.load(Relaxed),
                "allowed": st(r).allowed.load(Relaxed),
                "denied": st(r).denied.load(Relaxed),
                "errors": st(r).errors.load(Relaxed),
                "online_lost": st(r).online_lost.load(Relaxed),
                "latency_p50_ms": st(r).latency.quantile(0.5).map(|d| d.as_secs_f64() * 1e3),
                "latency_p99_ms": st(r).latency.quantile(0.99).map(|d| d.as_secs_f64() * 1e3),
                "sequential_latency_ms": seq[r].as_secs_f64() * 1e3,
                "stale": st(r).stale.load(Relaxed),
            })).collect::<Vec<_>>(),
            "distinct_tokens": distinct,
            "revocations_acked": per_kind(&|i| shared.rev_stats[i].acked.load(Relaxed).into()),
            "revocations_sent": per_kind(&|i| shared.rev_stats[i].sent.load(Relaxed).into()),
            "enforced_a": per_kind(&|i| enforced[i][0].into()),
            "enforced_b": per_kind(&|i| enforced[i][1].into()),
            "killed_tokens_checked": verification.unique,
            "lost": lost,
            "unverified": unverified,
            "false_denials": false_denials.len(),
            "rss_bytes": mem.iter().map(|(s, w, p, e, v)| json!({"start": s, "warm": w, "peak": p, "end": e, "after_verify": v})).collect::<Vec<_>>(),
            "server": server,
            "failures": failures,
            "warnings": warnings,
        });
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(failures.is_empty())
}
