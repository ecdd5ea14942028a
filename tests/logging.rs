//! What the worker logs: an outage once (not once per reconnect attempt), a
//! span per delivery attempt, and never a password. (Its own test binary: it
//! installs a global log subscriber that captures every line.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, Error, MessageId, Worker};
use remq_testkit::{
    CapturedLogs, RedisServer, RunningWorker, TlsFiles, capture_logs, closed_port, publish_when_back,
    test_worker, wait_for,
};
use tokio::time::{Instant, sleep};

/// The log of this test binary, captured from the first call on: every level of
/// every crate that logs through `tracing`, so a leak anywhere would show.
fn captured() -> &'static CapturedLogs {
    capture_logs("trace")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_per_component_not_per_attempt() {
    let captured = captured();
    let mut server = RedisServer::builder().arg("--appendonly").arg("yes").start();
    let client = Client::connect(&server.url()).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let worker = test_worker(server.url())
        .lease_ttl(Duration::from_secs(10))
        .checkpoint_interval(Duration::from_millis(100))
        .named_handler("outage", "o.*", move |id: MessageId| {
            let record = record.clone();
            async move { record.lock().unwrap().push(id) }
        });
    let running = RunningWorker::start(worker);
    let first = client.publish("o.1", "before").await.unwrap();
    wait_for(Duration::from_secs(10), "the first message", || !seen.lock().unwrap().is_empty()).await;

    // Down until the worker has retried quietly a few times: a warning per
    // attempt would have had every chance to show by then.
    server.kill();
    wait_for(Duration::from_secs(20), "five quiet retries", || quiet_retries(captured, "outage") >= 5).await;
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = publish_after_restart(&client, "o.1", deadline).await;
    until_recovered(&seen, deadline, captured).await;
    running.stop().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), [first, second]);

    // Only this test's consumer: other tests in this binary log too.
    let lines = captured.lines("\"outage\"");
    let retries = quiet_retries(captured, "outage");
    let warnings: Vec<_> = lines.iter().filter(|l| l.contains(" WARN ")).collect();
    assert!(retries >= 5, "expected many quiet retries while down, saw {retries}:\n{}", lines.join("\n"));
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
    let worker = test_worker(server.url())
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
    // Handled (the retry succeeded): a second failure would have been logged by now.
    server.wait_for_cursor("traced", id.get(), Duration::from_secs(10)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_of_a_redis_url_never_appears_in_any_output() {
    const SECRET: &str = "pw-Zq8-never-print-me";
    let captured = captured();
    let files = TlsFiles::generate().unwrap();
    let mut server = RedisServer::builder()
        .arg("--requirepass")
        .arg(SECRET)
        .arg("--appendonly")
        .arg("yes")
        .arg("--appendfsync")
        .arg("always")
        .tls(&files)
        .unwrap()
        .start();
    let port = server.port();
    let url = format!("redis://:{SECRET}@127.0.0.1:{port}");
    // Everything printed for a person to read, besides the log.
    let mut shown = Vec::new();

    let client = Client::connect(&url).await.unwrap();
    shown.push(format!("{client:?} | {} | {:?}", client.addr(), client.addr()));
    shown.push(format!("{:?}", Client::builder(format!("redis://default:{SECRET}@127.0.0.1:{port}/0"))));
    shown.push(format!("{:?}", Worker::new(url.clone())));

    // Errors, each with its Display, its Debug and its chain of sources.
    let mut errors = Vec::new();
    let closed_port = closed_port();
    errors.push(Client::connect(&format!("redis://:{SECRET}@127.0.0.1:{closed_port}")).await.unwrap_err());
    errors.push(Client::connect(&format!("redis://:{SECRET}-wrong@127.0.0.1:{port}")).await.unwrap_err());
    errors.push(Client::connect(&format!("redis://someone:{SECRET}@127.0.0.1:{port}")).await.unwrap_err());
    let tls_port = server.tls_url().rsplit(':').next().unwrap().to_owned();
    errors.push(Client::connect(&format!("rediss://:{SECRET}@localhost:{tls_port}")).await.unwrap_err());
    errors.push(Client::connect(&format!("redis://:{SECRET}@127.0.0.1:notaport")).await.unwrap_err());
    errors.push(Client::connect(&format!("redis://:{SECRET}@127.0.0.1:{port}/x")).await.unwrap_err());
    errors.push(
        Worker::new(format!("redis://:{SECRET}-wrong@127.0.0.1:{port}"))
            .without_registered_handlers()
            .without_signal_handlers()
            .handler("s.*", |_: MessageId| async {})
            .run()
            .await
            .unwrap_err(),
    );
    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            Error::Connect { .. } => "Connect",
            Error::Auth { .. } => "Auth",
            Error::Tls { .. } => "Tls",
            Error::InvalidUrl { .. } => "InvalidUrl",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["Connect", "Auth", "Auth", "Tls", "InvalidUrl", "InvalidUrl", "Auth"], "{errors:?}");
    for error in &errors {
        let mut text = format!("{error} | {error:?}");
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            text.push_str(&format!(" | {inner} | {inner:?}"));
            source = inner.source();
        }
        shown.push(text);
    }

    // A worker with the password in its URL through an outage: its reconnect
    // warnings and recovery lines name the server.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let worker = test_worker(url.clone())
        .lease_ttl(Duration::from_secs(10))
        .checkpoint_interval(Duration::from_millis(100))
        .named_handler("secrets", "sec.*", move |id: MessageId| {
            let record = record.clone();
            async move { record.lock().unwrap().push(id) }
        });
    let running = RunningWorker::start(worker);
    client.publish("sec.a", "before").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_for(Duration::from_secs(20), "the worker to start", || !seen.lock().unwrap().is_empty()).await;
    // Down until the worker has warned about it, so the warning is there to check.
    server.kill();
    wait_for(Duration::from_secs(20), "a warning about the outage", || {
        captured.lines("\"secrets\"").iter().any(|l| l.contains(" WARN "))
    })
    .await;
    server.restart();
    publish_after_restart(&client, "sec.a", deadline).await;
    until_recovered(&seen, deadline, captured).await;
    running.stop().await.unwrap();
    let outage = captured.lines("\"secrets\"");
    assert!(
        outage.iter().any(|l| l.contains(" WARN ")),
        "the outage was not logged, so this test would not see a leak in it:\n{}",
        outage.join("\n")
    );

    let log = captured.text();
    for text in shown.iter().chain([&log]) {
        assert!(!text.contains(SECRET), "the password leaked: {text}");
    }
    // The checks above are only worth something if the address is there to see.
    for text in &shown {
        assert!(text.contains("127.0.0.1") || text.contains("localhost"), "no address in: {text}");
    }
}

/// How many quiet retries (debug lines, not warnings) `consumer` logged so far.
fn quiet_retries(captured: &CapturedLogs, consumer: &str) -> usize {
    captured
        .lines(&format!("\"{consumer}\""))
        .iter()
        .filter(|l| l.contains("failed again") || l.contains("still failing"))
        .count()
}

/// Publishes `after` on `channel` once Redis is back, failing after `deadline`.
async fn publish_after_restart(client: &remq::Client, channel: &str, deadline: Instant) -> MessageId {
    publish_when_back(client, channel, "after", deadline.saturating_duration_since(Instant::now())).await
}

/// Waits until the handler saw the message before and after the outage,
/// failing after `deadline` with the captured logs.
async fn until_recovered(seen: &Mutex<Vec<MessageId>>, deadline: Instant, captured: &CapturedLogs) {
    while seen.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the worker did not recover:\n{}",
            captured.lines("secrets").join("\n")
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// In a partitioned namespace, a delivery's log lines name its partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_members_delivery_lines_name_the_partition() {
    let captured = captured();
    let server = RedisServer::start();
    let client = Client::builder(server.url()).namespace("remq:{logged}").connect().await.unwrap();
    client.create_partitions(4).await.unwrap();
    let worker = test_worker(server.url())
        .namespace("remq:{logged}")
        .retry(remq::RetryPolicy::new().max_attempts(1))
        .named_handler("parted", "pl.*", |_: MessageId| async { Err::<(), _>(remq::Error::permanent("no")) });
    let running = RunningWorker::start(worker);
    let published = client.publish_keyed("pl.a", "customer-7", "x").await.unwrap();
    wait_for(Duration::from_secs(10), "the failure logged", || {
        captured.lines("handler failed").iter().any(|l| l.contains("\"parted\""))
    })
    .await;
    running.stop().await.unwrap();
    let line = captured.lines("handler failed").into_iter().find(|l| l.contains("\"parted\"")).unwrap();
    let field = format!("partition={}", published.partition);
    assert!(line.contains(&field), "{field} missing from: {line}");
}
