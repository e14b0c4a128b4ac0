//! DPoP (RFC 9449, issue 18) through a real Envoy: proofs made by the npm `jose`
//! library and Node's crypto (tests/dpop/proof.mjs), tokens bound with the thumbprint
//! jose computed, two tokengate replicas on one real redis-server behind Envoy's round
//! robin. A proof is good once across the replicas; every check of §4.3 is reached as
//! its own class of forgery; server nonces from one replica are taken by the other.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::envoy::{rewrite_ports, shipped_config, EchoUpstream, Envoy, Scratch};
use crate::support::procs::{repo, tool};
use crate::support::redis::{store_yaml, RedisServer};
use crate::support::*;

/// The installed `jose` package (shared with tests/ssf).
fn jose() -> PathBuf {
    let dir = repo().join(".tools/ssf/node_modules/jose");
    assert!(
        dir.join("package.json").is_file(),
        "npm jose is not installed in .tools/ssf: run scripts/install-test-deps.sh"
    );
    dir
}

/// Runs tests/dpop/proof.mjs: one (proof, jkt) per request.
fn make(requests: &[Value]) -> Vec<(String, String)> {
    let mut cmd = Command::new(tool("node", "nodejs (Node 20)"));
    cmd.arg(repo().join("tests/dpop/proof.mjs"))
        .arg("--module")
        .arg(jose());
    let input = Value::Array(requests.to_vec()).to_string();
    let out = crate::support::procs::pipe_through(cmd, input.as_bytes(), "proof.mjs");
    let v: Vec<Value> = serde_json::from_slice(&out).expect("proof.mjs prints JSON");
    v.iter()
        .map(|p| {
            (
                p["proof"].as_str().expect("proof").to_string(),
                p["jkt"].as_str().expect("jkt").to_string(),
            )
        })
        .collect()
}

/// A client's DPoP key: its fixture file and algorithm.
#[derive(Clone, Copy)]
struct ClientKey(&'static str, &'static str);

const ES256: ClientKey = ClientKey("ec256-private.pem", "ES256");
const EDDSA: ClientKey = ClientKey("ed25519-private.pem", "EdDSA");

/// A proof request for `method` on `url` with `token`'s hash, `edit` applied after.
fn request(key: ClientKey, method: &str, url: &str, token: &str) -> Value {
    json!({
        "key": key_path(key.0),
        "alg": key.1,
        "token": token,
        "payload": {
            "jti": uuid(),
            "htm": method,
            "htu": url,
            "iat": tokengate::jwt::now_unix(),
            "ath": "$ath",
        },
    })
}

fn merged(mut base: Value, edit: &Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), edit.as_object()) {
        for (k, v) in e {
            match (b.get_mut(k), v) {
                (Some(Value::Object(inner)), Value::Object(more)) => {
                    for (k2, v2) in more {
                        if v2.is_null() {
                            inner.remove(k2);
                        } else {
                            inner.insert(k2.clone(), v2.clone());
                        }
                    }
                }
                _ => {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
    }
    base
}

/// The thumbprint jose computes for `key`'s public key.
fn jkt(key: ClientKey) -> String {
    make(&[request(key, "GET", "http://x/", "t")]).remove(0).1
}

/// A token of the test provider bound to `jkt`.
fn bound(jkt: &str) -> String {
    token("ec256", "alice", json!({"cnf": {"jkt": jkt}}))
}

/// Two replicas on one Redis behind one Envoy (gRPC ext_authz, round robin).
struct Rig {
    _redis: RedisServer,
    replicas: [TestServer; 2],
    _app: EchoUpstream,
    envoy: Envoy,
}

impl Rig {
    async fn start(extra: &str) -> Rig {
        Self::start_with("", extra).await
    }

    /// `store` is spliced under `revocation:` after the Redis URL, `extra` at the end.
    async fn start_with(store: &str, extra: &str) -> Rig {
        let redis = RedisServer::start_async().await;
        let yaml = format!("{}{extra}", config_yaml(&store_yaml(&redis.url(), store)));
        let a = TestServer::start(&yaml).await;
        let b = TestServer::start(&yaml).await;
        let app = EchoUpstream::start().await;
        let template = std::fs::read_to_string(shipped_config()).expect("envoy.yaml");
        let one = "              - endpoint:\n                  address:\n                    socket_address: { address: 127.0.0.1, port_value: 9001 }\n";
        assert_eq!(
            template.matches(one).count(),
            1,
            "envoy.yaml's tokengate_grpc endpoint"
        );
        let two = format!(
            "{one}              - endpoint:\n                  address:\n                    socket_address: {{ address: 127.0.0.1, port_value: {} }}\n",
            b.addrs.grpc.port()
        );
        let text = rewrite_ports(
            &template.replace(one, &two),
            &[
                (9901, 0),
                (10000, 0),
                (9001, a.addrs.grpc.port()),
                (8080, a.addrs.http.port()),
                (3000, app.addr.port()),
            ],
        );
        let envoy = Envoy::start_text(&text).await;
        Rig {
            _redis: redis,
            replicas: [a, b],
            _app: app,
            envoy,
        }
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut req = reqwest::Client::new().request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            self.envoy.url(path),
        );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request through Envoy");
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .map(|v| v.to_str().expect("ascii").to_string())
        };
        let (challenge, nonce) = (header("www-authenticate"), header("dpop-nonce"));
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            reason: body["reason"].as_str().unwrap_or("").to_string(),
            challenge,
            nonce,
        }
    }

    /// `GET /api/items` with `authorization` (`DPoP <token>`) and one proof.
    async fn get_with_proof(&self, authorization: &str, proof: &str) -> Answer {
        self.send(
            "GET",
            "/api/items",
            &[("authorization", authorization), ("dpop", proof)],
        )
        .await
    }

    /// `decisions_total` of one outcome on each replica.
    async fn counts(&self, decision: &str, reason: &str) -> [f64; 2] {
        let series = format!(
            "tokengate_decisions_total{{decision=\"{decision}\",reason=\"{reason}\",transport=\"grpc\"}}"
        );
        [
            self.replicas[0].metric(&series).await,
            self.replicas[1].metric(&series).await,
        ]
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    reason: String,
    challenge: Option<String>,
    nonce: Option<String>,
}

fn dpop(token: &str) -> String {
    format!("DPoP {token}")
}

const DPOP: &str = "\ndpop:\n  algorithms: [ES256, EdDSA, PS256]\n  max_age_seconds: 30\n  future_skew_seconds: 5\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_is_good_once_across_replicas_for_each_algorithm() {
    let rig = Rig::start(DPOP).await;
    let url = rig.envoy.url("/api/items");
    for key in [ES256, EDDSA] {
        let tok = bound(&jkt(key));
        let (proof, _) = make(&[request(key, "GET", &url, &tok)]).remove(0);
        let auth = dpop(&tok);
        let headers = [("authorization", auth.as_str()), ("dpop", proof.as_str())];
        let before = rig.counts("allow", "none").await;
        let first = rig.send("GET", "/api/items", &headers).await;
        assert_eq!(first.status, 200, "{} proof: {first:?}", key.1);
        let after = rig.counts("allow", "none").await;
        let allowed_on = (0..2)
            .find(|i| after[*i] > before[*i])
            .expect("one replica allowed");
        let replayed_before = rig.counts("deny", "dpop_replayed").await;
        // Round robin: of two more tries, one lands on the replica that never saw it.
        for _ in 0..2 {
            let again = rig.send("GET", "/api/items", &headers).await;
            assert_eq!(
                (again.status, again.reason.as_str()),
                (401, "dpop_replayed")
            );
            let challenge = again.challenge.expect("a challenge");
            assert!(
                challenge.starts_with("DPoP ")
                    && challenge.contains("error=\"invalid_dpop_proof\"")
                    && challenge.contains(&format!("algs=\"{}\"", "ES256 EdDSA PS256")),
                "{challenge}"
            );
        }
        let replayed = rig.counts("deny", "dpop_replayed").await;
        let other = 1 - allowed_on;
        assert!(
            replayed[other] > replayed_before[other],
            "the replica that did not see the proof refused it too: {replayed:?}"
        );
        // A fresh proof for the same token is fine: the token is not used up.
        let (fresh, _) = make(&[request(key, "GET", &url, &tok)]).remove(0);
        let ok = rig.get_with_proof(&auth, &fresh).await;
        assert_eq!(ok.status, 200, "{ok:?}");
    }
}

/// Two replicas whose store settings are `store` plus a 100 ms deadline (inside Envoy's
/// 250 ms check timeout, so that the answer seen is tokengate's own); a first proof of a
/// `key`-bound token warmed the revocation cache, then Redis died, so that only the
/// replay guard of the second proof (returned with the `DPoP` authorization) needs it.
async fn store_dies_after_a_warm_check(store: &str, key: ClientKey) -> (Rig, String, String) {
    let mut rig = Rig::start_with(&format!("  store_timeout_ms: 100\n{store}"), DPOP).await;
    let url = rig.envoy.url("/api/items");
    let tok = bound(&jkt(key));
    let mut proofs = make(&[
        request(key, "GET", &url, &tok),
        request(key, "GET", &url, &tok),
    ]);
    let auth = dpop(&tok);
    let ok = rig.get_with_proof(&auth, &proofs[0].0).await;
    assert_eq!(ok.status, 200);
    rig._redis.kill_now();
    let second = proofs.remove(1).0;
    (rig, auth, second)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_that_cannot_be_claimed_in_the_store_is_refused_as_an_outage() {
    let (rig, auth, proof) = Box::pin(store_dies_after_a_warm_check("", ES256)).await;
    let down = rig.get_with_proof(&auth, &proof).await;
    assert_eq!(
        (down.status, down.reason.as_str()),
        (503, "store_unavailable"),
        "{down:?}"
    );
    assert!(down.challenge.is_none(), "an outage is no challenge");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_forgery_of_section_4_3_is_refused_with_its_reason() {
    let rig = Rig::start(DPOP).await;
    let url = rig.envoy.url("/api/items");
    let tok = bound(&jkt(ES256));
    let other_tok = bound(&jkt(EDDSA));
    let unbound = token("ec256", "alice", json!({}));
    let rsa_tok = bound(&jkt(ClientKey("rsa-private.pem", "PS256")));
    let now = tokengate::jwt::now_unix();
    let hs = json!({"key": key_path("hs.secret"), "secret": true, "alg": "HS256",
                    "jwk_from": key_path("ec256-public.pem")});
    // (what, proof request edits, the token in `Authorization: DPoP`, reason)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "htm of another method",
            json!({"payload": {"htm": "POST"}}),
            &tok,
            "dpop_wrong_target",
        ),
        (
            "htm in lower case",
            json!({"payload": {"htm": "get"}}),
            &tok,
            "dpop_wrong_target",
        ),
        (
            "htu of another path",
            json!({"payload": {"htu": rig.envoy.url("/api/other")}}),
            &tok,
            "dpop_wrong_target",
        ),
        (
            "htu of a sub-path",
            json!({"payload": {"htu": rig.envoy.url("/api/items/x")}}),
            &tok,
            "dpop_wrong_target",
        ),
        (
            "htu of another host",
            json!({"payload": {"htu": "http://api.example.com/api/items"}}),
            &tok,
            "dpop_wrong_target",
        ),
        (
            "htu over https",
            json!({"payload": {"htu": url.replacen("http:", "https:", 1)}}),
            &tok,
            "dpop_wrong_target",
        ),
        (
            "htu with %2F for /",
            json!({"payload": {"htu": rig.envoy.url("/api%2Fitems")}}),
            &tok,
            "dpop_wrong_target",
        ),
        (
            "ath of another token",
            json!({"token": unbound.clone()}),
            &tok,
            "dpop_binding_mismatch",
        ),
        (
            "no ath",
            json!({"payload": {"ath": null}}),
            &tok,
            "dpop_binding_mismatch",
        ),
        (
            "key of another client's token",
            json!({}),
            &other_tok,
            "dpop_binding_mismatch",
        ),
        (
            "token without cnf",
            json!({"token": unbound.clone()}),
            &unbound,
            "dpop_binding_mismatch",
        ),
        (
            "iat long past",
            json!({"payload": {"iat": now - 120}}),
            &tok,
            "dpop_proof_stale",
        ),
        (
            "iat just past the window",
            json!({"payload": {"iat": now - 40}}),
            &tok,
            "dpop_proof_stale",
        ),
        (
            "iat in the future",
            json!({"payload": {"iat": now + 60}}),
            &tok,
            "dpop_proof_stale",
        ),
        (
            "private d in the jwk",
            json!({"jwk_extra": {"d": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "symmetric k in the jwk",
            json!({"jwk_extra": {"k": "c2VjcmV0"}}),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "typ JWT",
            json!({"header": {"typ": "JWT"}}),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "no typ",
            json!({"header": {"typ": null}}),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "no jwk",
            json!({"header": {"jwk": null}}),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "control: the jwk named explicitly is the signer's",
            json!({"jwk_from": key_path("ec256-public.pem")}),
            &tok,
            "ok",
        ),
        (
            "ES384 over a P-256 jwk",
            json!({"key": key_path("ec384-private.pem"), "alg": "ES384", "jwk_from": key_path("ec256-public.pem")}),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "control: PS256 by the RSA key its token is bound to",
            json!({"key": key_path("rsa-private.pem"), "alg": "PS256", "token": rsa_tok.clone()}),
            &rsa_tok,
            "ok",
        ),
        (
            "signed by another RSA key than its jwk (all else right)",
            json!({"key": key_path("rsa2-private.pem"), "alg": "PS256",
                   "jwk_from": key_path("rsa-public.pem"), "token": rsa_tok.clone()}),
            &rsa_tok,
            "dpop_proof_invalid",
        ),
        (
            "HS256 keyed with the public key file",
            hs.clone(),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "RS256, not on the list",
            json!({"key": key_path("rsa2-private.pem"), "alg": "RS256"}),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "no jti",
            json!({"payload": {"jti": null}}),
            &tok,
            "dpop_proof_invalid",
        ),
        (
            "no iat",
            json!({"payload": {"iat": null}}),
            &tok,
            "dpop_proof_invalid",
        ),
    ];
    let requests: Vec<Value> = cases
        .iter()
        .map(|(_, edit, _, _)| merged(request(ES256, "GET", &url, &tok), edit))
        .collect();
    let proofs = make(&requests);
    for ((what, _, token, reason), (proof, _)) in cases.iter().zip(&proofs) {
        let auth = dpop(token);
        let got = rig.get_with_proof(&auth, proof).await;
        if *reason == "ok" {
            assert_eq!(got.status, 200, "{what}: the control passes: {got:?}");
            continue;
        }
        assert_eq!(
            (got.status, got.reason.as_str()),
            (401, *reason),
            "{what}: {got:?}"
        );
        let challenge = got.challenge.unwrap_or_default();
        assert!(challenge.starts_with("DPoP "), "{what}: {challenge}");
    }

    // Hand-made: alg none (no library signs it), two proof headers, no proof at all.
    let (good, _) = make(&[request(ES256, "GET", &url, &tok)]).remove(0);
    let header = decode_part(&good, 0);
    let payload = decode_part(&good, 1);
    let none_header = merged(header, &json!({"alg": "none"}));
    let none = format!(
        "{}.{}.",
        b64(none_header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let with_sig = format!("{none}{}", good.rsplit('.').next().unwrap_or(""));
    let auth = dpop(&tok);
    for (what, proofs) in [
        ("alg none, unsigned", vec![none.as_str()]),
        ("alg none with the good signature", vec![with_sig.as_str()]),
        ("two DPoP headers", vec![good.as_str(), good.as_str()]),
        ("no DPoP header", vec![]),
    ] {
        let mut headers = vec![("authorization", auth.as_str())];
        headers.extend(proofs.iter().map(|p| ("dpop", *p)));
        let got = rig.send("GET", "/api/items", &headers).await;
        assert_eq!(
            (got.status, got.reason.as_str()),
            (401, "dpop_proof_invalid"),
            "{what}: {got:?}"
        );
    }

    // A good GET proof with a method override that a server behind may honour.
    for (name, path) in [
        ("x-http-method-override", "/api/items"),
        ("x-method-override", "/api/items"),
    ] {
        let (p, _) = make(&[request(ES256, "GET", &url, &tok)]).remove(0);
        let got = rig
            .send(
                "GET",
                path,
                &[("authorization", &auth), ("dpop", &p), (name, "DELETE")],
            )
            .await;
        assert_eq!(
            (got.status, got.reason.as_str()),
            (401, "dpop_wrong_target"),
            "{name}: {got:?}"
        );
    }

    // The bound token as a bearer token: with or without a (valid) proof beside it.
    let (fresh, _) = make(&[request(ES256, "GET", &url, &tok)]).remove(0);
    let bearer_auth = bearer(&tok);
    for headers in [
        vec![("authorization", bearer_auth.as_str())],
        vec![
            ("authorization", bearer_auth.as_str()),
            ("dpop", fresh.as_str()),
        ],
    ] {
        let got = rig.send("GET", "/api/items", &headers).await;
        assert_eq!(
            (got.status, got.reason.as_str()),
            (401, "dpop_required"),
            "{got:?}"
        );
        assert!(got.challenge.unwrap_or_default().starts_with("DPoP "));
    }
    // An unbound token as a bearer token still works (sender_constraint: none).
    let got = rig
        .send("GET", "/api/items", &[("authorization", &bearer(&unbound))])
        .await;
    assert_eq!(got.status, 200, "{got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nonce_from_one_replica_is_taken_by_the_other() {
    let dir = Scratch::new("dpop-nonce");
    let secret = dir.write(
        "nonce.secret",
        "a nonce secret of at least thirty-two bytes!\n",
    );
    let rig = Rig::start(&format!(
        "{DPOP}  nonce:\n    secret_file: {}\n    window_seconds: 60\n",
        secret.display()
    ))
    .await;
    let url = rig.envoy.url("/api/items");
    let tok = bound(&jkt(EDDSA));
    let auth = dpop(&tok);
    let (bare, _) = make(&[request(EDDSA, "GET", &url, &tok)]).remove(0);
    let asked = rig.get_with_proof(&auth, &bare).await;
    assert_eq!(
        (asked.status, asked.reason.as_str()),
        (401, "use_dpop_nonce"),
        "{asked:?}"
    );
    assert!(asked
        .challenge
        .as_deref()
        .is_some_and(|c| c.starts_with("DPoP ") && c.contains("error=\"use_dpop_nonce\"")));
    let nonce = asked.nonce.expect("a DPoP-Nonce header");
    // One character of the MAC changed (the first 11 carry the window number).
    let mut forged: Vec<char> = nonce.chars().collect();
    forged[20] = if forged[20] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    for (n, status) in [
        (forged.as_str(), 401),
        (nonce.as_str(), 200),
        (nonce.as_str(), 200),
    ] {
        let (p, _) = make(&[merged(
            request(EDDSA, "GET", &url, &tok),
            &json!({"payload": {"nonce": n}}),
        )])
        .remove(0);
        let got = rig.get_with_proof(&auth, &p).await;
        assert_eq!(got.status, status, "{got:?}");
    }
    let allowed = rig.counts("allow", "none").await;
    assert!(
        allowed[0] >= 1.0 && allowed[1] >= 1.0,
        "each replica allowed a proof with the nonce: {allowed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mode_through_the_shipped_envoy_config_checks_proofs_and_hands_out_nonces() {
    let dir = Scratch::new("dpop-http");
    let secret = dir.write(
        "nonce.secret",
        "another nonce secret, thirty-two bytes or more\n",
    );
    let yaml = format!(
        "{}{DPOP}  nonce:\n    secret_file: {}\nhttp_check:\n  proxy: envoy\n  original_scheme: http\n",
        config_yaml(MEMORY_STORE),
        secret.display()
    );
    let server = TestServer::start(&yaml).await;
    let app = EchoUpstream::start().await;
    let envoy = Envoy::start_config(
        &repo().join("envoy/envoy-http-mode.yaml"),
        &server.addrs,
        app.addr,
    )
    .await;
    // The query is not part of htu.
    let url = envoy.url("/api/items");
    let tok = bound(&jkt(ES256));
    let auth = dpop(&tok);
    let send = |proof: String, bearer_scheme: bool| {
        let auth = if bearer_scheme {
            bearer(&tok)
        } else {
            auth.clone()
        };
        let req = reqwest::Client::new()
            .get(envoy.url("/api/items?page=2"))
            .header("authorization", auth)
            .header("dpop", proof);
        async move {
            let resp = req.send().await.expect("request through Envoy");
            let status = resp.status().as_u16();
            let nonce = resp
                .headers()
                .get("dpop-nonce")
                .map(|v| v.to_str().expect("ascii").to_string());
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (
                status,
                body["reason"].as_str().unwrap_or("").to_string(),
                nonce,
            )
        }
    };
    let (first, _) = make(&[request(ES256, "GET", &url, &tok)]).remove(0);
    let (status, reason, nonce) = send(first, false).await;
    assert_eq!((status, reason.as_str()), (401, "use_dpop_nonce"));
    let nonce = nonce.expect("Envoy passes DPoP-Nonce to the client");
    let with_nonce = |edit: Value| {
        merged(
            merged(
                request(ES256, "GET", &url, &tok),
                &json!({"payload": {"nonce": nonce}}),
            ),
            &edit,
        )
    };
    let proofs = make(&[
        with_nonce(json!({})),
        with_nonce(json!({"payload": {"htm": "POST"}})),
        with_nonce(json!({"payload": {"htu": envoy.url("/authz/api/items")}})),
        with_nonce(json!({})),
    ]);
    let good = proofs[0].0.clone();
    assert_eq!(send(good.clone(), false).await.0, 200);
    for (proof, bearer_scheme, want) in [
        (good, false, "dpop_replayed"),
        (proofs[1].0.clone(), false, "dpop_wrong_target"),
        (proofs[2].0.clone(), false, "dpop_wrong_target"),
        (proofs[3].0.clone(), true, "dpop_required"),
    ] {
        let (status, reason, _) = send(proof, bearer_scheme).await;
        assert_eq!((status, reason.as_str()), (401, want));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bound_token_without_its_proof_is_refused_on_every_way_in() {
    let sources = "tokens:\n  sources:\n    - header: authorization\n      scheme: Bearer\n    - query: access_token\n";
    let tok = bound(&jkt(ES256));
    let client = reqwest::Client::new();
    let reason = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (status, body["reason"].as_str().unwrap_or("").to_string())
    };
    // With proofs configured, and without: binding is never the thief's choice.
    for dpop_section in [DPOP, ""] {
        let server = TestServer::start(&format!(
            "{}{sources}{dpop_section}",
            config_yaml(MEMORY_STORE)
        ))
        .await;
        let in_query = client
            .get(server.http_url(&format!("/authz/api/items?access_token={tok}")))
            .send()
            .await
            .expect("authz");
        assert_eq!(reason(in_query).await, (401, "dpop_required".into()));
        let logout = client
            .post(server.http_url("/v1/auth/logout"))
            .header("authorization", bearer(&tok))
            .send()
            .await
            .expect("logout");
        assert_eq!(reason(logout).await, (401, "dpop_required".into()));
        let as_dpop = client
            .get(server.http_url("/authz/api/items"))
            .header("authorization", dpop(&tok))
            .send()
            .await
            .expect("authz");
        let want = if dpop_section.is_empty() {
            // No `dpop` section: the scheme is not one tokengate takes.
            "missing_token"
        } else {
            "dpop_proof_invalid"
        };
        assert_eq!(
            reason(as_dpop).await,
            (401, want.into()),
            "{dpop_section:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_resting_on_a_proof_is_never_cacheable_by_the_proxy() {
    // A proxy that caches allows (http_check.allow_max_age_seconds) would otherwise
    // answer a replayed proof itself, without asking tokengate.
    let yaml = format!(
        "{}{DPOP}http_check:\n  proxy: envoy\n  original_scheme: http\n  allow_max_age_seconds: 30\n",
        config_yaml(MEMORY_STORE)
    );
    let server = TestServer::start(&yaml).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/items", server.addrs.http);
    let tok = bound(&jkt(ES256));
    let (proof, _) = make(&[request(ES256, "GET", &url, &tok)]).remove(0);
    let cache_control = |r: &reqwest::Response| {
        r.headers()
            .get("cache-control")
            .map(|v| v.to_str().expect("ascii").to_string())
    };
    let unbound = token("ec256", "bob", json!({}));
    let cert_bound = token("ec256", "carol", json!({"cnf": {"x5t#S256": "AAAA"}}));
    let plain = client
        .get(server.http_url("/authz/api/items"))
        .header("authorization", bearer(&unbound))
        .send()
        .await
        .expect("authz");
    assert_eq!(plain.status(), 200);
    assert!(
        cache_control(&plain).is_some_and(|c| c.starts_with("private, max-age=")),
        "the control: a bearer allow is cacheable as configured"
    );
    for (what, auth, proof) in [
        ("DPoP", dpop(&tok), Some(proof)),
        (
            "certificate-bound (not checked under none)",
            bearer(&cert_bound),
            None,
        ),
    ] {
        let mut req = client
            .get(server.http_url("/authz/api/items"))
            .header("authorization", auth);
        if let Some(p) = proof {
            req = req.header("dpop", p);
        }
        let r = req.send().await.expect("authz");
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(cache_control(&r).as_deref(), Some("no-store"), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_open_lets_an_unclaimable_proof_through_and_counts_it() {
    // `on_store_error: allow` is the operator's choice for the replay guard too: the
    // request passes, counted as an allow despite store_unavailable.
    let (rig, auth, proof) = Box::pin(store_dies_after_a_warm_check(
        "  on_store_error: allow\n",
        EDDSA,
    ))
    .await;
    let before = rig.counts("allow", "store_unavailable").await;
    let open = rig.get_with_proof(&auth, &proof).await;
    assert_eq!(open.status, 200, "{open:?}");
    let after = rig.counts("allow", "store_unavailable").await;
    assert_eq!(
        after[0] + after[1],
        before[0] + before[1] + 1.0,
        "counted as a fail-open allow"
    );
}

/// A DPoP client ends its own session: logout through Envoy with the `DPoP` scheme and
/// a proof for the logout URL (scheme `http_check.original_scheme`, `https` by default:
/// the edge terminates TLS). A proof for another URL or method is refused; after the
/// logout the token is revoked on both replicas.
#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_client_logs_out_with_a_proof_for_the_logout_url() {
    let rig = Rig::start(DPOP).await;
    let tok = bound(&jkt(ES256));
    let auth = dpop(&tok);
    let logout_url = rig
        .envoy
        .url("/v1/auth/logout")
        .replacen("http://", "https://", 1);
    let logout_all_url = logout_url.replace("/logout", "/logout-all");
    let proofs = make(&[
        request(ES256, "POST", &logout_all_url, &tok),
        request(ES256, "GET", &logout_url, &tok),
        request(ES256, "POST", &rig.envoy.url("/v1/auth/logout"), &tok),
        request(ES256, "POST", &logout_url, &tok),
    ]);
    // proofs made for another URL, another method or another scheme: refused
    for (proof, _) in &proofs[..3] {
        let wrong = rig
            .send(
                "POST",
                "/v1/auth/logout",
                &[("authorization", &auth), ("dpop", proof)],
            )
            .await;
        assert_eq!(
            (wrong.status, wrong.reason.as_str()),
            (401, "dpop_wrong_target")
        );
    }
    // still usable: nothing was revoked
    let (check, _) = make(&[request(ES256, "GET", &rig.envoy.url("/api/items"), &tok)]).remove(0);
    let ok = rig.get_with_proof(&auth, &check).await;
    assert_eq!(ok.status, 200, "{ok:?}");

    let done = rig
        .send(
            "POST",
            "/v1/auth/logout",
            &[("authorization", &auth), ("dpop", &proofs[3].0)],
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    // revoked everywhere: both replicas (round robin) deny a fresh proof
    for _ in 0..2 {
        let (fresh, _) =
            make(&[request(ES256, "GET", &rig.envoy.url("/api/items"), &tok)]).remove(0);
        let after = rig.get_with_proof(&auth, &fresh).await;
        assert_eq!((after.status, after.reason.as_str()), (401, "jti_revoked"));
    }
}
