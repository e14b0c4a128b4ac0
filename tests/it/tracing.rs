//! OpenTelemetry tracing end to end (issue 17): Envoy, with its OpenTelemetry tracer,
//! exports its spans to a real OTLP receiver ([`support::otel`]) and sends the W3C
//! `traceparent` of its ext_authz span to tokengate in the CheckRequest, so tokengate's
//! check span can join the same trace.

use std::time::Duration;

use crate::support::check_recorder::CheckRecorder;
use crate::support::envoy::{
    rewrite_ports, EchoUpstream, Envoy, ADMIN_PORT, APP_PORT, LISTENER_PORT, TOKENGATE_GRPC_PORT,
    TOKENGATE_HTTP_PORT,
};
use crate::support::otel::{trace_of, OtelReceiver, Span};
use crate::support::{self, TestServer, MEMORY_STORE};

/// Envoy's name for the span of its ext_authz gRPC call (the async gRPC client's span:
/// "async {service}.{method} egress"); tokengate's check span is to be its child.
pub const ENVOY_EXT_AUTHZ_SPAN: &str = "async envoy.service.auth.v3.Authorization.Check egress";

/// How long spans may take to reach the receiver: Envoy flushes on a timer, which
/// [`envoy_tracing_config`] sets short.
const SPANS: Duration = Duration::from_secs(15);

/// The OTLP collector's port in envoy/envoy-tracing.yaml.
pub const OTLP_PORT: u16 = 4317;

/// The shipped envoy/envoy-tracing.yaml with its ports rewritten as `Envoy::start` does
/// (admin and ingress on 0), the collector at `otlp_port`, every request sampled and
/// spans flushed after each one or 100 ms (the file samples 1 % and flushes on Envoy's
/// defaults).
pub fn envoy_tracing_config(
    tokengate: &tokengate::Addrs,
    app: std::net::SocketAddr,
    otlp_port: u16,
) -> String {
    let path = crate::support::procs::repo().join("envoy/envoy-tracing.yaml");
    let template = std::fs::read_to_string(path).expect("envoy/envoy-tracing.yaml");
    let text = rewrite_ports(
        &template,
        &[
            (ADMIN_PORT, 0),
            (LISTENER_PORT, 0),
            (TOKENGATE_GRPC_PORT, tokengate.grpc.port()),
            (TOKENGATE_HTTP_PORT, tokengate.http.port()),
            (APP_PORT, app.port()),
            (OTLP_PORT, otlp_port),
        ],
    );
    let sampling = "random_sampling: { value: 1 }";
    assert_eq!(
        text.matches(sampling).count(),
        1,
        "envoy-tracing.yaml's sampling moved"
    );
    let text = text.replace(sampling, "random_sampling: { value: 100 }");
    let runtime = r#"
layered_runtime:
  layers:
    - name: tracing
      static_layer:
        tracing.opentelemetry.min_flush_spans: 1
        tracing.opentelemetry.flush_interval_ms: 100
"#;
    format!("{}{runtime}", text.trim_end())
}

/// tokengate (memory store), an echo upstream, the receiver and a tracing Envoy.
struct Stack {
    receiver: OtelReceiver,
    _server: TestServer,
    _upstream: EchoUpstream,
    envoy: Envoy,
}

impl Stack {
    async fn start() -> Stack {
        let receiver = OtelReceiver::start().await;
        let server = TestServer::start(&support::config_yaml(MEMORY_STORE)).await;
        let upstream = EchoUpstream::start().await;
        let config = envoy_tracing_config(&server.addrs, upstream.addr, receiver.grpc_port);
        let envoy = Envoy::start_text(&config).await;
        Stack {
            receiver,
            _server: server,
            _upstream: upstream,
            envoy,
        }
    }
}

fn describe(spans: &[&Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {:?} {} parent={:?}",
                s.service_name, s.name, s.span_id, s.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_sends_its_spans_to_the_receiver() {
    let stack = Stack::start().await;
    let token = support::token("rsa", "alice", serde_json::json!({}));
    let resp = reqwest::Client::new()
        .get(stack.envoy.url("/api/items"))
        .header("authorization", support::bearer(&token))
        .send()
        .await
        .expect("request through Envoy");
    assert_eq!(resp.status(), 200, "envoy log:\n{}", stack.envoy.log());
    let body: serde_json::Value = resp.json().await.expect("echo JSON");
    let upstream_tp = crate::support::envoy::echoed(&body, "traceparent");
    assert_eq!(upstream_tp.len(), 1, "the app gets one traceparent: {body}");

    let spans = stack
        .receiver
        .wait_for_spans("Envoy's ingress and ext_authz spans", SPANS, |spans| {
            spans
                .iter()
                .any(|s| s.service_name == "envoy" && s.name == ENVOY_EXT_AUTHZ_SPAN)
                && spans
                    .iter()
                    .any(|s| s.service_name == "envoy" && s.kind == "SPAN_KIND_SERVER")
        })
        .await;
    let trace = trace_of(&spans, "envoy", |s| s.name == ENVOY_EXT_AUTHZ_SPAN);
    let ingress = trace
        .iter()
        .find(|s| s.kind == "SPAN_KIND_SERVER" && s.parent_span_id.is_empty())
        .unwrap_or_else(|| panic!("no root server span in the trace:\n{}", describe(&trace)));
    let authz = trace
        .iter()
        .find(|s| s.name == ENVOY_EXT_AUTHZ_SPAN)
        .expect("the ext_authz span");
    assert_eq!(
        authz.parent_span_id,
        ingress.span_id,
        "the ext_authz span is a child of the request's span:\n{}",
        describe(&trace)
    );
    assert_eq!(authz.kind, "SPAN_KIND_CLIENT");
    assert_eq!(authz.via, "grpc");
    // The upstream request carries the same trace: what was exported is the request's.
    let tp: Vec<&str> = upstream_tp[0].split('-').collect();
    assert_eq!(
        tp.get(1).copied(),
        Some(ingress.trace_id.as_str()),
        "traceparent {upstream_tp:?}"
    );
}

async fn get_through(envoy: &Envoy) -> reqwest::StatusCode {
    let token = support::token("rsa", "alice", serde_json::json!({}));
    reqwest::Client::new()
        .get(envoy.url("/api/items"))
        .header("authorization", support::bearer(&token))
        .send()
        .await
        .expect("request through Envoy")
        .status()
}

/// A collector outage costs spans, never requests: with the receiver down Envoy still
/// answers (tracing is not on the request path), and once it is back on the same port
/// a later request's spans arrive again.
#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_outage_loses_spans_not_requests() {
    let mut stack = Stack::start().await;
    let port = stack.receiver.grpc_port;
    stack.receiver.stop();
    assert_eq!(
        get_through(&stack.envoy).await,
        200,
        "{}",
        stack.envoy.log()
    );

    stack.receiver.restart().await;
    assert_eq!(
        stack.receiver.grpc_port, port,
        "back on the port Envoy exports to"
    );
    // Envoy reconnects on its own schedule: request until an ext_authz span arrives.
    let before = stack.receiver.spans().len();
    let envoy = &stack.envoy;
    support::wait_for("Envoy's spans after the receiver's restart", SPANS, || {
        let spans = stack.receiver.spans();
        async move {
            assert_eq!(get_through(envoy).await, 200);
            spans[before.min(spans.len())..]
                .iter()
                .any(|s| s.service_name == "envoy" && s.name == ENVOY_EXT_AUTHZ_SPAN)
        }
    })
    .await;
}

/// Where tokengate finds the trace to join: Envoy's gRPC ext_authz client puts the
/// `traceparent` of its ext_authz span (trace id = the request's trace, parent id = that
/// span's id) in the Check call's gRPC metadata. The CheckRequest's
/// `attributes.request.http.headers` are the client's request headers: they carry no
/// `traceparent` of Envoy's, and whatever `traceparent` a client sent itself. So the
/// check span's parent must come from the metadata, never from the CheckRequest.
#[tokio::test(flavor = "multi_thread")]
async fn envoys_check_call_carries_its_ext_authz_span_in_grpc_metadata() {
    let receiver = OtelReceiver::start().await;
    let recorder = CheckRecorder::start().await;
    let upstream = EchoUpstream::start().await;
    let addrs = tokengate::Addrs {
        grpc: recorder.addr,
        ..unused_addrs()
    };
    let envoy = Envoy::start_text(&envoy_tracing_config(
        &addrs,
        upstream.addr,
        receiver.grpc_port,
    ))
    .await;

    // 1. No trace context from the client.
    assert_eq!(get_through(&envoy).await, 200, "{}", envoy.log());
    let spans = receiver
        .wait_for_spans("the ext_authz span", SPANS, |s| {
            s.iter().any(|s| s.name == ENVOY_EXT_AUTHZ_SPAN)
        })
        .await;
    let authz = spans
        .iter()
        .find(|s| s.name == ENVOY_EXT_AUTHZ_SPAN)
        .expect("ext_authz span");
    let calls = recorder.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let tp = calls[0]
        .metadata("traceparent")
        .unwrap_or_else(|| panic!("no traceparent: {calls:#?}"));
    assert_eq!(
        tp,
        format!("00-{}-{}-01", authz.trace_id, authz.span_id),
        "{spans:#?}"
    );
    assert_eq!(calls[0].http_headers.get("traceparent"), None, "{calls:#?}");

    // 2. A client's own traceparent: Envoy joins that trace, and the CheckRequest's
    // headers carry the client's value verbatim (not Envoy's span).
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_tp = format!("00-{client_trace}-00f067aa0ba902b7-01");
    let token = support::token("rsa", "alice", serde_json::json!({}));
    let resp = reqwest::Client::new()
        .get(envoy.url("/api/items"))
        .header("authorization", support::bearer(&token))
        .header("traceparent", &client_tp)
        .send()
        .await
        .expect("request through Envoy");
    assert_eq!(resp.status(), 200);
    let spans = receiver
        .wait_for_spans("the client's trace", SPANS, |s| {
            s.iter()
                .any(|s| s.name == ENVOY_EXT_AUTHZ_SPAN && s.trace_id == client_trace)
        })
        .await;
    let authz = spans
        .iter()
        .find(|s| s.name == ENVOY_EXT_AUTHZ_SPAN && s.trace_id == client_trace)
        .expect("ext_authz span");
    let calls = recorder.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(
        calls[1].metadata("traceparent"),
        Some(format!("00-{client_trace}-{}-01", authz.span_id).as_str())
    );
    assert_eq!(
        calls[1].http_headers.get("traceparent"),
        Some(&client_tp),
        "{calls:#?}"
    );
}

/// Addresses nothing listens on, for a bootstrap whose tokengate clusters are unused.
fn unused_addrs() -> tokengate::Addrs {
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    tokengate::Addrs {
        grpc: nowhere,
        http: nowhere,
        admin: nowhere,
    }
}

/// A hand-built ExportTraceServiceRequest (protobuf from the venv's opentelemetry-proto,
/// an independent encoder) posted to the OTLP/HTTP port comes out as the span it encodes.
#[tokio::test(flavor = "multi_thread")]
async fn the_receiver_takes_otlp_http_too() {
    let receiver = OtelReceiver::start().await;
    let script = r#"
import sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
span = Span(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), parent_span_id=bytes(range(9, 17)),
            name="hand-built", kind=Span.SPAN_KIND_INTERNAL,
            attributes=[KeyValue(key="n", value=AnyValue(int_value=7))],
            events=[Span.Event(name="revoked", attributes=[KeyValue(key="by", value=AnyValue(string_value="jti"))])])
rs = ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])
rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="by-hand")))
sys.stdout.buffer.write(ExportTraceServiceRequest(resource_spans=[rs]).SerializeToString())
"#;
    let out = std::process::Command::new(support::procs::repo().join(".tools/venv/bin/python"))
        .args(["-I", "-c", script])
        .output()
        .expect("venv python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let client = reqwest::Client::new();
    let post = |ctype: &'static str, body: Vec<u8>| {
        client
            .post(receiver.http_traces_url())
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    // Not protobuf, or not a valid message: refused, nothing recorded.
    assert_eq!(
        post("application/json", b"{}".to_vec())
            .await
            .expect("post")
            .status(),
        415
    );
    assert_eq!(
        post("application/x-protobuf", vec![0xff; 8])
            .await
            .expect("post")
            .status(),
        400
    );
    assert_eq!(
        post("application/x-protobuf", out.stdout)
            .await
            .expect("post")
            .status(),
        200
    );

    let spans = receiver
        .wait_for_spans("the hand-built span", Duration::from_secs(5), |s| {
            !s.is_empty()
        })
        .await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let s = &spans[0];
    assert_eq!(s.trace_id, "0102030405060708090a0b0c0d0e0f10");
    assert_eq!(s.span_id, "0102030405060708");
    assert_eq!(s.parent_span_id, "090a0b0c0d0e0f10");
    assert_eq!(s.name, "hand-built");
    assert_eq!(s.kind, "SPAN_KIND_INTERNAL");
    assert_eq!(s.service_name, "by-hand");
    assert_eq!(s.attr("n"), Some("7"));
    assert_eq!(
        s.events,
        vec![serde_json::json!({"name": "revoked", "attributes": {"by": "jti"}})]
    );
    assert_eq!(s.via, "http");
}

// ---------------------------------------------------------------- tokengate's own spans

/// tokengate as the binary (the tracing layer is process-wide), exporting to `receiver`
/// over `protocol`, with `extra` appended under `tracing:`.
fn traced_tokengate(
    receiver: &OtelReceiver,
    protocol: &str,
    extra: &str,
) -> crate::support::serve::Served {
    let endpoint = match protocol {
        "http" => format!("http://127.0.0.1:{}", receiver.http_port),
        _ => receiver.grpc_endpoint(),
    };
    let yaml = support::config_yaml(MEMORY_STORE).replace("  level: warn", "  level: info")
        + &format!(
            "tracing:\n  enabled: true\n  protocol: {protocol}\n  endpoint: {endpoint}\n  service_name: tokengate\n{extra}"
        );
    crate::support::serve::Served::start("traced", &yaml)
}

/// Every 20-byte piece of `token` that occurs in a span (name, attributes, events).
fn token_pieces_in(spans: &[Span], token: &str) -> Vec<String> {
    let text: Vec<String> = spans
        .iter()
        .map(|s| format!("{} {:?} {:?}", s.name, s.attributes, s.events))
        .collect();
    (0..token.len().saturating_sub(19))
        .map(|i| &token[i..i + 20])
        .filter(|piece| text.iter().any(|t| t.contains(piece)))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokengates_check_span_is_a_child_of_envoys_ext_authz_span() {
    for protocol in ["grpc", "http"] {
        let receiver = OtelReceiver::start().await;
        let mut tg = traced_tokengate(&receiver, protocol, "");
        let addrs = tg.listening().await;
        tg.wait_ready(addrs.admin).await;
        let upstream = EchoUpstream::start().await;
        let envoy = Envoy::start_text(&envoy_tracing_config(
            &addrs,
            upstream.addr,
            receiver.grpc_port,
        ))
        .await;
        let token = support::token("rsa", "alice", serde_json::json!({}));
        // The client sends a trace context of its own: Envoy joins its trace, but the
        // check span's parent must be Envoy's ext_authz span, never the client's span.
        let client_span = "00f067aa0ba902b7";
        let resp = reqwest::Client::new()
            .get(envoy.url("/api/items"))
            .header("authorization", support::bearer(&token))
            .header(
                "traceparent",
                format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{client_span}-01"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{protocol}: {}", envoy.log());

        let spans = receiver
            .wait_for_spans(
                "tokengate's check span and Envoy's ext_authz span",
                SPANS,
                |spans| {
                    spans
                        .iter()
                        .any(|s| s.service_name == "tokengate" && s.name == "tokengate.check")
                        && spans.iter().any(|s| s.name == ENVOY_EXT_AUTHZ_SPAN)
                },
            )
            .await;
        let authz = spans
            .iter()
            .find(|s| s.name == ENVOY_EXT_AUTHZ_SPAN)
            .unwrap();
        let check = spans
            .iter()
            .find(|s| s.service_name == "tokengate" && s.name == "tokengate.check")
            .unwrap();
        assert_eq!(check.trace_id, authz.trace_id, "{protocol}: one trace");
        assert_eq!(
            check.parent_span_id, authz.span_id,
            "{protocol}: the check's parent is Envoy's ext_authz span"
        );
        assert_ne!(
            check.parent_span_id, client_span,
            "{protocol}: never the client's span"
        );
        assert_eq!(check.via, protocol);
        assert_eq!(check.attr("tokengate.decision"), Some("allow"));
        assert_eq!(check.attr("tokengate.issuer"), Some("test"));
        assert_eq!(check.attr("tokengate.transport"), Some("grpc"));
        // the store call of this first check (a cache miss) is the check's child
        let store = receiver
            .wait_for_spans("the store span", SPANS, |spans| {
                spans.iter().any(|s| s.name == "tokengate.store.check")
            })
            .await;
        let store = store
            .iter()
            .find(|s| s.name == "tokengate.store.check")
            .unwrap();
        assert_eq!(
            store.parent_span_id, check.span_id,
            "{protocol}: the store call is the check's child"
        );
        assert_eq!(check.attr("tokengate.cache.token"), Some("miss"));
        assert_eq!(check.attr("tokengate.cache.revocation"), Some("miss"));
        assert_eq!(
            token_pieces_in(&receiver.spans(), &token),
            Vec::<String>::new(),
            "token in a span"
        );
        assert_exemplar_links(addrs.admin, &check.trace_id).await;
    }
}

/// The OpenMetrics scrape is valid (prometheus_client's strict parser) and the gRPC
/// decision-latency histogram has `trace_id` as the exemplar of the bucket the check
/// fell in; the classic scrape stays as it was, without exemplars.
async fn assert_exemplar_links(admin: std::net::SocketAddr, trace_id: &str) {
    let client = reqwest::Client::new();
    let url = format!("http://{admin}/metrics");
    let om = client
        .get(&url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        om.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let parsed = crate::support::otel::parse_openmetrics(&om.text().await.unwrap());
    let exemplars = parsed["exemplars"].as_array().unwrap();
    let linked: Vec<_> = exemplars
        .iter()
        .filter(|e| e["exemplar"]["labels"]["trace_id"] == trace_id)
        .collect();
    assert_eq!(linked.len(), 1, "one bucket links to the trace: {parsed}");
    let e = linked[0];
    assert_eq!(e["name"], "tokengate_decision_duration_seconds_bucket");
    assert_eq!(e["labels"]["transport"], "grpc");
    let le: f64 = e["labels"]["le"].as_str().unwrap().parse().unwrap();
    let took = e["exemplar"]["value"].as_f64().unwrap();
    assert!(took > 0.0 && took <= le, "{took} s in the bucket le={le}");

    let classic = client.get(&url).send().await.unwrap();
    assert!(classic.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = classic.text().await.unwrap();
    assert!(!text.contains("trace_id") && !text.contains("# EOF"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_check_says_why_and_a_down_collector_costs_no_answer() {
    let mut receiver = OtelReceiver::start().await;
    let mut tg = traced_tokengate(&receiver, "grpc", "  export_timeout_seconds: 1\n");
    let addrs = tg.listening().await;
    tg.wait_ready(addrs.admin).await;
    let mut client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
        format!("http://{}", addrs.grpc),
    )
    .await
    .unwrap();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut req = tonic::Request::new(support::check_request(
        "GET",
        "/api/items",
        &[("authorization", "Bearer not-a-token")],
    ));
    req.metadata_mut()
        .insert("traceparent", tp.parse().unwrap());
    let denied = client.check(req).await.unwrap().into_inner();
    assert_ne!(denied.status.map(|s| s.code), Some(0));
    let spans = receiver
        .wait_for_spans("the denied check's span", SPANS, |spans| {
            spans.iter().any(|s| s.name == "tokengate.check")
        })
        .await;
    let check = spans.iter().find(|s| s.name == "tokengate.check").unwrap();
    assert_eq!(
        check.trace_id, "0af7651916cd43dd8448eb211c80319c",
        "the caller's trace (gRPC metadata)"
    );
    assert_eq!(check.parent_span_id, "b7ad6b7169203331");
    assert_eq!(check.attr("tokengate.decision"), Some("deny"));
    assert_eq!(check.attr("tokengate.reason"), Some("malformed"));

    // the collector goes away: every check is still answered, spans are counted as lost
    receiver.stop();
    let token = support::token("rsa", "bob", serde_json::json!({}));
    for _ in 0..50 {
        let ok = support::check_token(&mut client, &token).await;
        assert!(ok.allowed(), "a check with the collector down");
    }
    let metrics = format!("http://{}/metrics", addrs.admin);
    support::wait_for(
        "spans counted as failed exports",
        Duration::from_secs(30),
        || {
            let m = metrics.clone();
            async move {
                let text = reqwest::get(&m).await.unwrap().text().await.unwrap();
                text.lines().any(|l| {
                    l.starts_with("tokengate_trace_spans_total{result=\"export_failed\"}")
                        && !l.ends_with(" 0")
                })
            }
        },
    )
    .await;

    // after a failed export, batches are dropped unconverted while backing off ...
    let counted = |result: &'static str| {
        let m = metrics.clone();
        async move {
            let text = reqwest::get(&m).await.unwrap().text().await.unwrap();
            let prefix = format!("tokengate_trace_spans_total{{result=\"{result}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        }
    };
    let addr = addrs.grpc;
    // `n` allowed checks of `token` on a fresh connection, then `counter`'s value.
    let checks_then = |n: usize, counter: &'static str| {
        let token = token.clone();
        let value = counted(counter);
        async move {
            let mut c = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
                format!("http://{addr}"),
            )
            .await
            .unwrap();
            for _ in 0..n {
                assert!(support::check_token(&mut c, &token).await.allowed());
            }
            value.await
        }
    };
    support::wait_for(
        "batches dropped while the collector is down",
        SPANS * 2,
        || {
            let dropped = Box::pin(checks_then(20, "dropped"));
            async move { dropped.await > 0 }
        },
    )
    .await;
    // ... and exporting resumes once the collector is back
    let before = receiver.spans().len();
    receiver.restart().await;
    let exported = counted("exported").await;
    support::wait_for(
        "spans exported again after the collector came back",
        SPANS * 2,
        || {
            let now = Box::pin(checks_then(5, "exported"));
            async move { now.await > exported }
        },
    )
    .await;
    assert!(receiver.spans().len() > before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_is_a_span_whose_child_is_the_revocation_write() {
    let receiver = OtelReceiver::start().await;
    let mut tg = traced_tokengate(&receiver, "grpc", "");
    let addrs = tg.listening().await;
    tg.wait_ready(addrs.admin).await;
    let client = reqwest::Client::new();
    let logout = |token: String, traceparent: String| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://{}/v1/auth/logout", addrs.http))
                .header("authorization", support::bearer(&token))
                .header("traceparent", traceparent)
                .send()
                .await
                .unwrap()
        }
    };
    // an unsampled caller: no span of its trace, the logout still done
    let quiet = support::token("rsa", "carol", serde_json::json!({}));
    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    let resp = logout(quiet.clone(), unsampled.into()).await;
    assert!(resp.status().is_success(), "{}", resp.status());

    let token = support::token("rsa", "dave", serde_json::json!({}));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = logout(token.clone(), format!("00-{trace}-00f067aa0ba902b7-01")).await;
    let status = resp.status();
    assert!(status.is_success(), "{status}");
    let spans = receiver
        .wait_for_spans("the logout and its write", SPANS, |spans| {
            spans.iter().any(|s| s.name == "POST /v1/auth/logout")
                && spans.iter().any(|s| s.name == "tokengate.revocation.write")
        })
        .await;
    let request = spans
        .iter()
        .find(|s| s.name == "POST /v1/auth/logout")
        .unwrap();
    assert_eq!(request.trace_id, trace);
    assert_eq!(request.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(request.attr("http.route"), Some("/v1/auth/logout"));
    let code = status.as_u16().to_string();
    assert_eq!(
        request.attr("http.response.status_code"),
        Some(code.as_str())
    );
    let write = spans
        .iter()
        .find(|s| s.name == "tokengate.revocation.write")
        .unwrap();
    assert_eq!(
        write.parent_span_id, request.span_id,
        "the write is the request's child"
    );
    assert_eq!(write.attr("tokengate.kind"), Some("jti"));
    assert!(
        spans
            .iter()
            .all(|s| s.trace_id != "11111111111111111111111111111111"),
        "an unsampled logout left a span"
    );
    for t in [&token, &quiet] {
        assert_eq!(
            token_pieces_in(&spans, t),
            Vec::<String>::new(),
            "token in a span"
        );
    }
}

/// With only `tracing.enabled` in the YAML, the standard `OTEL_*` variables say where
/// spans go, the service name, extra resource attributes and the root sampling ratio.
#[tokio::test(flavor = "multi_thread")]
async fn the_standard_otel_environment_configures_what_the_yaml_leaves_out() {
    let receiver = OtelReceiver::start().await;
    let yaml = support::config_yaml(MEMORY_STORE).replace("  level: warn", "  level: info")
        + "tracing:\n  enabled: true\n";
    let endpoint = receiver.grpc_endpoint();
    let mut tg = crate::support::serve::Served::start_with_env(
        "otel-env",
        &yaml,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "gate-from-env"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=it,team=platform",
            ),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    );
    let addrs = tg.listening().await;
    tg.wait_ready(addrs.admin).await;
    let mut client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
        format!("http://{}", addrs.grpc),
    )
    .await
    .unwrap();
    let token = support::token("rsa", "erin", serde_json::json!({}));
    // a root check: ratio 0, no span
    assert!(support::check_token(&mut client, &token).await.allowed());
    // a sampled parent: followed whatever the ratio
    let mut req = tonic::Request::new(support::check_request(
        "GET",
        "/api/items",
        &[("authorization", &support::bearer(&token))],
    ));
    req.metadata_mut().insert(
        "traceparent",
        "00-5af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    client.check(req).await.unwrap();
    let spans = receiver
        .wait_for_spans("the sampled check", SPANS, |spans| {
            spans.iter().any(|s| s.name == "tokengate.check")
        })
        .await;
    let checks: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "tokengate.check")
        .collect();
    assert_eq!(
        checks.len(),
        1,
        "the root check was not sampled: {checks:?}"
    );
    let check = checks[0];
    assert_eq!(check.trace_id, "5af7651916cd43dd8448eb211c80319c");
    assert_eq!(check.service_name, "gate-from-env");
    assert_eq!(
        check
            .resource
            .get("deployment.environment")
            .map(String::as_str),
        Some("it")
    );
    assert_eq!(
        check.resource.get("team").map(String::as_str),
        Some("platform")
    );
}
