//! What the worker logs: an outage once (not once per reconnect attempt), and a
//! span per delivery attempt. (Its own test binary: it installs a global log
//! subscriber that captures every line.)

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use remq::{Client, MessageId, StartFrom, Worker};
use remq_testkit::{RedisServer, RunningWorker};
use tokio::time::{Instant, sleep};

/// Every log line written, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The lines logged so far that mention `needle`.
    fn lines(&self, needle: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }
}

/// The log of this test binary, captured from the first call on.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("remq=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_per_component_not_per_attempt() {
    let captured = captured();
    let mut server = RedisServer::builder().arg("--appendonly").arg("yes").start();
    let client = Client::connect(&server.url()).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let worker = Worker::new(server.url())
        .without_registered_handlers()
        .without_signal_handlers()
        .start_from(StartFrom::Earliest)
        .lease_ttl(Duration::from_secs(10))
        .checkpoint_interval(Duration::from_millis(100))
        .named_handler("outage", "o.*", move |id: MessageId| {
            let record = record.clone();
            async move { record.lock().unwrap().push(id) }
        });
    let running = RunningWorker::start(worker);
    let first = client.publish("o.1", "before").await.unwrap();
    while seen.lock().unwrap().is_empty() {
        sleep(Duration::from_millis(10)).await;
    }

    server.kill();
    sleep(Duration::from_secs(3)).await;
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        if let Ok(id) = client.publish("o.1", "after").await {
            break id;
        }
        assert!(Instant::now() < deadline, "could not publish after the restart");
        sleep(Duration::from_millis(50)).await;
    };
    while seen.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the worker did not recover");
        sleep(Duration::from_millis(20)).await;
    }
    running.stop().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [first, second]);

    // Only this test's consumer: other tests in this binary log too.
    let lines = captured.lines("\"outage\"");
    let retries = lines.iter().filter(|l| l.contains("failed again") || l.contains("still failing")).count();
    let warnings: Vec<_> = lines.iter().filter(|l| l.contains(" WARN ")).collect();
    assert!(
        retries >= 5,
        "expected many quiet retries during 3 s down, saw {retries}:\n{}",
        lines.join("\n")
    );
    assert!(
        warnings.len() <= 4,
        "{} warnings for one outage (feed, checkpoint and lease renewal may each warn once):\n{}",
        warnings.len(),
        warnings.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")
    );
    assert!(lines.iter().any(|l| l.contains("Redis is reachable again")), "the recovery was not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_runs_in_a_delivery_span() {
    let captured = captured();
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let failed = Arc::new(Mutex::new(false));
    let worker = Worker::new(server.url())
        .without_registered_handlers()
        .without_signal_handlers()
        .start_from(StartFrom::Earliest)
        .retry(remq::RetryPolicy::new().initial_backoff(Duration::from_millis(5)))
        .named_handler("traced", "tr.*", move |_: MessageId| {
            let failed = failed.clone();
            async move {
                let first = !std::mem::replace(&mut *failed.lock().unwrap(), true);
                if first { Err(remq::Error::retryable("flaky once")) } else { Ok(()) }
            }
        });
    let running = RunningWorker::start(worker);
    let id = client.publish("tr.a", "x").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while captured.lines("handler failed").iter().all(|l| !l.contains("traced")) {
        assert!(Instant::now() < deadline, "no failed attempt was logged");
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(100)).await;
    running.stop().await.unwrap();
    let failed: Vec<_> =
        captured.lines("handler failed").into_iter().filter(|l| l.contains("traced")).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let line = &failed[0];
    for field in [
        "delivery{",
        "handler=\"traced\"",
        "channel=tr.a",
        &format!("id={id}"),
        "attempt=1",
        "outcome=\"retryable\"",
        "flaky once",
    ] {
        assert!(line.contains(field), "{field} missing from: {line}");
    }
}
