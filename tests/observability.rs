//! A running worker's `/metrics`, `/healthz` and `/readyz`, read over HTTP after
//! a known workload, during catch-up, and while standing by.
//!
//! The `metrics` recorder is process-wide, so every test here uses its own
//! handler names.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Body, Client, Error, MessageId, RetryPolicy, Worker};
use remq_testkit::{RedisServer, RunningWorker, http_get, local_listener, metric, wait_until};
use tokio::sync::Semaphore;

/// A worker with fast retries, quick checkpoints and leases, starting from the
/// earliest message, serving its endpoints on `listener`.
fn observed_worker(server: &RedisServer, listener: std::net::TcpListener) -> Worker {
    remq_testkit::test_worker(server.url())
        .retry(RetryPolicy::new().initial_backoff(Duration::from_millis(1)).max_attempts(3))
        .metrics_listener(listener)
}

/// Scrapes `/metrics` until `series` has `value`, returning the body.
async fn scrape_until(addr: std::net::SocketAddr, series: &str, value: f64) -> String {
    remq_testkit::scrape_until(addr, series, |v| v == value).await
}

#[tokio::test]
async fn metrics_after_a_known_workload() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    // 20 fine, 3 that fail once and then succeed, 2 that fail for good.
    let mut last = MessageId::ZERO;
    for i in 0..25 {
        let body = match i % 5 {
            1 if i < 15 => "retry-once",
            2 if i < 10 => "poison",
            _ => "fine",
        };
        last = client.publish(&format!("obs.{}", i % 3), body).await.unwrap();
    }
    let failed_once = Arc::new(Mutex::new(HashSet::new()));
    let handler = move |id: MessageId, Body(body): Body| {
        let failed_once = failed_once.clone();
        async move {
            match &body[..] {
                b"poison" => Err(Error::permanent("poison")),
                b"retry-once" if failed_once.lock().unwrap().insert(id) => Err(Error::retryable("once")),
                _ => Ok(()),
            }
        }
    };
    let (listener, addr) = local_listener();
    let running =
        RunningWorker::start(observed_worker(&server, listener).named_handler("obs", "obs.*", handler));
    let checkpoint = r#"remq_checkpoint_id{handler="obs"}"#;
    let body = scrape_until(addr, checkpoint, last.get() as f64).await;
    let value = |series: &str| metric(&body, series).unwrap_or_else(|| panic!("no {series} in\n{body}"));
    assert_eq!(value(r#"remq_messages_handled_total{handler="obs",outcome="ok"}"#), 23.0);
    assert_eq!(value(r#"remq_messages_handled_total{handler="obs",outcome="retried"}"#), 3.0);
    assert_eq!(value(r#"remq_messages_handled_total{handler="obs",outcome="dead_lettered"}"#), 2.0);
    assert_eq!(value(r#"remq_handler_duration_seconds_count{handler="obs"}"#), 28.0, "one per attempt");
    assert_eq!(value(r#"remq_handler_duration_seconds_bucket{handler="obs",le="30"}"#), 28.0);
    assert!(metric(&body, r#"remq_handler_duration_seconds_bucket{handler="obs",le="0.0001"}"#).is_some());
    assert_eq!(value(r#"remq_handlers_in_flight{handler="obs"}"#), 0.0);
    assert_eq!(value(r#"remq_replayed_messages_total{handler="obs"}"#), 25.0);
    assert_eq!(value(r#"remq_gap_replays_total{handler="obs",reason="startup"}"#), 1.0);
    assert_eq!(value(r#"remq_lease_owner{handler="obs"}"#), 1.0);
    assert!(body.contains("# TYPE remq_handler_duration_seconds histogram"), "{body}");
    assert!(!body.contains("channel=") && !body.contains("id=\""), "labels stay bounded");
    // Caught up: no lag, even though the dead letters moved the head on.
    scrape_until(addr, r#"remq_consumer_lag_messages{handler="obs"}"#, 0.0).await;

    // A dropped pub/sub connection shows as a reconnect and a gap replay.
    let mut redis = server.connection().await;
    let _: () =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut redis).await.unwrap();
    let last = client.publish("obs.0", "fine").await.unwrap();
    let body = scrape_until(addr, checkpoint, last.get() as f64).await;
    assert_eq!(metric(&body, r#"remq_redis_reconnects_total{handler="obs"}"#), Some(1.0), "{body}");
    assert_eq!(metric(&body, r#"remq_gap_replays_total{handler="obs",reason="disconnect"}"#), Some(1.0));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn readiness_waits_for_catch_up_and_counts_a_standby_as_ready() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let backlog = client.publish_batch("ready", (0..2_000).map(|i| i.to_string())).await.unwrap();
    // The time index says the backlog was published an hour ago.
    let mut redis = server.connection().await;
    let (now, _): (u64, u64) = redis::cmd("TIME").query_async(&mut redis).await.unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("remq:time")
        .arg("XX")
        .arg(now - 3600)
        .arg(backlog.end().get())
        .query_async(&mut redis)
        .await
        .unwrap();
    // The handler waits for permits: the consumer cannot catch up until the test lets it.
    let gate = Arc::new(Semaphore::new(0));
    let handler = {
        let gate = gate.clone();
        move |_: MessageId| {
            let gate = gate.clone();
            async move { gate.acquire().await.unwrap().forget() }
        }
    };
    let (listener, addr) = local_listener();
    let running = RunningWorker::start(observed_worker(&server, listener).named_handler(
        "ready-1",
        "ready",
        handler.clone(),
    ));
    let readiness = wait_until(Duration::from_secs(10), "the consumer to start", async || {
        assert_eq!(http_get(addr, "/healthz").await, (200, "ok\n".to_owned()));
        let readiness = http_get(addr, "/readyz").await;
        (readiness.1 != "ready-1: starting\n").then_some(readiness)
    })
    .await;
    assert_eq!(readiness, (503, "ready-1: catching up\n".to_owned()), "replaying 2000 messages: not ready");
    gate.add_permits(1_000);
    scrape_until(addr, r#"remq_checkpoint_id{handler="ready-1"}"#, 1_000.0).await;
    assert_eq!(http_get(addr, "/readyz").await.0, 503, "half way: still not ready");
    // Stuck in a handler, the consumer still reports its lag: 1000 ids, an hour.
    scrape_until(addr, r#"remq_consumer_lag_messages{handler="ready-1"}"#, 1_000.0).await;
    let lag_seconds = r#"remq_consumer_lag_seconds{handler="ready-1"}"#;
    let body = remq_testkit::scrape_until(addr, lag_seconds, |s| s >= 3600.0).await;
    assert!(metric(&body, lag_seconds) < Some(3700.0));
    gate.add_permits(1_000_000);
    wait_until(Duration::from_secs(10), "readiness after catching up", async || {
        (http_get(addr, "/readyz").await == (200, "ready-1: live\n".to_owned())).then_some(())
    })
    .await;
    scrape_until(addr, r#"remq_consumer_lag_seconds{handler="ready-1"}"#, 0.0).await;

    // A second worker of the same consumer stands by, and is ready as such.
    let (standby_listener, standby_addr) = local_listener();
    let standby = RunningWorker::start(
        observed_worker(&server, standby_listener).named_handler("ready-1", "ready", handler),
    );
    let body = wait_until(Duration::from_secs(10), "the standby to report ready", async || {
        match tokio::time::timeout(Duration::from_secs(1), http_get(standby_addr, "/readyz")).await {
            Ok((200, body)) => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(body, "ready-1: standby\n");
    assert_eq!(http_get(standby_addr, "/nope").await.0, 404);
    standby.stop().await.unwrap();
    running.stop().await.unwrap();
}
