//! The tokengate binary as an operator runs it (`tokengate serve`), on listeners bound to
//! port 0: the kernel picks free ports and tokengate says which in its start-up line
//! (`tokengate listening grpc=… http=… admin=…`), which is read back here from its log.
//! Nothing is picked before the bind, so no other test can take a port in between.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::envoy::Scratch;
use super::procs::{repo, tokengate_bin, Proc};

/// `tokengate ARGS` in the repository root (relative key paths of the shipped config
/// resolve there), with no environment that would change its behaviour: the
/// configuration alone decides, log level included.
pub fn tokengate(args: &[&str]) -> Command {
    let mut cmd = Command::new(tokengate_bin());
    cmd.args(args)
        .current_dir(repo())
        .env_remove("TOKENGATE_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_RESOURCE_ATTRIBUTES")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("OTEL_TRACES_SAMPLER_ARG")
        .stdin(Stdio::null());
    cmd
}

/// A `tokengate serve` process, its configuration and its stdout and stderr in a scratch
/// directory. Killed when dropped.
pub struct Served {
    pub proc: Proc,
    pub dir: Scratch,
    pub config: PathBuf,
}

impl Served {
    /// Writes `config` (YAML text) to a fresh scratch directory and serves it.
    pub fn start(tag: &str, config: &str) -> Served {
        let dir = Scratch::new(tag);
        let path = dir.write("tokengate.yaml", config);
        Self::start_file(dir, path)
    }

    /// [`start`](Self::start) with extra environment variables.
    pub fn start_with_env(tag: &str, config: &str, env: &[(&str, &str)]) -> Served {
        let dir = Scratch::new(tag);
        let path = dir.write("tokengate.yaml", config);
        Self::spawn(dir, path, env)
    }

    /// Serves the configuration file `config`; output goes to `dir`.
    pub fn start_file(dir: Scratch, config: PathBuf) -> Served {
        Self::spawn(dir, config, &[])
    }

    fn spawn(dir: Scratch, config: PathBuf, env: &[(&str, &str)]) -> Served {
        let out = std::fs::File::create(dir.join("stdout")).expect("stdout file");
        let err = std::fs::File::create(dir.join("stderr")).expect("stderr file");
        let proc = Proc::spawn(
            "tokengate serve",
            tokengate(&["serve", "--config", &config.display().to_string()])
                .envs(env.iter().copied())
                .stdout(out)
                .stderr(err),
        );
        Served { proc, dir, config }
    }

    /// Everything it wrote so far, stdout then stderr.
    pub fn output(&self) -> String {
        format!("{}{}", self.dir.read("stdout"), self.dir.read("stderr"))
    }

    pub fn stderr(&self) -> String {
        self.dir.read("stderr")
    }

    /// Waits for the start-up line and returns the addresses it names. Panics with the
    /// output when the process exits first, or after 20 s: a configuration whose log
    /// level is above `info` never says it.
    pub async fn listening(&mut self) -> tokengate::Addrs {
        let deadline = Duration::from_secs(20);
        let mut found = None;
        let (proc, dir) = (&mut self.proc, &self.dir);
        super::wait_for(
            "tokengate's `tokengate listening` line (log level info or lower)",
            deadline,
            || {
                let output = format!("{}{}", dir.read("stdout"), dir.read("stderr"));
                found = listening_addrs(&output);
                if found.is_none() {
                    if let Ok(Some(status)) = proc.child.try_wait() {
                        panic!("tokengate serve exited ({status}) before listening:\n{output}");
                    }
                }
                std::future::ready(found.is_some())
            },
        )
        .await;
        found.expect("addresses found")
    }

    /// Waits until `/readyz` on `admin` answers 200; panics with the output if the
    /// process exits first, or after 20 s.
    pub async fn wait_ready(&mut self, admin: SocketAddr) {
        let url = format!("http://{admin}/readyz");
        let client = reqwest::Client::new();
        let (proc, dir) = (&mut self.proc, &self.dir);
        super::wait_for("tokengate serve /readyz", Duration::from_secs(20), || {
            if let Ok(Some(status)) = proc.child.try_wait() {
                panic!(
                    "tokengate serve exited ({status}):\n{}{}",
                    dir.read("stdout"),
                    dir.read("stderr")
                );
            }
            let req = client.get(&url).send();
            async move { matches!(req.await, Ok(r) if r.status() == 200) }
        })
        .await;
    }

    /// Waits up to `deadline` for the process to exit; panics (killing it) if it does not.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        self.proc.wait_exit(deadline)
    }
}

/// The addresses of the `tokengate listening` line in `log`, in the text or the JSON log
/// format; `None` until the line is there (complete).
pub fn listening_addrs(log: &str) -> Option<tokengate::Addrs> {
    log.lines().find_map(|line| {
        let field = |name: &str| -> Option<SocketAddr> {
            if line.trim_start().starts_with('{') {
                let v: Value = serde_json::from_str(line).ok()?;
                if v["fields"]["message"] != "tokengate listening" {
                    return None;
                }
                v["fields"][name].as_str()?.parse().ok()
            } else {
                if !line.contains("tokengate listening") {
                    return None;
                }
                let prefix = format!("{name}=");
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(prefix.as_str()))?
                    .parse()
                    .ok()
            }
        };
        Some(tokengate::Addrs {
            grpc: field("grpc")?,
            http: field("http")?,
            admin: field("admin")?,
        })
    })
}
