//! Leases under typed keys: a consumer and a flush lock never share a lease,
//! whatever the consumer is called.

use std::time::Duration;

use remq::{Client, FlushPolicy, MessageId};
use remq_testkit::{RedisServer, RunningWorker, http_get, local_listener, metric};
use tokio::sync::mpsc;

/// Before leases had kinds, the flush lock of `events.*` was the lease of a
/// consumer named `flush:events.*`: whichever came first kept the other out
/// (the flush job skipped every run as "locked", or the consumer stood by
/// forever). Both must now run side by side.
#[tokio::test]
async fn a_consumer_named_like_a_flush_lock_and_the_flush_job_both_run() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (listener, addr) = local_listener();
    let (tx, mut handled) = mpsc::unbounded_channel();
    let worker = remq_testkit::test_worker(server.url())
        .named_handler("flush:events.*", "events.*", move |id: MessageId| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(id);
            }
        })
        .flush(FlushPolicy::new("events.*").every(Duration::from_millis(20)))
        .metrics_listener(listener);
    let running = RunningWorker::start(worker);
    let id = client.publish("events.a", "hello").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), handled.recv()).await;
    assert_eq!(got.expect("the consumer never got its message"), Some(id));
    let ok = r#"remq_flush_runs_total{pattern="events.*",result="ok"}"#;
    let mut body = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&body, ok).unwrap_or(0.0) < 3.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the flush job never ran while the consumer held its lease:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        body = http_get(addr, "/metrics").await.1;
    }
    let locked = r#"remq_flush_runs_total{pattern="events.*",result="locked"}"#;
    assert_eq!(metric(&body, locked).unwrap_or(0.0), 0.0, "the flush job found its lock taken:\n{body}");
    // The consumer still owns its lease after those flushes.
    let consumers = client.consumers().await.unwrap();
    assert!(consumers.iter().any(|c| &*c.name == "flush:events.*" && c.leased), "{consumers:?}");
    running.stop().await.unwrap();
}
