//! The revocation behaviour suite (SPEC §2 step 4, §4), written once and instantiated for
//! every store by `revocation_suite!`, the way limitador holds all its storages to one
//! behaviour. Each scenario gets a fresh store from its fixture and a fresh tokengate.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokengate::revocation::Target;

/// A store for one scenario: the YAML under `revocation:` and whatever keeps the store
/// alive (a server process for network stores).
pub struct StoreFixture {
    pub yaml: String,
    pub _guard: Option<Box<dyn std::any::Any + Send>>,
}

pub async fn memory_store() -> StoreFixture {
    StoreFixture {
        yaml: MEMORY_STORE.to_string(),
        _guard: None,
    }
}

pub async fn redis_store() -> StoreFixture {
    let server = tokio::task::spawn_blocking(support::redis::RedisServer::start)
        .await
        .expect("redis starts");
    StoreFixture {
        yaml: support::redis::store_yaml(&server.url(), ""),
        _guard: Some(Box::new(server)),
    }
}

pub async fn redis_cluster_store() -> StoreFixture {
    let cluster = tokio::task::spawn_blocking(support::redis::RedisCluster::start)
        .await
        .expect("redis cluster starts");
    StoreFixture {
        yaml: support::redis::store_yaml(&cluster.url(), ""),
        _guard: Some(Box::new(cluster)),
    }
}

async fn start(fixture: &StoreFixture) -> TestServer {
    TestServer::start(&config_yaml(&fixture.yaml)).await
}

/// Waits until the wall clock has passed `ms` (a cut-off) by at least a whole second, so
/// that a token with an integer `iat` minted now is issued after it.
async fn after_cutoff(ms: i64) {
    wait_for(
        "the next second after the cut-off",
        Duration::from_secs(3),
        || async move { tokengate::jwt::now_unix() * 1000 > ms },
    )
    .await;
}

macro_rules! revocation_suite {
    ($name:ident, $fixture:path) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn logout_revokes_exactly_the_token_presented() {
                scenarios::logout_revokes_exactly_the_token_presented($fixture().await).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn logout_needs_a_token_that_passes_the_decision() {
                scenarios::logout_needs_a_token_that_passes_the_decision($fixture().await).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn logout_all_revokes_older_tokens_and_later_ones_pass() {
                scenarios::logout_all_revokes_older_tokens_and_later_ones_pass($fixture().await)
                    .await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn version_claim_older_than_the_user_version_is_revoked() {
                scenarios::version_claim_older_than_the_user_version_is_revoked($fixture().await)
                    .await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn tenant_revocation_covers_every_user_of_the_tenant() {
                scenarios::tenant_revocation_covers_every_user_of_the_tenant($fixture().await).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn family_revocation_covers_the_family_only() {
                scenarios::family_revocation_covers_the_family_only($fixture().await).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn token_without_iat_is_revoked_once_its_user_has_a_cutoff() {
                scenarios::token_without_iat_is_revoked_once_its_user_has_a_cutoff($fixture().await)
                    .await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn tokens_without_jti_follow_require_jti() {
                scenarios::tokens_without_jti_follow_require_jti($fixture().await).await
            }
        }
    };
}

revocation_suite!(memory, memory_store);
revocation_suite!(redis, redis_store);
revocation_suite!(redis_cluster, redis_cluster_store);

mod scenarios {
    use super::*;

    pub async fn logout_revokes_exactly_the_token_presented(store: StoreFixture) {
        let s = start(&store).await;
        let mut c = s.grpc().await;
        let t = token("ec256", "alice", json!({}));
        let sibling = token("ec256", "alice", json!({}));
        assert!(check_token(&mut c, &t).await.allowed());

        let (status, body) = logout(&s, "/v1/auth/logout", &t).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"message": "Successfully logged out", "success": true})
        );

        let a = check_token(&mut c, &t).await;
        assert_eq!(a.reason().as_deref(), Some("jti_revoked"));
        assert_eq!(a.http_status, Some(401));
        // the same user's other session is untouched
        assert!(check_token(&mut c, &sibling).await.allowed());
    }

    pub async fn logout_needs_a_token_that_passes_the_decision(store: StoreFixture) {
        let s = start(&store).await;
        let resp = reqwest::Client::new()
            .post(s.http_url("/v1/auth/logout"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer realm=\"tokengate\""
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["reason"], "missing_token");

        let expired = token(
            "ec256",
            "alice",
            json!({"exp": tokengate::jwt::now_unix() - 60}),
        );
        let (status, body) = logout(&s, "/v1/auth/logout", &expired).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some("expired")));

        let t = token("ec256", "alice", json!({}));
        assert_eq!(logout(&s, "/v1/auth/logout", &t).await.0, 200);
        let (status, body) = logout(&s, "/v1/auth/logout", &t).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some("jti_revoked"))
        );
    }

    pub async fn logout_all_revokes_older_tokens_and_later_ones_pass(store: StoreFixture) {
        let s = start(&store).await;
        let mut c = s.grpc().await;
        let t1 = token("ec256", "alice", json!({}));
        let t2 = token("rsa", "alice", json!({}));
        let bob = token("ec256", "bob", json!({}));

        let (status, body) = logout(&s, "/v1/auth/logout-all", &t1).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["success"], true);
        let cutoff = body["revoked_before"].as_i64().expect("revoked_before");

        for t in [&t1, &t2] {
            assert_eq!(
                check_token(&mut c, t).await.reason().as_deref(),
                Some("user_revoked")
            );
        }
        assert!(
            check_token(&mut c, &bob).await.allowed(),
            "other users are untouched"
        );

        after_cutoff(cutoff).await;
        let fresh = token("ec256", "alice", json!({"iat": tokengate::jwt::now_unix()}));
        assert!(
            check_token(&mut c, &fresh).await.allowed(),
            "a token issued after the cut-off is valid"
        );
    }

    pub async fn version_claim_older_than_the_user_version_is_revoked(store: StoreFixture) {
        let s = start(&store).await;
        let mut c = s.grpc().await;
        let t = token("ec256", "carol", json!({"ver": 0}));
        let (status, body) = logout(&s, "/v1/auth/logout-all", &t).await;
        assert_eq!(status, 200);
        assert_eq!(body["version"], 1);
        after_cutoff(body["revoked_before"].as_i64().unwrap()).await;

        // issued after the cut-off but stamped with the old version: revoked by version
        let stale = token("ec256", "carol", json!({"ver": 0}));
        assert_eq!(
            check_token(&mut c, &stale).await.reason().as_deref(),
            Some("user_revoked")
        );
        let current = token("ec256", "carol", json!({"ver": 1}));
        assert!(check_token(&mut c, &current).await.allowed());
    }

    pub async fn tenant_revocation_covers_every_user_of_the_tenant(store: StoreFixture) {
        let s = start(&store).await;
        let mut c = s.grpc().await;
        let a = token("ec256", "alice", json!({"tid": "acme"}));
        let b = token("ec256", "bob", json!({"tid": "acme"}));
        let other = token("ec256", "erin", json!({"tid": "globex"}));
        let written = s
            .engine
            .revoke(Target::Tenant("acme"), "breach", Some("ops"), "test")
            .await
            .expect("store accepts");
        let tokengate::revocation::Written::Subject(subject) = written else {
            panic!("tenant revocation writes a subject")
        };
        for t in [&a, &b] {
            let ans = check_token(&mut c, t).await;
            assert_eq!(ans.reason().as_deref(), Some("tenant_revoked"));
            assert_eq!(ans.http_status, Some(401));
        }
        assert!(check_token(&mut c, &other).await.allowed());
        after_cutoff(subject.before_ms).await;
        let fresh = token(
            "ec256",
            "alice",
            json!({"tid": "acme", "iat": tokengate::jwt::now_unix()}),
        );
        assert!(check_token(&mut c, &fresh).await.allowed());
    }

    pub async fn family_revocation_covers_the_family_only(store: StoreFixture) {
        let s = start(&store).await;
        let mut c = s.grpc().await;
        let f1 = token("ec256", "alice", json!({"fam": "f1"}));
        let f1_again = token("ec256", "alice", json!({"fam": "f1"}));
        let f2 = token("ec256", "alice", json!({"fam": "f2"}));
        s.engine
            .revoke(Target::Family("f1"), "refresh reuse", None, "test")
            .await
            .expect("store accepts");
        for t in [&f1, &f1_again] {
            assert_eq!(
                check_token(&mut c, t).await.reason().as_deref(),
                Some("family_revoked")
            );
        }
        assert!(check_token(&mut c, &f2).await.allowed());
    }

    pub async fn token_without_iat_is_revoked_once_its_user_has_a_cutoff(store: StoreFixture) {
        let s = start(&store).await;
        let mut c = s.grpc().await;
        let no_iat = token("ec256", "dave", json!({"iat": null}));
        assert!(check_token(&mut c, &no_iat).await.allowed());
        s.engine
            .revoke(Target::User("dave"), "logout-all", Some("dave"), "test")
            .await
            .expect("store accepts");
        assert_eq!(
            check_token(&mut c, &no_iat).await.reason().as_deref(),
            Some("user_revoked")
        );
    }

    pub async fn tokens_without_jti_follow_require_jti(store: StoreFixture) {
        let s = start(&store).await;
        let mut c = s.grpc().await;
        let no_jti = token("ec256", "frank", json!({"jti": null}));
        assert_eq!(
            check_token(&mut c, &no_jti).await.reason().as_deref(),
            Some("missing_claim")
        );
        drop(c);
        s.stop().await;

        let yaml =
            config_yaml(&store.yaml).replace("routes:", "tokens:\n  require_jti: false\nroutes:");
        let s = TestServer::start(&yaml).await;
        let mut c = s.grpc().await;
        assert!(check_token(&mut c, &no_jti).await.allowed());
        // a token without jti cannot be logged out one by one …
        let (status, body) = logout(&s, "/v1/auth/logout", &no_jti).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (401, Some("missing_claim"))
        );
        // … but logout-all still ends it
        assert_eq!(logout(&s, "/v1/auth/logout-all", &no_jti).await.0, 200);
        assert_eq!(
            check_token(&mut c, &no_jti).await.reason().as_deref(),
            Some("user_revoked")
        );
    }
}
