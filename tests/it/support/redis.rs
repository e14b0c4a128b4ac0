//! Real `redis-server` processes for tests: a standalone server on a free loopback port
//! with its own directory, and a 3-node Cluster made with `redis-cli --cluster create`.
//! Each is stopped by PID when dropped. A missing `redis-server` fails with a message
//! naming the package.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::{tool, Proc};

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tokengate-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    extra: Vec<String>,
    proc: Option<Proc>,
    /// Set for a TLS-only server: `port` is its `tls-port`, and `redis-cli` (readiness
    /// and [`RedisServer::cli`]) speaks TLS with these arguments.
    tls_cli: Option<Vec<String>>,
}

fn redis_server() -> PathBuf {
    tool("redis-server", "redis-server (Debian package redis-server)")
}

fn redis_cli() -> PathBuf {
    tool("redis-cli", "redis-cli (Debian package redis-tools)")
}

/// A port that is free, and whose cluster-bus twin (port + 10000) is free too.
fn free_port_pair() -> u16 {
    loop {
        let port = super::free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisServer {
    /// A server without persistence.
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// A server with AOF on and fsync at every write: what the Kubernetes example ships.
    pub fn start_with_aof() -> Self {
        Self::start_with(&[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let mut s = RedisServer {
            port: 0,
            dir: TempDir::new("redis"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            proc: None,
            tls_cli: None,
        };
        s.start_on_some_port();
        s
    }

    /// A TLS-only server (`port 0`, `tls-port`): `server` is its certificate and key,
    /// `ca` the CA it checks client certificates against; `cli_client` the certificate
    /// and key `redis-cli` presents (when the server requires one).
    pub fn start_tls(
        server: (&Path, &Path),
        ca: &Path,
        cli_client: Option<(&Path, &Path)>,
        extra: &[&str],
    ) -> Self {
        let path = |p: &Path| p.display().to_string();
        let mut args: Vec<String> = [
            "--save",
            "",
            "--appendonly",
            "no",
            "--tls-cert-file",
            &path(server.0),
            "--tls-key-file",
            &path(server.1),
            "--tls-ca-cert-file",
            &path(ca),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut cli = vec!["--tls".to_string(), "--cacert".into(), path(ca)];
        if let Some((cert, key)) = cli_client {
            cli.extend(["--cert".into(), path(cert), "--key".into(), path(key)]);
        }
        let mut s = RedisServer {
            port: 0,
            dir: TempDir::new("redis-tls"),
            extra: args,
            proc: None,
            tls_cli: Some(cli),
        };
        s.start_on_some_port();
        s
    }

    fn start_on_some_port(&mut self) {
        let s = self;
        // A port picked as free can be taken before redis binds it: try a few.
        for _ in 0..5 {
            s.port = free_port_pair();
            if s.spawn() {
                return;
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(redis_server());
        match self.tls_cli {
            None => cmd.arg("--port").arg(self.port.to_string()),
            Some(_) => cmd
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string()),
        };
        cmd.arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(&self.dir.0)
            .arg("--daemonize")
            .arg("no")
            .arg("--logfile")
            .arg(self.dir.0.join("redis.log"))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut proc = Proc::spawn("redis-server", &mut cmd);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.answers() {
                self.proc = Some(proc);
                return true;
            }
            if let Ok(Some(_)) = proc.child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Whether the server answers PING (over TLS for a TLS server).
    fn answers(&self) -> bool {
        match &self.tls_cli {
            None => ping(self.port),
            Some(_) => self.cli(&["ping"]).trim() == "PONG",
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no chance to save anything on the way out).
    pub fn kill(&mut self) {
        self.proc = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.answers() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "kill() first");
        assert!(
            self.spawn(),
            "redis-server did not restart on port {}",
            self.port
        );
    }

    /// Runs `redis-cli -p PORT ARGS…` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        match &self.tls_cli {
            None => cli(self.port, args),
            Some(tls) => {
                let mut all: Vec<&str> = tls.iter().map(String::as_str).collect();
                all.extend_from_slice(args);
                cli(self.port, &all)
            }
        }
    }
}

impl RedisServer {
    /// [`RedisServer::start`] from async test code (start-up blocks on a ping).
    pub async fn start_async() -> RedisServer {
        tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("redis-server starts")
    }

    /// [`RedisServer::start_with_aof`] from async test code.
    pub async fn start_with_aof_async() -> RedisServer {
        tokio::task::spawn_blocking(RedisServer::start_with_aof)
            .await
            .expect("redis-server starts")
    }

    /// [`RedisServer::kill`] from a multi-thread runtime test: returns once it no longer
    /// answers.
    pub fn kill_now(&mut self) {
        tokio::task::block_in_place(|| self.kill());
    }

    /// [`RedisServer::restart`] from a multi-thread runtime test: returns once it
    /// answers again (tokengate may not have noticed yet: `outage::wait_fresh_checks_allowed`).
    pub fn restart_now(&mut self) {
        tokio::task::block_in_place(|| self.restart());
    }
}

pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new(redis_cli())
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a server answers PING on `port`.
pub fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A 3-master Redis Cluster on loopback.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

/// What makes a node a Cluster node.
const CLUSTER_ARGS: [&str; 6] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
];

impl RedisCluster {
    pub fn start() -> Self {
        let mut args = vec!["--save", "", "--appendonly", "no"];
        args.extend(CLUSTER_ARGS);
        Self::create((0..3).map(|_| RedisServer::start_with(&args)).collect())
    }

    /// A TLS-only Cluster (`tls-cluster yes`: the bus is TLS too): arguments as
    /// [`RedisServer::start_tls`].
    pub fn start_tls(server: (&Path, &Path), ca: &Path, cli_client: (&Path, &Path)) -> Self {
        let mut args = vec!["--tls-cluster", "yes", "--tls-replication", "yes"];
        args.extend(CLUSTER_ARGS);
        Self::create(
            (0..3)
                .map(|_| RedisServer::start_tls(server, ca, Some(cli_client), &args))
                .collect(),
        )
    }

    fn create(nodes: Vec<RedisServer>) -> Self {
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let tls = nodes[0].tls_cli.clone().unwrap_or_default();
        let out = Command::new(redis_cli())
            .args(&tls)
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = nodes
                .iter()
                .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster never reached state ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

/// The `revocation:` body for a Redis URL (indented for `config_yaml`). The store
/// deadline is 500 ms unless `extra` sets one: debug builds on a loaded 2-core CI
/// machine can miss the production 50 ms on a healthy Redis, and only the tests about
/// the deadline itself need it tight (they set it).
pub fn store_yaml(url: &str, extra: &str) -> String {
    store_yaml_with(url, "", extra)
}

/// [`store_yaml`] with `redis_fields` (indented four spaces) under `redis:` after the URL.
pub fn store_yaml_with(url: &str, redis_fields: &str, extra: &str) -> String {
    let deadline = if extra.contains("store_timeout_ms") {
        ""
    } else {
        "  store_timeout_ms: 500\n"
    };
    format!("  store: redis\n  redis:\n    url: {url}\n{redis_fields}{deadline}{extra}")
}
