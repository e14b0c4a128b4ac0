//! Real `redis-server` processes for tests: a standalone server on a free loopback port
//! with its own directory, and a 3-node Cluster made with `redis-cli --cluster create`.
//! Each is stopped by PID when dropped. A missing `redis-server` fails with a message
//! naming the package.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
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
        };
        // A port picked as free can be taken before redis binds it: try a few.
        for _ in 0..5 {
            s.port = free_port_pair();
            if s.spawn() {
                return s;
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(redis_server());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
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
            if ping(self.port) {
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

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no chance to save anything on the way out).
    pub fn kill(&mut self) {
        self.proc = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while ping(self.port) && Instant::now() < deadline {
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
        cli(self.port, args)
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

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(redis_cli())
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
    let deadline = if extra.contains("store_timeout_ms") {
        ""
    } else {
        "  store_timeout_ms: 500\n"
    };
    format!("  store: redis\n  redis:\n    url: {url}\n{deadline}{extra}")
}
