//! The Shared Signals receiver, `POST /v1/ssf/events` (docs/spec.md §4): Security Event
//! Tokens signed by the npm `jose` library (tests/ssf/sign.mjs), an implementation
//! independent of tokengate's, posted over real HTTP; their effect read back over gRPC,
//! and across two replicas sharing a real Redis. Each RFC 8935 error code is reached,
//! and each refusal is shown to have revoked nothing.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::procs::{repo, tool};
use crate::support::*;

const TX: &str = "https://transmitter.test";
/// A second transmitter for the same provider, with the opt-in events and mappings off.
const TX_PLAIN: &str = "https://plain-transmitter.test";
const RECEIVER: &str = "https://tokengate.test/ssf";
const MEDIA: &str = "application/secevent+jwt";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";

/// The installed `jose` package; panics with the install command when missing.
fn jose() -> PathBuf {
    let dir = repo().join(".tools/ssf/node_modules/jose");
    assert!(
        dir.join("package.json").is_file(),
        "npm jose is not installed in .tools/ssf: run scripts/install-test-deps.sh"
    );
    dir
}

/// Runs tests/ssf/sign.mjs in `mode` on `requests`.
fn node(mode: &str, requests: &Value) -> Value {
    let mut cmd = Command::new(tool("node", "nodejs (Node 20)"));
    cmd.arg(repo().join("tests/ssf/sign.mjs"))
        .arg("--module")
        .arg(jose())
        .arg(mode);
    let out = crate::support::procs::pipe_through(
        cmd,
        requests.to_string().as_bytes(),
        &format!("sign.mjs {mode}"),
    );
    serde_json::from_slice(&out).expect("sign.mjs prints JSON")
}

/// The transmitter's keys as a JWKS file: `tx-ec` (ES256) and `tx-rsa` (RS256).
fn jwks_file() -> PathBuf {
    let jwks = node(
        "jwks",
        &json!([
            {"key": key_path("ec256-private.pem"), "alg": "ES256", "kid": "tx-ec"},
            {"key": key_path("rsa-private.pem"), "alg": "RS256", "kid": "tx-rsa"},
        ]),
    );
    let path = std::env::temp_dir().join(format!("tokengate-ssf-{}.jwks.json", uuid()));
    std::fs::write(&path, jwks.to_string()).expect("jwks file");
    path
}

/// The test configuration with two transmitters bound to the provider `test`.
fn config(store: &str) -> String {
    let jwks = jwks_file().display().to_string();
    format!(
        "{base}ssf:
  max_age_seconds: 120
  transmitters:
    - issuer: {TX}
      audience: {RECEIVER}
      provider: test
      algorithms: [ES256, RS256]
      keys:
        - jwks_file: {jwks}
      subjects:
        opaque: user
        email: user
      events:
        credential_change: true
        assurance_level_change: true
    - issuer: {TX_PLAIN}
      audience: {RECEIVER}
      provider: test
      algorithms: [ES256]
      keys:
        - jwks_file: {jwks}
",
        base = config_yaml(store)
    )
}

/// A SET to sign: the key's fixture file, `alg`, header and payload (or the payload's
/// exact text).
struct Set {
    key: &'static str,
    alg: &'static str,
    header: Value,
    payload: Value,
    payload_raw: Option<String>,
}

impl Set {
    /// A `session-revoked` SET of [`TX`] for `alice` (iss_sub), SSF 1.0 style.
    fn new(event: &str, sub_id: Value) -> Set {
        Set {
            key: "ec256-private.pem",
            alg: "ES256",
            header: json!({"kid": "tx-ec", "typ": "secevent+jwt"}),
            payload: json!({
                "iss": TX, "aud": RECEIVER, "iat": tokengate::jwt::now_unix(), "jti": uuid(),
                "sub_id": sub_id,
                "events": {format!("{CAEP}{event}"): {"event_timestamp": tokengate::jwt::now_unix()}},
            }),
            payload_raw: None,
        }
    }

    fn with(mut self, extra: Value) -> Set {
        self.payload = with_claims(self.payload, extra);
        self
    }
}

fn iss_sub(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": ISSUER, "sub": sub})
}

/// Signs every SET with jose, in one node process.
fn sign_all<'a>(sets: impl IntoIterator<Item = &'a Set>) -> Vec<String> {
    let requests: Vec<Value> = sets
        .into_iter()
        .map(|s| {
            json!({"key": key_path(s.key), "alg": s.alg, "header": s.header,
                   "payload": s.payload, "payload_raw": s.payload_raw})
        })
        .collect();
    let out = node("sign", &Value::Array(requests));
    out.as_array()
        .expect("an array of SETs")
        .iter()
        .map(|s| s.as_str().expect("a compact JWS").to_string())
        .collect()
}

fn sign_one(set: Set) -> String {
    sign_all(&[set]).remove(0)
}

/// Posts `body` as `content_type`; the status and the JSON body (Null when empty).
async fn post(server: &TestServer, content_type: &str, body: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(server.http_url("/v1/ssf/events"))
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("SSF push");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn push(server: &TestServer, set: &str) -> (u16, Value) {
    post(server, MEDIA, set).await
}

/// The RFC 8935 error code of a 400 answer.
fn err(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["err"].as_str().unwrap_or(""))
}

async fn start() -> TestServer {
    TestServer::start(&config(MEMORY_STORE)).await
}

/// A token of `user`, checked allowed before anything happens.
async fn allowed_token(server: &TestServer, user: &str) -> String {
    let token = token("rsa", user, json!({}));
    let mut grpc = server.grpc().await;
    assert!(
        check_token(&mut grpc, &token).await.allowed(),
        "fresh token allowed"
    );
    token
}

async fn reason(server: &TestServer, token: &str) -> Option<String> {
    let mut grpc = server.grpc().await;
    let answer = check_token(&mut grpc, token).await;
    if answer.allowed() {
        None
    } else {
        Some(answer.reason().unwrap_or_default())
    }
}

/// A SET for a given user.
type MakeSet = Box<dyn Fn(&str) -> Set>;

#[tokio::test]
async fn each_applied_event_and_subject_format_cuts_the_user_off() {
    let server = start().await;
    let cases: Vec<(&str, MakeSet)> = vec![
        (
            "session-revoked, iss_sub",
            Box::new(|u| Set::new("session-revoked", iss_sub(u))),
        ),
        (
            "session-revoked, CAEP draft subject inside the event",
            Box::new(|u| {
                Set::new("session-revoked", Value::Null).with(json!({
                    "sub_id": null,
                    "events": {format!("{CAEP}session-revoked"): {"subject": iss_sub(u)}},
                }))
            }),
        ),
        (
            "session-revoked, opaque mapped to the user",
            Box::new(|u| Set::new("session-revoked", json!({"format": "opaque", "id": u}))),
        ),
        (
            "session-revoked, email where the provider's sub is the email",
            Box::new(|u| Set::new("session-revoked", json!({"format": "email", "email": u}))),
        ),
        (
            "credential-change naming a session: the user (only session-revoked ends a session)",
            Box::new(|u| {
                Set::new(
                    "credential-change",
                    json!({"format": "complex", "user": iss_sub(u),
                           "session": {"format": "opaque", "id": "sess-1"}}),
                )
            }),
        ),
        (
            "credential-change",
            Box::new(|u| Set::new("credential-change", iss_sub(u))),
        ),
        (
            "assurance-level-change",
            Box::new(|u| Set::new("assurance-level-change", iss_sub(u))),
        ),
        (
            "RS256 key of the same JWKS",
            Box::new(|u| {
                let mut s = Set::new("session-revoked", iss_sub(u));
                s.key = "rsa-private.pem";
                s.alg = "RS256";
                s.header = json!({"kid": "tx-rsa", "typ": "application/secevent+jwt"});
                s
            }),
        ),
    ];
    let users: Vec<String> = cases
        .iter()
        .map(|_| format!("{}@example.test", uuid()))
        .collect();
    let sets = sign_all(
        &cases
            .iter()
            .zip(&users)
            .map(|((_, make), u)| make(u))
            .collect::<Vec<_>>(),
    );
    for (((name, _), user), set) in cases.iter().zip(&users).zip(&sets) {
        let token = allowed_token(&server, user).await;
        let bystander = allowed_token(&server, &uuid()).await;
        let answer = push(&server, set).await;
        assert_eq!((answer.0, &answer.1), (202, &Value::Null), "{name}");
        assert_eq!(
            reason(&server, &token).await.as_deref(),
            Some("user_revoked"),
            "{name}"
        );
        assert_eq!(
            reason(&server, &bystander).await,
            None,
            "{name}: only that user"
        );
    }
    assert_eq!(
        server
            .metric(r#"tokengate_revocations_total{kind="user",source="ssf"}"#)
            .await,
        cases.len() as f64
    );
}

/// A session-revoked event whose subject names a session ends that session (the `sid`
/// of the provider's tokens) on every replica's answer, and only it: the user's other
/// sessions stay.
#[tokio::test]
async fn session_revoked_for_a_session_ends_that_session_only() {
    let server = start().await;
    let user = uuid();
    let (ended, kept, solo, solo_kept) = (uuid(), uuid(), uuid(), uuid());
    let in_session = |sid: &str| token("rsa", &user, json!({"sid": sid}));
    let tokens: Vec<String> = [&ended, &kept, &solo, &solo_kept]
        .iter()
        .map(|sid| in_session(sid))
        .collect();
    for t in &tokens {
        assert_eq!(reason(&server, t).await, None);
    }
    let sets = sign_all(&[
        Set::new(
            "session-revoked",
            json!({"format": "complex", "user": iss_sub(&user),
                   "session": {"format": "opaque", "id": ended}}),
        ),
        // a session alone, as SSF allows
        Set::new(
            "session-revoked",
            json!({"format": "complex", "session": {"format": "opaque", "id": solo}}),
        ),
        // a session with a user of another issuer: refused whole
        Set::new(
            "session-revoked",
            json!({"format": "complex",
                   "user": {"format": "iss_sub", "iss": "https://other.test", "sub": user},
                   "session": {"format": "opaque", "id": kept}}),
        ),
    ]);
    assert_eq!(push(&server, &sets[0]).await.0, 202);
    assert_eq!(push(&server, &sets[1]).await.0, 202);
    assert_eq!(err(&push(&server, &sets[2]).await), (400, "access_denied"));
    assert_eq!(
        reason(&server, &tokens[0]).await.as_deref(),
        Some("session_revoked")
    );
    assert_eq!(
        reason(&server, &tokens[1]).await,
        None,
        "the user's other session"
    );
    assert_eq!(
        reason(&server, &tokens[2]).await.as_deref(),
        Some("session_revoked")
    );
    assert_eq!(reason(&server, &tokens[3]).await, None);
    assert_eq!(
        server
            .metric(r#"tokengate_revocations_total{kind="session",source="ssf"}"#)
            .await,
        2.0
    );
}

#[tokio::test]
async fn events_that_do_not_apply_are_accepted_and_revoke_nothing() {
    let server = start().await;
    let user = uuid();
    let token = allowed_token(&server, &user).await;
    let plain = |event: &str| {
        let mut s = Set::new(event, iss_sub(&user));
        s.payload["iss"] = json!(TX_PLAIN);
        s
    };
    let sets = sign_all(&[
        // not applicable: tokengate holds no claims to change (docs/spec.md §4)
        Set::new("token-claims-change", iss_sub(&user)),
        // opt-in events of a transmitter that did not opt in
        plain("credential-change"),
        plain("assurance-level-change"),
        // an event type nobody knows
        Set::new("session-revoked", iss_sub(&user)).with(json!({
            "events": {"https://example.test/event/other": {}},
        })),
    ]);
    for set in &sets {
        assert_eq!(push(&server, set).await.0, 202);
    }
    assert_eq!(reason(&server, &token).await, None);
    assert_eq!(
        server
            .metric(r#"tokengate_revocations_total{kind="user",source="ssf"}"#)
            .await,
        0.0
    );
}

#[tokio::test]
async fn each_rfc8935_error_code_and_nothing_revoked() {
    let server = start().await;
    let user = uuid();
    let token = allowed_token(&server, &user).await;
    let ok = || Set::new("session-revoked", iss_sub(&user));
    let plain = || ok().with(json!({"iss": TX_PLAIN}));
    let with_header = |header: Value| {
        let mut s = ok();
        s.header = header;
        s
    };
    let cases: Vec<(&str, Set, &str)> = vec![
        ("unknown issuer", ok().with(json!({"iss": "https://stranger.test"})), "invalid_issuer"),
        ("no issuer", ok().with(json!({"iss": null})), "invalid_issuer"),
        ("the provider's issuer", ok().with(json!({"iss": ISSUER})), "invalid_issuer"),
        ("another audience", ok().with(json!({"aud": "https://other.test"})), "invalid_audience"),
        ("no audience", ok().with(json!({"aud": null})), "invalid_audience"),
        (
            "signed by another key under the transmitter's kid",
            {
                let mut s = with_header(json!({"kid": "tx-rsa", "typ": "secevent+jwt"}));
                s.key = "rsa2-private.pem";
                s.alg = "RS256";
                s
            },
            "authentication_failed",
        ),
        (
            "a kid the transmitter does not have",
            with_header(json!({"kid": "stranger", "typ": "secevent+jwt"})),
            "invalid_key",
        ),
        (
            "an algorithm the transmitter may not use",
            {
                let mut s = with_header(json!({"kid": "tx-ec", "typ": "secevent+jwt"}));
                s.key = "ec384-private.pem";
                s.alg = "ES384";
                s
            },
            "invalid_key",
        ),
        ("no typ", with_header(json!({"kid": "tx-ec"})), "invalid_request"),
        ("typ JWT", with_header(json!({"kid": "tx-ec", "typ": "JWT"})), "invalid_request"),
        ("no jti", ok().with(json!({"jti": null})), "invalid_request"),
        ("no iat", ok().with(json!({"iat": null})), "invalid_request"),
        (
            "iat older than max_age_seconds",
            ok().with(json!({"iat": tokengate::jwt::now_unix() - 600})),
            "invalid_request",
        ),
        (
            "iat in the future",
            ok().with(json!({"iat": tokengate::jwt::now_unix() + 600})),
            "invalid_request",
        ),
        (
            "expired exp",
            ok().with(json!({"exp": tokengate::jwt::now_unix() - 10})),
            "invalid_request",
        ),
        ("no events", ok().with(json!({"events": null})), "invalid_request"),
        ("empty events", ok().with(json!({"events": {}})), "invalid_request"),
        ("no subject", ok().with(json!({"sub_id": null})), "invalid_request"),
        (
            "sub_id and the event's subject disagree",
            ok().with(json!({"events": {format!("{CAEP}session-revoked"): {"subject": iss_sub("mallory")}}})),
            "invalid_request",
        ),
        (
            "an unsupported subject format",
            ok().with(json!({"sub_id": {"format": "phone_number", "phone_number": "+1555"}})),
            "invalid_request",
        ),
        (
            "an iss_sub subject of another issuer",
            ok().with(json!({"sub_id": {"format": "iss_sub", "iss": "https://other.test", "sub": user}})),
            "access_denied",
        ),
        (
            "one applicable event of two with a subject of another issuer",
            ok().with(json!({"sub_id": null, "events": {
                format!("{CAEP}session-revoked"): {"subject": iss_sub(&user)},
                format!("{CAEP}credential-change"): {"subject":
                    {"format": "iss_sub", "iss": "https://other.test", "sub": user}},
            }})),
            "access_denied",
        ),
        (
            "email, from a transmitter that does not map it",
            plain().with(json!({"sub_id": {"format": "email", "email": user}})),
            "invalid_request",
        ),
        (
            "opaque, from a transmitter that does not map it",
            plain().with(json!({"sub_id": {"format": "opaque", "id": user}})),
            "invalid_request",
        ),
        (
            "sub_id twice: a parser taking the last would see another user",
            {
                let mut s = ok();
                let text = s.payload.to_string();
                let sub = iss_sub(&user).to_string();
                s.payload_raw = Some(text.replacen(
                    &format!("\"sub_id\":{sub}"),
                    &format!("\"sub_id\":{sub},\"sub_id\":{}", iss_sub("victim")),
                    1,
                ));
                assert_ne!(s.payload_raw.as_deref(), Some(text.as_str()));
                s
            },
            "invalid_request",
        ),
    ];
    let sets = sign_all(cases.iter().map(|(_, s, _)| s));
    for ((name, _, code), set) in cases.iter().zip(&sets) {
        let answer = push(&server, set).await;
        assert_eq!(err(&answer), (400, *code), "{name}: {:?}", answer.1);
        assert!(answer.1["description"].is_string(), "{name}");
    }
    // Not signed, not a JWS, not our media type: invalid_request.
    let good = sign_one(ok());
    let unsigned = format!("{}.", good.rsplit_once('.').unwrap().0);
    for (name, content_type, body) in [
        ("garbage", MEDIA, "not a jwt"),
        ("empty", MEDIA, ""),
        ("unsigned", MEDIA, unsigned.as_str()),
        (
            "alg none",
            MEDIA,
            &format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"secevent+jwt"}"#),
                good.split('.').nth(1).unwrap()
            ),
        ),
        ("as JSON", "application/json", good.as_str()),
        ("as plain JWT", "application/jwt", good.as_str()),
        ("over ssf.max_bytes", MEDIA, &"a".repeat(20_000)),
    ] {
        let answer = post(&server, content_type, body).await;
        let code = if name == "alg none" {
            "invalid_key"
        } else {
            "invalid_request"
        };
        assert_eq!(err(&answer), (400, code), "{name}: {:?}", answer.1);
    }
    assert_eq!(
        reason(&server, &token).await,
        None,
        "no refused SET revoked anything"
    );
}

/// A transmitter reaches the users of its own provider only: the same user name at
/// another issuer keeps its tokens, whatever the subject format says.
#[tokio::test]
async fn a_transmitter_revokes_only_in_its_providers_namespace() {
    use crate::support::issuers::{other_token, two_issuers, OTHER_ISSUER};
    let server = TestServer::start(&two_issuers(&config(MEMORY_STORE), None)).await;
    let user = uuid();
    let ours = allowed_token(&server, &user).await;
    let theirs = other_token(&user, json!({}));
    assert_eq!(reason(&server, &theirs).await, None);
    let sets = sign_all(&[
        Set::new(
            "session-revoked",
            json!({"format": "iss_sub", "iss": OTHER_ISSUER, "sub": user}),
        ),
        Set::new("session-revoked", json!({"format": "opaque", "id": user})),
    ]);
    assert_eq!(err(&push(&server, &sets[0]).await), (400, "access_denied"));
    assert_eq!(reason(&server, &ours).await, None);
    assert_eq!(push(&server, &sets[1]).await.0, 202);
    assert_eq!(
        reason(&server, &ours).await.as_deref(),
        Some("user_revoked")
    );
    assert_eq!(
        reason(&server, &theirs).await,
        None,
        "the other issuer's twin"
    );
}

#[tokio::test]
async fn a_replayed_set_is_refused_and_a_new_jti_is_not() {
    let server = start().await;
    let user = uuid();
    let sets = sign_all(&[
        Set::new("session-revoked", iss_sub(&user)),
        Set::new("session-revoked", iss_sub(&user)),
    ]);
    assert_eq!(push(&server, &sets[0]).await.0, 202);
    let revoked = server
        .metric(r#"tokengate_revocations_total{kind="user",source="ssf"}"#)
        .await;
    // A token issued after the SET: a replay would cut it off too.
    let later = {
        wait_for("the next second", Duration::from_secs(3), || {
            std::future::ready(
                tokengate::jwt::now_unix() > decode_part(&sets[0], 1)["iat"].as_i64().unwrap() + 1,
            )
        })
        .await;
        allowed_token(&server, &user).await
    };
    let replay = push(&server, &sets[0]).await;
    assert_eq!(err(&replay), (400, "invalid_request"), "{:?}", replay.1);
    assert_eq!(
        reason(&server, &later).await,
        None,
        "the replay revoked nothing"
    );
    assert_eq!(
        server
            .metric(r#"tokengate_revocations_total{kind="user",source="ssf"}"#)
            .await,
        revoked
    );
    // The same jti from another transmitter is another SET: one transmitter cannot use
    // up another's jtis.
    let mut other = Set::new("session-revoked", iss_sub(&uuid()));
    other.payload["iss"] = json!(TX_PLAIN);
    other.payload["jti"] = decode_part(&sets[0], 1)["jti"].clone();
    assert_eq!(push(&server, &sign_one(other)).await.0, 202);
    // Same subject, new jti: a new event, applied.
    assert_eq!(push(&server, &sets[1]).await.0, 202);
    assert_eq!(
        reason(&server, &later).await.as_deref(),
        Some("user_revoked")
    );
}

#[tokio::test]
async fn an_access_token_is_no_set_and_a_set_is_no_access_token() {
    let server = start().await;
    let user = uuid();
    let token = allowed_token(&server, &user).await;
    // The provider's own access token posted as a SET: its iss is no transmitter.
    assert_eq!(err(&push(&server, &token).await), (400, "invalid_issuer"));
    // A SET presented as a bearer token: the provider's issuer and typ refuse it.
    let set = sign_one(Set::new("session-revoked", iss_sub(&user)));
    assert!(
        reason(&server, &set).await.is_some(),
        "a SET never authorizes a request"
    );
}

#[tokio::test]
async fn the_receiver_does_not_exist_without_transmitters() {
    let server = TestServer::start(&config_yaml(MEMORY_STORE)).await;
    let set = sign_one(Set::new("session-revoked", iss_sub("alice")));
    assert_eq!(push(&server, &set).await.0, 404);
}

#[tokio::test]
async fn a_set_to_one_replica_revokes_on_another_and_replays_are_refused_on_both() {
    let redis = crate::support::redis::RedisServer::start_async().await;
    let store = format!(
        "{}  cache:\n    ttl_seconds: 600\n",
        crate::support::redis::store_yaml(&redis.url(), "")
    );
    let yaml = config(&store);
    let a = TestServer::start(&yaml).await;
    let b = TestServer::start(&yaml).await;
    let user = uuid();
    let token = allowed_token(&b, &user).await;
    let set = sign_one(Set::new("session-revoked", iss_sub(&user)));
    assert_eq!(push(&a, &set).await.0, 202);
    let mut cb = b.grpc().await;
    wait_for("replica B to deny the user's token", PROPAGATION, || {
        let (mut cb, token) = (cb.clone(), token.clone());
        async move { check_token(&mut cb, &token).await.reason().as_deref() == Some("user_revoked") }
    })
    .await;
    assert!(!check_token(&mut cb, &token).await.allowed());
    let replay = push(&b, &set).await;
    assert_eq!(
        err(&replay),
        (400, "invalid_request"),
        "the store remembers the jti for B"
    );
}

/// The same SET delivered to two replicas at the same instant (a transmitter's retry
/// racing its first delivery, or an attacker's copy): exactly one applies it.
#[tokio::test(flavor = "multi_thread")]
async fn one_set_raced_to_two_replicas_is_applied_once() {
    let redis = crate::support::redis::RedisServer::start_async().await;
    let yaml = config(&crate::support::redis::store_yaml(&redis.url(), ""));
    let (a, b) = (
        TestServer::start(&yaml).await,
        TestServer::start(&yaml).await,
    );
    let sets = sign_all(
        &(0..5)
            .map(|_| Set::new("session-revoked", iss_sub(&uuid())))
            .collect::<Vec<_>>(),
    );
    for set in &sets {
        let (on_a, on_b) = tokio::join!(push(&a, set), push(&b, set));
        let mut statuses = [on_a.0, on_b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [202, 400], "{on_a:?} {on_b:?}");
    }
    let applied = a
        .metric(r#"tokengate_revocations_total{kind="user",source="ssf"}"#)
        .await
        + b.metric(r#"tokengate_revocations_total{kind="user",source="ssf"}"#)
            .await;
    assert_eq!(applied, sets.len() as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_outage_answers_503_and_the_retry_is_applied() {
    let mut redis = crate::support::redis::RedisServer::start_async().await;
    let yaml = config(&crate::support::redis::store_yaml(&redis.url(), ""));
    let server = TestServer::start(&yaml).await;
    let user = uuid();
    let token = allowed_token(&server, &user).await;
    let set = sign_one(Set::new("session-revoked", iss_sub(&user)));
    redis.kill_now();
    let down = push(&server, &set).await;
    assert_eq!(err(&down), (503, "temporarily_unavailable"), "{:?}", down.1);
    redis.restart_now();
    wait_for("the retried SET to be applied", PROPAGATION, || {
        let (server, set) = (&server, set.clone());
        async move { push(server, &set).await.0 == 202 }
    })
    .await;
    assert_eq!(
        reason(&server, &token).await.as_deref(),
        Some("user_revoked")
    );
}

/// A transmitter's JWKS endpoint the test controls: what it publishes, or 503.
#[derive(Default)]
struct Published {
    jwks: std::sync::Mutex<Option<Value>>,
}

async fn start_jwks_endpoint() -> (std::sync::Arc<Published>, String) {
    use axum::response::IntoResponse;
    let published = std::sync::Arc::new(Published::default());
    let state = published.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = state.jwks.lock().unwrap().clone();
            async move {
                match jwks {
                    Some(j) => (axum::http::StatusCode::OK, j.to_string()).into_response(),
                    None => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (published, url)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jwks_uri_transmitter_is_waited_for_and_its_rotation_followed() {
    let (published, url) = start_jwks_endpoint().await;
    let yaml = format!(
        "{base}ssf:
  transmitters:
    - issuer: {TX}
      audience: {RECEIVER}
      provider: test
      algorithms: [ES256, RS256]
      keys:
        - jwks_uri: {url}
      jwks: {{min_refresh_seconds: 1, unknown_kid_min_interval_seconds: 1}}
",
        base = config_yaml(MEMORY_STORE)
    );
    let server = TestServer::start(&yaml).await;
    let user = uuid();
    let token = allowed_token(&server, &user).await;
    let first = sign_one(Set::new("session-revoked", iss_sub(&user)));
    // Keys never loaded: not the SET's fault, an outage the transmitter retries.
    let waiting = push(&server, &first).await;
    assert_eq!(
        err(&waiting),
        (503, "temporarily_unavailable"),
        "{:?}",
        waiting.1
    );
    assert_eq!(reason(&server, &token).await, None);

    *published.jwks.lock().unwrap() = Some(node(
        "jwks",
        &json!([{"key": key_path("ec256-private.pem"), "alg": "ES256", "kid": "tx-ec"}]),
    ));
    wait_for(
        "the SET to be taken once the keys load",
        PROPAGATION,
        || {
            let (server, first) = (&server, first.clone());
            async move { push(server, &first).await.0 == 202 }
        },
    )
    .await;
    assert_eq!(
        reason(&server, &token).await.as_deref(),
        Some("user_revoked")
    );

    // The transmitter rotates to an RSA key and signs with it at once: the unknown kid
    // fetches the JWKS again, and the SET is taken on its first delivery.
    *published.jwks.lock().unwrap() = Some(node(
        "jwks",
        &json!([
            {"key": key_path("ec256-private.pem"), "alg": "ES256", "kid": "tx-ec"},
            {"key": key_path("rsa2-private.pem"), "alg": "RS256", "kid": "tx-new"},
        ]),
    ));
    let other = uuid();
    let other_token = allowed_token(&server, &other).await;
    let mut rotated = Set::new("session-revoked", iss_sub(&other));
    rotated.key = "rsa2-private.pem";
    rotated.alg = "RS256";
    rotated.header = json!({"kid": "tx-new", "typ": "secevent+jwt"});
    let rotated = sign_one(rotated);
    let answer = push(&server, &rotated).await;
    assert_eq!(answer.0, 202, "{:?}", answer.1);
    assert_eq!(
        reason(&server, &other_token).await.as_deref(),
        Some("user_revoked")
    );
}
