#!/usr/bin/env bash
# The in-proxy fast path's benchmark (issue 20; docs/performance.md, "After issue 20
# (in-proxy fast path)"). Through a real Envoy with one worker, h2load --h1, the same
# ES256 token, side by side in one run, interleaved rounds, medians:
#   none             Envoy with no authorization (the ceiling)
#   jwt-authn-cache  Envoy's jwt_authn with jwt_cache_config (no revocation)
#   fast-path        jwt_authn + tokengate's proxy-wasm fast path (V8; this Envoy has no
#                    wasmtime runtime, checked and reported)
#   grpc-tokengate   Envoy -> tokengate over gRPC ext_authz
#   grpc-bare        Envoy -> the always-OK bare ext_authz server (crates/tools bare.rs)
# then the propagation of a logout on tokengate to the first 401 from the fast path
# (p50/p99 over BENCH_FP_REVOCATIONS), and Envoy's memory per entry of the set
# (resident memory of an Envoy holding BENCH_FP_ENTRIES revocations against one
# holding none), then instructions per request under callgrind: Envoy's in each case,
# tokengate's and the bare server's per Check (deterministic where throughput on a
# shared host is not). Everything on 127.0.0.1, every process stopped on exit.
#
# Knobs: BENCH_FP_SECONDS=5 BENCH_FP_REPS=9 BENCH_FP_CONNECTIONS=8
#        BENCH_FP_REVOCATIONS=500 BENCH_FP_ENTRIES=20000 BENCH_PROFILE=release
#        BENCH_FP_CALLGRIND=1 (0 skips the callgrind part; needs valgrind)
#        BENCH_FP_OUT=docs/performance.md (the section between its markers is replaced)
#        BENCH_SMOKE=1: tiny counts, dev build, a temporary report; checks the run only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "bench-fastpath: $*" >&2; }
SMOKE="${BENCH_SMOKE:-0}"
if [ "$SMOKE" = 1 ]; then
    : "${BENCH_FP_SECONDS:=1}" "${BENCH_FP_REPS:=1}" "${BENCH_FP_REVOCATIONS:=10}"
    : "${BENCH_FP_ENTRIES:=200}" "${BENCH_PROFILE:=dev}"
    if [ -z "${BENCH_FP_OUT:-}" ]; then
        BENCH_FP_OUT="$(mktemp "${TMPDIR:-/tmp}/tokengate-bench-fastpath.XXXXXX.md")"
        trap 'rm -f "$BENCH_FP_OUT"' EXIT
    fi
fi
PROFILE="${BENCH_PROFILE:-release}"
case "$PROFILE" in
    release) cargo_profile=(--release) bin_dir=release ;;
    dev) cargo_profile=() bin_dir=debug ;;
    *) log "BENCH_PROFILE must be release or dev"; exit 2 ;;
esac

command -v h2load >/dev/null 2>&1 || { log "h2load missing (Debian nghttp2-client)"; exit 2; }
[ -x .tools/bin/envoy ] || scripts/install-test-deps.sh
command -v redis-server >/dev/null 2>&1 || scripts/install-test-deps.sh
scripts/build-wasm.sh
log "building tokengate, bare and gen_requests ($PROFILE)"
cargo build "${cargo_profile[@]}" --locked -p tokengate -p tokengate-tools \
    --bin tokengate --bin bare --bin gen_requests >&2
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

# Instructions per request under callgrind: on by default, off in the smoke run.
CALLGRIND="${BENCH_FP_CALLGRIND:-$([ "$SMOKE" = 1 ] && echo 0 || echo 1)}"
if [ "$CALLGRIND" = 1 ] && ! command -v valgrind >/dev/null 2>&1; then
    log "valgrind missing: instructions per request not measured"
    CALLGRIND=0
fi

python3 scripts/bench/fastpath.py \
    --bin "$TARGET_DIR/$bin_dir" \
    --envoy .tools/bin/envoy \
    --module wasm/target/wasm32-wasi/release/tokengate_fastpath.wasm \
    --seconds "${BENCH_FP_SECONDS:-5}" --reps "${BENCH_FP_REPS:-9}" \
    --connections "${BENCH_FP_CONNECTIONS:-8}" \
    --revocations "${BENCH_FP_REVOCATIONS:-500}" --entries "${BENCH_FP_ENTRIES:-20000}" \
    --profile "$PROFILE" --smoke "$SMOKE" --callgrind "$CALLGRIND" --out "${BENCH_FP_OUT:-docs/performance.md}"
