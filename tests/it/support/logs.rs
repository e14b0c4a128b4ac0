//! Log output captured in memory. The server logs from its own tasks, so the test binary
//! installs one global subscriber writing here, once, and reads it back, as JSON lines
//! so that a test asserts on fields rather than on a text layout. It keeps warnings,
//! errors and audit events; a test that needs everything raises it to the filter
//! tokengate builds for `level: trace` with [`at_trace`], only while it runs (at trace,
//! every request of every test running beside it is logged, which slows them).

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

const QUIET: &str = "warn,audit=info";

struct State {
    captured: Captured,
    filter: reload::Handle<EnvFilter, Registry>,
    /// Held by the test that logs at trace, so that two cannot interleave.
    trace: Mutex<()>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.0.clone();
        let (filter, handle) = reload::Layer::new(EnvFilter::new(QUIET));
        tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || Sink(sink.clone()))
                    .with_ansi(false)
                    .json(),
            )
            .init();
        State {
            captured,
            filter: handle,
            trace: Mutex::new(()),
        }
    })
}

/// Installs (once per test binary) the capturing subscriber; every call returns the same
/// buffer.
pub fn capture() -> &'static Captured {
    &state().captured
}

/// Everything at the filter tokengate builds for `level: trace`, until dropped.
pub struct Trace {
    _held: MutexGuard<'static, ()>,
}

pub fn at_trace() -> Trace {
    let s = state();
    let guard = s.trace.lock().unwrap_or_else(|p| p.into_inner());
    let level = tokengate::config::Log {
        level: "trace".into(),
        ..Default::default()
    };
    s.filter
        .reload(EnvFilter::new(tokengate::log_directives(&level)))
        .expect("the capture's filter reloads");
    Trace { _held: guard }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = state().filter.reload(EnvFilter::new(QUIET));
    }
}

#[derive(Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Every event logged so far, parsed (`target`, `level`, `fields`, ...).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Whether some event has every `(field, value)` of `fields` (values as logged:
    /// strings, or other JSON values).
    pub fn any(&self, fields: &[(&str, serde_json::Value)]) -> bool {
        self.events()
            .iter()
            .any(|e| fields.iter().all(|(k, v)| &e["fields"][*k] == v))
    }
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
