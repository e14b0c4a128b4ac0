//! Child processes that tests start (the tokengate binary, Envoy, redis-server, nginx):
//! killed when dropped, so a failing test leaves nothing running.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `STOP`, `CONT`) with the `kill` command.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} {} failed", self.name);
    }

    /// Waits up to `deadline` for the process to exit; panics if it does not (dropping
    /// the handle then kills it). Blocking: from async tests, in `block_in_place`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "{} did not exit within {deadline:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tokengate binary built for these tests.
pub fn tokengate_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tokengate"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Finds a tool installed by `scripts/install-test-deps.sh` (in `.tools/bin`) or on PATH;
/// panics naming the package and the install command when it is missing.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let local = repo().join(".tools/bin").join(name);
    if local.exists() {
        return local;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "`{name}` is not installed: it comes from the package {package}. \
         Run scripts/install-test-deps.sh (the README's test command does)."
    );
}

/// Panics with `log` when the process `what` has exited (a bad key, a missing module, a
/// port in use): a wait on it would otherwise run into its deadline with nothing said.
pub fn assert_running(proc: &mut Option<Proc>, log: &std::path::Path, what: &str) {
    let exited = proc
        .as_mut()
        .and_then(|p| p.child.try_wait().ok().flatten());
    if let Some(status) = exited {
        panic!(
            "{what} exited ({status}): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

/// Runs `cmd` with `input` on its stdin and returns its stdout; panics (with `what` and
/// what the tool wrote) unless it exits 0. For the independent tools the tests hand
/// their inputs to: node scripts on npm libraries, Python parsers, promtool.
pub fn pipe_through(mut cmd: Command, input: &[u8], what: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .unwrap_or_else(|e| panic!("{what}: writing its input: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what} did not run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
