//! Redis the way managed offerings run it: TLS only (`tls-port`, plaintext off), a
//! private CA, sometimes client certificates, and an ACL user that may touch nothing but
//! tokengate's key prefix and event channel. tokengate must work through all of it with
//! the minimal command set documented in docs/operations.md, refuse a CA that does not
//! vouch for the server (and say so), and the credentials it holds must not reach
//! anything outside its prefix.

use crate::support;

use rcgen::ExtendedKeyUsagePurpose;
use serde_json::{json, Value};
use support::certs::{Ca, Leaf};
use support::envoy::Scratch;
use support::outage::assert_store_unavailable;
use support::redis::{store_yaml_with, RedisServer};
use support::*;

/// The ACL line docs/operations.md documents, minus the password: every command
/// tokengate sends (directly or from its scripts, which Redis checks too), on keys under
/// `tg:` and the channel `tg:events` only.
const ACL: &[&str] = &[
    "tokengate",
    "on",
    ">s3cret-pw",
    "resetkeys",
    "~tg:*",
    "resetchannels",
    "&tg:*",
    "-@all",
    "+ping",
    "+evalsha",
    "+script|load",
    "+exists",
    "+hmget",
    "+get",
    "+ttl",
    "+hget",
    "+set",
    "+del",
    "+hincrby",
    "+hset",
    "+expire",
    "+publish",
    "+subscribe",
    "+unsubscribe",
    "+wait",
];

struct Pki {
    dir: Scratch,
    ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            dir: Scratch::new("redis-tls"),
            ca: Ca::new("redis test CA"),
        }
    }

    fn ca_file(&self) -> String {
        self.ca.write(&self.dir, "ca").display().to_string()
    }
}

/// A TLS-only Redis with the ACL user; `client_certs`: whether it requires them.
async fn tls_redis(pki: &Pki, client_certs: bool) -> RedisServer {
    let (crt, key) = pki.ca.sign(&Leaf::server(&[])).write(&pki.dir, "server");
    let ca = pki.ca.write(&pki.dir, "ca");
    let cli = pki
        .ca
        .sign(&Leaf::client_dns("redis-cli"))
        .write(&pki.dir, "cli");
    let mut extra = vec![
        "--tls-auth-clients",
        if client_certs { "yes" } else { "no" },
    ];
    extra.push("--user");
    extra.extend_from_slice(ACL);
    tokio::task::spawn_blocking(move || {
        RedisServer::start_tls((&crt, &key), &ca, Some((&cli.0, &cli.1)), &extra)
    })
    .await
    .expect("TLS redis starts")
}

fn yaml(pki: &Pki, port: u16, tls: &str, extra: &str) -> String {
    let pw = pki.dir.write("redis-password", "s3cret-pw");
    let url = format!("rediss://tokengate@localhost:{port}/0");
    let fields = format!("    password_file: {}\n    tls:\n{tls}", pw.display());
    config_yaml(&store_yaml_with(
        &url,
        &fields,
        &format!("  key_prefix: \"tg:\"\n{extra}"),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_an_acl_user_limited_to_the_prefix_carries_every_revocation() {
    let pki = Pki::new();
    let r = tls_redis(&pki, false).await;
    let tls = format!("      ca_file: {}\n", pki.ca_file());
    let y = yaml(&pki, r.port, &tls, "  cache:\n    ttl_seconds: 600\n");
    let a = TestServer::start(&y).await;
    let b = TestServer::start(&y).await;
    let (mut ca, mut cb) = (a.grpc().await, b.grpc().await);

    // A check reads every kind (the script names absent claims by the bare prefix,
    // which the user's `~tg:*` admits), and both kinds of write go through.
    let claims = json!({"tid": "acme", "fam": "f1"});
    let t = token("ec256", "alice", claims.clone());
    let u = token("ec256", "bob", claims.clone());
    assert!(check_token(&mut ca, &t).await.allowed());
    assert!(check_token(&mut cb, &t).await.allowed(), "cached on B");
    assert!(check_token(&mut ca, &token("ec256", "x", json!({})))
        .await
        .allowed());
    assert_eq!(logout(&a, "/v1/auth/logout", &t).await.0, 200);
    assert_eq!(logout(&a, "/v1/auth/logout-all", &u).await.0, 200);
    // The event on tg:events reaches B through the user's channel permission.
    wait_for("B to deny through the event", PROPAGATION, || {
        let (t, mut cb) = (t.clone(), cb.clone());
        async move { check_token(&mut cb, &t).await.reason().as_deref() == Some("jti_revoked") }
    })
    .await;
    assert_eq!(
        check_token(&mut cb, &u).await.reason().as_deref(),
        Some("user_revoked")
    );
    let keys = r.cli(&["--scan", "--pattern", "*"]);
    assert!(
        !keys.is_empty() && keys.lines().all(|k| k.starts_with("tg:")),
        "{keys}"
    );

    // What a stolen tokengate credential can reach: nothing outside tg:, no other
    // channel, no administration, not even by naming keys from inside a script.
    r.cli(&["set", "other:secret", "v"]);
    let sha = r.cli(&["script", "load", "return redis.call('GET', KEYS[1])"]);
    let as_tokengate = |args: &[&str]| {
        let mut all = vec![
            "--user",
            "tokengate",
            "--pass",
            "s3cret-pw",
            "--no-auth-warning",
        ];
        all.extend_from_slice(args);
        r.cli(&all)
    };
    assert_eq!(as_tokengate(&["ping"]).trim(), "PONG", "the user logs in");
    for attack in [
        vec!["get", "other:secret"],
        vec!["set", "other:x", "1"],
        vec!["del", "other:secret"],
        vec!["evalsha", sha.trim(), "1", "other:secret"],
        vec!["eval", "return redis.call('GET','other:secret')", "0"],
        vec!["keys", "*"],
        vec!["scan", "0"],
        vec!["flushall"],
        vec!["config", "get", "requirepass"],
        vec!["acl", "list"],
        vec!["subscribe", "other-channel"],
        vec!["publish", "other-channel", "x"],
        vec!["client", "list"],
        vec!["shutdown"],
    ] {
        let out = as_tokengate(&attack);
        assert!(out.starts_with("NOPERM"), "{attack:?} answered {out:?}");
    }
    assert_eq!(r.cli(&["get", "other:secret"]).trim(), "v");

    // A prefix outside the ACL's fails closed: checks answer 503, nothing is allowed.
    let wrong = y.replace("key_prefix: \"tg:\"", "key_prefix: \"app:\"");
    let s = TestServer::start(&wrong).await;
    let mut c = s.grpc().await;
    assert_store_unavailable(&check_token(&mut c, &token("ec256", "eve", json!({}))).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_that_does_not_vouch_for_redis_is_refused_and_named() {
    let pki = Pki::new();
    let r = tls_redis(&pki, false).await;

    // Files that cannot be a CA stop the start, naming the field.
    let not_pem = pki.dir.write("not-a-ca.pem", "hello");
    let key = pki.ca.sign(&Leaf::server(&[])).write(&pki.dir, "other").1;
    let missing = pki.dir.join("missing.pem");
    for (file, says) in [
        (not_pem, "holds no PEM certificate"),
        (key, "holds no PEM certificate"),
        (missing, "cannot read"),
    ] {
        let tls = format!("      ca_file: {}\n", file.display());
        let config = parse(&yaml(&pki, r.port, &tls, ""));
        let err = match tokengate::Server::bind(&config).await {
            Ok(_) => panic!("{} was accepted as a CA", file.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("redis.tls.ca_file") && err.contains(says),
            "{err}"
        );
    }

    // A real CA that did not sign Redis's certificate: the store never becomes ready,
    // readiness names the setting, and checks fail closed.
    let other = Scratch::new("other-ca");
    let wrong = Ca::new("some other CA").write(&other, "ca");
    let tls = format!("      ca_file: {}\n", wrong.display());
    let s = TestServer::start_unready(parse(&yaml(&pki, r.port, &tls, ""))).await;
    wait_for("readiness to name the CA", RECOVERY_WAIT, || async {
        let body: Value = reqwest::get(s.admin_url("/readyz"))
            .await
            .expect("readyz")
            .json()
            .await
            .unwrap_or(Value::Null);
        body["store"]
            .as_str()
            .is_some_and(|why| why.contains("not trusted by revocation.redis.tls.ca_file"))
    })
    .await;
    let mut c = s.grpc().await;
    assert_store_unavailable(&check_token(&mut c, &token("ec256", "eve", json!({}))).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_requires_client_certificates_gets_the_configured_one() {
    let pki = Pki::new();
    let r = tls_redis(&pki, true).await;
    let ca = pki.ca_file();

    // Without a certificate, or with one another CA signed: refused, fail closed.
    let stranger = Ca::new("stranger")
        .sign(&Leaf::client_dns("tokengate"))
        .write(&pki.dir, "stranger");
    for tls in [
        format!("      ca_file: {ca}\n"),
        format!(
            "      ca_file: {ca}\n      cert_file: {}\n      key_file: {}\n",
            stranger.0.display(),
            stranger.1.display()
        ),
    ] {
        let s = TestServer::start_unready(parse(&yaml(&pki, r.port, &tls, ""))).await;
        let mut c = s.grpc().await;
        let a = check_token(&mut c, &token("ec256", "eve", json!({}))).await;
        assert_store_unavailable(&a);
        let ready = reqwest::get(s.admin_url("/readyz")).await.expect("readyz");
        assert_eq!(ready.status(), 503, "{tls}");
    }

    let (cert, key) = pki
        .ca
        .sign(&Leaf::client_dns("tokengate"))
        .write(&pki.dir, "tokengate");
    let tls = format!(
        "      ca_file: {ca}\n      cert_file: {}\n      key_file: {}\n",
        cert.display(),
        key.display()
    );
    let s = TestServer::start(&yaml(&pki, r.port, &tls, "")).await;
    let mut c = s.grpc().await;
    let t = token("ec256", "alice", json!({}));
    assert!(check_token(&mut c, &t).await.allowed());
    assert_eq!(logout(&s, "/v1/auth/logout", &t).await.0, 200);
    assert_eq!(
        check_token(&mut c, &t).await.reason().as_deref(),
        Some("jti_revoked")
    );
}

/// How long a store may take to report why it cannot connect.
const RECOVERY_WAIT: std::time::Duration = support::outage::RECOVERY;

/// Cluster over TLS (client connections and the cluster bus): the CA and client
/// certificate reach every node the client discovers, not only the seeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_with_client_certificates_carries_revocations_and_events() {
    let pki = Pki::new();
    // Nodes connect to each other (bus, replication) with their own certificate, as
    // clients of a server that requires one: it needs both usages.
    let node = Leaf::server(&[]).usages(vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ]);
    let (crt, key) = pki.ca.sign(&node).write(&pki.dir, "node");
    let ca = pki.ca.write(&pki.dir, "ca");
    let (cert, ckey) = pki
        .ca
        .sign(&Leaf::client_dns("tokengate"))
        .write(&pki.dir, "client");
    let cluster = {
        let (crt, key, ca, cert, ckey) = (
            crt.clone(),
            key.clone(),
            ca.clone(),
            cert.clone(),
            ckey.clone(),
        );
        tokio::task::spawn_blocking(move || {
            support::redis::RedisCluster::start_tls((&crt, &key), &ca, (&cert, &ckey))
        })
        .await
        .expect("TLS cluster starts")
    };
    let url = cluster
        .url()
        .replace("redis+cluster://", "rediss+cluster://");
    let fields = format!(
        "    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        ca.display(),
        cert.display(),
        ckey.display()
    );
    let y = config_yaml(&store_yaml_with(
        &url,
        &fields,
        "  cache:\n    ttl_seconds: 600\n",
    ));
    let a = TestServer::start(&y).await;
    let b = TestServer::start(&y).await;
    let mut cb = b.grpc().await;
    let t = token("ec256", "alice", json!({"tid": "acme", "fam": "f1"}));
    assert!(check_token(&mut cb, &t).await.allowed(), "cached on B");
    assert_eq!(logout(&a, "/v1/auth/logout", &t).await.0, 200);
    wait_for("B to deny through the event", PROPAGATION, || {
        let (t, mut cb) = (t.clone(), cb.clone());
        async move { check_token(&mut cb, &t).await.reason().as_deref() == Some("jti_revoked") }
    })
    .await;
    let fresh = TestServer::start(&y).await;
    let mut c = fresh.grpc().await;
    assert_eq!(
        check_token(&mut c, &t).await.reason().as_deref(),
        Some("jti_revoked"),
        "read back from the cluster"
    );
}
