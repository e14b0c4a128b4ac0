//! Log output captured in memory. The server logs from its own tasks, so the test binary
//! installs one global subscriber writing here, once, and reads it back. One filter for
//! the whole binary: the one tokengate builds for `level: trace` (every event of
//! tokengate and its core, audit events, libraries at warn), as JSON lines, so that a
//! test asserts on fields rather than on a text layout.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

/// Installs (once per test binary) the capturing subscriber; every call returns the same
/// buffer.
pub fn capture() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.0.clone();
        let level = tokengate::config::Log {
            level: "trace".into(),
            ..Default::default()
        };
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(tokengate::log_directives(&level)))
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false)
            .json()
            .init();
        captured
    })
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
