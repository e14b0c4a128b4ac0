//! Every check of RFC 9449 §4.3 as its own class of refusal, with keys made here by
//! aws-lc-rs (not by the code under test).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use serde_json::json;

use super::*;

const NOW: i64 = 1_800_000_000;
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
const URL: &str = "https://api.example.com/items";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

enum Signer {
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
}

impl Signer {
    fn es256() -> Self {
        Self::ec(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
    }

    fn ec(alg: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm, crv: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Signer::Ec(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap(), crv)
    }

    fn ed() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Ec(_, "P-256") => "ES256",
            Signer::Ec(..) => "ES384",
            Signer::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Signer::Ec(k, crv) => {
                let p = k.public_key().as_ref();
                let n = (p.len() - 1) / 2;
                json!({"kty": "EC", "crv": crv, "x": b64(&p[1..1 + n]), "y": b64(&p[1 + n..])})
            }
            Signer::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            Signer::Ec(k, _) => k.sign(&SystemRandom::new(), msg).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(msg).as_ref().to_vec(),
        }
    }
}

fn header(s: &Signer) -> Value {
    json!({"typ": "dpop+jwt", "alg": s.alg(), "jwk": s.jwk()})
}

fn claims() -> Value {
    json!({
        "jti": "proof-1",
        "htm": "POST",
        "htu": URL,
        "iat": NOW,
        "ath": access_token_hash(TOKEN),
    })
}

fn encode(s: &Signer, header: &Value, claims: &Value) -> String {
    let msg = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = s.sign(msg.as_bytes());
    format!("{msg}.{}", b64(&sig))
}

fn edit(mut v: Value, f: impl FnOnce(&mut Map<String, Value>)) -> Value {
    f(v.as_object_mut().unwrap());
    v
}

fn settings() -> Settings {
    Settings {
        algorithms: vec![Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA],
        max_age: 60,
        future_skew: 5,
        nonces: None,
        algs: String::new(),
    }
}

fn run(proof: &str, s: &Settings) -> Result<Checked, Reason> {
    let ours = htu::normalise(URL).unwrap();
    check(
        proof,
        s,
        &Expected {
            methods: &["POST"],
            htu: Some(&ours),
            token: TOKEN,
            now: NOW,
        },
    )
}

#[test]
fn a_good_proof_of_each_key_type_passes_with_its_rfc7638_thumbprint() {
    for signer in [
        Signer::es256(),
        Signer::ec(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
        Signer::ed(),
    ] {
        let proof = encode(&signer, &header(&signer), &claims());
        let got = run(&proof, &settings()).unwrap();
        // The thumbprint recomputed from the canonical JSON RFC 7638 §3 describes.
        let jwk = signer.jwk();
        let members: Vec<&str> = match jwk["kty"].as_str().unwrap() {
            "EC" => vec!["crv", "kty", "x", "y"],
            _ => vec!["crv", "kty", "x"],
        };
        let canonical = format!(
            "{{{}}}",
            members
                .iter()
                .map(|m| format!("\"{m}\":{}", jwk[m]))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(got.jkt, b64(&Sha256::digest(canonical.as_bytes())));
        assert_eq!(got.jti, "proof-1");
    }
}

#[test]
fn the_rfc7638_example_thumbprint() {
    // RFC 7638 §3.1.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        thumbprint(jwk.as_object().unwrap()).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
}

#[test]
fn each_broken_header_is_an_invalid_proof() {
    let s = Signer::es256();
    let other = Signer::es256();
    let h = header(&s);
    let cases: Vec<(&str, Value)> = vec![
        (
            "no typ",
            edit(h.clone(), |m| {
                m.remove("typ");
            }),
        ),
        (
            "typ jwt",
            edit(h.clone(), |m| {
                m.insert("typ".into(), "JWT".into());
            }),
        ),
        (
            "typ at+jwt",
            edit(h.clone(), |m| {
                m.insert("typ".into(), "at+jwt".into());
            }),
        ),
        (
            "alg none",
            edit(h.clone(), |m| {
                m.insert("alg".into(), "none".into());
            }),
        ),
        (
            "alg HS256",
            edit(h.clone(), |m| {
                m.insert("alg".into(), "HS256".into());
            }),
        ),
        (
            "alg outside the list",
            edit(h.clone(), |m| {
                m.insert("alg".into(), "RS256".into());
            }),
        ),
        (
            "alg of another key type",
            edit(h.clone(), |m| {
                m.insert("alg".into(), "EdDSA".into());
            }),
        ),
        (
            "no jwk",
            edit(h.clone(), |m| {
                m.remove("jwk");
            }),
        ),
        (
            "jwk of another key",
            edit(h.clone(), |m| {
                m.insert("jwk".into(), other.jwk());
            }),
        ),
        (
            "jwk with the wrong curve",
            edit(h.clone(), |m| {
                m["jwk"]["crv"] = "P-384".into();
            }),
        ),
        (
            "crit",
            edit(h.clone(), |m| {
                m.insert("crit".into(), json!(["exp"]));
            }),
        ),
    ];
    for private in PRIVATE_MEMBERS {
        let bad = edit(h.clone(), |m| {
            m["jwk"][private] = "AAAA".into();
        });
        assert_eq!(
            run(&encode(&s, &bad, &claims()), &settings()),
            Err(Reason::DpopProofInvalid),
            "private member {private}"
        );
    }
    for (what, bad) in cases {
        assert_eq!(
            run(&encode(&s, &bad, &claims()), &settings()),
            Err(Reason::DpopProofInvalid),
            "{what}"
        );
    }
}

#[test]
fn a_symmetric_or_none_proof_is_refused_even_when_configured_or_unsigned() {
    let s = Signer::es256();
    let mut lax = settings();
    lax.algorithms.push(Algorithm::HS256);
    // HS256 "signed" with the public key's x as the secret: the classic confusion.
    let h = edit(header(&s), |m| {
        m.insert("alg".into(), "HS256".into());
    });
    let msg = format!(
        "{}.{}",
        b64(h.to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        s.jwk()["x"].as_str().unwrap().as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&key, msg.as_bytes());
    let forged = format!("{msg}.{}", b64(tag.as_ref()));
    assert_eq!(run(&forged, &lax), Err(Reason::DpopProofInvalid));
    let none = format!("{msg}.");
    assert_eq!(run(&none, &settings()), Err(Reason::DpopProofInvalid));
}

#[test]
fn a_signature_by_another_key_or_an_edited_payload_is_invalid() {
    let s = Signer::es256();
    let other = Signer::es256();
    let by_other = encode(&other, &header(&s), &claims());
    assert_eq!(run(&by_other, &settings()), Err(Reason::DpopProofInvalid));
    let good = encode(&s, &header(&s), &claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let edited = b64(edit(claims(), |m| {
        m.insert("htm".into(), "GET".into());
    })
    .to_string()
    .as_bytes());
    parts[1] = &edited;
    assert_eq!(
        run(&parts.join("."), &settings()),
        Err(Reason::DpopProofInvalid)
    );
    for junk in [
        "",
        "a.b",
        "a.b.c.d",
        &format!("{good} "),
        &"a".repeat(MAX_PROOF_BYTES + 1),
    ] {
        assert_eq!(
            run(junk, &settings()),
            Err(Reason::DpopProofInvalid),
            "{junk:.20}"
        );
    }
}

#[test]
fn missing_or_mistyped_claims_are_invalid() {
    let s = Signer::es256();
    for name in ["jti", "htm", "htu", "iat"] {
        let c = edit(claims(), |m| {
            m.remove(name);
        });
        assert_eq!(
            run(&encode(&s, &header(&s), &c), &settings()),
            Err(Reason::DpopProofInvalid),
            "no {name}"
        );
        let c = edit(claims(), |m| {
            m.insert(name.into(), json!({"x": 1}));
        });
        assert_eq!(
            run(&encode(&s, &header(&s), &c), &settings()),
            Err(Reason::DpopProofInvalid),
            "object {name}"
        );
    }
    let dup = {
        let h = b64(header(&s).to_string().as_bytes());
        let body = claims().to_string().replacen('{', "{\"jti\":\"other\",", 1);
        let msg = format!("{h}.{}", b64(body.as_bytes()));
        format!("{msg}.{}", b64(&s.sign(msg.as_bytes())))
    };
    assert_eq!(
        run(&dup, &settings()),
        Err(Reason::DpopProofInvalid),
        "a claim twice"
    );
}

#[test]
fn another_method_or_uri_is_the_wrong_target() {
    let s = Signer::es256();
    for (name, value) in [
        ("htm", "GET"),
        ("htm", "post"),
        ("htu", "https://api.example.com/other"),
        ("htu", "https://api.example.com/items/"),
        ("htu", "http://api.example.com/items"),
        ("htu", "https://api.example.com:8443/items"),
        ("htu", "https://evil.example/items"),
        ("htu", "/items"),
    ] {
        let c = edit(claims(), |m| {
            m.insert(name.into(), value.into());
        });
        assert_eq!(
            run(&encode(&s, &header(&s), &c), &settings()),
            Err(Reason::DpopWrongTarget),
            "{name} {value}"
        );
    }
    // Query and fragment are not part of htu; the default port is not either.
    for value in [
        "https://api.example.com/items?x=1",
        "https://API.example.com:443/items#f",
    ] {
        let c = edit(claims(), |m| {
            m.insert("htu".into(), value.into());
        });
        assert!(
            run(&encode(&s, &header(&s), &c), &settings()).is_ok(),
            "{value}"
        );
    }
}

#[test]
fn iat_outside_the_window_either_way_is_stale() {
    let s = Signer::es256();
    for (iat, ok) in [
        (NOW - 60, true),
        (NOW - 61, false),
        (NOW + 5, true),
        (NOW + 6, false),
        (0, false),
        (NOW + 365 * 86_400, false),
    ] {
        let c = edit(claims(), |m| {
            m.insert("iat".into(), iat.into());
        });
        let got = run(&encode(&s, &header(&s), &c), &settings());
        assert_eq!(got.is_ok(), ok, "iat {iat}: {got:?}");
        if !ok {
            assert_eq!(got, Err(Reason::DpopProofStale));
        }
    }
}

#[test]
fn an_ath_of_another_token_or_none_is_a_binding_mismatch() {
    let s = Signer::es256();
    for ath in [
        Some(access_token_hash("another.token.x")),
        Some(String::new()),
        None,
    ] {
        let c = edit(claims(), |m| match &ath {
            Some(a) => {
                m.insert("ath".into(), a.clone().into());
            }
            None => {
                m.remove("ath");
            }
        });
        assert_eq!(
            run(&encode(&s, &header(&s), &c), &settings()),
            Err(Reason::DpopBindingMismatch),
            "{ath:?}"
        );
    }
}

#[test]
fn with_nonces_on_a_proof_needs_a_current_nonce_from_any_replica() {
    let s = Signer::es256();
    let mut with = settings();
    with.nonces = Some(Nonces::new(b"k", 60));
    let replica = Nonces::new(b"k", 60);
    let stale = Nonces::new(b"k", 60).issue(NOW - 200);
    for (nonce, ok) in [
        (None, false),
        (Some("made-up".to_string()), false),
        (Some(Nonces::new(b"other", 60).issue(NOW)), false),
        (Some(stale), false),
        (Some(replica.issue(NOW)), true),
    ] {
        let c = edit(claims(), |m| {
            if let Some(n) = &nonce {
                m.insert("nonce".into(), n.clone().into());
            }
        });
        let got = run(&encode(&s, &header(&s), &c), &with);
        assert_eq!(got.is_ok(), ok, "{nonce:?}");
        if !ok {
            assert_eq!(got, Err(Reason::UseDpopNonce));
        }
    }
}

#[test]
fn a_method_override_beside_the_proof_must_name_its_htm_too() {
    let s = Signer::es256();
    let proof = encode(&s, &header(&s), &claims());
    let ours = htu::normalise(URL).unwrap();
    for (methods, ok) in [
        (&["POST"][..], true),
        (&["POST", "POST"][..], true),
        (&["POST", "DELETE"][..], false),
        (&["POST", "post"][..], false),
        (&[][..], false),
    ] {
        let got = check(
            &proof,
            &settings(),
            &Expected {
                methods,
                htu: Some(&ours),
                token: TOKEN,
                now: NOW,
            },
        );
        assert_eq!(got.is_ok(), ok, "{methods:?}: {got:?}");
        if !ok {
            assert_eq!(got, Err(Reason::DpopWrongTarget));
        }
    }
}
