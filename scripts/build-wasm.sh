#!/usr/bin/env bash
# Builds the in-proxy fast path (issue 20), wasm/ -> 
#   wasm/target/wasm32-wasi/release/tokengate_fastpath.wasm
# with Debian's rustc 1.63 + libstd-rust-dev-wasm32 + cargo + lld (wasm-ld), installed
# here when missing; offline, from wasm/vendor and wasm/Cargo.lock. The main crate's
# rustup toolchain is not touched: Debian's cargo is called by its path and told to use
# Debian's rustc, whatever comes first on PATH.
#   scripts/build-wasm.sh           build (a no-op when nothing changed)
#   scripts/build-wasm.sh --test    also run the module's unit tests on the host
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../wasm"

log() { echo "build-wasm: $*" >&2; }
DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
if [ ! -x "$DEB_CARGO" ] || [ ! -x "$DEB_RUSTC" ] || ! command -v wasm-ld >/dev/null 2>&1 ||
    [ ! -d /usr/lib/rustlib/wasm32-wasi ]; then
    log "installing Debian's rustc, cargo, libstd-rust-dev-wasm32 and lld"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq rustc cargo libstd-rust-dev-wasm32 lld >/dev/null
fi

# Neither rustup's toolchain file nor its environment may leak into this build.
unset RUSTUP_TOOLCHAIN CARGO_TARGET_DIR RUSTFLAGS CARGO_BUILD_TARGET
export RUSTC="$DEB_RUSTC" RUSTDOC=/usr/bin/rustdoc CARGO_HOME="$PWD/target/cargo-home"
"$DEB_CARGO" build --release --locked --offline
if [ "${1:-}" = "--test" ]; then
    "$DEB_CARGO" test --locked --offline --lib --target "$("$DEB_RUSTC" -vV | sed -n 's/^host: //p')"
fi
out=target/wasm32-wasi/release/tokengate_fastpath.wasm
[ -s "$out" ] || { log "error: $out was not built"; exit 1; }
# The linker wrapper (wasm/wasm-ld-callbacks.sh) must have dropped the callbacks the
# module does not use: Envoy would call each of them on every request.
if grep -aq proxy_on_response_body "$out"; then
    log "error: $out exports proxy_on_response_body: was it linked without wasm/wasm-ld-callbacks.sh?"
    exit 1
fi
log "built wasm/$out ($(wc -c <"$out") bytes)"
