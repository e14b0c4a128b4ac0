//! A real OpenID provider in a child process: npm `oidc-provider` 8.x running
//! `tests/oidc/provider.mjs` with `node` on a free loopback port, publishing the fixture
//! keys the test names and signing access tokens with one of them. Stopped on drop; a
//! rotation is a restart on the same port (same issuer) with other keys.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::procs::{repo, tool, Proc};
use super::{fixture, free_port, wait_for};

/// The client the provider knows (client credentials grant).
const CLIENT_ID: &str = "tokengate-test";
const CLIENT_SECRET: &str = "tokengate-test-client-secret";

pub struct OidcProvider {
    proc: Option<Proc>,
    pub port: u16,
    /// `http://127.0.0.1:{port}`: what the discovery document and every token name.
    pub issuer: String,
    log: PathBuf,
}

/// The installed oidc-provider package; panics with the install command when missing.
fn module() -> PathBuf {
    let dir = repo().join(".tools/oidc/node_modules/oidc-provider");
    assert!(
        dir.join("package.json").is_file(),
        "oidc-provider is not installed in .tools/oidc: run scripts/install-test-deps.sh \
         (the README's test command does)"
    );
    dir
}

impl OidcProvider {
    /// Starts on a free port, publishing `keys` (kid, fixture private key file name) and
    /// signing with `sign`; returns once the discovery document is served.
    pub async fn start(keys: &[(&str, &str)], sign: &str) -> Self {
        Self::start_on(free_port(), keys, sign).await
    }

    /// [`start`](Self::start) on a given port (to come back with the same issuer).
    pub async fn start_on(port: u16, keys: &[(&str, &str)], sign: &str) -> Self {
        let issuer = format!("http://127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!(
            "tokengate-oidc-{port}-{}.log",
            uuid::Uuid::new_v4()
        ));
        let mut p = OidcProvider {
            proc: None,
            port,
            issuer,
            log,
        };
        p.spawn(keys, sign);
        p.wait_up().await;
        p
    }

    fn spawn(&mut self, keys: &[(&str, &str)], sign: &str) {
        let log = std::fs::File::create(&self.log).expect("provider log file");
        let mut cmd = Command::new(tool("node", "nodejs (Node 20)"));
        cmd.arg(repo().join("tests/oidc/provider.mjs"))
            .arg("--module")
            .arg(module())
            .args(["--port", &self.port.to_string()])
            .args(["--issuer", &self.issuer])
            .args(["--sign", sign])
            .stdout(Stdio::null())
            .stderr(log);
        for (kid, file) in keys {
            let path = fixture(&format!("keys/{file}"));
            cmd.arg("--key").arg(format!("{kid}={}", path.display()));
        }
        self.proc = Some(Proc::spawn("oidc-provider", &mut cmd));
    }

    async fn wait_up(&mut self) {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let log = self.log.clone();
        let proc = &mut self.proc;
        wait_for(
            "oidc-provider to serve its discovery document",
            Duration::from_secs(20),
            || {
                let exited = proc
                    .as_mut()
                    .and_then(|p| p.child.try_wait().ok().flatten());
                if let Some(status) = exited {
                    panic!(
                        "oidc-provider exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                let url = url.clone();
                async move { matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200) }
            },
        )
        .await;
    }

    /// Stops the process (the port is free again once this returns).
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Stops and starts again on the same port (same issuer) with `keys`, signing with
    /// `sign`; returns once the new process serves discovery.
    pub async fn restart(&mut self, keys: &[(&str, &str)], sign: &str) {
        self.stop();
        self.spawn(keys, sign);
        self.wait_up().await;
    }

    /// A JWT access token from the token endpoint (client credentials, resource
    /// indicator), as a client of this provider would get one.
    pub async fn token(&self) -> String {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", "https://api.test"),
                ("scope", "read"),
            ])
            .send()
            .await
            .expect("token endpoint answers");
        let status = resp.status();
        let body: Value = resp.json().await.expect("token response is JSON");
        assert_eq!(status, 200, "token endpoint: {body}");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_string()
    }

    /// How many times this process served (`jwks`, `discovery`).
    pub async fn hits(&self) -> (u64, u64) {
        let body: Value = reqwest::get(format!("{}/__test/hits", self.issuer))
            .await
            .expect("hits")
            .json()
            .await
            .expect("hits JSON");
        (
            body["jwks"].as_u64().unwrap_or(0),
            body["discovery"].as_u64().unwrap_or(0),
        )
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.proc = None;
        let _ = std::fs::remove_file(&self.log);
    }
}
