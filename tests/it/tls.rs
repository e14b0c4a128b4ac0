//! TLS and client certificates on the listeners (issue 15), through real TLS clients
//! (rustls under tonic and reqwest) and certificates made per test (support::certs).
//!
//! The attack classes: reaching a TLS listener without TLS (plaintext HTTP/1, h2c), with
//! TLS but without the identity it demands (no certificate, another CA's, an expired or
//! not-yet-valid one, a server certificate from the right CA, a name that is almost the
//! allowed one, the allowed string under another SAN type, an older protocol version), or
//! holding a handshake open; and a rotation that drops connections or, gone wrong, takes
//! the listener down.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::ExtendedKeyUsagePurpose;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::certs::{Ca, Leaf, Pair};
use crate::support::envoy::Scratch;
use crate::support::serve::tokengate;
use crate::support::tls::{client_config, client_config_versions, grpc, https, served_certificate};
use crate::support::{check_token, config_yaml, parse, token, wait_for, TestServer, MEMORY_STORE};

const ENVOY_ID: &str = "spiffe://cluster.local/ns/ingress/sa/envoy";
const H2: &[&[u8]] = &[b"h2"];

/// A CA, a server certificate and the client identity the listener allows, on disk.
struct Pki {
    dir: Scratch,
    ca: Ca,
    server: Pair,
    client: Pair,
}

impl Pki {
    fn new() -> Pki {
        let dir = Scratch::new("tls");
        let ca = Ca::new("tokengate test CA");
        let server = ca.sign(&Leaf::server(&[]));
        let client = ca.sign(&Leaf::client_uri(ENVOY_ID));
        ca.write(&dir, "ca");
        server.write(&dir, "server");
        Pki {
            dir,
            ca,
            server,
            client,
        }
    }

    /// A `tls:` listener block on the server certificate, demanding a client certificate
    /// from the CA that names `allowed` (URI SANs).
    fn listener(&self, allowed: &[&str]) -> String {
        let mut s = format!(
            "    cert_file: {}\n    key_file: {}\n",
            self.dir.join("server.crt").display(),
            self.dir.join("server.key").display()
        );
        if !allowed.is_empty() {
            s += &format!(
                "    client_ca_file: {}\n    allowed_clients:\n",
                self.dir.join("ca.crt").display()
            );
            for a in allowed {
                s += &format!("      - uri: \"{a}\"\n");
            }
        }
        s
    }
}

fn with_tls(tls: &str) -> String {
    format!("{}tls:\n{tls}", config_yaml(MEMORY_STORE))
}

/// The Check answer a client with `config` gets, or why it got none.
async fn try_check(server: &TestServer, config: Arc<rustls::ClientConfig>) -> Result<bool, String> {
    let mut client = grpc(server.addrs.grpc, config, Arc::new(AtomicUsize::new(0)))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let req = crate::support::check_request(
        "GET",
        "/api/items",
        &[(
            "authorization",
            &format!("Bearer {}", token("hs", "alice", serde_json::json!({}))),
        )],
    );
    match tokio::time::timeout(Duration::from_secs(10), client.check(req)).await {
        Ok(Ok(r)) => Ok(r.into_inner().status.is_some_and(|s| s.code == 0)),
        Ok(Err(status)) => Err(format!("call: {status}")),
        Err(_) => Err("no answer in 10 s".into()),
    }
}

#[tokio::test]
async fn grpc_over_mutual_tls_answers_checks_for_the_allowed_client() {
    let pki = Pki::new();
    let server = TestServer::start(&with_tls(&format!(
        "  grpc:\n{}",
        pki.listener(&[ENVOY_ID])
    )))
    .await;
    let config = client_config(&pki.ca.pem, Some(&pki.client), H2);
    let mut client = grpc(server.addrs.grpc, config, Arc::new(AtomicUsize::new(0)))
        .await
        .expect("TLS channel");
    let ok = check_token(&mut client, &token("hs", "alice", serde_json::json!({}))).await;
    assert!(ok.allowed(), "a valid token over mTLS: {:?}", ok.reason());
    let bad = check_token(&mut client, "not-a-token").await;
    assert!(
        !bad.allowed(),
        "a malformed token is still refused over TLS"
    );
    assert_eq!(
        server
            .metric("tokengate_tls_handshake_failures_total{listener=\"grpc\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn the_grpc_listener_refuses_every_client_but_the_allowed_identity() {
    let pki = Pki::new();
    let server = TestServer::start(&with_tls(&format!(
        "  grpc:\n{}",
        pki.listener(&[ENVOY_ID])
    )))
    .await;
    let other_ca = Ca::new("another CA");
    let cases: Vec<(&str, Option<Pair>)> = vec![
        ("no client certificate", None),
        (
            "another CA's certificate with the allowed name",
            Some(other_ca.sign(&Leaf::client_uri(ENVOY_ID))),
        ),
        (
            "an expired certificate",
            Some(pki.ca.sign(&Leaf::client_uri(ENVOY_ID).valid(2001, 2002))),
        ),
        (
            "a not-yet-valid certificate",
            Some(pki.ca.sign(&Leaf::client_uri(ENVOY_ID).valid(2999, 3000))),
        ),
        (
            "a server-only certificate from the right CA, with the allowed name",
            Some(pki.ca.sign(
                &Leaf::client_uri(ENVOY_ID).usages(vec![ExtendedKeyUsagePurpose::ServerAuth]),
            )),
        ),
        (
            "another identity",
            Some(pki.ca.sign(&Leaf::client_uri(
                "spiffe://cluster.local/ns/ingress/sa/other",
            ))),
        ),
        (
            "the allowed name in another case",
            Some(pki.ca.sign(&Leaf::client_uri(&ENVOY_ID.to_uppercase()))),
        ),
        (
            "the allowed name with a trailing slash",
            Some(pki.ca.sign(&Leaf::client_uri(&format!("{ENVOY_ID}/")))),
        ),
        (
            "a prefix of the allowed name",
            Some(pki.ca.sign(&Leaf::client_uri(
                "spiffe://cluster.local/ns/ingress/sa/env",
            ))),
        ),
        (
            "the allowed name extended",
            Some(pki.ca.sign(&Leaf::client_uri(&format!("{ENVOY_ID}x")))),
        ),
        (
            "no name at all",
            Some(pki.ca.sign(&Leaf::client_uri("x:y").without_uris())),
        ),
    ];
    let mut failures = 0.0;
    for (what, identity) in &cases {
        let config = client_config(&pki.ca.pem, identity.as_ref(), H2);
        let got = try_check(&server, config).await;
        assert!(got.is_err(), "{what}: got a Check answer ({got:?})");
        failures += 1.0;
    }
    // h2c prior knowledge: a plaintext gRPC client
    let mut plain = tonic::transport::Endpoint::from_shared(format!(
        "http://{}",
        server.addrs.grpc
    ))
    .unwrap()
    .connect()
    .await
    .map(envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::new);
    if let Ok(c) = &mut plain {
        let r = c
            .check(crate::support::check_request("GET", "/", &[]))
            .await;
        assert!(r.is_err(), "a plaintext gRPC client got an answer: {r:?}");
    }
    // and the allowed client still gets through
    let ok = try_check(&server, client_config(&pki.ca.pem, Some(&pki.client), H2)).await;
    assert_eq!(ok, Ok(true), "the allowed client");
    let counted = server
        .metric("tokengate_tls_handshake_failures_total{listener=\"grpc\"}")
        .await;
    assert!(
        counted >= failures,
        "every refused handshake is counted: {counted} < {failures}"
    );
}

#[tokio::test]
async fn a_dns_identity_is_matched_without_case_but_only_as_a_dns_name() {
    let pki = Pki::new();
    let listener = format!(
        "    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    allowed_clients:\n      - dns: envoy.gateway.internal\n",
        pki.dir.join("server.crt").display(),
        pki.dir.join("server.key").display(),
        pki.dir.join("ca.crt").display()
    );
    let server = TestServer::start(&with_tls(&format!("  grpc:\n{listener}"))).await;
    let upper = pki.ca.sign(&Leaf::client_dns("ENVOY.Gateway.Internal"));
    let got = try_check(&server, client_config(&pki.ca.pem, Some(&upper), H2)).await;
    assert_eq!(got, Ok(true), "DNS names compare without ASCII case");
    for (what, leaf) in [
        (
            "the name as a URI SAN",
            Leaf::client_uri("envoy.gateway.internal"),
        ),
        ("a subdomain", Leaf::client_dns("x.envoy.gateway.internal")),
        ("a parent domain", Leaf::client_dns("gateway.internal")),
    ] {
        let id = pki.ca.sign(&leaf);
        let got = try_check(&server, client_config(&pki.ca.pem, Some(&id), H2)).await;
        assert!(got.is_err(), "{what}: got a Check answer");
    }
}

#[tokio::test]
async fn min_version_1_3_refuses_a_tls_1_2_client() {
    let pki = Pki::new();
    let tls = format!("  grpc:\n{}    min_version: \"1.3\"\n", pki.listener(&[]));
    let server = TestServer::start(&with_tls(&tls)).await;
    let old = client_config_versions(&pki.ca.pem, None, H2, &[&rustls::version::TLS12]);
    assert!(try_check(&server, old).await.is_err(), "TLS 1.2 client");
    let new = client_config(&pki.ca.pem, None, H2);
    assert_eq!(try_check(&server, new).await, Ok(true), "TLS 1.3 client");
}

#[tokio::test]
async fn https_listeners_serve_tls_and_refuse_plaintext() {
    let pki = Pki::new();
    let l = pki.listener(&[]);
    let server =
        TestServer::start_unready(parse(&with_tls(&format!("  http:\n{l}  admin:\n{l}")))).await;
    let client = https(&pki.ca.pem, None);
    let admin = format!("https://localhost:{}/readyz", server.addrs.admin.port());
    wait_for("/readyz over HTTPS", Duration::from_secs(10), || {
        let r = client.get(&admin).send();
        async move { matches!(r.await, Ok(r) if r.status() == 200) }
    })
    .await;
    let authz = client
        .get(format!(
            "https://localhost:{}/authz/api",
            server.addrs.http.port()
        ))
        .send()
        .await
        .expect("/authz over HTTPS");
    assert_eq!(authz.status(), 401, "no token: refused, over TLS");
    for addr in [server.addrs.http, server.addrs.admin] {
        let plain = reqwest::get(format!("http://{addr}/readyz")).await;
        assert!(
            plain.is_err() || plain.as_ref().is_ok_and(|r| r.status() != 200),
            "plaintext HTTP on a TLS listener answered: {plain:?}"
        );
        // and an HTTP/1 request written raw gets no HTTP answer
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("closed or answered within 10 s")
            .unwrap_or(0);
        assert!(
            !buf[..n].starts_with(b"HTTP/"),
            "plaintext got an HTTP answer"
        );
    }
}

#[tokio::test]
async fn a_half_sent_tls_handshake_is_closed_by_the_listener_deadlines() {
    let pki = Pki::new();
    let l = pki.listener(&[]);
    let yaml = with_tls(&format!("  grpc:\n{l}  http:\n{l}")).replace(
        "server:\n  shutdown_grace_seconds: 5\n",
        "server:\n  shutdown_grace_seconds: 5\n  grpc_limits:\n    handshake_timeout_seconds: 1\n  http_limits:\n    header_timeout_seconds: 1\n",
    );
    let server = TestServer::start(&yaml).await;
    for (name, addr) in [("grpc", server.addrs.grpc), ("http", server.addrs.http)] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        // a TLS record header announcing a ClientHello that never comes
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "{name}: a stalled handshake was not closed within 15 s ({closed:?})"
        );
    }
}

/// Replaces the server certificate the way a Kubernetes secret volume does: new files
/// written aside, then renamed over the old ones.
fn rotate(pki: &Pki, pair: &Pair) {
    pair.write(&pki.dir, "next");
    std::fs::rename(pki.dir.join("next.key"), pki.dir.join("server.key")).unwrap();
    std::fs::rename(pki.dir.join("next.crt"), pki.dir.join("server.crt")).unwrap();
}

#[tokio::test]
async fn a_rotated_certificate_reaches_new_connections_and_drops_none() {
    let pki = Pki::new();
    let yaml = with_tls(&format!(
        "  reload_interval_seconds: 1\n  grpc:\n{}",
        pki.listener(&[ENVOY_ID])
    ));
    let server = TestServer::start(&yaml).await;
    let config = client_config(&pki.ca.pem, Some(&pki.client), H2);
    let opened = Arc::new(AtomicUsize::new(0));
    let mut held = grpc(server.addrs.grpc, config.clone(), opened.clone())
        .await
        .unwrap();
    let t = token("hs", "alice", serde_json::json!({}));
    assert!(check_token(&mut held, &t).await.allowed());
    assert_eq!(
        served_certificate(server.addrs.grpc, config.clone())
            .await
            .unwrap(),
        pki.server.der
    );

    let next = pki.ca.sign(&Leaf::server(&["rotated.example"]));
    rotate(&pki, &next);
    wait_for(
        "the rotated certificate on a new connection",
        Duration::from_secs(20),
        || {
            let c = config.clone();
            let want = next.der.clone();
            async move {
                served_certificate(server.addrs.grpc, c)
                    .await
                    .is_ok_and(|d| d == want)
            }
        },
    )
    .await;
    assert!(
        check_token(&mut held, &t).await.allowed(),
        "the held connection still answers"
    );
    assert_eq!(
        opened.load(Ordering::SeqCst),
        1,
        "the held channel never reconnected"
    );
    assert_eq!(
        server
            .metric("tokengate_tls_reloads_total{listener=\"grpc\",result=\"ok\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_broken_rotation_keeps_the_previous_certificate_serving() {
    let pki = Pki::new();
    let yaml = with_tls(&format!(
        "  reload_interval_seconds: 1\n  grpc:\n{}",
        pki.listener(&[])
    ));
    let server = TestServer::start(&yaml).await;
    let config = client_config(&pki.ca.pem, None, H2);
    let errors = "tokengate_tls_reloads_total{listener=\"grpc\",result=\"error\"}";

    let other = pki.ca.sign(&Leaf::server(&[]));
    let broken = [
        (
            "a half-written certificate",
            pki.server.cert[..100].to_string(),
        ),
        ("a new certificate for the old key", other.cert.clone()),
    ];
    for (n, (what, cert)) in broken.iter().enumerate() {
        std::fs::write(pki.dir.join("server.crt"), cert).unwrap();
        wait_for(what, Duration::from_secs(20), || async {
            server.metric(errors).await >= (n + 1) as f64
        })
        .await;
        let served = served_certificate(server.addrs.grpc, config.clone()).await;
        assert_eq!(
            served.unwrap(),
            pki.server.der,
            "{what}: the previous one serves"
        );
    }
    assert_eq!(
        try_check(&server, config).await,
        Ok(true),
        "still answering"
    );
}

#[test]
fn allowed_clients_without_a_client_ca_is_refused_naming_the_field() {
    let yaml = with_tls("  grpc:\n    cert_file: a.crt\n    key_file: a.key\n    allowed_clients:\n      - uri: spiffe://x/y\n");
    let err = tokengate::config::Config::parse("t.yaml", &yaml)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tls.grpc") && err.contains("client_ca_file"),
        "{err}"
    );
    for (bad, field) in [
        ("      - uri: not-a-uri\n", "allowed_clients[0].uri"),
        ("      - dns: \"*.example.com\"\n", "allowed_clients[0].dns"),
        ("      - spiffe: x\n", "spiffe"),
    ] {
        let yaml = with_tls(&format!(
            "  grpc:\n    cert_file: a.crt\n    key_file: a.key\n    client_ca_file: ca.crt\n    allowed_clients:\n{bad}"
        ));
        let err = tokengate::config::Config::parse("t.yaml", &yaml)
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{bad}: {err}");
    }
    let yaml =
        with_tls("  grpc:\n    cert_file: a.crt\n    key_file: a.key\n    min_version: \"1.1\"\n");
    let err = tokengate::config::Config::parse("t.yaml", &yaml)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls.grpc.min_version"), "{err}");
}

#[test]
fn check_config_and_serve_name_the_unusable_tls_file() {
    let pki = Pki::new();
    let other = pki.ca.sign(&Leaf::server(&[]));
    other.write(&pki.dir, "other");
    let base = pki.listener(&[]);
    let cases = [
        (
            base.replace("server.crt", "missing.crt"),
            "tls.http.cert_file",
        ),
        (base.replace("server.key", "other.key"), "tls.http.key_file"),
        (
            base.replace("server.crt", "server.key"),
            "tls.http.cert_file",
        ),
        (
            format!(
                "{base}    client_ca_file: {}\n",
                pki.dir.join("server.key").display()
            ),
            "tls.http.client_ca_file",
        ),
    ];
    for (listener, field) in cases {
        let path = pki
            .dir
            .write("bad.yaml", &with_tls(&format!("  http:\n{listener}")));
        let out = tokengate(&["check-config", &path.display().to_string()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(field),
            "{field}: {err}"
        );
        assert!(!err.contains("PRIVATE KEY"), "key material echoed: {err}");
        let out = tokengate(&["serve", "-c", &path.display().to_string()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(field),
            "serve, {field}: {err}"
        );
    }
    let good = pki
        .dir
        .write("good.yaml", &with_tls(&format!("  http:\n{base}")));
    let out = tokengate(&["check-config", &good.display().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------- through Envoy

const SERVICE: &str = "tokengate.tokengate.svc.cluster.local";

/// envoy/envoy-tls.yaml as it runs here: ports rewritten, the tokengate Service on
/// loopback, Envoy's certificate files from `files` (ca.crt, tls.crt, tls.key).
fn envoy_tls_yaml(addrs: &tokengate::Addrs, app: std::net::SocketAddr, files: &Scratch) -> String {
    use crate::support::envoy::*;
    let template =
        std::fs::read_to_string(crate::support::procs::repo().join("envoy/envoy-tls.yaml"))
            .unwrap();
    let text = rewrite_ports(
        &template,
        &[
            (ADMIN_PORT, 0),
            (LISTENER_PORT, 0),
            (TOKENGATE_GRPC_PORT, addrs.grpc.port()),
            (TOKENGATE_HTTP_PORT, addrs.http.port()),
            (APP_PORT, app.port()),
        ],
    );
    let dir = format!("{}/", files.join("x").parent().unwrap().display());
    text.replace(TLS_FILES, &dir)
        .replace(&format!("address: {SERVICE}"), "address: 127.0.0.1")
}

/// Envoy's certificate files: the CA it trusts for tokengate, and its own identity.
fn envoy_files(trusts: &Ca, identity: &Pair) -> Scratch {
    let dir = Scratch::new("envoy-tls");
    trusts.write(&dir, "ca");
    identity.write(&dir, "tls");
    dir
}

/// A PKI whose server certificate names the Service (as Envoy's SAN match wants), valid
/// from year `from` to year `until`.
fn service_pki(from: i32, until: i32) -> Pki {
    let mut pki = Pki::new();
    pki.server = pki.ca.sign(&Leaf::server(&[SERVICE]).valid(from, until));
    pki.server.write(&pki.dir, "server");
    pki
}

/// tokengate serving `server` on gRPC (mTLS, allowing [`ENVOY_ID`]) and HTTP (TLS).
async fn tls_tokengate(pki: &Pki) -> TestServer {
    let l = pki.listener(&[ENVOY_ID]);
    let plain = pki.listener(&[]);
    TestServer::start(&with_tls(&format!(
        "  reload_interval_seconds: 1\n  grpc:\n{l}  http:\n{plain}"
    )))
    .await
}

async fn status(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
) -> u16 {
    client
        .request(method, url)
        .bearer_auth(token)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_checks_over_mutual_tls_and_picks_up_a_renewed_certificate() {
    use crate::support::envoy::{EchoUpstream, Envoy};
    // tokengate starts on an expired certificate: cert-manager has not renewed it yet
    let pki = service_pki(2001, 2002);
    let server = tls_tokengate(&pki).await;
    let app = EchoUpstream::start().await;
    let files = envoy_files(&pki.ca, &pki.client);
    let envoy = Envoy::start_text(&envoy_tls_yaml(&server.addrs, app.addr, &files)).await;
    let client = reqwest::Client::new();
    let t = token("hs", "alice", serde_json::json!({}));
    let get = || status(&client, reqwest::Method::GET, envoy.url("/api/items"), &t);

    assert_eq!(
        get().await,
        503,
        "Envoy refuses tokengate's expired certificate: fail closed, 503"
    );

    let renewed = pki.ca.sign(&Leaf::server(&[SERVICE]));
    rotate(&pki, &renewed);
    wait_for(
        "Envoy to reach tokengate on the renewed certificate",
        Duration::from_secs(20),
        || async { get().await == 200 },
    )
    .await;
    let bad = status(
        &client,
        reqwest::Method::GET,
        envoy.url("/api/items"),
        "not-a-token",
    )
    .await;
    assert_eq!(bad, 401, "a bad token is refused over the TLS hop");

    // logout over the TLS hop to tokengate's HTTP listener, then the token is refused
    let out = status(
        &client,
        reqwest::Method::POST,
        envoy.url("/v1/auth/logout"),
        &t,
    )
    .await;
    assert_eq!(
        out,
        200,
        "logout through Envoy over TLS; Envoy log:\n{}",
        envoy.log()
    );
    assert_eq!(get().await, 401, "the logged-out token is refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_without_the_allowed_identity_gets_no_answer_and_fails_closed() {
    use crate::support::envoy::{EchoUpstream, Envoy};
    let pki = service_pki(2000, 4000);
    let server = tls_tokengate(&pki).await;
    let app = EchoUpstream::start().await;
    let client = reqwest::Client::new();
    let t = token("hs", "alice", serde_json::json!({}));
    let other_ca = Ca::new("untrusted CA");
    let failures = "tokengate_tls_handshake_failures_total{listener=\"grpc\"}";

    let cases = [
        (
            "an untrusted client certificate",
            other_ca.sign(&Leaf::client_uri(ENVOY_ID)),
        ),
        (
            "an expired client certificate",
            pki.ca.sign(&Leaf::client_uri(ENVOY_ID).valid(2001, 2002)),
        ),
        (
            "another identity",
            pki.ca
                .sign(&Leaf::client_uri("spiffe://cluster.local/ns/x/sa/y")),
        ),
    ];
    for (what, identity) in &cases {
        let before = server.metric(failures).await;
        let files = envoy_files(&pki.ca, identity);
        let envoy = Envoy::start_text(&envoy_tls_yaml(&server.addrs, app.addr, &files)).await;
        let got = status(&client, reqwest::Method::GET, envoy.url("/api/items"), &t).await;
        assert_eq!(got, 503, "{what}: Envoy must fail closed with 503");
        assert!(
            server.metric(failures).await > before,
            "{what}: tokengate counted the refusal"
        );
    }

    // a plaintext Envoy (the sidecar config) pointed at the TLS listener
    let envoy = Envoy::start(&server.addrs, app.addr).await;
    let got = status(&client, reqwest::Method::GET, envoy.url("/api/items"), &t).await;
    assert_eq!(got, 503, "plaintext gRPC to a TLS listener: 503");

    // control: the allowed identity is answered on the same tokengate
    let files = envoy_files(&pki.ca, &pki.client);
    let envoy = Envoy::start_text(&envoy_tls_yaml(&server.addrs, app.addr, &files)).await;
    let got = status(&client, reqwest::Method::GET, envoy.url("/api/items"), &t).await;
    assert_eq!(
        got,
        200,
        "the allowed identity; Envoy log:\n{}",
        envoy.log()
    );
}

/// `text` with an `UpstreamTlsContext` on `cluster`, as Istio generates from
/// deploy/istio/destinationrule-tls.yaml (mode MUTUAL) and Envoy Gateway from
/// deploy/envoy-gateway/backendtlspolicy.yaml with the EnvoyProxy's client certificate:
/// SNI and SAN match on the Service name, the CA, the proxy's certificate.
fn with_upstream_tls(text: &str, cluster: &str, files: &Scratch) -> String {
    let at = format!("    - name: {cluster}\n");
    assert_eq!(
        text.matches(&at).count(),
        1,
        "cluster {cluster} once in the config"
    );
    let block = format!(
        r#"      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: {SERVICE}
          common_tls_context:
            alpn_protocols: [h2]
            tls_certificates:
              - certificate_chain: {{ filename: {cert} }}
                private_key: {{ filename: {key} }}
            validation_context:
              trusted_ca: {{ filename: {ca} }}
              match_typed_subject_alt_names:
                - san_type: DNS
                  matcher: {{ exact: {SERVICE} }}
"#,
        cert = files.join("tls.crt").display(),
        key = files.join("tls.key").display(),
        ca = files.join("ca.crt").display(),
    );
    text.replace(&at, &format!("{at}{block}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_istio_and_envoy_gateway_configs_reach_a_tls_tokengate_with_their_tls_settings() {
    use crate::support::envoy::{EchoUpstream, Envoy};
    let pki = service_pki(2000, 4000);
    let server = tls_tokengate(&pki).await;
    let app = EchoUpstream::start().await;
    let client = reqwest::Client::new();
    let t = token("hs", "alice", serde_json::json!({}));
    let stranger = Ca::new("not the mesh CA").sign(&Leaf::client_uri(ENVOY_ID));
    for (config, cluster) in [
        (
            "envoy/istio-ext-authz-grpc.yaml",
            "outbound|grpc||tokengate.tokengate.svc.cluster.local",
        ),
        (
            "envoy/envoy-gateway-ext-auth.yaml",
            "securitypolicy/app/tokengate/tokengate/tokengate",
        ),
    ] {
        let template = std::fs::read_to_string(crate::support::procs::repo().join(config)).unwrap();
        for (identity, want) in [(&pki.client, 200), (&stranger, 503)] {
            let files = envoy_files(&pki.ca, identity);
            let dir = Scratch::new("mesh-tls");
            let path = dir.write("envoy.yaml", &with_upstream_tls(&template, cluster, &files));
            let envoy = Envoy::start_config(&path, &server.addrs, app.addr).await;
            let got = status(&client, reqwest::Method::GET, envoy.url("/api/items"), &t).await;
            assert_eq!(got, want, "{config}: Envoy log:\n{}", envoy.log());
            if want == 200 {
                let bad = status(&client, reqwest::Method::GET, envoy.url("/api/items"), "x").await;
                assert_eq!(bad, 401, "{config}: a bad token over TLS");
            }
        }
    }
}
