//! The revocation behaviour suite (docs/spec.md §2 step 4, §4), written once and instantiated for
//! every store by `revocation_suite!`, the way limitador holds all its storages to one
//! behaviour. Each scenario gets a fresh store from its fixture and a fresh tokengate.
//! `shared_store_suite!` adds what only a store shared by replicas can show (events
//! between replicas, the Redis layout before issuer namespaces), for Redis, Cluster and Sentinel.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::issuers::{two_issuers, with_admin, Issuer, Raw};
use support::*;
use tokengate::revocation::Target;

/// A store for one scenario: the YAML under `revocation:` and whatever keeps the store
/// alive (a server process for network stores).
pub struct StoreFixture {
    pub yaml: String,
    /// Raw access to a Redis store, bypassing tokengate.
    pub raw: Option<Raw>,
    pub _guard: Option<Box<dyn std::any::Any + Send>>,
}

pub async fn memory_store() -> StoreFixture {
    StoreFixture {
        yaml: MEMORY_STORE.to_string(),
        raw: None,
        _guard: None,
    }
}

pub async fn redis_store() -> StoreFixture {
    let server = support::redis::RedisServer::start_async().await;
    StoreFixture {
        yaml: support::redis::store_yaml(&server.url(), ""),
        raw: Some(Raw::Single(server.port)),
        _guard: Some(Box::new(server)),
    }
}

pub async fn redis_cluster_store() -> StoreFixture {
    let cluster = tokio::task::spawn_blocking(support::redis::RedisCluster::start)
        .await
        .expect("redis cluster starts");
    StoreFixture {
        yaml: support::redis::store_yaml(&cluster.url(), ""),
        raw: Some(Raw::Cluster(cluster.nodes.iter().map(|n| n.port).collect())),
        _guard: Some(Box::new(cluster)),
    }
}

/// A primary, a replica and three Sentinels; tokengate finds the primary through
/// `redis+sentinel://`. Nothing fails over here (tests/it/sentinel.rs does that), so raw
/// access goes to the primary.
pub async fn redis_sentinel_store() -> StoreFixture {
    let deployment = support::sentinel::RedisSentinel::start_async().await;
    StoreFixture {
        yaml: support::redis::store_yaml(&deployment.url(), ""),
        raw: Some(Raw::Single(deployment.primary().port)),
        _guard: Some(Box::new(deployment)),
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

            #[tokio::test(flavor = "multi_thread")]
            async fn no_surface_lets_one_issuer_revoke_anothers_twin() {
                issuers::no_surface_lets_one_issuer_revoke_anothers_twin($fixture().await).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn a_shared_subject_namespace_shares_every_revocation() {
                issuers::a_shared_subject_namespace_shares_every_revocation($fixture().await).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn the_admin_api_needs_the_provider_when_namespaces_differ() {
                issuers::the_admin_api_needs_the_provider_when_namespaces_differ($fixture().await)
                    .await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn ids_shaped_like_scoped_ones_stay_in_their_namespace() {
                issuers::ids_shaped_like_scoped_ones_stay_in_their_namespace($fixture().await).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn admin_expiry_beyond_ten_years_is_refused() {
                issuers::admin_expiry_beyond_ten_years_is_refused($fixture().await).await
            }
        }
    };
}

revocation_suite!(memory, memory_store);
revocation_suite!(redis, redis_store);
revocation_suite!(redis_cluster, redis_cluster_store);
revocation_suite!(redis_sentinel, redis_sentinel_store);

macro_rules! shared_store_suite {
    ($name:ident, $fixture:path) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread")]
            async fn another_replica_denies_only_the_revoking_issuers_token() {
                shared::another_replica_denies_only_the_revoking_issuers_token($fixture().await)
                    .await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn legacy_revocations_are_enforced_then_migrated_for_every_namespace() {
                shared::legacy_revocations_are_enforced_then_migrated_for_every_namespace(
                    $fixture().await,
                )
                .await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn an_event_of_an_older_replica_makes_the_cache_ask_the_store_again() {
                shared::an_event_of_an_older_replica_makes_the_cache_ask_the_store_again(
                    $fixture().await,
                )
                .await
            }
        }
    };
}

shared_store_suite!(redis_shared, redis_store);
shared_store_suite!(redis_cluster_shared, redis_cluster_store);
shared_store_suite!(redis_sentinel_shared, redis_sentinel_store);

/// The surfaces that revoke, each with the kind it writes. Table rows of the issuer
/// class tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    Logout,
    LogoutAll,
    OAuthAccess,
    OAuthRefresh,
    AdminJti,
    AdminUser,
    AdminTenant,
    AdminFamily,
}

impl Surface {
    const ALL: [Surface; 8] = [
        Surface::Logout,
        Surface::LogoutAll,
        Surface::OAuthAccess,
        Surface::OAuthRefresh,
        Surface::AdminJti,
        Surface::AdminUser,
        Surface::AdminTenant,
        Surface::AdminFamily,
    ];

    /// What the revoked token itself and a sibling (same sub, tenant and family, its
    /// own jti) of the same namespace are denied for; `None`: still allowed.
    fn expected(self) -> (Option<&'static str>, Option<&'static str>) {
        match self {
            Surface::Logout | Surface::OAuthAccess | Surface::AdminJti => {
                (Some("jti_revoked"), None)
            }
            // the refresh token's own jti goes first, then its family
            Surface::OAuthRefresh => (Some("jti_revoked"), Some("family_revoked")),
            Surface::LogoutAll | Surface::AdminUser => (Some("user_revoked"), Some("user_revoked")),
            Surface::AdminTenant => (Some("tenant_revoked"), Some("tenant_revoked")),
            Surface::AdminFamily => (Some("family_revoked"), Some("family_revoked")),
        }
    }
}

/// One row's identifiers, unique to it and carried alike by both issuers' twins.
struct Ids {
    sub: String,
    jti: String,
    tid: String,
    fam: String,
}

impl Ids {
    fn new() -> Self {
        let u = uuid();
        Ids {
            sub: format!("sub-{u}"),
            jti: format!("jti-{u}"),
            tid: format!("tid-{u}"),
            fam: format!("fam-{u}"),
        }
    }

    /// The token of `issuer` with these ids; `sibling`: the same but its own jti.
    fn token(&self, issuer: Issuer, sibling: bool) -> String {
        let jti = if sibling {
            format!("{}-sibling", self.jti)
        } else {
            self.jti.clone()
        };
        issuer.token(
            &self.sub,
            json!({"jti": jti, "tid": self.tid, "fam": self.fam}),
        )
    }
}

fn admin_token() -> String {
    token("ec256", "ops-admin", json!({"scope": "tokengate:admin"}))
}

async fn admin_post(s: &TestServer, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(s.admin_url("/v1/admin/revocations"))
        .bearer_auth(admin_token())
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn oauth_revoke(s: &TestServer, token: &str, hint: &str) -> u16 {
    reqwest::Client::new()
        .post(s.http_url("/v1/oauth/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&token_type_hint={hint}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Revokes through `surface` as `issuer` would (its token, or the admin API naming it).
async fn revoke_through(s: &TestServer, surface: Surface, issuer: Issuer, ids: &Ids) {
    let own = ids.token(issuer, false);
    let exp = decode_part(&own, 1)["exp"].as_i64().unwrap();
    let provider = issuer.name();
    let status = match surface {
        Surface::Logout => logout(s, "/v1/auth/logout", &own).await.0,
        Surface::LogoutAll => logout(s, "/v1/auth/logout-all", &own).await.0,
        Surface::OAuthAccess => oauth_revoke(s, &own, "access_token").await,
        Surface::OAuthRefresh => oauth_revoke(s, &own, "refresh_token").await,
        Surface::AdminJti => {
            let body = json!({"jti": ids.jti, "expires_at": exp, "provider": provider});
            admin_post(s, body).await.0
        }
        Surface::AdminUser => {
            admin_post(s, json!({"user": ids.sub, "provider": provider}))
                .await
                .0
        }
        Surface::AdminTenant => {
            admin_post(s, json!({"tenant": ids.tid, "provider": provider}))
                .await
                .0
        }
        Surface::AdminFamily => {
            admin_post(s, json!({"family": ids.fam, "provider": provider}))
                .await
                .0
        }
    };
    assert_eq!(status, 200, "{surface:?} as {issuer:?}");
}

/// Every surface × both directions: `issuer` revokes, and its twin of the other issuer
/// is denied as `issuer`'s own token when `shared`, else untouched.
async fn issuer_table(s: &TestServer, shared: bool) {
    let mut c = s.grpc().await;
    for surface in Surface::ALL {
        for issuer in Issuer::BOTH {
            let ids = Ids::new();
            let probes = [
                (issuer, false),
                (issuer, true),
                (issuer.twin(), false),
                (issuer.twin(), true),
            ];
            // Each probe's token is made once, before the revocation: a token minted
            // after a logout-all cut-off is rightly valid, and a fresh one minted in the
            // next second would be.
            let tokens: Vec<String> = probes
                .iter()
                .map(|(who, sibling)| ids.token(*who, *sibling))
                .collect();
            // warm every cache first: the revocation must reach cached answers too
            for ((who, _), t) in probes.iter().zip(&tokens) {
                let a = check_token(&mut c, t).await;
                assert!(a.allowed(), "{surface:?}: {who:?} before: {a:?}");
            }
            revoke_through(s, surface, issuer, &ids).await;
            let (own, sibling) = surface.expected();
            for ((who, is_sibling), t) in probes.into_iter().zip(&tokens) {
                let same_namespace = who == issuer || shared;
                let want = match (same_namespace, is_sibling) {
                    (false, _) => None,
                    (true, false) => own,
                    (true, true) => sibling,
                };
                let a = check_token(&mut c, t).await;
                assert_eq!(
                    a.reason().as_deref(),
                    want,
                    "{surface:?} by {issuer:?}, probe {who:?} sibling={is_sibling} shared={shared}"
                );
            }
        }
    }
}

mod issuers {
    use super::*;

    fn yaml(store: &StoreFixture, namespaces: Option<(&str, &str)>) -> String {
        with_admin(
            &two_issuers(&config_yaml(&store.yaml), namespaces),
            &["test"],
        )
    }

    pub async fn no_surface_lets_one_issuer_revoke_anothers_twin(store: StoreFixture) {
        let s = TestServer::start(&yaml(&store, None)).await;
        issuer_table(&s, false).await;
    }

    pub async fn a_shared_subject_namespace_shares_every_revocation(store: StoreFixture) {
        let s = TestServer::start(&yaml(&store, Some(("idp", "idp")))).await;
        issuer_table(&s, true).await;
    }

    pub async fn the_admin_api_needs_the_provider_when_namespaces_differ(store: StoreFixture) {
        let s = TestServer::start(&yaml(&store, None)).await;
        for body in [
            json!({"user": "alice"}),
            json!({"user": "alice", "provider": null}),
        ] {
            let (status, out) = admin_post(&s, body).await;
            assert_eq!(
                (status, out["field"].as_str()),
                (400, Some("provider")),
                "{out}"
            );
        }
        // a namespace is not a provider name, and unknown names are refused
        for provider in ["nope", "Test", "test:x"] {
            let (status, out) =
                admin_post(&s, json!({"user": "alice", "provider": provider})).await;
            assert_eq!(
                (status, out["field"].as_str()),
                (400, Some("provider")),
                "{out}"
            );
        }
        let (status, out) = admin_post(&s, json!({"user": "alice", "provider": "other"})).await;
        assert_eq!(status, 200, "{out}");
        assert_eq!(
            (out["namespace"].as_str(), out["id"].as_str()),
            (Some("other"), Some("alice"))
        );
        let get = |path: &str| {
            reqwest::Client::new()
                .get(s.admin_url(path))
                .bearer_auth(admin_token())
                .send()
        };
        let resp = get("/v1/admin/revocations/user/alice?provider=other")
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            (body["namespace"].as_str(), body["revoked"].as_bool()),
            (Some("other"), Some(true))
        );
        let resp = get("/v1/admin/revocations/user/alice?provider=test")
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "the other namespace holds nothing");
        for bad in [
            "",
            "?provider=test&provider=other",
            "?namespace=other",
            "?provider=nope",
        ] {
            let resp = get(&format!("/v1/admin/revocations/user/alice{bad}"))
                .await
                .unwrap();
            assert_eq!(resp.status(), 400, "{bad}");
        }

        // one namespace for both: the provider may be left out
        drop(s);
        let s = TestServer::start(&yaml(&store, Some(("idp", "idp")))).await;
        let (status, out) = admin_post(&s, json!({"user": "bob"})).await;
        assert_eq!(
            (status, out["namespace"].as_str()),
            (200, Some("idp")),
            "{out}"
        );
    }

    /// An issuer's token whose ids are crafted to look like another namespace's scoped
    /// ids (`other:victim`, `other@x`, a trailing `:`) cannot reach that namespace: the
    /// first `:` ends the namespace, and namespaces contain none.
    pub async fn ids_shaped_like_scoped_ones_stay_in_their_namespace(store: StoreFixture) {
        let s = TestServer::start(&yaml(&store, None)).await;
        let mut c = s.grpc().await;
        let u = uuid();
        let victim = format!("victim-{u}");
        let victims = [
            Issuer::Other.token(&victim, json!({"tid": victim, "fam": victim})),
            Issuer::Test.token(&victim, json!({"tid": victim, "fam": victim})),
        ];
        let crafted = [
            format!("other:{victim}"),
            format!("test:{victim}"),
            format!("{victim}:"),
            format!(":{victim}"),
            format!("other@{victim}"),
        ];
        for id in &crafted {
            let attacker = Issuer::Test.token(id, json!({"tid": id, "fam": id, "jti": id}));
            assert_eq!(
                logout(&s, "/v1/auth/logout-all", &attacker).await.0,
                200,
                "{id}"
            );
            assert_eq!(
                oauth_revoke(&s, &attacker, "refresh_token").await,
                200,
                "{id}"
            );
            for body in [json!({"tenant": id}), json!({"user": id})] {
                let mut body = body;
                body["provider"] = json!("test");
                assert_eq!(admin_post(&s, body).await.0, 200, "{id}");
            }
        }
        for t in &victims {
            let a = check_token(&mut c, t).await;
            assert!(a.allowed(), "crafted ids reached a victim: {a:?}");
        }
    }

    /// The same rule on every store: both keep anything up to ten years ahead and
    /// refuse beyond, including values no store could hold.
    pub async fn admin_expiry_beyond_ten_years_is_refused(store: StoreFixture) {
        let s = TestServer::start(&yaml(&store, None)).await;
        let now = tokengate::jwt::now_unix();
        let ten_years = 10 * 366 * 86_400;
        let cases = [
            (json!(now + ten_years - 60), 200),
            (json!(now + ten_years + 60), 400),
            (json!(i64::MAX), 400),
            (json!(u64::MAX), 400),
            (json!(1e300), 400),
            (json!(now as f64 + 0.5), 400),
            (json!(i64::MIN), 400),
        ];
        for (expires_at, want) in cases {
            let jti = uuid();
            let body = json!({"jti": jti, "expires_at": expires_at, "provider": "test"});
            let (status, out) = admin_post(&s, body).await;
            assert_eq!(status, want, "{expires_at}: {out}");
            if want == 400 {
                assert_eq!(out["field"], "expires_at", "{out}");
                continue;
            }
            let resp = reqwest::Client::new()
                .get(s.admin_url(&format!("/v1/admin/revocations/jti/{jti}?provider=test")))
                .bearer_auth(admin_token())
                .send()
                .await
                .unwrap();
            let body: Value = resp.json().await.unwrap();
            let left = body["state"]["expires_in_seconds"].as_i64().unwrap_or(0);
            assert!(
                (ten_years - 120..=ten_years).contains(&left),
                "kept for its whole lifetime: {body}"
            );
        }
    }
}

mod shared {
    use super::*;

    pub async fn another_replica_denies_only_the_revoking_issuers_token(store: StoreFixture) {
        // A long cache TTL: only the event can make B notice, so its ids must be scoped.
        let yaml = two_issuers(
            &config_yaml(&format!("{}  cache:\n    ttl_seconds: 600\n", store.yaml)),
            None,
        );
        let a = TestServer::start(&yaml).await;
        let b = TestServer::start(&yaml).await;
        let mut cb = b.grpc().await;
        for surface in ["/v1/auth/logout", "/v1/auth/logout-all"] {
            let ids = Ids::new();
            let (test, other) = (
                ids.token(Issuer::Test, false),
                ids.token(Issuer::Other, false),
            );
            assert!(check_token(&mut cb, &test).await.allowed());
            assert!(check_token(&mut cb, &other).await.allowed());
            assert_eq!(logout(&a, surface, &test).await.0, 200);
            wait_for(
                "replica B to deny the revoked token",
                Duration::from_secs(3),
                || {
                    let (mut cb, test) = (cb.clone(), test.clone());
                    async move { !check_token(&mut cb, &test).await.allowed() }
                },
            )
            .await;
            assert!(
                check_token(&mut cb, &other).await.allowed(),
                "{surface}: the other issuer's twin stays allowed on B"
            );
        }
    }

    /// What the previous release wrote for a revoked jti, user, tenant and family.
    async fn write_legacy(raw: &Raw, ids: &Ids, user_version: u64, before_ms: i64) {
        let record = r#"{"reason":"old","at":1,"actor":"ops"}"#;
        for (kind, id) in [("jti", &ids.jti), ("family", &ids.fam)] {
            let key = format!("tokengate:{kind}:{id}");
            raw.cmd(::redis::cmd("SET").arg(&key).arg(record).arg("EX").arg(600))
                .await;
        }
        for (kind, id) in [("user", &ids.sub), ("tenant", &ids.tid)] {
            let key = format!("tokengate:{kind}:{id}");
            raw.cmd(
                ::redis::cmd("HSET")
                    .arg(&key)
                    .arg("ver")
                    .arg(user_version)
                    .arg("before")
                    .arg(before_ms),
            )
            .await;
        }
    }

    /// Every way `ids` can revoke: one token per kind carrying only that identifier,
    /// all issued at `iat` (before the legacy cut-offs).
    fn probes(issuer: Issuer, ids: &Ids, iat: i64) -> Vec<(String, &'static str)> {
        let fresh = |extra: Value| issuer.token(&format!("nobody-{}", uuid()), extra);
        vec![
            (fresh(json!({"jti": ids.jti, "iat": iat})), "jti_revoked"),
            (issuer.token(&ids.sub, json!({"iat": iat})), "user_revoked"),
            (fresh(json!({"tid": ids.tid, "iat": iat})), "tenant_revoked"),
            (fresh(json!({"fam": ids.fam, "iat": iat})), "family_revoked"),
        ]
    }

    async fn assert_all_denied(s: &TestServer, ids: &Ids, iat: i64, when: &str) {
        let mut c = s.grpc().await;
        for issuer in Issuer::BOTH {
            for (t, reason) in probes(issuer, ids, iat) {
                let a = check_token(&mut c, &t).await;
                assert_eq!(a.reason().as_deref(), Some(reason), "{when}: {issuer:?}");
            }
        }
        let unrelated = token("ec256", &format!("u-{}", uuid()), json!({"iat": iat}));
        assert!(check_token(&mut c, &unrelated).await.allowed(), "{when}");
    }

    fn migrate_cli(dir: &std::path::Path, yaml: &str, extra: &[&str]) -> Value {
        let file = dir.join("tokengate.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out = std::process::Command::new(procs::tokengate_bin())
            .arg("migrate")
            .arg("--config")
            .arg(&file)
            .args(extra)
            .output()
            .expect("tokengate runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "migrate failed: {stderr}");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("JSON out: {stderr}"))
    }

    pub async fn legacy_revocations_are_enforced_then_migrated_for_every_namespace(
        store: StoreFixture,
    ) {
        let raw = store.raw.clone().expect("a Redis store");
        let ids = Ids::new();
        let issued = tokengate::jwt::now_unix() - 5;
        let old_cutoff = tokengate::revocation::now_ms();
        write_legacy(&raw, &ids, 3, old_cutoff).await;
        let yaml = two_issuers(&config_yaml(&store.yaml), None);

        // the new release reads the legacy keys: enforced for both issuers
        let s = TestServer::start(&yaml).await;
        assert_all_denied(&s, &ids, issued, "legacy_keys: read").await;
        // inspection merges the legacy entry too, in every namespace
        for ns in ["test", "other"] {
            let status = s
                .engine
                .status(
                    tokengate::revocation::Kind::User,
                    &format!("{ns}:{}", ids.sub),
                )
                .await
                .expect("store answers");
            assert_eq!(
                status,
                Some(tokengate::revocation::Status::Subject(
                    tokengate::revocation::Subject::new(3, old_cutoff)
                )),
                "{ns}"
            );
        }
        s.stop().await;
        // a revocation already in the new layout is merged with, not overwritten
        let newer_cutoff = old_cutoff + 5_000;
        raw.cmd(
            ::redis::cmd("HSET")
                .arg(format!("tokengate:user@test:{}", ids.sub))
                .arg("ver")
                .arg(1)
                .arg("before")
                .arg(newer_cutoff),
        )
        .await;

        let dir = support::redis::TempDir::new("migrate");
        let dry = migrate_cli(&dir.0, &yaml, &["--dry-run"]);
        assert_eq!(dry["dry_run"], true);
        assert_eq!(dry["written"], 8, "{dry}");
        let legacy_user = format!("tokengate:user:{}", ids.sub);
        let exists = |key: String| {
            let raw = raw.clone();
            async move { raw.get::<bool>(::redis::cmd("EXISTS").arg(key)).await }
        };
        assert!(
            exists(legacy_user.clone()).await,
            "a dry run changes nothing"
        );

        let done = migrate_cli(&dir.0, &yaml, &[]);
        assert_eq!(
            done["found"],
            json!({"jti": 1, "user": 1, "tenant": 1, "family": 1}),
            "{done}"
        );
        assert_eq!(
            (done["written"].as_u64(), done["deleted"].as_u64()),
            (Some(8), Some(4))
        );
        assert_eq!(done["created"], 7, "one user key existed already: {done}");
        assert_eq!(done["namespaces"], json!(["other", "test"]));
        for (kind, id) in [
            ("jti", &ids.jti),
            ("user", &ids.sub),
            ("tenant", &ids.tid),
            ("family", &ids.fam),
        ] {
            assert!(
                !exists(format!("tokengate:{kind}:{id}")).await,
                "{kind} legacy key deleted"
            );
            for ns in ["test", "other"] {
                assert!(
                    exists(format!("tokengate:{kind}@{ns}:{id}")).await,
                    "{kind}@{ns}"
                );
            }
        }
        for ns in ["test", "other"] {
            let ttl: i64 = raw
                .get(::redis::cmd("TTL").arg(format!("tokengate:jti@{ns}:{}", ids.jti)))
                .await;
            assert!(
                (1..=600).contains(&ttl),
                "the jti keeps its lifetime: {ttl}"
            );
            let family_ttl: i64 = raw
                .get(::redis::cmd("TTL").arg(format!("tokengate:family@{ns}:{}", ids.fam)))
                .await;
            assert!(
                (1..=600).contains(&family_ttl),
                "the family keeps its lifetime: {family_ttl}"
            );
            let (ver, before): (u64, i64) = raw
                .get(
                    ::redis::cmd("HMGET")
                        .arg(format!("tokengate:user@{ns}:{}", ids.sub))
                        .arg("ver")
                        .arg("before"),
                )
                .await;
            assert_eq!(ver, 3, "{ns}: the higher version wins");
            let want = if ns == "test" {
                newer_cutoff
            } else {
                old_cutoff
            };
            assert_eq!(before, want, "{ns}: the later cut-off wins");
        }
        let again = migrate_cli(&dir.0, &yaml, &[]);
        assert_eq!(
            (again["written"].as_u64(), again["deleted"].as_u64()),
            (Some(0), Some(0)),
            "idempotent: {again}"
        );

        // after the migration the legacy layout is no longer needed
        let off = config_yaml(&format!("{}  legacy_keys: off\n", store.yaml));
        let s = TestServer::start(&two_issuers(&off, None)).await;
        assert_all_denied(&s, &ids, issued, "legacy_keys: off after migrate").await;
    }

    pub async fn an_event_of_an_older_replica_makes_the_cache_ask_the_store_again(
        store: StoreFixture,
    ) {
        let raw = store.raw.clone().expect("a Redis store");
        let yaml = config_yaml(&format!("{}  cache:\n    ttl_seconds: 600\n", store.yaml));
        let s = TestServer::start(&yaml).await;
        let mut c = s.grpc().await;
        let sub = format!("old-{}", uuid());
        let t = token("ec256", &sub, json!({}));
        assert!(check_token(&mut c, &t).await.allowed());
        let calls = || {
            s.engine
                .store()
                .metrics()
                .store_calls(tokengate::metrics::StoreOp::Check)
        };
        let cached = calls();
        assert!(check_token(&mut c, &t).await.allowed());
        assert_eq!(calls(), cached, "the allow is cached");

        // an older replica's logout-all: its legacy key, then its event (no marker)
        let before = tokengate::revocation::now_ms();
        raw.cmd(
            ::redis::cmd("HSET")
                .arg(format!("tokengate:user:{sub}"))
                .arg("ver")
                .arg(1)
                .arg("before")
                .arg(before),
        )
        .await;
        let event = json!({"kind": "user", "id": sub, "ver": 1, "before": before}).to_string();
        raw.cmd(::redis::cmd("PUBLISH").arg("tokengate:events").arg(event))
            .await;
        wait_for("the cached allow to give way to the legacy revocation", Duration::from_secs(3), || {
            let (mut c, t) = (c.clone(), t.clone());
            async move { check_token(&mut c, &t).await.reason().as_deref() == Some("user_revoked") }
        })
        .await;
        assert!(calls() > cached, "the store was asked again");
    }
}

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
            .revoke(Target::Tenant("test:acme"), "breach", Some("ops"), "test")
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
            .revoke(Target::Family("test:f1"), "refresh reuse", None, "test")
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
            .revoke(
                Target::User("test:dave"),
                "logout-all",
                Some("dave"),
                "test",
            )
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
