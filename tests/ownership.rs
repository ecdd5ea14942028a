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

/// `Client::seek` moves a cursor only while no worker owns the consumer: a
/// running owner keeps its cursor (the move is refused, so it cannot be
/// overwritten), and after the owner stops, the move is stored and the next
/// owner goes on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_moves_only_while_no_worker_owns_the_consumer() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    for i in 0..10 {
        client.publish("m.a", format!("{i}")).await.unwrap();
    }
    let (tx, mut handled) = mpsc::unbounded_channel();
    let worker = |tx: mpsc::UnboundedSender<u64>| {
        remq_testkit::test_worker(server.url()).named_handler("mover", "m.*", move |id: MessageId| {
            let _ = tx.send(id.get());
            async {}
        })
    };
    let running = RunningWorker::start(worker(tx.clone()));
    server.wait_for_cursor("mover", 10, Duration::from_secs(10)).await;
    let refused = client.seek("mover", MessageId::new(3)).await.unwrap_err();
    assert!(matches!(refused, remq::Error::ConsumerOwned { .. }), "{refused:?}");
    assert!(refused.to_string().contains("stop its workers"), "{refused}");
    assert_eq!(server.stored_cursor("mover").await, Some(10), "the owner's cursor stays");
    running.stop().await.unwrap();
    while handled.try_recv().is_ok() {}

    let ahead = client.seek("mover", MessageId::new(11)).await.unwrap_err();
    assert!(ahead.to_string().contains("the last id issued is 10"), "{ahead}");
    assert_eq!(client.seek("mover", MessageId::new(3)).await.unwrap(), MessageId::new(3));
    assert_eq!(server.stored_cursor("mover").await, Some(3));
    let mut admin = server.connection().await;
    let leased: u32 =
        redis::cmd("EXISTS").arg("remq:consumer:mover:lease").query_async(&mut admin).await.unwrap();
    assert_eq!(leased, 0, "the move gave the lease back");

    // The next owner goes on after the moved cursor: 4..=10 again, in order.
    let running = RunningWorker::start(worker(tx));
    let mut again = Vec::new();
    while again.len() < 7 {
        again.push(tokio::time::timeout(Duration::from_secs(10), handled.recv()).await.unwrap().unwrap());
    }
    assert_eq!(again, (4..=10).collect::<Vec<_>>());
    running.stop().await.unwrap();

    // A partitioned namespace moves one partition's cursor at a time.
    let parted = Client::builder(server.url()).namespace("remq:{moved}").connect().await.unwrap();
    parted.create_partitions(2).await.unwrap();
    let base = parted.seek("mover", MessageId::ZERO).await.unwrap_err();
    assert!(matches!(base, remq::Error::Partitions { .. }), "{base:?}");
    parted.partition(1).await.unwrap().publish("m.a", "x").await.unwrap();
    assert_eq!(
        parted.partition(1).await.unwrap().seek("mover", MessageId::new(1)).await.unwrap(),
        MessageId::new(1)
    );
}
