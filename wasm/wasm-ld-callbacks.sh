#!/bin/sh
# The fast path's linker (wasm/.cargo/config.toml): wasm-ld, without the exports of the
# proxy-wasm SDK's callbacks this module does not use. The SDK exports every callback
# of the ABI, and Envoy calls each one the module exports, on every request: for an HTTP
# filter that only judges request headers, on_response_headers, on_response_body (per
# chunk), on_log and on_done were four calls into the VM per request for nothing. Without
# the export Envoy skips the call, and the linker drops the code behind it.
# scripts/build-wasm.sh checks the built module's exports against this list.
set -eu
DROP="proxy_on_request_body proxy_on_request_trailers proxy_on_response_headers
proxy_on_response_body proxy_on_response_trailers proxy_on_log proxy_on_done
proxy_on_queue_ready proxy_on_new_connection proxy_on_downstream_data
proxy_on_downstream_connection_close proxy_on_upstream_data
proxy_on_upstream_connection_close proxy_on_grpc_receive_initial_metadata
proxy_on_grpc_receive proxy_on_grpc_receive_trailing_metadata proxy_on_grpc_close"
dropped() {
    for d in $DROP; do
        [ "$d" = "$1" ] && return 0
    done
    return 1
}
export_next=0
reset=1
for a in "$@"; do
    # The list to walk was expanded before the loop: rebuild "$@" from it.
    if [ "$reset" = 1 ]; then
        set --
        reset=0
    fi
    if [ "$export_next" = 1 ]; then
        export_next=0
        dropped "$a" || set -- "$@" --export "$a"
        continue
    fi
    case "$a" in
        --export) export_next=1 ;;
        --export=*) dropped "${a#--export=}" || set -- "$@" "$a" ;;
        *) set -- "$@" "$a" ;;
    esac
done
exec wasm-ld "$@"
