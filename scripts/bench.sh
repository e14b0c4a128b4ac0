#!/usr/bin/env bash
# tokengate benchmark harness. Builds release binaries, starts Redis, the bare ext_authz
# server (crates/tools/src/bin/bare.rs: the ceiling) and tokengate on loopback, generates 10,000
# distinct tokens per algorithm, measures, and writes docs/performance.md (the table,
# every ratio, and the exact commands that produced them).
#
# What is measured (see docs/performance.md for the numbers and how to read them):
#   1. warm-cache gRPC throughput, tokengate vs bare, per algorithm (HS256 RS256 ES256
#      EdDSA): h2load (one token per run, answers checked by exact response bytes) and
#      crates/tools/src/bin/loadgen.rs (10,000 distinct tokens, every answer decoded and tallied);
#   2. one request in flight: p50/p99 latency, tokengate vs bare;
#   3. all-miss throughput: every Check carries a never-seen token, so every revocation
#      check goes to Redis (Redis EVALSHA calls are counted to prove it); and the same
#      with the signature cache warm: known tokens (the warm set) through a second
#      tokengate (tokengate-nocache) whose revocation cache TTL is 0, so every Check is
#      one Redis round trip but no signature verification;
#   4. HTTP check mode (/authz) directly, h2load --h1, vs the bare server's HTTP 200;
#   5. through a real Envoy (one worker, HTTP/1 load from wrk over 10,000 distinct ES256
#      tokens): ext_authz gRPC and HTTP to tokengate and to the bare server, ext_authz
#      gRPC to a third tokengate (tokengate-nometa) with `forward: {dynamic_metadata:
#      false}` (the default since issue 20: a control of the run's spread), Envoy's own jwt_authn
#      with and without jwt_cache_config, Envoy with no authorization, and ext_authz
#      gRPC over mutual TLS to a fourth tokengate (tokengate-tls: certificates made here
#      with openssl) beside the same over plaintext: the cost of TLS on that hop;
#   6. revocation propagation between two replicas on one Redis (crates/tools/src/bin/propagation.rs);
#   7. resident memory per cached entry at 1 M entries (crates/tools/src/bin/cache_memory.rs);
#   8. criterion microbenchmarks of the decision pipeline (benches/decision.rs);
#   9. the in-proxy fast path (issue 20): scripts/bench-fastpath.sh, its own section.
#
# Every load run is bounded in count and in time (and wrapped in `timeout`), targets
# only 127.0.0.1, and every process this script starts is stopped on exit (trap).
# Load generators and servers share the machine's cores, as in the targets' definition;
# CPU used by other processes during each run is recorded and reported.
#
# Knobs (environment):
#   BENCH_ALGS="HS256 RS256 ES256 EdDSA"   algorithms of sections 1-2
#   BENCH_TOKENS=10000          distinct tokens per algorithm
#   BENCH_REPS=3                repetitions of every comparison (interleaved; medians)
#   BENCH_REQUESTS=40000        Checks per throughput run
#   BENCH_CONNECTIONS=4 BENCH_INFLIGHT=32   HTTP/2 connections x streams in flight
#   BENCH_LATENCY_REQUESTS=5000 Checks per one-in-flight run
#   BENCH_MISS_ALGS="ES256 HS256" BENCH_MISS_REQUESTS=20000   all-miss runs
#   BENCH_ENVOY_SECONDS=5 BENCH_ENVOY_CONNECTIONS=32   wrk runs are bounded by time (-d)
#   BENCH_ENVOY_REQUESTS=SECONDS*80000  and by this count (a run that reaches it is
#                               flagged: wrk divides by -d, not by the time it took)
#   BENCH_REVOCATIONS=1000      propagation samples
#   BENCH_MEMORY_ENTRIES=1000000
#   BENCH_CRITERION=1           0 skips the criterion run
#   BENCH_SECTIONS="warm profile latency miss http envoy propagation memory criterion"
#   BENCH_ENVOY_WARMUP_SECONDS=3  the warm-up pass through each Envoy
#   BENCH_MEMORY_VERIFIED_ENTRIES=100000  entries of the verified-token cache row
#   BENCH_STORE_TIMEOUT_MS=50   tokengate's revocation.store_timeout_ms (the default)
#   BENCH_AUTHZ_TIMEOUT=0.25s   Envoy's ext_authz timeout (that of envoy/envoy.yaml)
#   BENCH_PORT_BASE=19100       ports BASE..BASE+60 on 127.0.0.1 must be free; `auto` picks
#                               a free base at random below the kernel's ephemeral range
#   BENCH_PROFILE=release       cargo profile of the binaries: release or dev (debug build)
#   BENCH_OUT=docs/performance.md  BENCH_WORK=target/bench (under the cargo target dir)
# Longer, steadier runs: BENCH_REPS=5 BENCH_REQUESTS=200000 BENCH_ENVOY_SECONDS=15 scripts/bench.sh
#
# Smoke mode (CI, scripts/test.sh): BENCH_SMOKE=1 runs every section but profile and
# criterion with tiny counts, from a dev build (the test build's dependencies), on a
# random port base, into a temporary work directory and report (never docs/performance.md),
# then checks that the report has every section and ratio (scripts/bench/check_report.py)
# and that every run was valid. It proves the harness still works end to end; its numbers
# mean nothing. Any knob above still overrides its smoke default. The work directory is
# removed on success (BENCH_KEEP=1 keeps it) and kept on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"

SMOKE="${BENCH_SMOKE:-0}"
if [ "$SMOKE" = 1 ]; then
    : "${BENCH_TOKENS:=200}" "${BENCH_REPS:=1}" "${BENCH_REQUESTS:=400}"
    : "${BENCH_CONNECTIONS:=2}" "${BENCH_INFLIGHT:=8}" "${BENCH_LATENCY_REQUESTS:=200}"
    : "${BENCH_MISS_REQUESTS:=300}" "${BENCH_ENVOY_SECONDS:=1}" "${BENCH_ENVOY_WARMUP_SECONDS:=1}"
    : "${BENCH_ENVOY_CONNECTIONS:=4}" "${BENCH_REVOCATIONS:=10}" "${BENCH_MEMORY_ENTRIES:=1000}"
    : "${BENCH_MEMORY_VERIFIED_ENTRIES:=1000}" "${BENCH_CRITERION:=0}" "${BENCH_PROFILE:=dev}"
    : "${BENCH_SECTIONS:=warm latency miss http envoy propagation memory}"
    : "${BENCH_PORT_BASE:=auto}" "${BENCH_RUN_LIMIT_SECONDS:=30}"
    # A debug build on a machine that may be busy: generous deadlines, so that a check
    # fails only when the harness or tokengate is wrong, never because it was slow.
    : "${BENCH_STORE_TIMEOUT_MS:=1000}" "${BENCH_AUTHZ_TIMEOUT:=2s}"
    if [ -z "${BENCH_WORK:-}" ]; then
        BENCH_WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-bench-smoke.XXXXXX")"
    fi
    : "${BENCH_OUT:=$BENCH_WORK/performance.md}"
elif [ "$SMOKE" != 0 ]; then
    echo "bench: BENCH_SMOKE must be 0 or 1, not '$SMOKE'" >&2
    exit 2
fi

ALGS="${BENCH_ALGS:-HS256 RS256 ES256 EdDSA}"
TOKENS="${BENCH_TOKENS:-10000}"
REPS="${BENCH_REPS:-3}"
REQUESTS="${BENCH_REQUESTS:-40000}"
CONNS="${BENCH_CONNECTIONS:-4}"
INFLIGHT="${BENCH_INFLIGHT:-32}"
LAT_REQUESTS="${BENCH_LATENCY_REQUESTS:-5000}"
MISS_ALGS="${BENCH_MISS_ALGS:-ES256 HS256}"
MISS_REQUESTS="${BENCH_MISS_REQUESTS:-20000}"
ENVOY_SECONDS="${BENCH_ENVOY_SECONDS:-5}"
ENVOY_REQUESTS="${BENCH_ENVOY_REQUESTS:-$((ENVOY_SECONDS * 80000))}"
ENVOY_CONNS="${BENCH_ENVOY_CONNECTIONS:-32}"
ENVOY_WARMUP="${BENCH_ENVOY_WARMUP_SECONDS:-3}"
REVOCATIONS="${BENCH_REVOCATIONS:-1000}"
MEM_ENTRIES="${BENCH_MEMORY_ENTRIES:-1000000}"
MEM_VERIFIED_ENTRIES="${BENCH_MEMORY_VERIFIED_ENTRIES:-100000}"
STORE_TIMEOUT_MS="${BENCH_STORE_TIMEOUT_MS:-50}"
AUTHZ_TIMEOUT="${BENCH_AUTHZ_TIMEOUT:-0.25s}"
CRITERION="${BENCH_CRITERION:-1}"
SECTIONS="${BENCH_SECTIONS:-warm profile latency miss http envoy propagation memory criterion}"
BASE="${BENCH_PORT_BASE:-19100}"
OUT="${BENCH_OUT:-docs/performance.md}"
PROFILE="${BENCH_PROFILE:-release}"
# Upper bound of any single load run, whatever its request count.
RUN_LIMIT="${BENCH_RUN_LIMIT_SECONDS:-60}"

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

STARTED_AT=$(date +%s)

# ------------------------------------------------------------------ tools
have() { command -v "$1" >/dev/null 2>&1; }
pkgs=()
have h2load || pkgs+=(nghttp2-client)
have wrk || pkgs+=(wrk)
have curl || pkgs+=(curl)
have python3 || pkgs+=(python3)
have redis-server || pkgs+=(redis-server)
have redis-cli || pkgs+=(redis-tools)
if [ "${#pkgs[@]}" -gt 0 ]; then
    log "installing ${pkgs[*]}"
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y \
        --no-install-recommends "${pkgs[@]}" >/dev/null
fi
ENVOY="$REPO/.tools/bin/envoy"
if want envoy && ! "$ENVOY" --version >/dev/null 2>&1; then
    log "Envoy missing: running scripts/install-test-deps.sh"
    scripts/install-test-deps.sh
fi

# ------------------------------------------------------------------ build
# The cargo target directory (CARGO_TARGET_DIR or a .cargo/config setting move it).
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" ||
    die "cargo metadata failed"
# Inside the repository, relative (the script runs from its top): the commands that
# docs/performance.md lists stay free of this machine's paths.
case "$TARGET_DIR" in "$REPO"/*) TARGET_DIR="${TARGET_DIR#"$REPO"/}" ;; esac
WORK="${BENCH_WORK:-$TARGET_DIR/bench}"
case "$WORK" in /*) WORK_ABS="$WORK" ;; *) WORK_ABS="$REPO/$WORK" ;; esac
BINS=(--bin tokengate --bin bare --bin gen_requests --bin loadgen --bin propagation --bin cache_memory)
case "$PROFILE" in
    release) BUILD=(cargo build --release -p tokengate -p tokengate-tools "${BINS[@]}") BIN_DIR=release ;;
    # `--test it` (the integration tests, already built by `cargo test`) makes cargo
    # resolve features as `cargo test` does (dev-dependencies on): without it, tokio,
    # reqwest and everything above them would be built a second time with other features.
    dev) BUILD=(cargo build --locked -p tokengate -p tokengate-core -p tokengate-tools "${BINS[@]}" --test it) BIN_DIR=debug ;;
    *) die "BENCH_PROFILE must be release or dev, not '$PROFILE'" ;;
esac
log "building $PROFILE binaries"
BUILD_STARTED=$(date +%s)
BUILD_LOG="$(mktemp "${TMPDIR:-/tmp}/tokengate-bench-build.XXXXXX")"
if ! "${BUILD[@]}" >"$BUILD_LOG" 2>&1; then
    tail -n 40 "$BUILD_LOG" >&2
    die "cargo build failed: ${BUILD[*]}"
fi
rm -f "$BUILD_LOG"
BUILD_SECONDS=$(($(date +%s) - BUILD_STARTED))
BIN="$TARGET_DIR/$BIN_DIR"
EX="$TARGET_DIR/$BIN_DIR"
for b in "$BIN/tokengate" "$EX/bare" "$EX/gen_requests" "$EX/loadgen" "$EX/propagation" "$EX/cache_memory"; do
    [ -x "$b" ] || die "$b was not built"
done

rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/runs" "$WORK/redis"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

# ------------------------------------------------------------------ processes
PIDS=()
NAMES=()
cleanup() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        if [ -n "${PIDS[$i]}" ]; then kill -TERM "${PIDS[$i]}" 2>/dev/null || true; fi
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        [ -n "${PIDS[$i]}" ] || continue
        local n=0
        while kill -0 "${PIDS[$i]}" 2>/dev/null && [ $n -lt 50 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        kill -KILL "${PIDS[$i]}" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, output to $WORK/logs/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$WORK/logs/$name.log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
    eval "PID_${name//-/_}=$!"
}
pid_of() { local v="PID_${1//-/_}"; echo "${!v}"; }
stop() {
    local pid
    pid=$(pid_of "$1")
    kill -TERM "$pid" 2>/dev/null || true
    local n=0
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # Forget it, so that cleanup never signals a PID the system may have reused.
    local i
    for i in "${!PIDS[@]}"; do
        if [ "${PIDS[$i]}" = "$pid" ]; then PIDS[i]=""; fi
    done
    return 0
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_until() { # wait_until WHAT SECONDS CMD...
    local what=$1 secs=$2
    shift 2
    local deadline=$(($(date +%s) + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $what (logs in $WORK/logs)"
        sleep 0.1
    done
}
http_ok() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1")" = 200 ]; }

# BENCH_PORT_BASE=auto: a random base from 20000 to 32000, below the kernel's ephemeral
# range (ip_local_port_range starts at 32768 by default), where the tests' port-0 listeners
# and outgoing connections never land; a base whose ports are not all free is skipped.
bench_ports() { # the ports of base $1 (BASE..BASE+58; Envoy i: listener BASE+40+i, admin BASE+50+i)
    local b=$1
    echo "$b" $((b + 1)) $((b + 2)) $((b + 11)) $((b + 12)) $((b + 13)) $((b + 14)) $((b + 15)) \
        $((b + 16)) $((b + 17)) $((b + 18)) $((b + 19)) $((b + 21)) $((b + 22)) $((b + 23)) \
        $((b + 31)) $((b + 32)) $((b + 33))
    seq $((b + 40)) $((b + 58))
}
ports_free() {
    local p
    for p in $(bench_ports "$1"); do
        if port_busy "$p"; then echo "$p"; return 1; fi
    done
}
if [ "$BASE" = auto ]; then
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        BASE=$((20000 + (RANDOM % 120) * 100))
        ports_free "$BASE" >/dev/null && break
        BASE=auto
    done
    [ "$BASE" != auto ] || die "no free port base found (set BENCH_PORT_BASE)"
    log "port base $BASE"
elif ! busy=$(ports_free "$BASE"); then
    die "127.0.0.1:$busy is in use (set BENCH_PORT_BASE)"
fi
P_REDIS=$BASE
P_BARE_GRPC=$((BASE + 1)) P_BARE_HTTP=$((BASE + 2))
P_TG_GRPC=$((BASE + 11)) P_TG_HTTP=$((BASE + 12)) P_TG_ADMIN=$((BASE + 13))
# tokengate-nocache (section miss) and tokengate-nometa (section envoy).
P_NC_GRPC=$((BASE + 14)) P_NC_HTTP=$((BASE + 15)) P_NC_ADMIN=$((BASE + 16))
P_NM_GRPC=$((BASE + 17)) P_NM_HTTP=$((BASE + 18)) P_NM_ADMIN=$((BASE + 19))
P_A_GRPC=$((BASE + 21)) P_A_HTTP=$((BASE + 22)) P_A_ADMIN=$((BASE + 23))
P_B_GRPC=$((BASE + 31)) P_B_HTTP=$((BASE + 32)) P_B_ADMIN=$((BASE + 33))
# tokengate-tls (section envoy): gRPC over mutual TLS.
P_TLS_GRPC=$((BASE + 34)) P_TLS_HTTP=$((BASE + 35)) P_TLS_ADMIN=$((BASE + 36))
# Envoy i: listener BASE+40+i, admin BASE+50+i.

tg_config() { # tg_config FILE GRPC HTTP ADMIN TTL
    sed -e "s/@GRPC_PORT@/$2/; s/@HTTP_PORT@/$3/; s/@ADMIN_PORT@/$4/" \
        -e "s/@REDIS_PORT@/$P_REDIS/; s/@CACHE_TTL@/$5/; s/@STORE_TIMEOUT_MS@/$STORE_TIMEOUT_MS/" \
        scripts/bench/tokengate.yaml >"$1"
}

log "starting redis-server, bare server, tokengate"
start redis redis-server --port "$P_REDIS" --bind 127.0.0.1 --dir "$WORK_ABS/redis" \
    --save '' --appendonly yes --appendfsync everysec
wait_until "redis" 10 redis-cli -p "$P_REDIS" ping
start bare "$EX/bare" --grpc "127.0.0.1:$P_BARE_GRPC" --http "127.0.0.1:$P_BARE_HTTP"
tg_config "$WORK/tokengate.yaml" $P_TG_GRPC $P_TG_HTTP $P_TG_ADMIN 300
start tokengate "$BIN/tokengate" serve --config "$WORK/tokengate.yaml"
wait_until "bare server" 10 port_busy $P_BARE_GRPC
# Section miss: a second tokengate whose "not revoked" answers are never served from its
# cache (TTL 0: every Check asks Redis), its verified-token cache on as usual.
if want miss; then
    tg_config "$WORK/tokengate-nocache.yaml" $P_NC_GRPC $P_NC_HTTP $P_NC_ADMIN 0
    start tokengate-nocache "$BIN/tokengate" serve --config "$WORK/tokengate-nocache.yaml"
fi
# Section envoy: a third tokengate that leaves the verified claims out of the
# CheckResponse's dynamic_metadata (the default since issue 20: a same-config control).
if want envoy; then
    tg_config "$WORK/tokengate-nometa.yaml" $P_NM_GRPC $P_NM_HTTP $P_NM_ADMIN 300
    printf 'forward:\n  dynamic_metadata: false\n' >>"$WORK/tokengate-nometa.yaml"
    start tokengate-nometa "$BIN/tokengate" serve --config "$WORK/tokengate-nometa.yaml"
    # ... and a fourth whose gRPC listener is TLS with client certificates, as a shared
    # tokengate Service would be (docs/operations.md, "TLS between proxy and tokengate").
    # P-256 keys, the CA and both leaves made here; Envoy presents the client one.
    PKI="$WORK/pki"
    mkdir -p "$PKI"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 2 \
        -subj /CN=bench-ca 2>/dev/null
    leaf() { # leaf NAME SAN USAGE
        openssl req "${ec[@]}" -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "/CN=$1" 2>/dev/null
        printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$2" "$3" \
            >"$PKI/$1.ext"
        openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
            -CAcreateserial -days 2 -extfile "$PKI/$1.ext" -out "$PKI/$1.crt" 2>/dev/null
    }
    leaf server "DNS:localhost,IP:127.0.0.1" serverAuth
    leaf envoy "URI:spiffe://bench/envoy" clientAuth
    tg_config "$WORK/tokengate-tls.yaml" $P_TLS_GRPC $P_TLS_HTTP $P_TLS_ADMIN 300
    cat >>"$WORK/tokengate-tls.yaml" <<EOF_TLS
tls:
  grpc:
    cert_file: $PKI/server.crt
    key_file: $PKI/server.key
    client_ca_file: $PKI/ca.crt
    allowed_clients: [{uri: "spiffe://bench/envoy"}]
EOF_TLS
    start tokengate-tls "$BIN/tokengate" serve --config "$WORK/tokengate-tls.yaml"
fi
wait_until "tokengate /readyz" 20 http_ok "http://127.0.0.1:$P_TG_ADMIN/readyz"
if want miss; then
    wait_until "tokengate-nocache /readyz" 20 http_ok "http://127.0.0.1:$P_NC_ADMIN/readyz"
fi
if want envoy; then
    wait_until "tokengate-nometa /readyz" 20 http_ok "http://127.0.0.1:$P_NM_ADMIN/readyz"
    wait_until "tokengate-tls /readyz" 20 http_ok "http://127.0.0.1:$P_TLS_ADMIN/readyz"
fi

# ------------------------------------------------------------------ tokens
log "minting tokens"
GEN=("$EX/gen_requests" --keys tests/fixtures/keys --issuer https://issuer.bench --audience bench-api)
echo "${GEN[*]} --alg ALG --count $TOKENS --tokens $WORK/ALG.tokens --requests $WORK/ALG.grpc --single $WORK/ALG.one.grpc" >"$WORK/gen-command.txt"
# The warm sets: every algorithm of sections 1-2, ES256 (HTTP, Envoy) and, for the
# signature-cache-warm all-miss runs, every algorithm of section 3.
warm_algs="$ALGS ES256"
if want miss; then warm_algs+=" $MISS_ALGS"; fi
for alg in $(echo "$warm_algs" | tr ' ' '\n' | sort -u); do
    "${GEN[@]}" --alg "$alg" --count "$TOKENS" --tokens "$WORK/$alg.tokens" \
        --requests "$WORK/$alg.grpc" --single "$WORK/$alg.one.grpc"
done
echo "${GEN[*]} --alg ALG --count $((MISS_REQUESTS * REPS)) --sub-prefix miss- --requests $WORK/miss-ALG.grpc" >>"$WORK/gen-command.txt"
echo "${GEN[*]} --alg ES256 --count $REVOCATIONS --sub-prefix prop- --tokens $WORK/prop.tokens --jwks $WORK/jwks.json" >>"$WORK/gen-command.txt"
for alg in $MISS_ALGS; do
    "${GEN[@]}" --alg "$alg" --count $((MISS_REQUESTS * REPS)) --sub-prefix miss- \
        --requests "$WORK/miss-$alg.grpc"
done
"${GEN[@]}" --alg ES256 --count "$REVOCATIONS" --sub-prefix prop- --tokens "$WORK/prop.tokens" \
    --jwks "$WORK/jwks.json"

# ------------------------------------------------------------------ measuring
CLK=$(getconf CLK_TCK)
NCPU=$(nproc)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }  # utime+stime, all threads
sys_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
redis_calls() {
    redis-cli -p "$P_REDIS" info commandstats |
        tr -d '\r' | awk -F'[:=,]' '/^cmdstat_(evalsha|eval|fcall):/{s += $3 - $11} END{print s+0}'
}
RUN_N=0

# measure KEY=VALUE... -- CMD...: runs CMD (bounded by `timeout`), keeps its output, and
# appends one JSON line to $RESULTS: the metadata, the exact command, the CPU seconds
# used meanwhile by each process this script started (by name), by the client command,
# and by the whole machine (so that CPU taken by anything else shows), and the number
# of Redis script calls (each one an uncached revocation check or a write).
measure() {
    local meta=()
    while [ "$1" != "--" ]; do meta+=("$1"); shift; done
    shift
    RUN_N=$((RUN_N + 1))
    local out="$WORK/runs/$RUN_N.out" i before=()
    for i in "${!PIDS[@]}"; do before+=("$(cpu_ticks "${PIDS[$i]:-0}")"); done
    local r0 busy0 tot0 busy1 tot1 r1 t0 t1 rc=0
    r0=$(redis_calls)
    read -r busy0 tot0 < <(sys_ticks)
    t0=$(date +%s.%N)
    local TIMEFORMAT='%U %S'
    { time timeout -k 5 "$RUN_LIMIT" "$@" >"$out" 2>&1; } 2>"$out.time" || rc=$?
    t1=$(date +%s.%N)
    read -r busy1 tot1 < <(sys_ticks)
    r1=$(redis_calls)
    local cpu=""
    for i in "${!PIDS[@]}"; do
        [ -n "${PIDS[$i]}" ] || continue
        cpu+="${NAMES[$i]}=$(($(cpu_ticks "${PIDS[$i]}") - ${before[$i]})),"
    done
    python3 - "$RESULTS" "$out" "$rc" "$t0" "$t1" "$cpu" "$CLK" "$((busy1 - busy0))" \
        "$((tot1 - tot0))" "$NCPU" "$((r1 - r0))" "$(tail -n1 "$out.time")" "${meta[@]}" -- "$@" <<'PY'
import json, sys, shlex
(res, out, rc, t0, t1, cpu, clk, busy, tot, ncpu, redis, ctime), rest = sys.argv[1:13], sys.argv[13:]
sep = rest.index("--")
meta = dict(kv.split("=", 1) for kv in rest[:sep])
cmd = rest[sep + 1:]
clk = float(clk)
cu = [float(x) for x in ctime.split()] if ctime.strip() else [0.0, 0.0]
procs = {}
for kv in filter(None, cpu.split(",")):
    k, v = kv.split("=")
    procs[k] = max(0, int(v)) / clk
rec = dict(meta)
rec.update(out=out, rc=int(rc), wall_s=float(t1) - float(t0), cpu_s=procs,
           client_cpu_s=sum(cu), machine_busy_s=int(busy) / clk,
           machine_total_s=int(tot) / clk, ncpu=int(ncpu), redis_calls=int(redis),
           cmd=" ".join(shlex.quote(c) for c in cmd))
with open(res, "a") as f:
    f.write(json.dumps(rec) + "\n")
PY
    return 0
}

GRPC_PATH=/envoy.service.auth.v3.Authorization/Check
BARE_URL="http://127.0.0.1:$P_BARE_GRPC"
TG_URL="http://127.0.0.1:$P_TG_GRPC"
NC_URL="http://127.0.0.1:$P_NC_GRPC"
H2LOAD_GRPC=(--header 'content-type: application/grpc' --header 'te: trailers')

warm_tg() { # warm_tg ALG URL NAME: every token of the set once through one tokengate
    local log="$WORK/logs/warmup-$1.json"
    [ "$3" = tokengate ] || log="$WORK/logs/warmup-$3-$1.json"
    "$EX/loadgen" --addr "$2" --requests "$WORK/$1.grpc" --count 1 --warmup \
        --connections "$CONNS" --inflight "$INFLIGHT" --max-seconds "$RUN_LIMIT" \
        --label "warm-up $1 ($3)" >"$log" ||
        die "warm-up of $1 tokens through $3 was not all allowed: $(cat "$log")"
}
warm() { # warm ALG: every token of the set once through tokengate (and the bare server)
    warm_tg "$1" "$TG_URL" tokengate
    "$EX/loadgen" --addr "$BARE_URL" --requests "$WORK/$1.grpc" --count 1 \
        >/dev/null || die "bare server did not allow"
}

url_of() { [ "$1" = bare ] && echo "$BARE_URL" || echo "$TG_URL"; }

if want warm; then
    for alg in $ALGS; do
        log "warm-cache throughput, $alg"
        warm "$alg"
        for rep in $(seq "$REPS"); do
            for target in bare tokengate; do
                measure section=warm alg="$alg" target="$target" tool=loadgen rep="$rep" -- \
                    "$EX/loadgen" --addr "$(url_of $target)" --requests "$WORK/$alg.grpc" \
                    --count "$REQUESTS" --connections "$CONNS" --inflight "$INFLIGHT" \
                    --max-seconds "$RUN_LIMIT"
                measure section=warm alg="$alg" target="$target" tool=h2load rep="$rep" \
                    requests="$REQUESTS" -- \
                    h2load -n "$REQUESTS" -c "$CONNS" -m "$INFLIGHT" -t 1 \
                    "${H2LOAD_GRPC[@]}" -d "$WORK/$alg.one.grpc" \
                    "$(url_of $target)$GRPC_PATH"
            done
        done
    done
fi

if want profile && have perf; then
    log "profile: perf record of tokengate during a warm ES256 h2load run"
    warm ES256
    perf record -F 999 --call-graph dwarf,8192 -p "$(pid_of tokengate)" -o "$WORK/perf.data" -- \
        timeout -k 5 "$RUN_LIMIT" h2load -n $((REQUESTS * 2)) -c "$CONNS" -m "$INFLIGHT" -t 1 \
        "${H2LOAD_GRPC[@]}" -d "$WORK/ES256.one.grpc" "$TG_URL$GRPC_PATH" \
        >"$WORK/logs/perf-record.txt" 2>&1 || log "warning: perf record failed"
    perf report -i "$WORK/perf.data" --no-children -g none --sort dso,symbol --stdio \
        --percent-limit 0.7 2>/dev/null | grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+$//' | cut -c1-220 >"$WORK/perf-self.txt" || true
    perf report -i "$WORK/perf.data" --children -g none --sort symbol --stdio \
        --percent-limit 0.5 2>/dev/null | grep -E '^ +[0-9]' |
        grep -E 'tokengate::|quick_cache::|sha2::|jsonwebtoken::|aws_lc|serde_json::|prometheus::|prost::|tonic::codec|Grpc<T>::unary|Streams<B,P>::poll_complete|poll_server' |
        sed -E 's/[[:space:]]+$//' | cut -c1-220 | head -n 45 >"$WORK/perf-children.txt" || true
fi

if want latency; then
    for alg in $ALGS; do
        log "one request in flight, $alg"
        warm "$alg"
        for rep in $(seq "$REPS"); do
            for target in bare tokengate; do
                measure section=latency alg="$alg" target="$target" tool=loadgen rep="$rep" -- \
                    "$EX/loadgen" --addr "$(url_of $target)" --requests "$WORK/$alg.grpc" \
                    --count "$LAT_REQUESTS" --connections 1 --inflight 1 \
                    --max-seconds "$RUN_LIMIT"
            done
        done
    done
fi

if want miss; then
    for alg in $MISS_ALGS; do
        log "all-miss throughput (Redis), $alg"
        # Signature-cache-warm variant: the known tokens once through tokengate-nocache
        # (fills its verified-token cache; its revocation cache keeps nothing).
        warm_tg "$alg" "$NC_URL" tokengate-nocache
        for rep in $(seq "$REPS"); do
            offset=$(((rep - 1) * MISS_REQUESTS))
            for target in bare tokengate; do
                measure section=miss alg="$alg" target="$target" tool=loadgen rep="$rep" -- \
                    "$EX/loadgen" --addr "$(url_of $target)" --requests "$WORK/miss-$alg.grpc" \
                    --offset "$offset" --count "$MISS_REQUESTS" --connections "$CONNS" \
                    --inflight "$INFLIGHT" --max-seconds "$RUN_LIMIT"
            done
            for target in bare tokengate; do
                url=$BARE_URL
                [ "$target" = tokengate ] && url=$NC_URL
                measure section=miss-cacheoff alg="$alg" target="$target" tool=loadgen \
                    rep="$rep" -- \
                    "$EX/loadgen" --addr "$url" --requests "$WORK/$alg.grpc" \
                    --count "$MISS_REQUESTS" --connections "$CONNS" \
                    --inflight "$INFLIGHT" --max-seconds "$RUN_LIMIT"
            done
        done
    done
fi

AUTHZ_PRESENT=0
TOKEN0=$(head -n1 "$WORK/ES256.tokens")
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
    -H "authorization: Bearer $TOKEN0" "http://127.0.0.1:$P_TG_HTTP/authz/api/items" || true)
case "$code" in
    200) AUTHZ_PRESENT=1 ;;
    404 | 405) log "tokengate has no HTTP check mode (/authz answered $code): HTTP rows skipped" ;;
    *) log "tokengate /authz answered $code to a valid token: HTTP rows skipped" ;;
esac
echo "$AUTHZ_PRESENT $code" >"$WORK/authz-present.txt"

if want http && [ "$AUTHZ_PRESENT" = 1 ]; then
    log "HTTP check mode (/authz), ES256, h2load --h1"
    warm ES256
    for rep in $(seq "$REPS"); do
        for target in bare tokengate; do
            port=$P_BARE_HTTP
            [ "$target" = tokengate ] && port=$P_TG_HTTP
            measure section=http alg=ES256 target="$target" tool=h2load-h1 rep="$rep" \
                requests="$REQUESTS" -- \
                h2load --h1 -n "$REQUESTS" -c $((CONNS * 8)) -t 1 \
                --header "authorization: Bearer $TOKEN0" \
                "http://127.0.0.1:$port/authz/api/items"
        done
    done
fi

if want envoy; then
    log "Envoy: starting one Envoy (1 worker) per configuration"
    JWKS=$(cat "$WORK/jwks.json")
    envoy_cases=(none grpc-bare grpc-tokengate grpc-tokengate-nometa grpc-tokengate-tls jwt-authn
        jwt-authn-cache)
    [ "$AUTHZ_PRESENT" = 1 ] && envoy_cases+=(http-bare http-tokengate)
    i=0
    for case in "${envoy_cases[@]}"; do
        lport=$((BASE + 40 + i)) aport=$((BASE + 50 + i))
        eval "LPORT_${case//-/_}=$lport"
        cache='{}' tls=''
        case $case in
            none) tpl=envoy-none.yaml authz=0 ;;
            grpc-bare) tpl=envoy-ext-authz-grpc.yaml authz=$P_BARE_GRPC ;;
            grpc-tokengate) tpl=envoy-ext-authz-grpc.yaml authz=$P_TG_GRPC ;;
            grpc-tokengate-nometa) tpl=envoy-ext-authz-grpc.yaml authz=$P_NM_GRPC ;;
            grpc-tokengate-tls) tpl=envoy-ext-authz-grpc.yaml authz=$P_TLS_GRPC tls=$PKI ;;
            http-bare) tpl=envoy-ext-authz-http.yaml authz=$P_BARE_HTTP ;;
            http-tokengate) tpl=envoy-ext-authz-http.yaml authz=$P_TG_HTTP ;;
            jwt-authn) tpl=envoy-jwt-authn.yaml authz=0 cache='# no jwt_cache_config' ;;
            jwt-authn-cache) tpl=envoy-jwt-authn.yaml authz=0 \
                cache="jwt_cache_config: { jwt_cache_size: $((TOKENS * 2)) }" ;;
        esac
        python3 - "scripts/bench/$tpl" "$WORK/envoy-$case.yaml" "$lport" "$aport" "$authz" \
            "$JWKS" "$cache" "$AUTHZ_TIMEOUT" "$tls" <<'PY'
import sys
src, dst, lport, aport, authz, jwks, cache, timeout, pki = sys.argv[1:]
text = open(src).read()
# With a PKI directory: the authz cluster speaks mutual TLS (that of envoy/envoy-tls.yaml).
tls = ""
if pki:
    tls = f"""transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: localhost
          common_tls_context:
            alpn_protocols: [h2]
            tls_certificates:
              - certificate_chain: {{ filename: {pki}/envoy.crt }}
                private_key: {{ filename: {pki}/envoy.key }}
            validation_context:
              trusted_ca: {{ filename: {pki}/ca.crt }}
              match_typed_subject_alt_names:
                - san_type: DNS
                  matcher: {{ exact: localhost }}"""
for k, v in {"@LISTEN_PORT@": lport, "@ADMIN_PORT@": aport, "@AUTHZ_PORT@": authz,
             "@JWKS@": jwks, "@JWT_CACHE@": cache, "@AUTHZ_TIMEOUT@": timeout,
             "# @AUTHZ_TLS@": tls}.items():
    text = text.replace(k, v)
open(dst, "w").write(text)
PY
        start "envoy-$case" "$ENVOY" -c "$WORK/envoy-$case.yaml" --concurrency 1 \
            --disable-hot-restart -l warning
        i=$((i + 1))
    done
    i=0
    for case in "${envoy_cases[@]}"; do
        wait_until "Envoy $case" 30 http_ok "http://127.0.0.1:$((BASE + 50 + i))/ready"
        i=$((i + 1))
    done
    ENVOY_LUA=scripts/bench/wrk-tokens.lua
    ES_TOKENS="$WORK/ES256.tokens"
    for case in "${envoy_cases[@]}"; do
        v="LPORT_${case//-/_}"
        # Warm-up: every token once (fills tokengate's and jwt_authn's caches, opens
        # Envoy's upstream connections).
        timeout -k 5 "$RUN_LIMIT" wrk -t1 -c "$ENVOY_CONNS" -d "${ENVOY_WARMUP}s" -s "$ENVOY_LUA" \
            "http://127.0.0.1:${!v}" -- "$ES_TOKENS" 0 >"$WORK/logs/wrk-warm-$case.txt" 2>&1 || true
        grep -q 'TALLY ok=[1-9][0-9]* bad=0 ' "$WORK/logs/wrk-warm-$case.txt" ||
            log "warning: Envoy $case warm-up had failures: $(grep TALLY "$WORK/logs/wrk-warm-$case.txt")"
        warm_ok=$(sed -n 's/.*TALLY ok=\([0-9]*\) .*/\1/p' "$WORK/logs/wrk-warm-$case.txt")
        [ "${warm_ok:-0}" -ge "$TOKENS" ] ||
            log "warning: Envoy $case warm-up answered ${warm_ok:-0} requests, fewer than the $TOKENS tokens"
    done
    log "Envoy: measuring (${ENVOY_SECONDS}s runs, ${REPS} reps, interleaved)"
    for rep in $(seq "$REPS"); do
        for case in "${envoy_cases[@]}"; do
            v="LPORT_${case//-/_}"
            measure section=envoy case="$case" alg=ES256 tool=wrk rep="$rep" \
                budget="$ENVOY_REQUESTS" -- \
                wrk -t1 -c "$ENVOY_CONNS" -d "${ENVOY_SECONDS}s" -s "$ENVOY_LUA" \
                "http://127.0.0.1:${!v}" -- "$ES_TOKENS" "$ENVOY_REQUESTS"
        done
    done
    for case in "${envoy_cases[@]}"; do stop "envoy-$case"; done
fi

if want propagation; then
    log "revocation propagation: two replicas on one Redis, $REVOCATIONS revocations"
    tg_config "$WORK/replica-a.yaml" $P_A_GRPC $P_A_HTTP $P_A_ADMIN 5
    tg_config "$WORK/replica-b.yaml" $P_B_GRPC $P_B_HTTP $P_B_ADMIN 5
    start replica-a "$BIN/tokengate" serve --config "$WORK/replica-a.yaml"
    start replica-b "$BIN/tokengate" serve --config "$WORK/replica-b.yaml"
    wait_until "replica A" 20 http_ok "http://127.0.0.1:$P_A_ADMIN/readyz"
    wait_until "replica B" 20 http_ok "http://127.0.0.1:$P_B_ADMIN/readyz"
    measure section=propagation tool=propagation rep=1 -- \
        "$EX/propagation" --tokens "$WORK/prop.tokens" --count "$REVOCATIONS" \
        --a-http "http://127.0.0.1:$P_A_HTTP" --b-grpc "http://127.0.0.1:$P_B_GRPC"
    stop replica-a
    stop replica-b
fi

if want memory; then
    log "memory per cached entry ($MEM_ENTRIES entries)"
    for mode in jti token; do
        measure section=memory mode=$mode tool=cache_memory rep=1 -- \
            "$EX/cache_memory" --mode $mode --entries "$MEM_ENTRIES"
    done
    measure section=memory mode=verified tool=cache_memory rep=1 -- \
        "$EX/cache_memory" --mode verified --entries "$MEM_VERIFIED_ENTRIES"
fi

CRIT_LOG="$WORK/criterion.txt"
: >"$CRIT_LOG"
if want criterion && [ "$CRITERION" = 1 ]; then
    log "criterion microbenchmarks (cargo bench --bench decision)"
    stop tokengate
    stop bare
    rm -rf "$TARGET_DIR/criterion"
    timeout -k 10 900 cargo bench --bench decision >"$CRIT_LOG" 2>&1 ||
        log "warning: criterion run failed (see $CRIT_LOG)"
fi

cleanup
ELAPSED=$(($(date +%s) - STARTED_AT))
log "writing $OUT"
mkdir -p "$(dirname "$OUT")"
# report.py prints the summary; the smoke's numbers mean nothing, so it stays quiet.
if [ "$SMOKE" = 1 ]; then exec 3>/dev/null; else exec 3>&1; fi
python3 scripts/bench/report.py --results "$RESULTS" --work "$WORK" --out "$OUT" \
    --elapsed "$ELAPSED" --build-seconds "$BUILD_SECONDS" --criterion-dir "$TARGET_DIR/criterion" \
    --bin-dir "$TARGET_DIR/$BIN_DIR" \
    --settings "PROFILE=$PROFILE ALGS=$ALGS TOKENS=$TOKENS REPS=$REPS REQUESTS=$REQUESTS CONNS=$CONNS INFLIGHT=$INFLIGHT LAT_REQUESTS=$LAT_REQUESTS MISS_ALGS=$MISS_ALGS MISS_REQUESTS=$MISS_REQUESTS ENVOY_SECONDS=$ENVOY_SECONDS ENVOY_REQUESTS=$ENVOY_REQUESTS ENVOY_CONNS=$ENVOY_CONNS REVOCATIONS=$REVOCATIONS MEM_ENTRIES=$MEM_ENTRIES BASE=$BASE" >&3
exec 3>&-
if [ "$SMOKE" = 1 ]; then
    # The point of the smoke: every section and ratio is in the report, every run valid.
    python3 scripts/bench/check_report.py "$OUT" --sections "$SECTIONS" --algs "$ALGS" \
        --miss-algs "$MISS_ALGS" ||
        die "smoke: the report is incomplete (report $OUT, logs in $WORK)"
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "smoke passed; kept $WORK"
    else
        rm -rf "$WORK"
        log "smoke passed"
    fi
fi
# The in-proxy fast path (issue 20) side by side with jwt_authn and ext_authz, its
# propagation and memory: its own section of the same report (BENCH_FASTPATH=0 skips it;
# the smoke runs it from scripts/test.sh).
if [ "$SMOKE" != 1 ] && [ "${BENCH_FASTPATH:-1}" != 0 ]; then
    BENCH_FP_OUT="$OUT" BENCH_PROFILE="$PROFILE" scripts/bench-fastpath.sh >/dev/null
fi
log "done in ${ELAPSED}s"
