//! A real OTLP trace receiver in a child process (issue 17): `tests/otel/receiver.py` on
//! the OpenTelemetry project's own protobuf types (PyPI opentelemetry-proto + grpcio in
//! `.tools/venv`), serving OTLP/gRPC and OTLP/HTTP on loopback ports it binds itself and
//! reports through port files. Every span it receives is one JSON line in a file this
//! module reads back, so a test asserts on what an independent collector decoded, not on
//! what the exporter meant to send. Stopped on drop; `stop` then `restart` (same ports)
//! is a collector outage.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use super::procs::{repo, Proc};
use super::wait_for;

/// One span as the receiver decoded it (see tests/otel/receiver.py for the format).
#[derive(Debug, Clone, Deserialize)]
pub struct Span {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// 16 lower-case hex digits, or "" for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// `SPAN_KIND_SERVER`, `SPAN_KIND_CLIENT`, ...
    pub kind: String,
    /// The resource's `service.name` ("" when the exporter set none).
    pub service_name: String,
    /// The resource's attributes, values as strings.
    #[serde(default)]
    pub resource: std::collections::BTreeMap<String, String>,
    /// Every attribute's value as a string (numbers in decimal, arrays and maps as JSON).
    pub attributes: std::collections::BTreeMap<String, String>,
    pub events: Vec<serde_json::Value>,
    /// "grpc" or "http": which of the receiver's two OTLP transports carried it.
    pub via: String,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

pub struct OtelReceiver {
    proc: Option<Proc>,
    /// OTLP/gRPC (`TraceService/Export`) on 127.0.0.1.
    pub grpc_port: u16,
    /// OTLP/HTTP protobuf (`POST /v1/traces`) on 127.0.0.1.
    pub http_port: u16,
    dir: PathBuf,
}

/// The venv's Python with the receiver's libraries; panics with the install command
/// when they are missing.
fn python() -> PathBuf {
    let python = repo().join(".tools/venv/bin/python");
    let ok = Command::new(&python)
        .args([
            "-I",
            "-c",
            "import grpc, opentelemetry.proto, prometheus_client.openmetrics.parser",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "opentelemetry-proto/grpcio/prometheus-client are not installed in .tools/venv: run \
         scripts/install-test-deps.sh (the README's test command does)"
    );
    python
}

impl OtelReceiver {
    /// Starts on ports the kernel picks; returns once both are bound.
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-otel-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("receiver scratch dir");
        let mut r = OtelReceiver {
            proc: None,
            grpc_port: 0,
            http_port: 0,
            dir,
        };
        r.spawn().await;
        r
    }

    /// The gRPC endpoint as an OTLP exporter is configured with it (for tokengate's own
    /// exporter: Envoy is given the port, through a cluster).
    #[allow(dead_code)]
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The OTLP/HTTP traces URL.
    pub fn http_traces_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.http_port)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("receiver.log")
    }

    fn out(&self) -> PathBuf {
        self.dir.join("spans.jsonl")
    }

    /// The receiver's stderr so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Starts the process on `self`'s ports (0: any) and waits for both port files.
    async fn spawn(&mut self) {
        let grpc_file = self.dir.join("grpc.port");
        let http_file = self.dir.join("http.port");
        let _ = std::fs::remove_file(&grpc_file);
        let _ = std::fs::remove_file(&http_file);
        let log = std::fs::File::create(self.log()).expect("receiver log file");
        let mut cmd = Command::new(python());
        cmd.arg("-I")
            .arg(repo().join("tests/otel/receiver.py"))
            .arg("--port-file")
            .arg(&grpc_file)
            .arg("--http-port-file")
            .arg(&http_file)
            .arg("--out")
            .arg(self.out())
            .args(["--grpc-port", &self.grpc_port.to_string()])
            .args(["--http-port", &self.http_port.to_string()])
            .stdout(Stdio::null())
            .stderr(log);
        self.proc = Some(Proc::spawn("otel-receiver", &mut cmd));

        let mut ports = None;
        let (proc, log) = (&mut self.proc, self.dir.join("receiver.log"));
        wait_for(
            "the OTLP receiver to report its ports",
            Duration::from_secs(20),
            || {
                super::procs::assert_running(proc, &log, "the OTLP receiver");
                ports = read_port(&grpc_file).zip(read_port(&http_file));
                std::future::ready(ports.is_some())
            },
        )
        .await;
        let (grpc, http) = ports.expect("both ports");
        for (asked, got, what) in [
            (self.grpc_port, grpc, "gRPC"),
            (self.http_port, http, "HTTP"),
        ] {
            assert!(
                asked == 0 || asked == got,
                "asked for {what} port {asked}, got {got}"
            );
        }
        self.grpc_port = grpc;
        self.http_port = http;
    }

    /// Stops the receiver with SIGTERM and waits for it to exit (its ports are free
    /// again): the collector is down until [`restart`](Self::restart).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("TERM");
            let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(10)));
            assert!(
                status.success(),
                "the OTLP receiver exited with {status} on SIGTERM: {}",
                self.log_text()
            );
        }
    }

    /// Starts again on the same two ports; the spans received so far are kept. Panics
    /// (with the log) when another process took a port in between.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        std::fs::read_to_string(self.out())
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("receiver wrote a bad line {l:?}: {e}"))
            })
            .collect()
    }

    /// Waits until the spans received satisfy `pred` and returns them; panics after
    /// `deadline` with what was received.
    pub async fn wait_for_spans(
        &self,
        what: &str,
        deadline: Duration,
        mut pred: impl FnMut(&[Span]) -> bool,
    ) -> Vec<Span> {
        let start = std::time::Instant::now();
        loop {
            let spans = self.spans();
            if pred(&spans) {
                return spans;
            }
            if start.elapsed() > deadline {
                panic!(
                    "timed out after {deadline:?} waiting for {what}; received {} span(s):\n{}\nreceiver log:\n{}",
                    spans.len(),
                    spans
                        .iter()
                        .map(|s| format!("  {} {} {} ({})", s.service_name, s.trace_id, s.name, s.kind))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The spans of `service` in the trace that one of its spans named `name` belongs to:
/// e.g. `trace_of(&spans, "envoy", |s| s.name == "ingress")`. Panics when none matches.
pub fn trace_of<'a>(
    spans: &'a [Span],
    service: &str,
    mut pick: impl FnMut(&Span) -> bool,
) -> Vec<&'a Span> {
    let trace_id = &spans
        .iter()
        .find(|s| s.service_name == service && pick(s))
        .unwrap_or_else(|| panic!("no span of {service} matches among {spans:#?}"))
        .trace_id;
    spans.iter().filter(|s| &s.trace_id == trace_id).collect()
}

fn read_port(path: &Path) -> Option<u16> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Drop for OtelReceiver {
    fn drop(&mut self) {
        self.proc = None;
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What prometheus_client's strict OpenMetrics parser (tests/otel/openmetrics.py) made
/// of a scrape: the family names and the samples that carry an exemplar. Panics with the
/// parser's error when `text` is not valid OpenMetrics.
pub fn parse_openmetrics(text: &str) -> serde_json::Value {
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("tests/otel/openmetrics.py"));
    let out = crate::support::procs::pipe_through(
        cmd,
        text.as_bytes(),
        &format!("openmetrics.py (the scrape was:\n{text})"),
    );
    serde_json::from_slice(&out).expect("openmetrics.py JSON")
}
