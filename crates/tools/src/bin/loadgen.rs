//! A gRPC ext_authz load generator that, unlike h2load, sends a *different* request each
//! time and checks every answer.
//!
//! Reads the gRPC-framed `CheckRequest`s written by `gen_requests` (already encoded: the
//! client only copies bytes), opens `--connections` HTTP/2 connections with `--inflight`
//! requests in flight on each, sends `--count` Checks cycling through the requests, and
//! decodes every `CheckResponse`: an answer counts as allowed only when its
//! `google.rpc.Status` is OK and it carries an `OkResponse`. Prints one JSON line: counts
//! of allows, denies by code and transport errors, throughput, latency percentiles and the
//! sizes of the response messages (for checking h2load runs by their byte counts).
//!
//! With `--expect allow`, exits with status 3 when any answer was not an allow: a
//! throughput of denied checks is not a throughput.
//!
//!     cargo run --release -p tokengate-tools --bin loadgen -- --addr http://127.0.0.1:19111 \
//!         --requests es256.grpc --count 50000 --connections 4 --inflight 32 --warmup

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use prost::bytes::{BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

#[derive(Parser, Clone)]
struct Args {
    /// gRPC server (loopback).
    #[arg(long)]
    addr: String,
    /// gRPC-framed requests (gen_requests --requests).
    #[arg(long)]
    requests: PathBuf,
    /// Checks to send (the run stops earlier at --max-seconds).
    #[arg(long, default_value_t = 50_000)]
    count: usize,
    /// First request index (to continue through a file of never-seen tokens).
    #[arg(long, default_value_t = 0)]
    offset: usize,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 32)]
    inflight: usize,
    /// Send every request of the file once, untimed, before the measured run.
    #[arg(long)]
    warmup: bool,
    /// Time bound of the measured run.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Client runtime threads (1: a single-threaded runtime, like h2load's default).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `allow`: exit 3 unless every answer of the measured run (and warm-up) is an allow.
    #[arg(long, default_value = "allow")]
    expect: String,
    /// Free-form label copied into the JSON line.
    #[arg(long, default_value = "")]
    label: String,
}

/// Sends pre-encoded protobuf bytes; decodes `CheckResponse` and notes its size.
#[derive(Clone, Default)]
struct RawCodec;

struct RawEncoder;
struct SizedDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for SizedDecoder {
    type Item = (CheckResponse, usize);
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        use prost::bytes::Buf;
        let size = src.remaining();
        let msg = CheckResponse::decode(src).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Some((msg, size)))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = (CheckResponse, usize);
    type Encoder = RawEncoder;
    type Decoder = SizedDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> SizedDecoder {
        SizedDecoder
    }
}

#[derive(Default)]
struct Tally {
    ok: u64,
    /// Non-OK `google.rpc.Status` codes in answered Checks (denies).
    denied: BTreeMap<i32, u64>,
    /// OK status without an OkResponse, or other shapes.
    odd: u64,
    /// gRPC errors (the call itself failed).
    errors: BTreeMap<String, u64>,
    sizes: BTreeMap<usize, u64>,
    latencies_ns: Vec<u64>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.odd += o.odd;
        for (k, v) in o.denied {
            *self.denied.entry(k).or_default() += v;
        }
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.sizes {
            *self.sizes.entry(k).or_default() += v;
        }
        self.latencies_ns.extend(o.latencies_ns);
    }

    fn total(&self) -> u64 {
        self.ok + self.odd + self.denied.values().sum::<u64>() + self.errors.values().sum::<u64>()
    }
}

fn read_frames(path: &PathBuf) -> anyhow::Result<Vec<Bytes>> {
    let data = std::fs::read(path)?;
    let mut frames = Vec::new();
    let mut at = 0;
    while at < data.len() {
        anyhow::ensure!(at + 5 <= data.len(), "truncated frame header at {at}");
        anyhow::ensure!(data[at] == 0, "compressed frame at {at}");
        let len = u32::from_be_bytes(data[at + 1..at + 5].try_into()?) as usize;
        anyhow::ensure!(at + 5 + len <= data.len(), "truncated frame at {at}");
        frames.push(Bytes::copy_from_slice(&data[at + 5..at + 5 + len]));
        at += 5 + len;
    }
    anyhow::ensure!(!frames.is_empty(), "{} holds no request", path.display());
    Ok(frames)
}

/// Sends `indices` (drawn from a shared counter) over `channels`, `inflight` per channel.
async fn drive(
    channels: &[Channel],
    inflight: usize,
    frames: Arc<Vec<Bytes>>,
    first: usize,
    count: usize,
    deadline: Instant,
) -> (Tally, Duration, bool) {
    let next = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ch in channels {
        for _ in 0..inflight {
            let mut client = tonic::client::Grpc::new(ch.clone());
            let (next, stopped, tally, frames) =
                (next.clone(), stopped.clone(), tally.clone(), frames.clone());
            tasks.push(tokio::spawn(async move {
                let mut t = Tally::default();
                let path = PathAndQuery::from_static(CHECK);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    if Instant::now() >= deadline {
                        stopped.store(true, Ordering::Relaxed);
                        break;
                    }
                    let body = frames[(first + i) % frames.len()].clone();
                    let t0 = Instant::now();
                    let answer = match client.ready().await {
                        Ok(()) => {
                            client
                                .unary(tonic::Request::new(body), path.clone(), RawCodec)
                                .await
                        }
                        Err(e) => Err(Status::unavailable(e.to_string())),
                    };
                    t.latencies_ns.push(t0.elapsed().as_nanos() as u64);
                    match answer {
                        Ok(resp) => {
                            let (msg, size) = resp.into_inner();
                            *t.sizes.entry(size).or_default() += 1;
                            let code = msg.status.as_ref().map_or(-1, |s| s.code);
                            match (code, &msg.http_response) {
                                (0, Some(HttpResponse::OkResponse(_))) => t.ok += 1,
                                (0, _) => t.odd += 1,
                                (c, _) => *t.denied.entry(c).or_default() += 1,
                            }
                        }
                        Err(s) => *t.errors.entry(format!("{:?}", s.code())).or_default() += 1,
                    }
                }
                tally.lock().unwrap().merge(t);
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    (tally, elapsed, stopped.load(Ordering::Relaxed))
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn run(args: Args) -> anyhow::Result<i32> {
    let frames = Arc::new(read_frames(&args.requests)?);
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        // One Endpoint::connect per channel: one TCP connection each.
        channels.push(
            Endpoint::from_shared(args.addr.clone())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let far = Instant::now() + Duration::from_secs(3600);
    let mut warm = Tally::default();
    if args.warmup {
        let (t, _, _) = drive(
            &channels,
            args.inflight.max(1),
            frames.clone(),
            0,
            frames.len(),
            far.min(Instant::now() + Duration::from_secs_f64(args.max_seconds * 4.0)),
        )
        .await;
        warm = t;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.max_seconds);
    let (mut t, elapsed, stopped) = drive(
        &channels,
        args.inflight.max(1),
        frames.clone(),
        args.offset,
        args.count,
        deadline,
    )
    .await;
    t.latencies_ns.sort_unstable();
    let total = t.total();
    let secs = elapsed.as_secs_f64();
    let sizes: serde_json::Map<String, serde_json::Value> = t
        .sizes
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    let denied: serde_json::Map<String, serde_json::Value> = t
        .denied
        .iter()
        .map(|(k, v)| (k.to_string(), (*v).into()))
        .collect();
    let errors: serde_json::Map<String, serde_json::Value> = t
        .errors
        .iter()
        .map(|(k, v)| (k.clone(), (*v).into()))
        .collect();
    let all_allowed = t.ok == total && total > 0 && !stopped && warm.ok == warm.total();
    println!(
        "{}",
        serde_json::json!({
            "label": args.label,
            "distinct_requests": frames.len(),
            "sent": total,
            "ok": t.ok,
            "denied": denied,
            "odd": t.odd,
            "errors": errors,
            "warmup_sent": warm.total(),
            "warmup_ok": warm.ok,
            "stopped_by_time": stopped,
            "elapsed_s": secs,
            "rps": if secs > 0.0 { total as f64 / secs } else { 0.0 },
            "ok_rps": if secs > 0.0 { t.ok as f64 / secs } else { 0.0 },
            "p50_us": pct(&t.latencies_ns, 50.0),
            "p90_us": pct(&t.latencies_ns, 90.0),
            "p99_us": pct(&t.latencies_ns, 99.0),
            "p999_us": pct(&t.latencies_ns, 99.9),
            "max_us": t.latencies_ns.last().map_or(0.0, |v| *v as f64 / 1000.0),
            "response_sizes": sizes,
            "all_allowed": all_allowed,
        })
    );
    Ok(if args.expect == "allow" && !all_allowed {
        3
    } else {
        0
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let code = runtime.block_on(run(args))?;
    std::process::exit(code);
}
