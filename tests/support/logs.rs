//! Log output captured in memory. The server logs from its own tasks, so a test binary
//! installs one global subscriber writing here, once, and reads the text back.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

/// Installs (once per test binary) a subscriber with `filter`, as JSON lines or text,
/// writing into the returned buffer; later calls return the same buffer.
pub fn capture(filter: &str, json: bool) -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.0.clone();
        let builder = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_writer(move || Sink(sink.clone()))
            .with_ansi(false);
        if json {
            builder.json().init();
        } else {
            builder.init();
        }
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
