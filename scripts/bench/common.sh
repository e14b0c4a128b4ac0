# shellcheck shell=bash
# Shared by the per-issue bench scripts (bench-backchannel.sh, bench-dpop.sh,
# bench-tracing.sh): `source` it after setting BENCH_NAME.
#   log MSG / die MSG      timestamped lines on stderr, prefixed with BENCH_NAME
#   TARGET_DIR             cargo's target directory (set on sourcing)
#   bench_workdir          a temporary WORK directory and a PIDS array; on exit every
#                          process in PIDS is killed and WORK removed
#   free_ports N           N free loopback ports, chosen by binding port 0 and released
#                          again (a bench, not a test: nothing else is starting here)

log() { printf '%s %s: %s\n' "$(date +%T)" "$BENCH_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')" ||
    die "cargo metadata failed"
export TARGET_DIR

bench_workdir() {
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-$BENCH_NAME.XXXXXX")"
    PIDS=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

free_ports() {
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()' "$1"
}
