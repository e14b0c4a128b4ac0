#!/usr/bin/env bash
# Revocation propagation from the identity provider (issue 16): a real OpenID provider
# (npm oidc-provider, tests/oidc/provider.mjs) ends a session by OIDC Back-Channel
# Logout to tokengate replica A; how long until replica B, on the same Redis, denies an
# access token of that session (session_revoked). B has the token cached as "not
# revoked" (cache TTL 300 s), so a deny within milliseconds can only come from A's
# invalidation event. crates/tools/src/bin/propagation.rs --idp does the measuring and
# prints one JSON line (p50/p90/p99/max over BENCH_BCL_COUNT logouts).
#
#   scripts/bench-backchannel.sh                 # 300 logouts, release build
#   BENCH_BCL_COUNT=10 BENCH_PROFILE=dev scripts/bench-backchannel.sh   # smoke
#
# Needs redis-server, node and .tools/oidc (scripts/install-test-deps.sh installs them).
# Every process it starts is stopped on exit; everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$(pwd)"

COUNT="${BENCH_BCL_COUNT:-300}"
PROFILE="${BENCH_PROFILE:-release}"
OUT="${BENCH_BCL_OUT:-}"

BENCH_NAME=bench-backchannel
# shellcheck source=scripts/bench/common.sh
source scripts/bench/common.sh

command -v redis-server >/dev/null || die "redis-server missing (scripts/install-test-deps.sh)"
command -v node >/dev/null || die "node missing (scripts/install-test-deps.sh)"
MODULE="$REPO/.tools/oidc/node_modules/oidc-provider"
[ -f "$MODULE/package.json" ] || die "oidc-provider missing in .tools/oidc (scripts/install-test-deps.sh)"

case "$PROFILE" in
    release) FLAGS=(--release) BIN="$TARGET_DIR/release" ;;
    dev) FLAGS=() BIN="$TARGET_DIR/debug" ;;
    *) die "BENCH_PROFILE must be release or dev" ;;
esac
log "building ($PROFILE)"
cargo build -q "${FLAGS[@]}" -p tokengate -p tokengate-tools --bin tokengate --bin propagation

bench_workdir

# Seven free loopback ports, chosen by binding port 0 (then released: a bench, not a test).
read -r P_REDIS P_AG P_AH P_AA P_BG P_BH P_BA < <(free_ports 7)

redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 &
PIDS+=("$!")
node tests/oidc/provider.mjs --module "$MODULE" --port 0 --issuer-file "$WORK/issuer" \
    --key a=tests/fixtures/keys/rsa-private.pem --sign a >"$WORK/idp.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do [ -s "$WORK/issuer" ] && break; sleep 0.1; done
[ -s "$WORK/issuer" ] || die "the provider did not start: $(cat "$WORK/idp.log")"
ISSUER="$(cat "$WORK/issuer")"

replica() { # replica NAME GRPC HTTP ADMIN
    cat >"$WORK/$1.yaml" <<EOF_CONFIG
listen: {grpc: "127.0.0.1:$2", http: "127.0.0.1:$3", admin: "127.0.0.1:$4"}
providers:
  - name: oidc
    issuer: $ISSUER
    audiences: [api]
    algorithms: [RS256]
    keys:
      - oidc_discovery: true
    backchannel_logout:
      client_id: tokengate-test
revocation:
  store: redis
  redis:
    url: redis://127.0.0.1:$P_REDIS/0
  cache:
    ttl_seconds: 300
log:
  level: warn
EOF_CONFIG
    "$BIN/tokengate" serve --config "$WORK/$1.yaml" >"$WORK/$1.log" 2>&1 &
    PIDS+=("$!")
}
replica a "$P_AG" "$P_AH" "$P_AA"
replica b "$P_BG" "$P_BH" "$P_BA"
for admin in "$P_AA" "$P_BA"; do
    for _ in $(seq 200); do
        curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null || die "replica on $admin not ready"
done

log "$COUNT back-channel logouts: provider -> replica A, first deny on replica B"
RESULT="$("$BIN/propagation" --idp "$ISSUER" --a-http "http://127.0.0.1:$P_AH" \
    --b-grpc "http://127.0.0.1:$P_BG" --count "$COUNT")" || {
    echo "$RESULT"
    die "invalid run (see the JSON)"
}
echo "$RESULT"
if [ -n "$OUT" ]; then echo "$RESULT" >"$OUT"; fi
