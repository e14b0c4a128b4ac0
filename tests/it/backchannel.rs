//! OIDC Back-Channel Logout (issue 16) with a real OpenID provider (npm `oidc-provider`,
//! its backchannelLogout feature on, tests/oidc/provider.mjs): the provider ends a
//! session and sends its logout token to one tokengate replica; an access token of that
//! session, allowed a moment before, is then refused by another replica on the same
//! Redis.
//!
//! The attack class: a logout token that is not the provider's own fresh one for us —
//! replayed (to the same or another replica), unsigned, signed by another key, for
//! another client, carrying a nonce, without the event, naming neither sub nor sid, an
//! access token posted as a logout token — gets 400 and revokes nothing.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::support::oidc::OidcProvider;
use crate::support::redis::{store_yaml, RedisServer};
use crate::support::*;

/// tokengate trusting the provider (discovery), taking its logout tokens for our client.
fn yaml(issuer: &str, redis: &str) -> String {
    format!(
        r#"
listen: {{grpc: "127.0.0.1:0", http: "127.0.0.1:0", admin: "127.0.0.1:0"}}
providers:
  - name: oidc
    issuer: {issuer}
    audiences: [{AUDIENCE}]
    algorithms: [RS256]
    keys:
      - oidc_discovery: true
    backchannel_logout:
      client_id: {client}
revocation:
{store}
log:
  level: warn
"#,
        client = OidcProvider::CLIENT_ID,
        store = store_yaml(redis, ""),
    )
}

struct Pair {
    idp: OidcProvider,
    a: TestServer,
    b: TestServer,
    _redis: RedisServer,
}

impl Pair {
    async fn start() -> Pair {
        let redis = RedisServer::start_async().await;
        let idp = OidcProvider::start(&[("a", "rsa-private.pem")], "a").await;
        let y = yaml(&idp.issuer, &redis.url());
        let a = TestServer::start(&y).await;
        let b = TestServer::start(&y).await;
        Pair {
            idp,
            a,
            b,
            _redis: redis,
        }
    }

    fn endpoint(&self) -> String {
        self.a.http_url("/v1/oidc/backchannel-logout")
    }

    async fn allowed_on_b(&self, token: &str) -> Answer {
        check_token(&mut self.b.grpc().await, token).await
    }

    /// Waits until replica B refuses `token` with `reason`.
    async fn wait_refused_on_b(&self, token: &str, reason: &str) {
        wait_for(
            &format!("replica B to refuse the token ({reason})"),
            PROPAGATION,
            || async { self.allowed_on_b(token).await.reason().as_deref() == Some(reason) },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idp_session_logout_ends_that_sessions_tokens_on_every_replica() {
    let p = Pair::start().await;
    let ended = p.idp.token_with_sid("session-1").await;
    let other = p.idp.token_with_sid("session-2").await;
    assert!(
        p.allowed_on_b(&ended).await.allowed(),
        "allowed before the logout"
    );

    let sent = p
        .idp
        .backchannel_logout(&p.endpoint(), OidcProvider::CLIENT_ID, Some("session-1"))
        .await;
    assert_eq!(
        sent["ok"], true,
        "the provider's logout token was taken: {sent}"
    );
    p.wait_refused_on_b(&ended, "session_revoked").await;
    assert!(
        p.allowed_on_b(&other).await.allowed(),
        "another session of the same user stays allowed"
    );
    assert_eq!(
        p.a.metric("tokengate_revocations_total{kind=\"session\",source=\"backchannel\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_token_with_only_sub_ends_every_token_of_that_user() {
    let p = Pair::start().await;
    let before = p.idp.token_with_sid("session-9").await;
    assert!(p.allowed_on_b(&before).await.allowed());
    let sent = p
        .idp
        .backchannel_logout(&p.endpoint(), OidcProvider::CLIENT_ID, None)
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    p.wait_refused_on_b(&before, "user_revoked").await;
}

/// Posts `logout_token=token` to replica `server`; the status and body.
async fn post(server: &TestServer, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(server.http_url("/v1/oidc/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Claims of a logout token from `issuer` for our client, ending session `sid`.
fn logout_claims(issuer: &str, sid: &str) -> Value {
    let now = tokengate::jwt::now_unix();
    json!({
        "iss": issuer, "aud": OidcProvider::CLIENT_ID, "iat": now, "exp": now + 120,
        "jti": uuid(), "sub": OidcProvider::CLIENT_ID, "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
    })
}

/// A logout token signed with the provider's own key (the fixture it publishes as "a").
fn signed(claims: &Value) -> String {
    sign(
        json!({"alg": "RS256", "kid": "a", "typ": "logout+jwt"}),
        claims.clone(),
        Algorithm::RS256,
        &signing_key("rsa").1,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_replayed_and_malformed_logout_tokens_get_400_and_revoke_nothing() {
    let p = Pair::start().await;
    let victim = p.idp.token_with_sid("s-victim").await;
    let iss = p.idp.issuer.clone();
    let base = logout_claims(&iss, "s-victim");
    let with = |extra: Value| with_claims(base.clone(), extra);

    // Control: the harness's own signing is right — this exact token is accepted once,
    // on a session nobody uses.
    let control = signed(&with_claims(logout_claims(&iss, "s-control"), json!({})));
    assert_eq!(
        post(&p.a, &control).await.0,
        200,
        "a well-formed logout token"
    );
    let (status, body) = post(&p.b, &control).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "replayed to another replica: {body}"
    );
    assert_eq!(
        post(&p.a, &control).await.0,
        400,
        "replayed to the same replica"
    );

    let unsigned = {
        let t = signed(&base);
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[2] = "";
        parts.join(".")
    };
    let alg_none = {
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "logout+jwt"})),
            b64(&base)
        )
    };
    let other_key = sign(
        json!({"alg": "RS256", "kid": "a", "typ": "logout+jwt"}),
        base.clone(),
        Algorithm::RS256,
        &signing_key("rsa2").1,
    );
    let access_token = p.idp.token_with_sid("s-victim").await;
    let cases: Vec<(&str, String)> = vec![
        ("unsigned", unsigned),
        ("alg none", alg_none),
        ("signed by another key", other_key),
        (
            "another client's",
            signed(&with(json!({"aud": "someone-else"}))),
        ),
        (
            "another issuer's",
            signed(&with(json!({"iss": "https://evil.example"}))),
        ),
        ("carrying a nonce", signed(&with(json!({"nonce": "n"})))),
        ("without events", signed(&with(json!({"events": null})))),
        (
            "with another event",
            signed(&with(json!({"events": {"https://example.com/other": {}}}))),
        ),
        (
            "event not an object",
            signed(&with(
                json!({"events": {"http://schemas.openid.net/event/backchannel-logout": true}}),
            )),
        ),
        (
            "neither sub nor sid",
            signed(&with(json!({"sub": null, "sid": null}))),
        ),
        ("without jti", signed(&with(json!({"jti": null})))),
        (
            "expired",
            signed(&with(json!({"exp": tokengate::jwt::now_unix() - 3600}))),
        ),
        (
            "issued long ago",
            signed(&with(json!({"iat": tokengate::jwt::now_unix() - 3600}))),
        ),
        (
            "issued in the future",
            signed(&with(json!({"iat": tokengate::jwt::now_unix() + 3600}))),
        ),
        (
            "typed as an access token",
            sign(
                json!({"alg": "RS256", "kid": "a", "typ": "at+jwt"}),
                base.clone(),
                Algorithm::RS256,
                &signing_key("rsa").1,
            ),
        ),
        ("an access token of the provider", access_token),
        ("not a JWT", "not-a-jwt".into()),
    ];
    for (what, token) in &cases {
        let (status, body) = post(&p.a, token).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(body["error"], "invalid_request", "{what}: {body}");
        assert!(
            !body.to_string().contains(token.as_str()),
            "{what}: the token is echoed"
        );
    }
    // the form itself
    let c = reqwest::Client::new();
    let url = p.endpoint();
    let twice = c
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={control}&logout_token={control}"))
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400, "logout_token twice");
    let json_body = c
        .post(&url)
        .json(&json!({"logout_token": control}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400, "not a form");
    let empty = c.post(&url).form(&[("other", "x")]).send().await.unwrap();
    assert_eq!(empty.status(), 400, "no logout_token");

    // nothing of the above revoked the victim's session, on either replica
    assert!(p.allowed_on_b(&victim).await.allowed(), "replica B");
    assert!(
        check_token(&mut p.a.grpc().await, &victim).await.allowed(),
        "replica A"
    );
    assert_eq!(
        p.a.metric("tokengate_revocations_total{kind=\"session\",source=\"backchannel\"}")
            .await,
        1.0,
        "only the control was written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_without_backchannel_logout_gets_400_and_a_store_outage_503() {
    let redis = RedisServer::start_async().await;
    let idp = OidcProvider::start(&[("a", "rsa-private.pem")], "a").await;
    let y = yaml(&idp.issuer, &redis.url()).replace(
        &format!(
            "    backchannel_logout:\n      client_id: {}\n",
            OidcProvider::CLIENT_ID
        ),
        "",
    );
    let server = TestServer::start(&y).await;
    let t = signed(&logout_claims(&idp.issuer, "s"));
    let (status, body) = post(&server, &t).await;
    assert_eq!(status, 400, "{body}");

    // with it enabled and the store gone: 503, and the provider's retry is not a replay
    let mut redis2 = RedisServer::start_async().await;
    let server = TestServer::start(&yaml(&idp.issuer, &redis2.url())).await;
    redis2.kill();
    let (status, _) = post(&server, &t).await;
    assert_eq!(
        status, 503,
        "the store cannot take it: the provider retries"
    );
    redis2.restart();
    wait_for("the store back", Duration::from_secs(20), || async {
        post(&server, &t).await.0 == 200
    })
    .await;
}
