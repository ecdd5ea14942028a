//! A Redis outage is logged once, not once per reconnect attempt. (Its own test
//! binary: it installs a global log subscriber that captures every line.)

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, MessageId, StartFrom, Worker};
use remq_testkit::RedisServer;
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
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap()).lines().map(str::to_owned).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_per_component_not_per_attempt() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("remq=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
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
    let stop = worker.shutdown_token();
    let run = tokio::spawn(worker.run());
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
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), [first, second]);

    let lines = captured.lines();
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
