//! A real Sentinel deployment on loopback: a primary, one replica and three
//! `redis-server --sentinel` processes (quorum 2), each stopped by PID when dropped.
//! Sentinel is the one topology whose primary moves: `kill_primary` and
//! `wait_for_failover` let a test watch tokengate follow it.
//!
//! The Sentinels are tuned to notice a dead primary after 500 ms instead of 30 s, so a
//! failover fits in a test; everything else (election, promotion, reconfiguration) is
//! Sentinel's own.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::procs::Proc;
use super::redis::{cli, ping, RedisServer, TempDir};

/// The service name the Sentinels monitor.
pub const SERVICE: &str = "tgmaster";

/// One `redis-server --sentinel` process.
pub struct SentinelProc {
    pub port: u16,
    _dir: TempDir,
    _proc: Proc,
}

impl SentinelProc {
    fn start(primary_port: u16) -> SentinelProc {
        for _ in 0..5 {
            let dir = TempDir::new("sentinel");
            let port = super::free_port();
            let conf = dir.0.join("sentinel.conf");
            // Sentinel rewrites its own file (it records the replicas and the other
            // Sentinels it learns of), so it gets a writable copy each.
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                     logfile {log}\n\
                     sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 500\n\
                     sentinel failover-timeout {SERVICE} 5000\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    dir = dir.0.display(),
                    log = dir.0.join("sentinel.log").display(),
                ),
            )
            .expect("sentinel.conf");
            let mut cmd = Command::new(super::procs::tool(
                "redis-server",
                "redis-server (Debian package redis-server)",
            ));
            cmd.arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut proc = Proc::spawn("redis-sentinel", &mut cmd);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if ping(port) {
                    return SentinelProc {
                        port,
                        _dir: dir,
                        _proc: proc,
                    };
                }
                if let Ok(Some(_)) = proc.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("redis-server --sentinel did not start on any of 5 ports");
    }

    /// The `host:port` this Sentinel currently names as the primary.
    pub fn master_addr(&self) -> Option<String> {
        let out = cli(self.port, &["sentinel", "get-master-addr-by-name", SERVICE]);
        let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
        Some(format!("{}:{}", lines.next()?, lines.next()?))
    }

    /// A field of `SENTINEL MASTER` (`num-slaves`, `num-other-sentinels`, `flags`, …).
    fn master_field(&self, name: &str) -> Option<String> {
        let out = cli(self.port, &["sentinel", "master", SERVICE]);
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        lines
            .chunks(2)
            .find(|kv| kv.first() == Some(&name))
            .and_then(|kv| kv.get(1).map(|v| v.to_string()))
    }
}

/// A primary, a replica and three Sentinels.
pub struct RedisSentinel {
    /// The data nodes: `nodes[0]` starts as the primary, `nodes[1]` as its replica.
    pub nodes: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProc>,
    /// Index in `nodes` of the node the Sentinels last named primary.
    primary: usize,
}

impl RedisSentinel {
    /// Starts everything and returns once the replica is in sync and every Sentinel
    /// names the primary. Blocking: from async tests, [`RedisSentinel::start_async`].
    pub fn start() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    /// Data-node arguments every deployment gets: a replica's full sync starts at once
    /// (Redis waits 5 s by default, for more replicas to share one diskless transfer).
    const NODE_ARGS: [&'static str; 2] = ["--repl-diskless-sync-delay", "0"];

    /// As [`RedisSentinel::start`], with extra `redis-server` arguments for both data nodes.
    pub fn start_with(extra: &[&str]) -> Self {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(Self::NODE_ARGS);
        let primary = RedisServer::start_with(&args);
        let port = primary.port.to_string();
        let mut replica_args = args.clone();
        replica_args.extend(["--replicaof", "127.0.0.1", &port]);
        let replica = RedisServer::start_with(&replica_args);
        wait("the replica to sync", Duration::from_secs(20), || {
            replica
                .cli(&["info", "replication"])
                .contains("master_link_status:up")
        });
        let sentinels: Vec<SentinelProc> =
            (0..3).map(|_| SentinelProc::start(primary.port)).collect();
        let expected = format!("127.0.0.1:{}", primary.port);
        wait(
            "every Sentinel to name the primary",
            Duration::from_secs(10),
            || {
                sentinels
                    .iter()
                    .all(|s| s.master_addr().as_deref() == Some(expected.as_str()))
            },
        );
        RedisSentinel {
            nodes: vec![primary, replica],
            sentinels,
            primary: 0,
        }
    }

    pub async fn start_async() -> Self {
        tokio::task::spawn_blocking(Self::start)
            .await
            .expect("sentinel deployment starts")
    }

    /// `redis+sentinel://` with every Sentinel, the service and db 0.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}/0", hosts.join(","))
    }

    /// The node currently acting as primary.
    pub fn primary(&self) -> &RedisServer {
        &self.nodes[self.primary]
    }

    /// The other data node (the replica, until a failover).
    pub fn replica(&mut self) -> &mut RedisServer {
        &mut self.nodes[1 - self.primary]
    }

    /// Waits until a failover can happen: every Sentinel knows the replica and the two
    /// other Sentinels (they learn of each other through the primary's hello channel,
    /// about every 2 s).
    pub fn wait_failover_ready(&self) {
        wait(
            "every Sentinel to know the replica and the other Sentinels",
            Duration::from_secs(20),
            || {
                self.sentinels.iter().all(|s| {
                    s.master_field("num-slaves").as_deref() == Some("1")
                        && s.master_field("num-other-sentinels").as_deref() == Some("2")
                })
            },
        );
    }

    /// SIGKILLs the primary; returns once it no longer answers.
    pub fn kill_primary(&mut self) {
        self.nodes[self.primary].kill();
    }

    /// Waits until every Sentinel names the other node as primary and that node says
    /// it is one (`ROLE`); returns its `host:port`. Blocking.
    pub fn wait_for_failover(&mut self, deadline: Duration) -> String {
        let next = 1 - self.primary;
        let expected = format!("127.0.0.1:{}", self.nodes[next].port);
        wait("Sentinel to promote the replica", deadline, || {
            self.sentinels
                .iter()
                .all(|s| s.master_addr().as_deref() == Some(expected.as_str()))
                && self.nodes[next].cli(&["role"]).starts_with("master")
        });
        self.primary = next;
        expected
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `deadline`.
fn wait(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
