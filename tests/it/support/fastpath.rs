//! The in-proxy fast path (issue 20) for end-to-end tests: the Wasm module that
//! scripts/build-wasm.sh built, `envoy/envoy-fast-path.yaml` made runnable here (ports,
//! module path, feed token, the test issuer's key instead of a remote JWKS), and a
//! tokengate configuration with the revocation feed on.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::envoy::{rewrite_ports, Envoy, ADMIN_PORT, APP_PORT, LISTENER_PORT};
use super::envoy::{TOKENGATE_GRPC_PORT, TOKENGATE_HTTP_PORT};
use super::procs;

/// Where the shipped config loads the module from (replaced in tests).
pub const SHIPPED_MODULE: &str = "/etc/envoy/tokengate_fastpath.wasm";
/// The feed token of the shipped config (replaced in tests).
pub const SHIPPED_TOKEN: &str = "REPLACE-WITH-THE-FEED-TOKEN";
/// The token tokengate's feed and Envoy's singleton share in these tests.
pub const FEED_TOKEN: &str = "feed-token-of-the-tests";

/// The module scripts/build-wasm.sh built (scripts/install-test-deps.sh runs it).
pub fn module() -> PathBuf {
    let p = procs::repo().join("wasm/target/wasm32-wasi/release/tokengate_fastpath.wasm");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-wasm.sh (scripts/install-test-deps.sh does)",
        p.display()
    );
    p
}

/// The ES256 fixture public key (kid `ec256`) as a JWKS, for jwt_authn.
pub fn es256_jwks() -> String {
    let pem = std::fs::read_to_string(super::fixture("keys/ec256-public.pem")).expect("pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64.trim()).expect("der");
    assert!(der.len() == 91 && der[26] == 4, "not a P-256 SPKI");
    let (x, y) = (&der[27..59], &der[59..91]);
    serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "ec256", "alg": "ES256", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
    }]})
    .to_string()
}

/// What a test changes in the shipped configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// `"fallback"` or `"deny"`.
    pub on_stale: &'static str,
    pub stale_after_ms: u64,
    /// The token Envoy's singleton sends (a wrong one keeps the set stale).
    pub token: String,
    /// Where ext_authz goes (a dead port proves a request never reached it).
    pub grpc_port: u16,
    /// No singleton: the filter's workers poll the feed themselves (`self_sync`, the
    /// Istio WasmPlugin's way, deploy/istio/wasmplugin-fast-path.yaml).
    pub self_sync: bool,
}

impl Options {
    pub fn new(tokengate: &tokengate::Addrs) -> Options {
        Options {
            on_stale: "fallback",
            stale_after_ms: 2_000,
            token: FEED_TOKEN.into(),
            grpc_port: tokengate.grpc.port(),
            self_sync: false,
        }
    }
}

/// `envoy/envoy-fast-path.yaml` for tokengate at `http_port` and the app at `app`.
pub fn envoy_text(http_port: u16, app: SocketAddr, o: &Options) -> String {
    let shipped = procs::repo().join("envoy/envoy-fast-path.yaml");
    let mut text = std::fs::read_to_string(shipped).expect("envoy/envoy-fast-path.yaml");
    let replace = |text: &mut String, from: &str, to: &str| {
        assert!(text.contains(from), "`{from}` not in envoy-fast-path.yaml");
        *text = text.replace(from, to);
    };
    // The test issuer's key inline instead of the IdP's remote JWKS, and no IdP cluster.
    let remote = "                          remote_jwks:
                            http_uri:
                              uri: https://idp.example.com/.well-known/jwks.json
                              cluster: idp
                              timeout: 2s
                            cache_duration: 300s
";
    let local = format!(
        "                          local_jwks:\n                            inline_string: '{}'\n",
        es256_jwks()
    );
    replace(&mut text, remote, &local);
    let idp = text
        .find("    # The identity provider's JWKS")
        .expect("idp cluster");
    text.truncate(idp);
    replace(&mut text, SHIPPED_MODULE, &module().display().to_string());
    replace(&mut text, SHIPPED_TOKEN, &o.token);
    replace(
        &mut text,
        r#""namespaces": {"https://idp.example.com": "idp"}"#,
        &format!(r#""namespaces": {{"{}": "test"}}"#, super::ISSUER),
    );
    replace(&mut text, "https://idp.example.com", super::ISSUER);
    replace(
        &mut text,
        r#""on_stale": "fallback""#,
        &format!(r#""on_stale": "{}""#, o.on_stale),
    );
    replace(
        &mut text,
        r#""stale_after_ms": 15000"#,
        &format!(r#""stale_after_ms": {}"#, o.stale_after_ms),
    );
    replace(
        &mut text,
        r#""poll_wait_ms": 5000"#,
        r#""poll_wait_ms": 1000"#,
    );
    if o.self_sync {
        let (start, end) = (
            text.find("bootstrap_extensions:").expect("the singleton"),
            text.find("static_resources:").expect("static_resources"),
        );
        text.replace_range(start..end, "");
        let own = format!(
            r#""role": "filter", "self_sync": true, "cluster": "tokengate_http", "token": "{}", "poll_wait_ms": 1000, "#,
            o.token
        );
        replace(&mut text, r#""role": "filter", "#, &own);
    }
    rewrite_ports(
        &text,
        &[
            (ADMIN_PORT, 0),
            (LISTENER_PORT, 0),
            (TOKENGATE_GRPC_PORT, o.grpc_port),
            (TOKENGATE_HTTP_PORT, http_port),
            (APP_PORT, app.port()),
        ],
    )
}

pub async fn start_envoy(http_port: u16, app: SocketAddr, o: &Options) -> Envoy {
    Envoy::start_text(&envoy_text(http_port, app, o)).await
}

/// `yaml` (a tokengate configuration) with the revocation feed on, its token in a file
/// of `dir`.
pub fn with_feed(yaml: &str, dir: &super::envoy::Scratch) -> String {
    let token = dir.write("feed-token", FEED_TOKEN);
    format!(
        "{yaml}revocation_feed:\n  enabled: true\n  token_file: {}\n  max_wait_ms: 2000\n",
        token.display()
    )
}
