#!/usr/bin/env bash
# The cost of DPoP (issue 18): warm-cache gRPC throughput with a fresh proof per request
# (as DPoP clients send them) as a ratio to the same requests as plain bearer tokens,
# per proof algorithm (ES256, EdDSA), side by side in one run on one tokengate.
#
# Inputs come from crates/tools/src/bin/gen_dpop.rs: a pool of BENCH_DPOP_TOKENS access
# tokens (ES256, the bench population), bound to a client key for the DPoP runs and
# unbound for the bearer run; one proof per request. loadgen sends them (4 HTTP/2
# connections x 32 in flight) and checks that every answer is an allow. Every token is
# warmed first (verified-token and revocation caches), so what differs is the proof:
# its parse, signature, thumbprint and ath, and its replay guard, one Redis SET NX per
# request (a bearer check on a warm cache makes no Redis call at all).
#
#   scripts/bench-dpop.sh                          # release build, 3 rounds x 40,000
#   BENCH_DPOP_REQUESTS=2000 BENCH_DPOP_REPS=1 BENCH_PROFILE=dev scripts/bench-dpop.sh
#
# Needs redis-server. Every process it starts is stopped on exit; everything listens on
# 127.0.0.1. Prints a markdown table (also written to $BENCH_DPOP_OUT when set).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

REQUESTS="${BENCH_DPOP_REQUESTS:-40000}"
REPS="${BENCH_DPOP_REPS:-3}"
TOKENS="${BENCH_DPOP_TOKENS:-100}"
PROFILE="${BENCH_PROFILE:-release}"
OUT="${BENCH_DPOP_OUT:-}"

BENCH_NAME=bench-dpop
# shellcheck source=scripts/bench/common.sh
source scripts/bench/common.sh
command -v redis-server >/dev/null || die "redis-server missing (scripts/install-test-deps.sh)"

case "$PROFILE" in
    release) FLAGS=(--release) BIN="$TARGET_DIR/release" ;;
    dev) FLAGS=() BIN="$TARGET_DIR/debug" ;;
    *) die "BENCH_PROFILE must be release or dev" ;;
esac
log "building ($PROFILE)"
cargo build -q "${FLAGS[@]}" -p tokengate -p tokengate-tools --bin tokengate --bin gen_dpop --bin loadgen

bench_workdir

read -r P_REDIS P_G P_H P_A < <(free_ports 4)

redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")

# scripts/bench/tokengate.yaml's provider and store; proofs live an hour (they are
# made before the run), the revocation cache stays warm for the whole run.
cat >"$WORK/tokengate.yaml" <<EOF_CONFIG
listen: {grpc: "127.0.0.1:$P_G", http: "127.0.0.1:$P_H", admin: "127.0.0.1:$P_A"}
providers:
  - name: bench
    issuer: https://issuer.bench
    audiences: [bench-api]
    algorithms: [ES256]
    keys:
      - kid: ec256
        public_key_file: tests/fixtures/keys/ec256-public.pem
tokens:
  verified_cache_entries: 100000
revocation:
  store: redis
  redis:
    url: redis://127.0.0.1:$P_REDIS/0
  cache:
    ttl_seconds: 3600
  store_timeout_ms: ${BENCH_STORE_TIMEOUT_MS:-50}
dpop:
  algorithms: [ES256, EdDSA]
  max_age_seconds: 3600
log:
  level: warn
EOF_CONFIG
"$BIN/tokengate" serve --config "$WORK/tokengate.yaml" >"$WORK/tokengate.log" 2>&1 &
PIDS+=("$!")
TG_PID="$!"
for _ in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_A/readyz")" = 200 ] && break
    sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_A/readyz")" = 200 ] \
    || die "tokengate not ready: $(cat "$WORK/tokengate.log")"

# One file per round and kind: a proof is good once.
log "generating $REPS x $REQUESTS requests per kind"
for rep in $(seq "$REPS"); do
    "$BIN/gen_dpop" --alg ES256 --count "$REQUESTS" --tokens "$TOKENS" \
        --dpop "$WORK/es256-$rep.grpc" --bearer "$WORK/bearer-$rep.grpc"
    "$BIN/gen_dpop" --alg EdDSA --count "$REQUESTS" --tokens "$TOKENS" \
        --dpop "$WORK/eddsa-$rep.grpc"
done
"$BIN/gen_dpop" --alg ES256 --count "$TOKENS" --tokens "$TOKENS" --bearer "$WORK/warm.grpc"

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
run() { # run KIND FILE -> one JSON line with cpu_us_per_check added
    local before after
    before="$(cpu_ticks "$TG_PID")"
    "$BIN/loadgen" --addr "http://127.0.0.1:$P_G" --requests "$2" --count "$REQUESTS" \
        --connections 4 --inflight 32 --expect allow --label "$1" >"$WORK/run.json" ||
        die "$1: not every answer was an allow: $(cat "$WORK/run.json")"
    after="$(cpu_ticks "$TG_PID")"
    python3 - "$WORK/run.json" "$before" "$after" "$(getconf CLK_TCK)" "$REQUESTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ticks = int(sys.argv[3]) - int(sys.argv[2])
r["cpu_us_per_check"] = ticks / int(sys.argv[4]) * 1e6 / int(sys.argv[5])
print(json.dumps(r))
PY
}

"$BIN/loadgen" --addr "http://127.0.0.1:$P_G" --requests "$WORK/warm.grpc" --count "$TOKENS" \
    --expect allow --label warm >/dev/null
# The bound tokens of each DPoP file are minted with its own client key: their first
# pass verifies them once (TOKENS of REQUESTS checks); every later check is warm.
: >"$WORK/results.jsonl"
for rep in $(seq "$REPS"); do
    for kind in bearer es256 eddsa; do
        log "round $rep: $kind"
        run "$kind" "$WORK/$kind-$rep.grpc" | tee -a "$WORK/results.jsonl" >&2
    done
done

python3 - "$WORK/results.jsonl" "$REQUESTS" "$REPS" "$TOKENS" <<'PY' | tee "${OUT:-/dev/null}"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def rps(r):
    return float(r["rps"])
by = {}
for r in rows:
    by.setdefault(r["label"], []).append(r)
base = statistics.median(rps(r) for r in by["bearer"])
print(f"| request | req/s (median of {sys.argv[3]}) | ratio to bearer | tokengate CPU µs/check | p50 ms | p99 ms |")
print("|---|---:|---:|---:|---:|---:|")
names = {"bearer": "Bearer, warm cache", "es256": "DPoP, ES256 proof per request", "eddsa": "DPoP, EdDSA proof per request"}
for kind in ("bearer", "es256", "eddsa"):
    rs = by[kind]
    m = statistics.median(rps(r) for r in rs)
    cpu = statistics.median(r["cpu_us_per_check"] for r in rs)
    lat = lambda k: statistics.median(float(r[k + "_us"]) / 1000 for r in rs)
    print(f"| {names[kind]} | {m:,.0f} | **{m / base:.2f}** | {cpu:.1f} | {lat('p50'):.2f} | {lat('p99'):.2f} |")
bad = [r for r in rows if not r["all_allowed"]]
print(f"\n{len(rows)} runs of {sys.argv[2]} Checks over {sys.argv[4]} tokens; runs with a deny or an error: {len(bad)}")
PY
