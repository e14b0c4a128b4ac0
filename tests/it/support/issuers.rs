//! Two trusted issuers whose tokens can carry the very same `sub`, `jti`, `tid` and
//! `fam` (issue 13): the test provider `test` (ISSUER, the fixture keys) and `other`
//! (OTHER_ISSUER, its own RSA key `rsa2`), and the raw Redis access that writes keys of
//! the layout before issuer namespaces.

use serde_json::{json, Value};

use super::{claims, key_path, sign, signing_key, with_claims};

pub const OTHER_ISSUER: &str = "https://other.test";

/// The issuer of a twin token: `test` or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    Test,
    Other,
}

impl Issuer {
    pub const BOTH: [Issuer; 2] = [Issuer::Test, Issuer::Other];

    /// The provider's name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Issuer::Test => "test",
            Issuer::Other => "other",
        }
    }

    pub fn twin(self) -> Issuer {
        match self {
            Issuer::Test => Issuer::Other,
            Issuer::Other => Issuer::Test,
        }
    }

    /// A valid token of this issuer for `sub`, `extra` merged in (`null` removes).
    pub fn token(self, sub: &str, extra: Value) -> String {
        match self {
            Issuer::Test => super::token("ec256", sub, extra),
            Issuer::Other => other_token(sub, extra),
        }
    }
}

/// A valid token of the `other` provider (RS256, `kid` rsa2).
pub fn other_token(sub: &str, extra: Value) -> String {
    let mut c = claims(sub);
    c["iss"] = json!(OTHER_ISSUER);
    let c = with_claims(c, extra);
    let (alg, key) = signing_key("rsa2");
    sign(
        json!({"alg": "RS256", "kid": "rsa2", "typ": "JWT"}),
        c,
        alg,
        &key,
    )
}

/// `config_yaml(store)` with the `other` provider added; `namespaces` sets
/// `subject_namespace` of (test, other) when given.
pub fn two_issuers(yaml: &str, namespaces: Option<(&str, &str)>) -> String {
    let (test_ns, other_ns) = match namespaces {
        Some((a, b)) => (
            format!("    subject_namespace: {a}\n"),
            format!("    subject_namespace: {b}\n"),
        ),
        None => (String::new(), String::new()),
    };
    let other = format!(
        "  - name: other\n    issuer: {OTHER_ISSUER}\n    audiences: [api]\n    algorithms: [RS256]\n{other_ns}    keys:\n      - kid: rsa2\n        public_key_file: {}\nroutes:",
        key_path("rsa2-public.pem")
    );
    assert_eq!(yaml.matches("\nroutes:").count(), 1, "one routes section");
    yaml.replacen("  - name: test\n", &format!("  - name: test\n{test_ns}"), 1)
        .replacen("\nroutes:", &format!("\n{other}"), 1)
}

/// Adds the admin API, administered by tokens of `providers`.
pub fn with_admin(yaml: &str, providers: &[&str]) -> String {
    format!(
        "{yaml}admin_api:\n  enabled: true\n  scope: tokengate:admin\n  providers: [{}]\n",
        providers.join(", ")
    )
}

/// Raw access to the Redis under test, bypassing tokengate: what an older release (or an
/// operator) wrote.
#[derive(Debug, Clone)]
pub enum Raw {
    Single(u16),
    Cluster(Vec<u16>),
}

impl Raw {
    /// Runs one command and returns its reply.
    pub async fn cmd(&self, cmd: &redis::Cmd) -> redis::Value {
        match self {
            Raw::Single(port) => {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
                let mut c = client.get_multiplexed_async_connection().await.unwrap();
                cmd.query_async(&mut c).await.expect("raw redis command")
            }
            Raw::Cluster(ports) => {
                let nodes: Vec<String> = ports
                    .iter()
                    .map(|p| format!("redis://127.0.0.1:{p}/"))
                    .collect();
                let client = redis::cluster::ClusterClient::new(nodes).unwrap();
                let mut c = client.get_async_connection().await.unwrap();
                cmd.query_async(&mut c).await.expect("raw redis command")
            }
        }
    }

    /// Runs one command and converts its reply.
    pub async fn get<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        redis::from_redis_value(self.cmd(cmd).await).expect("reply type")
    }
}
