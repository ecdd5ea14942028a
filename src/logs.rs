//! What the code under test logs, captured for tests that check a log line.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every line logged in this test binary since [`capture_logs`] was first
/// called, shared with the global `tracing` subscriber that writes it.
#[derive(Clone, Debug, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("no panics while held").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("no panics while held")).into_owned()
    }

    /// The lines logged so far that mention `needle`.
    pub fn lines(&self, needle: &str) -> Vec<String> {
        self.text().lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }
}

/// Captures what this test binary logs through `tracing` from now on, at the
/// levels `filter` lets through (an `EnvFilter` directive: `"trace"` for
/// everything, `"remq=info"`…), without colours. The first call installs the
/// global subscriber and decides the filter; later calls return the same
/// capture, so every test of a binary can call it first.
///
/// # Panics
/// When another global subscriber was installed first (for instance by
/// [`init_test_logs`](crate::init_test_logs) under `RUST_LOG`, which
/// [`test_worker`](crate::test_worker) calls): call this before anything else.
pub fn capture_logs(filter: &str) -> &'static CapturedLogs {
    static CAPTURED: OnceLock<CapturedLogs> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = CapturedLogs::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("capture_logs is called before any other global subscriber is installed");
        captured
    })
}
