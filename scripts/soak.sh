#!/usr/bin/env bash
# Soak test (issue 9): two tokengate replicas on one Redis, under a mix of gRPC checks,
# logouts, logout-alls and tenant revocations, then proof that every ACKNOWLEDGED
# revocation is enforced on both replicas (lost = 0) and that memory stayed bounded.
#
#   scripts/soak.sh [DURATION_SECONDS]        # default 600 (10 minutes), at most 7200
#
# What it does, all on 127.0.0.1 and in a temporary directory that is removed at exit:
#   1. cargo build --release -p tokengate -p tokengate-tools --bin tokengate --bin soak
#   2. redis-server on a free loopback port, AOF on (appendfsync everysec, as
#      deploy/kubernetes/redis.yaml ships; SOAK_REDIS_FSYNC=always for the strict mode)
#   3. two replicas, `target/release/tokengate serve --config F`, each on its own
#      loopback ports (port 0: picked by the kernel, read back from the log), store
#      redis, admin API on, small caches so that the bounds are exercised:
#      revocation.cache.max_entries and tokens.verified_cache_entries = 20000 (per
#      replica), cache TTL 60 s (so "not revoked" answers pile up to the bound instead
#      of expiring first)
#   4. target/release/soak for DURATION seconds against both replicas (see
#      crates/tools/src/bin/soak.rs for the mix and the verification), with a hard `timeout`
#   5. stops everything it started (by PID), prints the summary, exits non-zero when
#      lost > 0, a revoked token was allowed after the propagation allowance, a killed
#      token could not be verified, a fresh token was denied without cause, a replica
#      died, or a replica's RSS went beyond the bounds below.
#
# Bounds: time (DURATION + verification, under `timeout DURATION+900`), operations
# (SOAK_MAX_REQUESTS), memory (per replica: peak RSS <= SOAK_MAX_RSS_MB, and growth from
# 25 % of the run to its end <= SOAK_MAX_GROWTH_MB, the 25 % point moved later until
# 4 x the largest cache bound in distinct tokens were minted; with the caches full by
# then, a replica whose caches hold their limits stays flat).
#
# Knobs (environment):
#   SOAK_CONCURRENCY=256       workers, one operation in flight each
#   SOAK_RATE=2300             operations/s over all workers; 0 = as fast as possible.
#                              83.5 % of operations mint a fresh token: 2300/s gives
#                              >= 1,000,000 distinct tokens in 600 s when the machine
#                              keeps up (the summary prints the count reached)
#   SOAK_MAX_REQUESTS=20000000 hard cap on operations in the load phase
#   SOAK_USERS=50000 SOAK_TENANTS=200
#   SOAK_RECHECK_PERMILLE=150 SOAK_LOGOUT_PERMILLE=12 SOAK_LOGOUT_ALL_PERMILLE=3
#   SOAK_TENANT_REVOKE_EVERY_MS=3000
#   SOAK_SETTLE_MS=1000        propagation allowance, and the wait before verification
#   SOAK_CACHE_ENTRIES=20000 SOAK_VERIFIED_CACHE_ENTRIES=20000 SOAK_CACHE_TTL=60
#   SOAK_STORE_TIMEOUT_MS=50   revocation.store_timeout_ms of the replicas
#   SOAK_MAX_RSS_MB=256 SOAK_MAX_GROWTH_MB=48   memory bounds per replica (0: report only)
#   SOAK_REDIS_FSYNC=everysec  appendfsync (everysec | always). With always, every
#                              revocation fsyncs in Redis's main thread and the checks
#                              queued behind it can miss the 50 ms store deadline (503)
#   SOAK_SKIP_BUILD=1          use the binaries already in target/release
#   SOAK_KEEP=1                keep the temporary directory (logs, configs, AOF)
# The summary (text and JSON) and the replicas' logs are also copied to target/soak/.
set -euo pipefail

DURATION=${1:-${SOAK_DURATION:-600}}
if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION < 1 || DURATION > 7200)); then
    echo "usage: $0 [DURATION_SECONDS]  (1..7200, default 600)" >&2
    exit 2
fi
CONCURRENCY=${SOAK_CONCURRENCY:-256}
RATE=${SOAK_RATE:-2300}
MAX_REQUESTS=${SOAK_MAX_REQUESTS:-20000000}
USERS=${SOAK_USERS:-50000}
TENANTS=${SOAK_TENANTS:-200}
RECHECK=${SOAK_RECHECK_PERMILLE:-150}
LOGOUT=${SOAK_LOGOUT_PERMILLE:-12}
LOGOUT_ALL=${SOAK_LOGOUT_ALL_PERMILLE:-3}
TENANT_EVERY=${SOAK_TENANT_REVOKE_EVERY_MS:-3000}
SETTLE=${SOAK_SETTLE_MS:-1000}
CACHE_ENTRIES=${SOAK_CACHE_ENTRIES:-20000}
VERIFIED_ENTRIES=${SOAK_VERIFIED_CACHE_ENTRIES:-20000}
CACHE_TTL=${SOAK_CACHE_TTL:-60}
STORE_TIMEOUT=${SOAK_STORE_TIMEOUT_MS:-50}
MAX_RSS=${SOAK_MAX_RSS_MB:-256}
MAX_GROWTH=${SOAK_MAX_GROWTH_MB:-48}
FSYNC=${SOAK_REDIS_FSYNC:-everysec}
# The growth bound is measured from 25 % of the run, and not before each replica has seen
# about twice its largest cache bound in distinct tokens (they share the fresh tokens).
WARM_TOKENS=$((4 * (CACHE_ENTRIES > VERIFIED_ENTRIES ? CACHE_ENTRIES : VERIFIED_ENTRIES)))

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT=$REPO/target/soak

log() { printf '[soak.sh %(%H:%M:%S)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*" >&2; exit 2; }

for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian package redis-server / redis-tools; scripts/install-test-deps.sh)"
done

if [[ -z ${SOAK_SKIP_BUILD:-} ]]; then
    log "building (release)"
    cargo build --release -p tokengate -p tokengate-tools --bin tokengate --bin soak
fi
BIN=$REPO/target/release/tokengate
SOAK=$REPO/target/release/soak
[[ -x $BIN && -x $SOAK ]] || die "missing $BIN or $SOAK"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tokengate-soak.XXXXXX")
REDIS_PID="" A_PID="" B_PID="" SOAK_PID="" TAIL_PID=""

stop_pid() { # PID NAME: TERM, wait up to 10 s, then KILL. Only PIDs this script started.
    local pid=$1 name=$2 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "$name (pid $pid) did not stop on TERM: KILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # called by the EXIT trap below, which shellcheck does not follow
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$SOAK_PID" "soak client"
    stop_pid "$TAIL_PID" "tail"
    stop_pid "$A_PID" "replica A"
    stop_pid "$B_PID" "replica B"
    stop_pid "$REDIS_PID" "redis-server"
    if [[ -n ${SOAK_KEEP:-} ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- redis
mkdir -p "$TMP/redis"
for _ in 1 2 3 4 5; do
    REDIS_PORT=$((20000 + RANDOM % 30000))
    port_free "$REDIS_PORT" || continue
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
        --dir "$TMP/redis" --daemonize no --logfile "$TMP/redis/redis.log" \
        --save "" --appendonly yes --appendfsync "$FSYNC" </dev/null >/dev/null 2>&1 &
    REDIS_PID=$!
    for ((i = 0; i < 50; i++)); do
        [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break 2
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    stop_pid "$REDIS_PID" "redis-server"
    REDIS_PID=""
done
[[ -n $REDIS_PID ]] || die "redis-server did not start (see $TMP/redis/redis.log)"
log "redis-server pid $REDIS_PID on 127.0.0.1:$REDIS_PORT (AOF, appendfsync $FSYNC)"

# ---------------------------------------------------------------- replicas
write_config() { # FILE
    cat >"$1" <<EOF
# tokengate soak replica (generated by scripts/soak.sh)
listen:
  grpc: 127.0.0.1:0
  http: 127.0.0.1:0
  admin: 127.0.0.1:0
providers:
  - name: dev
    issuer: https://dev.tokengate.local
    audiences: [tokengate-dev]
    algorithms: [ES256]
    leeway_seconds: 30
    keys:
      - kid: dev-es256
        public_key_file: $REPO/config/dev/es256-public.pem
        private_key_file: $REPO/config/dev/es256-private.pem
tokens:
  verified_cache_entries: $VERIFIED_ENTRIES
revocation:
  store: redis
  redis:
    url: redis://127.0.0.1:$REDIS_PORT/0
  cache:
    ttl_seconds: $CACHE_TTL
    max_entries: $CACHE_ENTRIES
  on_store_error: deny
  store_timeout_ms: $STORE_TIMEOUT
admin_api:
  enabled: true
  scope: tokengate:admin
  providers: [dev]
server:
  shutdown_grace_seconds: 2
log:
  format: json
  level: info
EOF
}

start_replica() { # NAME -> sets PID and ADDRS (grpc http admin)
    local name=$1 conf=$TMP/replica-$1.yaml logf=$TMP/replica-$1.log line i
    write_config "$conf"
    "$BIN" serve --config "$conf" </dev/null >"$logf" 2>&1 &
    local pid=$!
    for ((i = 0; i < 300; i++)); do
        line=$(grep -m1 '"tokengate listening"' "$logf" 2>/dev/null || true)
        [[ -n $line ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; die "replica $name exited at start"; }
        sleep 0.1
    done
    [[ -n $line ]] || { cat "$logf" >&2; die "replica $name never logged its addresses"; }
    field() { grep -o "\"$1\":\"[^\"]*\"" <<<"$line" | head -1 | cut -d'"' -f4; }
    REPLICA_PID=$pid
    REPLICA_GRPC=$(field grpc) REPLICA_HTTP=$(field http) REPLICA_ADMIN=$(field admin)
    [[ -n $REPLICA_GRPC && -n $REPLICA_HTTP && -n $REPLICA_ADMIN ]] || die "cannot read replica $name's addresses from: $line"
    log "replica $name pid $pid: grpc $REPLICA_GRPC http $REPLICA_HTTP admin $REPLICA_ADMIN"
}

start_replica a
A_PID=$REPLICA_PID A_GRPC=$REPLICA_GRPC A_HTTP=$REPLICA_HTTP A_ADMIN=$REPLICA_ADMIN
start_replica b
B_PID=$REPLICA_PID B_GRPC=$REPLICA_GRPC B_HTTP=$REPLICA_HTTP B_ADMIN=$REPLICA_ADMIN

# ---------------------------------------------------------------- the soak
log "soak: $DURATION s, concurrency $CONCURRENCY, rate ${RATE}/s (0 = unlimited), caches $CACHE_ENTRIES/$VERIFIED_ENTRIES entries"
# In the background with `wait`, so that a signal to this script stops it at once.
timeout --signal=INT --kill-after=30 $((DURATION + 900)) "$SOAK" \
    --config "$TMP/replica-a.yaml" \
    --grpc-a "$A_GRPC" --http-a "$A_HTTP" --admin-a "$A_ADMIN" --pid-a "$A_PID" \
    --grpc-b "$B_GRPC" --http-b "$B_HTTP" --admin-b "$B_ADMIN" --pid-b "$B_PID" \
    --duration "$DURATION" --concurrency "$CONCURRENCY" --rate "$RATE" \
    --max-requests "$MAX_REQUESTS" --users "$USERS" --tenants "$TENANTS" \
    --recheck-permille "$RECHECK" --logout-permille "$LOGOUT" \
    --logout-all-permille "$LOGOUT_ALL" --tenant-revoke-every-ms "$TENANT_EVERY" \
    --settle-ms "$SETTLE" --max-rss-mb "$MAX_RSS" --max-growth-mb "$MAX_GROWTH" \
    --warm-tokens "$WARM_TOKENS" \
    --summary-json "$TMP/summary.json" >"$TMP/soak.out" 2>&1 &
SOAK_PID=$!
tail -n +1 -f --pid="$SOAK_PID" "$TMP/soak.out" &
TAIL_PID=$!
set +e
wait "$SOAK_PID"
SOAK_RC=$?
wait "$TAIL_PID" 2>/dev/null
set -e

# ---------------------------------------------------------------- after
RC=$SOAK_RC
for r in A B; do
    pid_var=${r}_PID
    if ! kill -0 "${!pid_var}" 2>/dev/null; then
        log "FAIL: replica $r (pid ${!pid_var}) is no longer running"
        RC=1
    fi
done
for r in a b; do
    f=$TMP/replica-$r.log
    warns=$(grep -c '"level":"WARN"' "$f" || true)
    errors=$(grep -c '"level":"ERROR"' "$f" || true)
    panics=$(grep -c 'panicked' "$f" || true)
    audits=$(grep -c '"target":"audit"' "$f" || true)
    log "replica ${r^^} log: $audits audit events, $warns WARN, $errors ERROR, $panics panics"
    if ((warns + errors > 0)); then
        grep -E '"level":"(WARN|ERROR)"' "$f" | sed -E 's/"timestamp":"[^"]*",//' | cut -c1-240 |
            sort | uniq -c | sort -rn | head -5 || true
    fi
    ((panics == 0)) || RC=1
    ((errors == 0)) || log "note: replica ${r^^} logged ERROR lines (above)"
done
redis_info() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info "$1" 2>/dev/null | tr -d '\r' | grep -E "^($2):" | tr '\n' ' '; }
log "redis: keys $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" dbsize 2>/dev/null) | $(redis_info memory 'used_memory_human|used_memory_peak_human') | $(redis_info persistence 'aof_enabled|aof_last_write_status')"

mkdir -p "$OUT"
cp "$TMP/soak.out" "$OUT/last-summary.txt" 2>/dev/null || true
cp "$TMP/summary.json" "$OUT/last-summary.json" 2>/dev/null || true
cp "$TMP"/replica-?.log "$OUT/" 2>/dev/null || true

case $SOAK_RC in
    0) ;;
    124 | 130 | 137) log "FAIL: the soak did not finish within $((DURATION + 900)) s" ;;
    1) log "FAIL: see the FAIL lines above" ;;
    *) log "FAIL: the soak client exited with status $SOAK_RC" ;;
esac
if ((RC == 0)); then log "PASS"; else log "FAIL (exit $RC)"; fi
exit "$RC"
