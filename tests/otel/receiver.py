"""A real OTLP trace receiver for tests/it/tracing.rs (issue 17).

Built on the OpenTelemetry project's own generated protobuf types (PyPI
opentelemetry-proto) and grpcio, both pinned and installed into .tools/venv by
scripts/install-test-deps.sh, so that what Envoy and tokengate export is decoded by an
implementation that is not theirs.

    python receiver.py --port-file GRPC_PORT_FILE --http-port-file HTTP_PORT_FILE --out SPANS.jsonl
                       [--grpc-port N] [--http-port N]

It serves OTLP/gRPC TraceService/Export and OTLP/HTTP protobuf `POST /v1/traces` on
127.0.0.1. A port of 0 (the default) lets the kernel pick; each bound port is written to
its port file once the server listens (written to a temporary name, then renamed, so a
reader never sees half a number). A restart on the ports of a stopped receiver is how a
test brings a "collector down" back.

Every span received is appended to --out as one JSON line, flushed at once:
  {"trace_id": hex, "span_id": hex, "parent_span_id": hex or "", "name": str,
   "kind": "SPAN_KIND_...", "service_name": str (resource's service.name, "" if none),
   "resource": {key: value as str} (every resource attribute),
   "attributes": {key: value as a string}, "events": [{"name": str, "attributes": {...}}],
   "via": "grpc" or "http"}
SIGTERM (or SIGINT) stops both servers and exits 0.
"""

import argparse
import json
import os
import signal
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

# Bigger bodies are refused: a test sends a handful of spans per export.
MAX_HTTP_BODY = 16 * 1024 * 1024


def any_value(v):
    """An AnyValue as the string a test compares with (arrays and maps as JSON)."""
    kind = v.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return repr(v.double_value)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "array_value":
        return json.dumps([any_value(x) for x in v.array_value.values])
    return json.dumps({kv.key: any_value(kv.value) for kv in v.kvlist_value.values})


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Sink:
    """The --out file: one JSON line per span, whole lines only (one lock for both servers)."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (open for the process's life)

    def export(self, request, via):
        lines = []
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            service = resource.get("service.name", "")
            for ss in rs.scope_spans:
                for span in ss.spans:
                    record = {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": trace_pb2.Span.SpanKind.Name(span.kind),
                        "service_name": service,
                        "resource": resource,
                        "attributes": attributes(span.attributes),
                        "events": [{"name": e.name, "attributes": attributes(e.attributes)} for e in span.events],
                        "via": via,
                    }
                    lines.append(json.dumps(record, sort_keys=True) + "\n")
        with self.lock:
            self.file.write("".join(lines))
            self.file.flush()


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink):
        self.sink = sink

    def Export(self, request, context):
        self.sink.export(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


def http_handler(sink):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            # The body is read before any answer: on a kept-alive connection an unread
            # body would be taken for the next request line.
            try:
                length = int(self.headers.get("content-length", ""))
            except ValueError:
                self.close_connection = True
                return self.answer(411, b"")
            if length < 0 or length > MAX_HTTP_BODY:
                self.close_connection = True
                return self.answer(413, b"")
            body = self.rfile.read(length)
            if self.path.split("?", 1)[0] != "/v1/traces":
                return self.answer(404, b"")
            if self.headers.get("content-type", "").split(";")[0].strip() != "application/x-protobuf":
                return self.answer(415, b"")
            request = trace_service_pb2.ExportTraceServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception:  # noqa: BLE001 (protobuf's DecodeError has no stable import path)
                return self.answer(400, b"")
            sink.export(request, "http")
            return self.answer(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

        def answer(self, status, body):
            self.send_response(status)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    return Handler


def write_port(path, port):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port-file", required=True, help="where the OTLP/gRPC port is written")
    p.add_argument("--http-port-file", required=True, help="where the OTLP/HTTP port is written")
    p.add_argument("--out", required=True, help="the JSON-lines file spans are appended to")
    p.add_argument("--grpc-port", type=int, default=0)
    p.add_argument("--http-port", type=int, default=0)
    args = p.parse_args()

    sink = Sink(args.out)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(sink), server)
    grpc_port = server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    if grpc_port == 0:
        sys.exit(f"receiver: cannot listen on 127.0.0.1:{args.grpc_port} (gRPC)")
    server.start()
    try:
        http = ThreadingHTTPServer(("127.0.0.1", args.http_port), http_handler(sink))
    except OSError as e:
        server.stop(0)
        sys.exit(f"receiver: cannot listen on 127.0.0.1:{args.http_port} (HTTP): {e}")
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    write_port(args.port_file, grpc_port)
    write_port(args.http_port_file, http.server_address[1])
    stop.wait()
    http.shutdown()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
