//! A real OpenID provider in a child process: npm `oidc-provider` 8.x running
//! `tests/oidc/provider.mjs` with `node` on loopback, publishing the fixture keys the
//! test names and signing access tokens with one of them. It binds port 0 and writes
//! the issuer (naming the port it got) to a file this module reads back: no port is
//! chosen before the bind. Stopped on drop; a rotation is a restart on the same port
//! (same issuer) with other keys.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::procs::{repo, tool, Proc};
use super::{fixture, wait_for};

/// The client the provider knows (client credentials grant).
const CLIENT_ID: &str = "tokengate-test";
const CLIENT_SECRET: &str = "tokengate-test-client-secret";

pub struct OidcProvider {
    proc: Option<Proc>,
    pub port: u16,
    /// `http://127.0.0.1:{port}`: what the discovery document and every token name.
    pub issuer: String,
    log: PathBuf,
    /// Where the process writes its issuer once it listens.
    issuer_file: PathBuf,
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
    /// Starts on a port the kernel picks, publishing `keys` (kid, fixture private key
    /// file name) and signing with `sign`; returns once the discovery document is served.
    pub async fn start(keys: &[(&str, &str)], sign: &str) -> Self {
        Self::start_on(0, keys, sign).await
    }

    /// [`start`](Self::start) on a given port: to come back with the same issuer after
    /// [`stop`](Self::stop). The port was this provider's a moment ago, but nothing holds
    /// it in between: another test's process could take it (then this panics, naming
    /// the failed listen in the provider's log).
    pub async fn start_on(port: u16, keys: &[(&str, &str)], sign: &str) -> Self {
        let tag = uuid::Uuid::new_v4();
        let temp = std::env::temp_dir();
        let mut p = OidcProvider {
            proc: None,
            port,
            issuer: String::new(),
            log: temp.join(format!("tokengate-oidc-{tag}.log")),
            issuer_file: temp.join(format!("tokengate-oidc-{tag}.issuer")),
        };
        p.spawn(keys, sign).await;
        p.wait_up().await;
        p
    }

    /// Starts the process on `self.port` (0: any) and waits for the issuer it reports.
    async fn spawn(&mut self, keys: &[(&str, &str)], sign: &str) {
        let _ = std::fs::remove_file(&self.issuer_file);
        let log = std::fs::File::create(&self.log).expect("provider log file");
        let mut cmd = Command::new(tool("node", "nodejs (Node 20)"));
        cmd.arg(repo().join("tests/oidc/provider.mjs"))
            .arg("--module")
            .arg(module())
            .args(["--port", &self.port.to_string()])
            .arg("--issuer-file")
            .arg(&self.issuer_file)
            .args(["--sign", sign])
            .stdout(Stdio::null())
            .stderr(log);
        for (kid, file) in keys {
            let path = fixture(&format!("keys/{file}"));
            cmd.arg("--key").arg(format!("{kid}={}", path.display()));
        }
        self.proc = Some(Proc::spawn("oidc-provider", &mut cmd));

        let mut issuer = None;
        let (proc, file, log) = (&mut self.proc, &self.issuer_file, &self.log);
        wait_for(
            "oidc-provider to report its issuer",
            Duration::from_secs(20),
            || {
                super::procs::assert_running(proc, log, "oidc-provider");
                issuer = std::fs::read_to_string(file)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty());
                std::future::ready(issuer.is_some())
            },
        )
        .await;
        let issuer = issuer.expect("an issuer");
        let port = issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the issuer {issuer:?}"));
        assert!(
            self.port == 0 || self.port == port,
            "asked for port {}, got {issuer}",
            self.port
        );
        self.port = port;
        self.issuer = issuer;
    }

    async fn wait_up(&mut self) {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let (proc, log) = (&mut self.proc, &self.log);
        wait_for(
            "oidc-provider to serve its discovery document",
            Duration::from_secs(20),
            || {
                super::procs::assert_running(proc, log, "oidc-provider");
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
        self.spawn(keys, sign).await;
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

    /// A JWT access token carrying the session `sid` (provider.mjs adds it on request:
    /// a client-credentials token has no session of its own).
    pub async fn token_with_sid(&self, sid: &str) -> String {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", "https://api.test"),
                ("scope", "read"),
                ("sid", sid),
            ])
            .send()
            .await
            .expect("token endpoint answers");
        let body: Value = resp.json().await.expect("token response is JSON");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {body}"))
            .to_string()
    }

    /// Makes the provider send its back-channel logout token for `sub` (and `sid`) to
    /// `uri`; true when `uri` answered 200.
    pub async fn backchannel_logout(&self, uri: &str, sub: &str, sid: Option<&str>) -> Value {
        let mut query = vec![("uri", uri), ("sub", sub)];
        if let Some(sid) = sid {
            query.push(("sid", sid));
        }
        reqwest::Client::new()
            .post(format!("{}/__test/backchannel-logout", self.issuer))
            .query(&query)
            .send()
            .await
            .expect("provider answers")
            .json()
            .await
            .expect("JSON")
    }

    /// The client id tokengate is at this provider (`aud` of its logout tokens, `sub` of
    /// its client-credentials access tokens).
    pub const CLIENT_ID: &'static str = CLIENT_ID;

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
        let _ = std::fs::remove_file(&self.issuer_file);
    }
}
