#!/usr/bin/env bash
# Fuzzes token parsing/verification and CheckRequest handling for a bounded time.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them. No sanitizer (-s none): the crate forbids unsafe code, what we look for
# are panics, hangs and runaway memory. A crash leaves its input in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
secs="${1:-30}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked -q cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none
for target in token check_request canonical; do
    mkdir -p "corpus/$target"
    cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
    echo "fuzz: $target for ${secs}s"
    log="$(mktemp)"
    status=0
    cargo fuzz run "$target" -s none "corpus/$target" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=5 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done)" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED (input saved under fuzz/artifacts/$target/)" >&2
        exit "$status"
    fi
    rm -f "$log"
done
