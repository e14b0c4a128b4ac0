//! Certificate-bound tokens (RFC 8705 §3, issue 18) through a real Envoy terminating
//! mutual TLS: over gRPC the certificate comes from the CheckRequest
//! (`include_peer_certificate: true`), in HTTP mode from Envoy's XFCC header
//! (`forward_client_cert_details: SANITIZE_SET`, `Hash` and `Cert`). The token's
//! `cnf.x5t#S256` is computed here from the DER rcgen made; the right client is
//! allowed, another client's certificate is refused, and a client's own XFCC header
//! claiming someone else's certificate counts for nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::certs::{Ca, Leaf, Pair};
use crate::support::envoy::{EchoUpstream, Envoy, Scratch};
use crate::support::tls::https;
use crate::support::*;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Grpc,
    Http,
}

fn x5t(p: &Pair) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(p.der.as_ref()))
}

fn hex(p: &Pair) -> String {
    Sha256::digest(p.der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Envoy bootstrap: downstream mTLS against `ca`, ext_authz to tokengate in `mode`.
fn envoy_yaml(mode: Mode, files: &Scratch, tg: &tokengate::Addrs, app: u16) -> String {
    let authz = match mode {
        Mode::Grpc => "                      grpc_service:
                        envoy_grpc: { cluster_name: tokengate_grpc }
                        timeout: 2s
"
        .to_string(),
        Mode::Http => "                      http_service:
                        server_uri: { uri: \"http://127.0.0.1\", cluster: tokengate_http, timeout: 2s }
                        path_prefix: /authz
                        authorization_response:
                          allowed_client_headers:
                            patterns:
                              - { exact: www-authenticate, ignore_case: true }
                              - { exact: content-type, ignore_case: true }
                      allowed_headers:
                        patterns:
                          - { exact: authorization, ignore_case: true }
                          - { exact: x-forwarded-client-cert, ignore_case: true }
"
        .to_string(),
    };
    let cluster = |name: &str, port: u16, h2: bool| {
        let h2 = if h2 {
            "      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {}
"
        } else {
            ""
        };
        format!(
            "    - name: {name}
      type: STATIC
      connect_timeout: 1s
{h2}      load_assignment:
        cluster_name: {name}
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"
        )
    };
    format!(
        "admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: 0 }}
static_resources:
  listeners:
    - name: ingress
      address:
        socket_address: {{ address: 127.0.0.1, port_value: 0 }}
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              require_client_certificate: true
              common_tls_context:
                tls_certificates:
                  - certificate_chain: {{ filename: {crt} }}
                    private_key: {{ filename: {key} }}
                validation_context:
                  trusted_ca: {{ filename: {ca} }}
          filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
                forward_client_cert_details: SANITIZE_SET
                set_current_client_cert_details: {{ cert: true }}
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: [\"*\"]
                      routes:
                        - match: {{ prefix: / }}
                          route: {{ cluster: app }}
                http_filters:
                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      failure_mode_allow: false
                      status_on_error: {{ code: 503 }}
                      include_peer_certificate: true
{authz}                  - name: envoy.filters.http.router
                    typed_config:
                      \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{grpc}{http}{app}",
        crt = files.join("server.crt").display(),
        key = files.join("server.key").display(),
        ca = files.join("ca.crt").display(),
        grpc = cluster("tokengate_grpc", tg.grpc.port(), true),
        http = cluster("tokengate_http", tg.http.port(), false),
        app = cluster("app", app, false),
    )
}

struct Rig {
    _server: TestServer,
    _app: EchoUpstream,
    envoy: Envoy,
    ca: Ca,
    _files: Scratch,
}

impl Rig {
    async fn start(mode: Mode) -> Rig {
        let mut yaml = config_yaml(MEMORY_STORE)
            .replacen(
                "  - name: test\n",
                "  - name: test\n    sender_constraint: optional\n",
                1,
            )
            .replacen(
                "routes:\n",
                "routes:\n  - path_prefix: /strict\n    sender_constraint: required\n",
                1,
            );
        if mode == Mode::Http {
            yaml = format!("{}  client_cert: xfcc\n", behind("envoy", &yaml));
        }
        let server = TestServer::start(&yaml).await;
        let app = EchoUpstream::start().await;
        let ca = Ca::new("tokengate test clients");
        let files = Scratch::new("mtls-bound");
        ca.write(&files, "ca");
        ca.sign(&Leaf::server(&[])).write(&files, "server");
        let envoy =
            Envoy::start_text(&envoy_yaml(mode, &files, &server.addrs, app.addr.port())).await;
        Rig {
            _server: server,
            _app: app,
            envoy,
            ca,
            _files: files,
        }
    }

    fn client(&self) -> Pair {
        self.ca.sign(&Leaf::client_dns("client.test"))
    }

    /// GET `path` as `client` with `token`, and `extra` headers; (status, reason).
    async fn get(
        &self,
        client: &Pair,
        path: &str,
        token: &str,
        extra: &[(&str, String)],
    ) -> (u16, String) {
        let url = format!("https://127.0.0.1:{}{path}", self.envoy.listener.port());
        let mut req = https(&self.ca.pem, Some(client))
            .get(url)
            .header("authorization", bearer(token));
        for (k, v) in extra {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request through Envoy");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (status, body["reason"].as_str().unwrap_or("").to_string())
    }
}

fn bound_to(p: &Pair) -> String {
    token("ec256", "alice", json!({"cnf": {"x5t#S256": x5t(p)}}))
}

/// (what, client, path, token, extra headers, (status, reason))
type Case<'a> = (
    &'a str,
    &'a Pair,
    &'a str,
    &'a String,
    &'a [(&'a str, String)],
    (u16, &'a str),
);

async fn the_bound_client_alone_passes(mode: Mode) {
    let rig = Rig::start(mode).await;
    let (alice, mallory) = (rig.client(), rig.client());
    let tok = bound_to(&alice);
    let unbound = token("ec256", "bob", json!({}));
    let forged_xfcc = vec![(
        "x-forwarded-client-cert",
        format!("Hash={};Subject=\"CN=tokengate test\"", hex(&alice)),
    )];
    let forged_xfcc_2 = vec![("x-forwarded-client-cert", format!("Hash={}", hex(&alice)))];
    // (what, client, path, token, extra headers, (status, reason))
    let cases: Vec<Case<'_>> = vec![
        (
            "the bound client",
            &alice,
            "/api/items",
            &tok,
            &[],
            (200, ""),
        ),
        (
            "another client's certificate",
            &mallory,
            "/api/items",
            &tok,
            &[],
            (401, "cert_binding_mismatch"),
        ),
        (
            "another client with a forged XFCC",
            &mallory,
            "/api/items",
            &tok,
            &forged_xfcc,
            (401, "cert_binding_mismatch"),
        ),
        (
            "another client with a bare forged Hash",
            &mallory,
            "/api/items",
            &tok,
            &forged_xfcc_2,
            (401, "cert_binding_mismatch"),
        ),
        (
            "an unbound token (optional)",
            &mallory,
            "/api/items",
            &unbound,
            &[],
            (200, ""),
        ),
        (
            "an unbound token where required",
            &alice,
            "/strict/x",
            &unbound,
            &[],
            (401, "unbound_token"),
        ),
        (
            "the bound client where required",
            &alice,
            "/strict/x",
            &tok,
            &[],
            (200, ""),
        ),
        (
            "another client where required",
            &mallory,
            "/strict/x",
            &tok,
            &[],
            (401, "cert_binding_mismatch"),
        ),
    ];
    for (what, client, path, token, extra, want) in cases {
        let got = rig.get(client, path, token, extra).await;
        assert_eq!(
            (got.0, got.1.as_str()),
            want,
            "{mode:?}: {what}; Envoy log:\n{}",
            rig.envoy.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_the_bound_client_alone_passes() {
    the_bound_client_alone_passes(Mode::Grpc).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mode_with_xfcc_the_bound_client_alone_passes() {
    the_bound_client_alone_passes(Mode::Http).await;
}
