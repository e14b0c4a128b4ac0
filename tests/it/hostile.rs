//! The hostile-input suite (RFC 8725's attacks among them): one table of cases, each run
//! against the gRPC transport (both header encodings Envoy uses) and the HTTP check;
//! each gets its documented answer, and nothing panics. Its successor for the ways
//! around the gate (path, host and method spellings, forwarded headers, ambiguous
//! input, time and typing, cookie CSRF) is tests/it/bypass.rs, which generates each class
//! over gRPC and the HTTP check behind every trusted proxy.

use crate::support;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use support::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Allow,
    Deny(&'static str),
}

struct Case {
    name: &'static str,
    /// Header name and raw value bytes, as the client sent them.
    headers: Vec<(&'static str, Vec<u8>)>,
    expect: Expect,
    /// The HTTP check's answer when it differs by nature of HTTP (e.g. a 1 MB header is
    /// refused by the HTTP server before tokengate sees it); `Some(None)` = HTTP cannot
    /// carry this request at all (NUL bytes), skip it there.
    http: Option<Option<u16>>,
}

fn bearer_case(name: &'static str, token: String, expect: Expect) -> Case {
    Case {
        name,
        headers: vec![("authorization", format!("Bearer {token}").into_bytes())],
        expect,
        http: None,
    }
}

fn raw_case(name: &'static str, value: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        headers: vec![("authorization", value)],
        expect,
        http: None,
    }
}

fn signed(header: Value, payload: Value, kid: &str) -> String {
    let (alg, key) = signing_key(kid);
    sign(header, payload, alg, &key)
}

fn with(mut base: Value, key: &str, v: Value) -> Value {
    base[key] = v;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    if let Some(m) = base.as_object_mut() {
        m.remove(key);
    }
    base
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let c = || claims("alice");
    let es = |payload: Value| signed(json!({"alg": "ES256", "kid": "ec256"}), payload, "ec256");
    let b64json = |v: &Value| b64(v.to_string().as_bytes());
    let rsa_pub = read_key("rsa-public.pem");
    let ec_pub = read_key("ec256-public.pem");
    let attacker = signing_key("rsa2").1;
    let attacker_jwk = {
        let mut j = Jwk::from_encoding_key(&attacker, Algorithm::RS256).unwrap();
        j.common.key_id = Some("evil".into());
        serde_json::to_value(j).unwrap()
    };
    let rs_attacker = |header: Value| sign(header, c(), Algorithm::RS256, &attacker);
    let nested = {
        let mut v = json!("deep");
        for _ in 0..200 {
            v = json!([v]);
        }
        v
    };
    let valid = token("ec256", "alice", json!({}));
    let (vh, vp) = {
        let mut parts = valid.split('.');
        (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
        )
    };

    vec![
        bearer_case("a valid ES256 token (control)", valid.clone(), Allow),
        bearer_case(
            "alg none",
            format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64json(&c())),
            Deny("disallowed_algorithm"),
        ),
        bearer_case(
            "alg None",
            format!("{}.{}.", b64(br#"{"alg":"None"}"#), b64json(&c())),
            Deny("disallowed_algorithm"),
        ),
        bearer_case(
            "alg nOnE",
            format!("{}.{}.", b64(br#"{"alg":"nOnE"}"#), b64json(&c())),
            Deny("disallowed_algorithm"),
        ),
        bearer_case(
            "alg empty",
            format!("{}.{}.c2ln", b64(br#"{"alg":""}"#), b64json(&c())),
            Deny("disallowed_algorithm"),
        ),
        bearer_case(
            "no alg at all",
            format!("{}.{}.c2ln", b64(br#"{"kid":"ec256"}"#), b64json(&c())),
            Deny("malformed"),
        ),
        bearer_case(
            "HS256 with the RSA public key as secret, kid of the RSA key",
            sign(
                json!({"alg": "HS256", "kid": "rsa"}),
                c(),
                Algorithm::HS256,
                &EncodingKey::from_secret(&rsa_pub),
            ),
            Deny("disallowed_algorithm"),
        ),
        bearer_case(
            "HS256 with the RSA public key as secret, no kid",
            sign(
                json!({"alg": "HS256"}),
                c(),
                Algorithm::HS256,
                &EncodingKey::from_secret(&rsa_pub),
            ),
            Deny("bad_signature"),
        ),
        bearer_case(
            "HS256 with the EC public key as secret, kid of the EC key",
            sign(
                json!({"alg": "HS256", "kid": "ec256"}),
                c(),
                Algorithm::HS256,
                &EncodingKey::from_secret(&ec_pub),
            ),
            Deny("disallowed_algorithm"),
        ),
        bearer_case(
            "kid path traversal",
            signed(
                json!({"alg": "ES256", "kid": "../../../../etc/passwd"}),
                c(),
                "ec256",
            ),
            Deny("unknown_key"),
        ),
        bearer_case(
            "kid SQL injection",
            signed(
                json!({"alg": "ES256", "kid": "' OR '1'='1' --"}),
                c(),
                "ec256",
            ),
            Deny("unknown_key"),
        ),
        bearer_case(
            "kid with a NUL",
            signed(json!({"alg": "ES256", "kid": "ec256\u{0}"}), c(), "ec256"),
            Deny("unknown_key"),
        ),
        bearer_case(
            "kid of the wrong type",
            signed(json!({"alg": "ES256", "kid": 5}), c(), "ec256"),
            Deny("malformed"),
        ),
        bearer_case(
            "jku pointing at an attacker's keys",
            rs_attacker(json!({"alg": "RS256", "kid": "rsa", "jku": "https://evil.test/jwks"})),
            Deny("bad_signature"),
        ),
        bearer_case(
            "x5u pointing at an attacker's certificate",
            rs_attacker(json!({"alg": "RS256", "kid": "rsa", "x5u": "https://evil.test/cert"})),
            Deny("bad_signature"),
        ),
        bearer_case(
            "attacker's key embedded as jwk",
            rs_attacker(json!({"alg": "RS256", "jwk": attacker_jwk})),
            Deny("bad_signature"),
        ),
        bearer_case(
            "valid token with jku/x5u/jwk headers (ignored)",
            signed(
                json!({"alg": "ES256", "kid": "ec256", "jku": "https://evil.test", "x5u": "https://evil.test", "jwk": {"kty": "oct"}}),
                c(),
                "ec256",
            ),
            Allow,
        ),
        bearer_case(
            "unknown crit extension",
            signed(
                json!({"alg": "ES256", "kid": "ec256", "crit": ["exp"]}),
                c(),
                "ec256",
            ),
            Deny("malformed"),
        ),
        bearer_case(
            "crit b64=false",
            signed(
                json!({"alg": "ES256", "kid": "ec256", "b64": false, "crit": ["b64"]}),
                c(),
                "ec256",
            ),
            Deny("malformed"),
        ),
        bearer_case(
            "duplicate alg in the header",
            {
                let (alg, key) = signing_key("ec256");
                sign_raw(
                    br#"{"alg":"none","alg":"ES256","kid":"ec256"}"#,
                    c().to_string().as_bytes(),
                    alg,
                    &key,
                )
            },
            Deny("malformed"),
        ),
        bearer_case(
            "duplicate sub in the payload",
            {
                let (alg, key) = signing_key("ec256");
                let body = c().to_string().replacen('{', "{\"sub\":\"admin\",", 1);
                sign_raw(
                    br#"{"alg":"ES256","kid":"ec256"}"#,
                    body.as_bytes(),
                    alg,
                    &key,
                )
            },
            Deny("malformed"),
        ),
        Case {
            http: Some(Some(431)),
            ..bearer_case(
                "1 MB of claims",
                es(with(c(), "pad", json!("x".repeat(1 << 20)))),
                Deny("token_too_large"),
            )
        },
        bearer_case(
            "a large claim within the size limit",
            es(with(c(), "pad", json!("x".repeat(5000)))),
            Allow,
        ),
        bearer_case(
            "claims nested 200 deep",
            es(with(c(), "deep", nested)),
            Deny("malformed"),
        ),
        bearer_case(
            "exp as a string",
            es(with(c(), "exp", json!("9999999999"))),
            Deny("malformed"),
        ),
        bearer_case(
            "exp negative",
            es(with(c(), "exp", json!(-1))),
            Deny("malformed"),
        ),
        bearer_case(
            "exp 1e300",
            es(with(c(), "exp", json!(1e300))),
            Deny("malformed"),
        ),
        bearer_case(
            "exp a boolean",
            es(with(c(), "exp", json!(true))),
            Deny("malformed"),
        ),
        bearer_case(
            "exp missing",
            es(without(c(), "exp")),
            Deny("missing_claim"),
        ),
        bearer_case(
            "exp null",
            es(with(c(), "exp", Value::Null)),
            Deny("missing_claim"),
        ),
        bearer_case(
            "nbf as a string",
            es(with(c(), "nbf", json!("0"))),
            Deny("malformed"),
        ),
        bearer_case(
            "nbf next year",
            es(with(
                c(),
                "nbf",
                json!(tokengate::jwt::now_unix() + 31_536_000),
            )),
            Deny("not_yet_valid"),
        ),
        bearer_case(
            "iat as a string",
            es(with(c(), "iat", json!("now"))),
            Deny("malformed"),
        ),
        bearer_case(
            "iat beyond year 9999",
            es(with(c(), "iat", json!(1e20))),
            Deny("malformed"),
        ),
        bearer_case(
            "jti an object",
            es(with(c(), "jti", json!({"a": 1}))),
            Deny("malformed"),
        ),
        bearer_case(
            "sub an array",
            es(with(c(), "sub", json!(["a", "b"]))),
            Deny("malformed"),
        ),
        bearer_case(
            "payload not an object",
            {
                let (alg, key) = signing_key("ec256");
                sign_raw(br#"{"alg":"ES256","kid":"ec256"}"#, b"[1,2,3]", alg, &key)
            },
            Deny("malformed"),
        ),
        bearer_case("four parts", format!("{valid}.x"), Deny("malformed")),
        bearer_case("empty signature", format!("{vh}.{vp}."), Deny("malformed")),
        bearer_case(
            "padded base64",
            format!("{vh}==.{vp}.abc"),
            Deny("malformed"),
        ),
        bearer_case(
            "signature of another token",
            format!(
                "{vh}.{vp}.{}",
                token("ec256", "bob", json!({})).rsplit('.').next().unwrap()
            ),
            Deny("bad_signature"),
        ),
        raw_case(
            "space inside the token",
            format!("Bearer {vh}.{vp} x").into_bytes(),
            Deny("malformed"),
        ),
        raw_case(
            "lower-case scheme",
            format!("bearer {valid}").into_bytes(),
            Allow,
        ),
        raw_case(
            "upper-case scheme",
            format!("BEARER {valid}").into_bytes(),
            Allow,
        ),
        raw_case(
            "tabs and spaces around",
            format!(" \tBearer \t {valid}\t ").into_bytes(),
            Allow,
        ),
        raw_case("scheme only", b"Bearer".to_vec(), Deny("malformed")),
        raw_case(
            "no space after the scheme",
            format!("Bearer{valid}").into_bytes(),
            Deny("missing_token"),
        ),
        raw_case(
            "another scheme",
            b"Basic YWxpY2U6c2VjcmV0".to_vec(),
            Deny("missing_token"),
        ),
        raw_case("empty value", Vec::new(), Deny("missing_token")),
        raw_case(
            "invalid UTF-8",
            [b"Bearer ".as_slice(), &[0xff, 0xfe, 0x80]].concat(),
            Deny("malformed"),
        ),
        Case {
            name: "NUL in the value",
            headers: vec![("authorization", format!("Bearer {vh}\0.{vp}").into_bytes())],
            expect: Deny("malformed"),
            http: Some(None),
        },
        Case {
            name: "two Authorization headers",
            headers: vec![
                ("authorization", format!("Bearer {valid}").into_bytes()),
                (
                    "authorization",
                    format!("Bearer {}", token("ec256", "mallory", json!({}))).into_bytes(),
                ),
            ],
            expect: Deny("malformed"),
            http: None,
        },
        Case {
            name: "a 1 MB header",
            headers: vec![(
                "authorization",
                format!("Bearer {}", "a".repeat(1 << 20)).into_bytes(),
            )],
            expect: Deny("token_too_large"),
            // hyper refuses headers this large before any handler runs
            http: Some(Some(431)),
        },
        Case {
            name: "no Authorization header",
            headers: vec![("x-other", b"1".to_vec())],
            expect: Deny("missing_token"),
            http: None,
        },
    ]
}

fn grpc_answer(a: &Answer) -> Expect {
    if a.allowed() {
        return Expect::Allow;
    }
    let reason = a.reason().unwrap_or_default();
    Expect::Deny(Box::leak(reason.into_boxed_str()))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_hostile_case_gets_its_documented_answer_on_both_transports() {
    let s = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    let mut c = s.grpc().await;
    let http = reqwest::Client::new();
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut tried = 0;
    for case in &cases {
        // gRPC, Envoy's raw header_map (values in raw_value, repeats not merged)
        let raw: Vec<(&str, &[u8])> = case
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_slice()))
            .collect();
        let a = check(&mut c, check_request_raw("GET", "/api/items", &raw)).await;
        assert_eq!(
            grpc_answer(&a),
            case.expect,
            "gRPC header_map: {}",
            case.name
        );
        tried += 1;
        // gRPC, Envoy's default headers map, its values as bytes (Envoy copies what the
        // client sent, UTF-8 or not), repeats merged with commas
        let a = check_bytes_map(s.addrs.grpc, "GET", "/api/items", &raw).await;
        assert_eq!(
            grpc_answer(&a),
            case.expect,
            "gRPC headers map, bytes: {}",
            case.name
        );
        tried += 1;
        // gRPC, Envoy's default headers map (UTF-8, repeats merged with commas)
        if case
            .headers
            .iter()
            .all(|(_, v)| std::str::from_utf8(v).is_ok())
        {
            let values: Vec<(&str, String)> = case
                .headers
                .iter()
                .map(|(k, v)| (*k, String::from_utf8_lossy(v).into_owned()))
                .collect();
            // check_request joins repeats with commas, as Envoy's map does
            let pairs: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let a = check(&mut c, check_request("GET", "/api/items", &pairs)).await;
            assert_eq!(
                grpc_answer(&a),
                case.expect,
                "gRPC headers map: {}",
                case.name
            );
            tried += 1;
        }
        // HTTP check
        match case.http {
            Some(None) => continue,
            Some(Some(status)) => {
                let mut req = http.get(s.http_url("/authz/api/items"));
                for (k, v) in &case.headers {
                    req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
                }
                let resp = req.send().await.expect("HTTP answers");
                assert_eq!(resp.status().as_u16(), status, "HTTP: {}", case.name);
            }
            None => {
                let mut req = http.get(s.http_url("/authz/api/items"));
                for (k, v) in &case.headers {
                    req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
                }
                let resp = req.send().await.expect("HTTP answers");
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let got = if status == 200 {
                    Expect::Allow
                } else {
                    Expect::Deny(Box::leak(
                        body["reason"]
                            .as_str()
                            .unwrap_or("?")
                            .to_string()
                            .into_boxed_str(),
                    ))
                };
                assert_eq!(got, case.expect, "HTTP: {} (status {status})", case.name);
            }
        }
        tried += 1;
    }
    println!("{} cases, {tried} requests across transports", cases.len());

    // requests without any HTTP part
    let a = check(&mut c, Default::default()).await;
    assert_eq!(
        a.reason().as_deref(),
        Some("missing_token"),
        "empty CheckRequest"
    );
    let mut no_http = check_request("GET", "/", &[]);
    no_http
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http = None;
    let a = check(&mut c, no_http).await;
    assert_eq!(
        a.reason().as_deref(),
        Some("missing_token"),
        "CheckRequest without http"
    );
    // and the server is still fine
    assert!(check_token(&mut c, &token("ec256", "alice", json!({})))
        .await
        .allowed());
}
