#!/usr/bin/env bash
# What tracing costs a warm gRPC check (issue 17), tracing off versus:
#   unsampled  tracing on, every Check carries an unsampled W3C traceparent (as from an
#              Envoy that traces a small share of requests); "off" gets the same header
#   root1      tracing on, no traceparent, 1 % of root checks sampled, collector up
#   all-up     every check sampled and exported, collector up
#   all-down   every check sampled, collector down
# Two measures, side by side, same release build and config but the `tracing` section:
#   - throughput: h2load, BENCH_TR_ROUNDS alternating rounds of BENCH_TR_REQUESTS Checks
#     (4 connections x 32 streams, one warm ES256 token), medians, ratio to off;
#   - instructions per check under callgrind (valgrind), which a shared, noisy host does
#     not disturb (BENCH_TR_CALLGRIND=0 skips it; 10,000 checks per case after warm-up).
# The OTLP receiver is tests/otel/receiver.py on the same machine.
#
#   scripts/bench-tracing.sh          # prints a Markdown table
#
# Needs h2load (nghttp2-client), valgrind for the second measure, and the .tools venv
# with the receiver's libraries (scripts/install-test-deps.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"
ROUNDS="${BENCH_TR_ROUNDS:-5}"
REQUESTS="${BENCH_TR_REQUESTS:-100000}"
CALLGRIND="${BENCH_TR_CALLGRIND:-1}"

BENCH_NAME=bench-tracing
# shellcheck source=scripts/bench/common.sh
source scripts/bench/common.sh
command -v h2load >/dev/null || die "h2load missing (apt-get install nghttp2-client)"
PY="$REPO/.tools/venv/bin/python"
"$PY" -c 'import grpc, opentelemetry.proto' 2>/dev/null || die "receiver libraries missing (scripts/install-test-deps.sh)"
if [ "$CALLGRIND" = 1 ] && ! command -v valgrind >/dev/null; then
    log "valgrind missing: instructions per check skipped"
    CALLGRIND=0
fi

log "building (release)"
cargo build -q --release -p tokengate -p tokengate-tools --bin tokengate --bin gen_requests
BIN="$TARGET_DIR/release"

bench_workdir

# Free loopback ports: 3 per tokengate (5 variants), 2 for the receiver, 1 dead endpoint.
read -r -a PORTS < <(free_ports 18)
RECV_GRPC=${PORTS[15]} RECV_HTTP=${PORTS[16]} DEAD=${PORTS[17]}

"$PY" tests/otel/receiver.py --port-file "$WORK/rport" --http-port-file "$WORK/rhport" \
    --out "$WORK/spans.jsonl" --grpc-port "$RECV_GRPC" --http-port "$RECV_HTTP" \
    >"$WORK/receiver.log" 2>&1 &
PIDS+=($!)

"$BIN/gen_requests" --count 1 --single "$WORK/one.grpc" --tokens "$WORK/t.tok" \
    --requests "$WORK/r.grpc" >/dev/null 2>&1 || die "gen_requests failed"

VARIANTS=(off unsampled root1 all-up all-down)
# config VARIANT GRPC HTTP ADMIN: the same config for every variant but `tracing`.
config() {
    cat <<YAML
listen: { grpc: "127.0.0.1:$2", http: "127.0.0.1:$3", admin: "127.0.0.1:$4" }
providers:
  - name: bench
    issuer: https://issuer.bench
    audiences: [bench-api]
    algorithms: [ES256]
    keys:
      - kid: ec256
        public_key_file: tests/fixtures/keys/ec256-public.pem
tokens: { verified_cache_entries: 100000 }
revocation:
  store: memory
  cache: { ttl_seconds: 300, max_entries: 100000 }
log: { level: warn }
YAML
    tracing() { echo "tracing: { enabled: true, endpoint: \"http://127.0.0.1:$1\", sample_ratio: $2 }"; }
    case $1 in
        unsampled | root1) tracing "$RECV_GRPC" 0.01 ;;
        all-up) tracing "$RECV_GRPC" 1.0 ;;
        all-down) tracing "$DEAD" 1.0 ;;
        *) ;;
    esac
}
declare -A GRPC ADMIN
i=0
for v in "${VARIANTS[@]}"; do
    GRPC[$v]=${PORTS[$((i * 3))]} ADMIN[$v]=${PORTS[$((i * 3 + 2))]}
    config "$v" "${GRPC[$v]}" "${PORTS[$((i * 3 + 1))]}" "${ADMIN[$v]}" >"$WORK/$v.yaml"
    i=$((i + 1))
done

wait_ready() {
    local port=$1
    for _ in $(seq 1 600); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
        sleep 0.1
    done
    die "tokengate on admin port $port not ready"
}

TRACEPARENT='traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'
headers_for() {
    case $1 in off | unsampled) printf '%s' "$TRACEPARENT" ;; *) ;; esac
}
load() { # port n [header]
    local extra=()
    [ -n "${3:-}" ] && extra=(-H "$3")
    h2load -n "$2" -c 4 -m 32 -t 1 -d "$WORK/one.grpc" -H 'content-type: application/grpc' \
        -H 'te: trailers' "${extra[@]}" "http://127.0.0.1:$1/envoy.service.auth.v3.Authorization/Check" 2>&1
}

# ---- throughput
for v in "${VARIANTS[@]}"; do
    "$BIN/tokengate" serve --config "$WORK/$v.yaml" >"$WORK/$v.log" 2>&1 &
    PIDS+=($!)
done
for v in "${VARIANTS[@]}"; do wait_ready "${ADMIN[$v]}"; done
declare -A RPS
for r in $(seq 1 "$ROUNDS"); do
    for v in "${VARIANTS[@]}"; do
        out=$(load "${GRPC[$v]}" "$REQUESTS" "$(headers_for "$v")")
        rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
        ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
        [ "$ok" = "$REQUESTS" ] || die "$v round $r: $ok of $REQUESTS allowed"
        RPS[$v]="${RPS[$v]:-} $rps"
        log "round $r $v $rps req/s"
    done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A MED
for v in "${VARIANTS[@]}"; do MED[$v]=$(median <<<"${RPS[$v]}"); done
spans() { curl -s "http://127.0.0.1:$1/metrics" | sed -n "s/^tokengate_trace_spans_total{result=\"$2\"} //p"; }

# ---- instructions per check (the throughput processes are left running but idle)
declare -A IR
if [ "$CALLGRIND" = 1 ]; then
    for v in off unsampled root1 all-up all-down; do
        read -r cg ch ca < <(free_ports 3)
        config "$v" "$cg" "$ch" "$ca" >"$WORK/cg-$v.yaml"
        valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg-$v.out" \
            "$BIN/tokengate" serve --config "$WORK/cg-$v.yaml" >"$WORK/cg-$v.log" 2>&1 &
        vp=$!
        PIDS+=("$vp")
        wait_ready "$ca"
        load "$cg" 2000 "$(headers_for "$v")" >/dev/null
        callgrind_control -i on "$vp" >/dev/null
        load "$cg" 10000 "$(headers_for "$v")" | grep -q '^status codes: 10000 2xx' || die "callgrind $v: not every check allowed"
        callgrind_control -i off "$vp" >/dev/null
        callgrind_control -d "$vp" >/dev/null
        kill "$vp"
        wait "$vp" 2>/dev/null || true
        total=$(cat "$WORK"/cg-"$v".out* | sed -n 's/^summary: //p; s/^totals: //p' | awk '{s+=$1} END {print s}')
        IR[$v]=$((total / 10000))
        log "callgrind $v: ${IR[$v]} instructions per check"
    done
fi

echo "| tracing | req/s (median of $ROUNDS) | ratio to off | instructions/check | ratio to off |"
echo "|---|---:|---:|---:|---:|"
for v in "${VARIANTS[@]}"; do
    ratio=$(awk -v a="${MED[$v]}" -v b="${MED[off]}" 'BEGIN {printf "%.2f", a / b}')
    if [ -n "${IR[$v]:-}" ]; then
        iratio=$(awk -v a="${IR[off]}" -v b="${IR[$v]}" 'BEGIN {printf "%.3f", a / b}')
        echo "| $v | ${MED[$v]} | $ratio | ${IR[$v]} | $iratio |"
    else
        echo "| $v | ${MED[$v]} | $ratio | — | — |"
    fi
done
echo
for v in all-up all-down; do
    echo "$v spans: ended $(spans "${ADMIN[$v]}" ended), exported $(spans "${ADMIN[$v]}" exported), export_failed $(spans "${ADMIN[$v]}" export_failed), dropped $(spans "${ADMIN[$v]}" dropped)"
done
