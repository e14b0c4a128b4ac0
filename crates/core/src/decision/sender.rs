//! Step 3b of the pipeline: is the token in the hands of the client it was issued to?
//! A token bound to a key (`cnf.jkt`, RFC 9449) needs a proof of that key made for this
//! very request; a token bound to a certificate (`cnf.x5t#S256`, RFC 8705) needs that
//! certificate on the connection. Runs on every request, after the verified-token cache:
//! the token may be cached, a proof never is (each one is single-use).
//!
//! The rules, whatever `sender_constraint` says: a request with the `DPoP` scheme always
//! has its proof checked, and a DPoP-bound token never passes without one (RFC 9449
//! §7.2: otherwise binding would be the thief's choice). `optional` adds the
//! certificate check for tokens that carry `x5t#S256`; `required` refuses unbound
//! tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::client_cert::ClientCert;
use super::extract::Headers;
use crate::config::SenderConstraint;
use crate::jwt::dpop::{self, htu, Settings};
use crate::jwt::{Claims, Verifier};
use crate::reason::{Deny, Reason};

/// How the token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// `Authorization: DPoP <token>`.
    Dpop,
    /// Any other source (`Bearer`, a cookie, a query parameter).
    Other,
}

/// What the request says about itself, for the proof and the certificate.
pub struct Facts<'a, H> {
    /// The request's method and any override ([`super::canonical::methods`]).
    pub methods: &'a [&'a str],
    pub scheme: Option<&'a str>,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub headers: &'a H,
    pub client_cert: Option<ClientCert<'a>>,
}

/// The replay guard a valid proof still has to pass: its store key (in the provider's
/// namespace) and how long to remember it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub key: String,
    pub ttl_seconds: u64,
}

/// The binding rules for one verified token under the stricter of its provider's and
/// its route's constraint; `Ok(Some(_))` when a proof was accepted and its `jti` must
/// now be claimed in the store.
pub fn check<H: Headers>(
    verifier: &Verifier,
    route_constraint: SenderConstraint,
    facts: &Facts<'_, H>,
    token: &str,
    presented: Presented,
    claims: &Claims,
    now: i64,
) -> Result<Option<Replay>, Deny> {
    let dpop_settings = verifier.dpop.as_ref();
    let provider = verifier.providers.get(claims.provider);
    let constraint = provider.map_or(route_constraint, |p| {
        p.sender_constraint.max(route_constraint)
    });
    let namespace = provider.map_or("", |p| p.namespace.as_str());
    let cnf = claims.payload.get("cnf");
    let member = |name: &str| -> Result<Option<&str>, Reason> {
        match cnf.and_then(|c| c.get(name)) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            // A binding the token names but in a form no client can match.
            Some(_) => Err(if name == "jkt" {
                Reason::DpopBindingMismatch
            } else {
                Reason::CertBindingMismatch
            }),
        }
    };
    let jkt = member("jkt")?;
    let x5t = member("x5t#S256")?;
    let mut replay = None;
    match (presented, dpop_settings) {
        (Presented::Dpop, Some(settings)) => {
            let checked = proof(settings, facts, token, now)?;
            if jkt != Some(checked.jkt.as_str()) {
                return Err(Reason::DpopBindingMismatch.into());
            }
            replay = Some(Replay {
                key: crate::revocation::scope::scoped(
                    namespace,
                    &format!("dpop:{}", replay_id(&checked)),
                ),
                ttl_seconds: u64::try_from(settings.max_age.saturating_add(settings.future_skew))
                    .unwrap_or(1)
                    .max(1),
            });
        }
        // The extractor only takes the `DPoP` scheme when proofs are configured.
        (Presented::Dpop, None) => return Err(Reason::DpopProofInvalid.into()),
        (Presented::Other, _) if jkt.is_some() => return Err(Reason::DpopRequired.into()),
        (Presented::Other, _) => {}
    }
    if let Some(x5t) = x5t.filter(|_| constraint > SenderConstraint::None) {
        let theirs = facts
            .client_cert
            .and_then(|c| c.thumbprint(facts.headers))
            .ok_or(Reason::CertBindingMismatch)?;
        if theirs != x5t {
            return Err(Reason::CertBindingMismatch.into());
        }
    }
    if constraint == SenderConstraint::Required && jkt.is_none() && x5t.is_none() {
        return Err(Reason::UnboundToken.into());
    }
    Ok(replay)
}

/// Exactly one `DPoP` header, checked against this request.
fn proof<H: Headers>(
    settings: &Settings,
    facts: &Facts<'_, H>,
    token: &str,
    now: i64,
) -> Result<dpop::Checked, Deny> {
    let mut values = facts.headers.values("dpop");
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Reason::DpopProofInvalid.into());
    };
    let value = std::str::from_utf8(value).map_err(|_| Reason::DpopProofInvalid)?;
    let ours = match (facts.scheme, facts.host) {
        (Some(scheme), Some(host)) => htu::of_request(scheme, host, facts.path),
        _ => None,
    };
    let want = dpop::Expected {
        methods: facts.methods,
        htu: ours.as_deref(),
        token,
        now,
    };
    dpop::check(value.trim(), settings, &want).map_err(|reason| match reason {
        Reason::UseDpopNonce => Deny {
            reason,
            scope: None,
            dpop_nonce: settings.nonces.as_ref().map(|n| n.issue(now)),
        },
        r => r.into(),
    })
}

/// The proof's identity for the replay guard: its key's thumbprint and its `jti`,
/// hashed, so that a client can only ever burn its own `jti`s and keys stay short.
fn replay_id(checked: &dpop::Checked) -> String {
    let mut h = Sha256::new();
    h.update(checked.jkt.as_bytes());
    h.update(b":");
    h.update(checked.jti.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    use super::*;
    use crate::config::Config;

    const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/keys");
    const DER: &[u8] = b"\x30\x03\x02\x01\x07";

    fn verifier(provider_constraint: &str) -> Verifier {
        let yaml = format!(
            "providers:\n  - name: p\n    algorithms: [ES256]\n    sender_constraint: {provider_constraint}\n    keys:\n      - public_key_file: {KEYS}/ec256-public.pem\n"
        );
        Verifier::from_config(&Config::parse("sender tests", &yaml).unwrap()).unwrap()
    }

    fn claims(cnf: Option<serde_json::Value>) -> Claims {
        let mut payload = serde_json::Map::new();
        if let Some(c) = cnf {
            payload.insert("cnf".into(), c);
        }
        Claims {
            provider: 0,
            jti: Some("j".into()),
            user: None,
            tenant: None,
            family: None,
            user_version: None,
            tenant_version: None,
            iat_ms: None,
            exp: i64::MAX,
            scoped: Default::default(),
            payload,
            payload_b64: String::new(),
        }
    }

    fn pem_url() -> String {
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            STANDARD.encode(DER)
        );
        pem.replace('\n', "%0A")
            .replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    }

    fn judge(
        provider: &str,
        route: SenderConstraint,
        cnf: Option<serde_json::Value>,
        cert: bool,
    ) -> Result<(), Reason> {
        let headers = http::HeaderMap::new();
        let pem = pem_url();
        let facts = Facts {
            methods: &["GET"],
            scheme: Some("https"),
            host: Some("h"),
            path: "/",
            headers: &headers,
            client_cert: cert.then_some(ClientCert::UrlPem(&pem)),
        };
        check(
            &verifier(provider),
            route,
            &facts,
            "t",
            Presented::Other,
            &claims(cnf),
            0,
        )
        .map(|replay| assert_eq!(replay, None, "no proof, nothing to claim"))
        .map_err(|d| d.reason)
    }

    #[test]
    fn each_constraint_against_each_kind_of_token() {
        use SenderConstraint::{None as N, Optional as O, Required as R};
        let right = URL_SAFE_NO_PAD.encode(Sha256::digest(DER));
        let wrong = URL_SAFE_NO_PAD.encode(Sha256::digest(b"another"));
        let ok = Ok(());
        let unbound_token = Err(Reason::UnboundToken);
        let dpop_required = Err(Reason::DpopRequired);
        let cert = Err(Reason::CertBindingMismatch);
        let jkt_mismatch = Err(Reason::DpopBindingMismatch);
        // (token's cnf, client certificate present, [none, optional, required])
        type Row = (Option<serde_json::Value>, bool, [Result<(), Reason>; 3]);
        let rows: Vec<Row> = vec![
            (None, true, [ok, ok, unbound_token]),
            (Some(json!({})), true, [ok, ok, unbound_token]),
            (
                Some(json!({"jkt": "abc"})),
                true,
                [dpop_required, dpop_required, dpop_required],
            ),
            (
                Some(json!({"jkt": 7})),
                true,
                [jkt_mismatch, jkt_mismatch, jkt_mismatch],
            ),
            (Some(json!({"x5t#S256": right})), true, [ok, ok, ok]),
            (Some(json!({"x5t#S256": right})), false, [ok, cert, cert]),
            (Some(json!({"x5t#S256": wrong})), true, [ok, cert, cert]),
            (Some(json!({"x5t#S256": ["x"]})), true, [cert, cert, cert]),
        ];
        for (cnf, with_cert, want) in rows {
            for (c, want) in [N, O, R].into_iter().zip(want) {
                let name = match c {
                    N => "none",
                    O => "optional",
                    R => "required",
                };
                // The constraint from the provider, and from the route.
                assert_eq!(
                    judge(name, N, cnf.clone(), with_cert),
                    want,
                    "provider {name}: {cnf:?}"
                );
                assert_eq!(
                    judge("none", c, cnf.clone(), with_cert),
                    want,
                    "route {name}: {cnf:?}"
                );
            }
        }
        // A route cannot lower its provider's constraint.
        assert_eq!(judge("required", N, None, true), unbound_token);
    }

    #[test]
    fn the_dpop_scheme_without_proof_settings_is_refused() {
        let headers = http::HeaderMap::new();
        let facts = Facts {
            methods: &["GET"],
            scheme: None,
            host: None,
            path: "/",
            headers: &headers,
            client_cert: None,
        };
        let got = check(
            &verifier("none"),
            SenderConstraint::None,
            &facts,
            "t",
            Presented::Dpop,
            &claims(Some(json!({"jkt": "abc"}))),
            0,
        );
        assert_eq!(got.map_err(|d| d.reason), Err(Reason::DpopProofInvalid));
    }
}
