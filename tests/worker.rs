//! The worker runtime in-process against real redis-server processes: order,
//! completeness, the replay → live switch, disconnects, restarts, overflow,
//! leases and fencing, shutdown, and start-up errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Channel, Client, Error, Json, Message, MessageId, StartFrom, State, Worker};
use remq_testkit::{
    RedisServer, RunningWorker, closed_port, local_listener, publish_when_back, scrape_until, test_worker,
    wait_for, wait_for_readiness, wait_until,
};
use tokio::time::{Instant, sleep};

/// Ids a handler saw, in the order it saw them.
type Seen = Arc<Mutex<Vec<MessageId>>>;

/// A worker whose one handler records ids; fast checkpoints and leases so tests are quick.
fn recording_worker(server: &RedisServer, name: &str, pattern: &str) -> (Worker, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let worker = test_worker(server.url())
        .checkpoint_every(50)
        .checkpoint_interval(Duration::from_millis(100))
        .lease_ttl(Duration::from_secs(2))
        .named_handler(name, pattern, move |id: MessageId| {
            let record = record.clone();
            async move { record.lock().unwrap().push(id) }
        });
    (worker, seen)
}

/// Asserts `seen` is exactly `expected`: every id once, ascending.
fn assert_exactly_in_order(seen: &Seen, expected: &[MessageId]) {
    let seen = seen.lock().unwrap();
    let first_gap = seen.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        first_gap.is_none() && seen.len() == expected.len(),
        "seen {} ids, expected {}; first difference at index {first_gap:?}",
        seen.len(),
        expected.len()
    );
}

/// Waits (up to `limit`) until the handler saw as many ids as `expected`, then
/// publishes a marker on `channel` (one the handler consumes) and waits until
/// it is handled too: the worker has then gone past every earlier id, so a
/// duplicate or a stray would be in `seen`. Adds the marker to `expected`, and
/// checks the ids are exactly `expected` in order.
async fn expect_exactly(
    client: &Client,
    channel: &str,
    seen: &Seen,
    expected: &mut Vec<MessageId>,
    limit: Duration,
) {
    wait_for(limit, "all messages", || seen.lock().unwrap().len() >= expected.len()).await;
    let marker = client.publish(channel, "marker").await.unwrap();
    expected.push(marker);
    wait_for(Duration::from_secs(10), "the marker published after them", || {
        seen.lock().unwrap().contains(&marker)
    })
    .await;
    assert_exactly_in_order(seen, expected);
}

/// The key holding the lease of `consumer` (see `scripts/lease.lua`).
fn lease_key(consumer: &str) -> String {
    format!("remq:consumer:{consumer}:lease")
}

/// Publishes `count` messages round-robin over `channels` channels `prefix.0…`,
/// in batches, returning every id in order.
async fn publish_spread(client: &Client, prefix: &str, channels: usize, count: usize) -> Vec<MessageId> {
    let mut ids = Vec::with_capacity(count);
    for (i, chunk) in (0..count).collect::<Vec<_>>().chunks(100).enumerate() {
        let bodies: Vec<String> = chunk.iter().map(|n| format!("m{n}")).collect();
        let range = client.publish_batch(&format!("{prefix}.{}", i % channels), bodies).await.unwrap();
        ids.extend((range.start().get()..=range.end().get()).map(MessageId::new));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_arrives_once_in_order_while_publishing() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    client.publish("noise", "not ours").await.unwrap();
    let (worker, seen) = recording_worker(&server, "orders", "orders.*");
    let running = RunningWorker::start(worker);
    let mut ids = publish_spread(&client, "orders", 10, 100_000).await;
    expect_exactly(&client, "orders.0", &seen, &mut ids, Duration::from_secs(60)).await;
    running.stop().await.unwrap();
    assert_eq!(server.stored_cursor("orders").await, Some(ids.last().unwrap().get()), "final checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_to_live_switch_loses_and_repeats_nothing() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut ids = publish_spread(&client, "race", 3, 5_000).await;
    let producer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..3_000 {
                ids.push(client.publish(&format!("race.{}", i % 3), "live").await.unwrap());
            }
            ids
        })
    };
    // The worker starts while the producer is publishing.
    wait_until(Duration::from_secs(10), "the producer to start", async || {
        (client.head().await.unwrap().get() > 5_000).then_some(())
    })
    .await;
    let (worker, seen) = recording_worker(&server, "race", "race.*");
    let running = RunningWorker::start(worker.replay_batch(500));
    ids.extend(producer.await.unwrap());
    expect_exactly(&client, "race.0", &seen, &mut ids, Duration::from_secs(30)).await;
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pubsub_connections_fall_back_to_replay() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (worker, seen) = recording_worker(&server, "kill", "k.*");
    let running = RunningWorker::start(worker);
    let mut admin = server.connection().await;
    let mut ids = Vec::new();
    for round in 0..5 {
        for i in 0..400 {
            ids.push(client.publish(&format!("k.{}", i % 4), "m").await.unwrap());
            if i == 200 {
                let killed: u64 = redis::cmd("CLIENT")
                    .arg(&["KILL", "TYPE", "pubsub"])
                    .query_async(&mut admin)
                    .await
                    .unwrap();
                assert!(round == 0 || killed > 0, "round {round}: no pub/sub connection to kill");
            }
        }
    }
    expect_exactly(&client, "k.0", &seen, &mut ids, Duration::from_secs(30)).await;
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_loses_nothing() {
    let mut server =
        RedisServer::builder().arg("--appendonly").arg("yes").arg("--appendfsync").arg("always").start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (worker, seen) = recording_worker(&server, "restart", "r.*");
    let running = RunningWorker::start(worker);
    let mut ids = publish_spread(&client, "r", 2, 2_000).await;
    server.restart();
    // Publish through the outage: calls fail until the client has reconnected.
    while ids.len() < 4_000 {
        ids.push(publish_when_back(&client, "r.0", "after", Duration::from_secs(20)).await);
    }
    expect_exactly(&client, "r.0", &seen, &mut ids, Duration::from_secs(30)).await;
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_live_buffer_falls_back_to_replay() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let (listener, addr) = local_listener();
    let worker = test_worker(server.url())
        .buffer_size(4)
        .replay_batch(7)
        .metrics_listener(listener)
        .named_handler("slow", "s.*", move |id: MessageId| {
            let record = record.clone();
            async move {
                if id.get().is_multiple_of(50) {
                    sleep(Duration::from_millis(5)).await;
                }
                record.lock().unwrap().push(id)
            }
        });
    let running = RunningWorker::start(worker);
    // Following live pushes, so that the batches below arrive faster than it handles them.
    wait_for_readiness(addr, "slow", "live").await;
    let mut ids = publish_spread(&client, "s", 5, 3_000).await;
    expect_exactly(&client, "s.0", &seen, &mut ids, Duration::from_secs(30)).await;
    // Without an overflow, this test proved nothing about the fallback.
    let overflows = r#"remq_gap_replays_total{handler="slow",reason="overflow"}"#;
    let body = scrape_until(addr, overflows, |n| n >= 1.0).await;
    println!("the live buffer overflowed {} time(s)", remq_testkit::metric(&body, overflows).unwrap());
    running.stop().await.unwrap();
}

/// Redis itself disconnects a subscriber whose output buffer passes
/// `client-output-buffer-limit pubsub`; the worker treats that as any other
/// dropped connection and replays from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_disconnecting_a_slow_subscriber_falls_back_to_replay() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut admin = server.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "client-output-buffer-limit", "pubsub 64kb 32kb 1"])
        .query_async(&mut admin)
        .await
        .unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    // A local buffer far larger than what arrives, so only Redis' limit can cut the feed.
    let worker = test_worker(server.url()).buffer_size(1_000_000).named_handler(
        "slow-reader",
        "ob.*",
        move |id: MessageId| {
            let record = record.clone();
            async move {
                if id.get().is_multiple_of(50) {
                    sleep(Duration::from_millis(2)).await;
                }
                record.lock().unwrap().push(id)
            }
        },
    );
    let running = RunningWorker::start(worker);
    wait_until(Duration::from_secs(10), "the worker to subscribe", async || {
        let patterns: u64 =
            redis::cmd("PUBSUB").arg("NUMPAT").query_async(&mut server.connection().await).await.unwrap();
        (patterns > 0).then_some(())
    })
    .await;
    // Each batch pushes 200 KiB in one go, past the 64 KiB hard limit.
    let body = "x".repeat(1024);
    let mut ids = Vec::new();
    for batch in 0..20 {
        let range = client.publish_batch(&format!("ob.{}", batch % 3), vec![&body; 200]).await.unwrap();
        ids.extend((range.start().get()..=range.end().get()).map(MessageId::new));
    }
    expect_exactly(&client, "ob.0", &seen, &mut ids, Duration::from_secs(30)).await;
    running.stop().await.unwrap();
    // Redis logs each client it cuts off ("... scheduled to be closed ASAP for
    // overcoming of output buffer limits"); without one, this test proved nothing.
    let log = std::fs::read_to_string(server.dir().join("redis.log")).unwrap();
    let disconnections = log.lines().filter(|l| l.contains("overcoming of output buffer limits")).count();
    assert!(disconnections > 0, "Redis never cut the subscriber off, so the fallback was not exercised");
    println!("Redis cut the subscriber off {disconnections} time(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_owner_shuts_down() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (first, seen_first) = recording_worker(&server, "shared", "h.*");
    let (second, seen_second) = recording_worker(&server, "shared", "h.*");
    let ((first_listener, first_addr), (second_listener, second_addr)) = (local_listener(), local_listener());
    let first_running =
        RunningWorker::start(first.lease_ttl(Duration::from_secs(30)).metrics_listener(first_listener));
    wait_for_readiness(first_addr, "shared", "live").await;
    let second_running =
        RunningWorker::start(second.lease_ttl(Duration::from_secs(30)).metrics_listener(second_listener));
    // The standby has found the lease taken, so it had every chance to consume below.
    wait_for_readiness(second_addr, "shared", "standby").await;
    let mut ids = publish_spread(&client, "h", 2, 1_000).await;
    wait_for(Duration::from_secs(20), "the owner to process", || {
        seen_first.lock().unwrap().len() >= ids.len()
    })
    .await;
    assert!(
        seen_second.lock().unwrap().is_empty(),
        "the standby must not consume while the owner holds the lease"
    );
    // A graceful stop releases the lease; the standby takes over long before the 30 s lease would expire.
    first_running.stop().await.unwrap();
    let handover = Instant::now();
    ids.extend(publish_spread(&client, "h", 2, 500).await);
    wait_for(Duration::from_secs(5), "the standby to take over", || seen_second.lock().unwrap().len() >= 500)
        .await;
    assert!(handover.elapsed() < Duration::from_secs(5));
    let second: Vec<_> = seen_second.lock().unwrap().clone();
    assert_eq!(second, ids[1_000..], "the standby continues exactly after the owner's final checkpoint");
    second_running.stop().await.unwrap();
}

#[tokio::test]
async fn a_checkpoint_with_a_stale_lease_token_is_refused() {
    let server = RedisServer::start();
    let mut raw = server.connection().await;
    let lease = include_str!("../scripts/lease.lua");
    let checkpoint = include_str!("../scripts/checkpoint.lua");
    let eval = |script: &str, args: &[&str]| redis::cmd("EVAL").arg(script).arg(0).arg(args).to_owned();
    // Checkpoints name ids that were issued.
    let _: () = redis::cmd("SET").arg("remq:id").arg(100).query_async(&mut raw).await.unwrap();
    let (got, _): (u64, u64) =
        eval(lease, &["acquire", "c", "60000", "old"]).query_async(&mut raw).await.unwrap();
    assert_eq!(got, 1);
    let (got, remaining): (u64, u64) =
        eval(lease, &["acquire", "c", "60000", "other"]).query_async(&mut raw).await.unwrap();
    assert_eq!(got, 0, "a held lease cannot be acquired");
    assert!(remaining > 50_000 && remaining <= 60_000, "{remaining}");
    let stored: u64 = eval(checkpoint, &["c", "old", "10"]).query_async(&mut raw).await.unwrap();
    assert_eq!(stored, 10);
    let stored: u64 = eval(checkpoint, &["c", "old", "5"]).query_async(&mut raw).await.unwrap();
    assert_eq!(stored, 10, "a checkpoint never moves backwards");
    // The old owner pauses past its lease; a new owner acquires it.
    let _: () = redis::cmd("DEL").arg("remq:consumer:c:lease").query_async(&mut raw).await.unwrap();
    let (got, _): (u64, u64) =
        eval(lease, &["acquire", "c", "60000", "new"]).query_async(&mut raw).await.unwrap();
    assert_eq!(got, 1);
    let err = eval(checkpoint, &["c", "old", "20"]).query_async::<u64>(&mut raw).await.unwrap_err();
    assert_eq!(err.code(), Some("FENCED"), "{err}");
    assert_eq!(server.stored_cursor("c").await, Some(10), "the stale owner did not move the cursor");
    let renewed: u64 = eval(lease, &["renew", "c", "60000", "old"]).query_async(&mut raw).await.unwrap();
    assert_eq!(renewed, 0, "the stale owner cannot renew either");
    let released: u64 = eval(lease, &["release", "c", "0", "old"]).query_async(&mut raw).await.unwrap();
    assert_eq!(released, 0, "nor release the new owner's lease");
    let stored: u64 = eval(checkpoint, &["c", "new", "20"]).query_async(&mut raw).await.unwrap();
    assert_eq!(stored, 20);
    // Above the last id issued (the counter went back), a checkpoint is refused;
    // a rewind moves the cursor back.
    let err = eval(checkpoint, &["c", "new", "101"]).query_async::<u64>(&mut raw).await.unwrap_err();
    assert_eq!(err.code(), Some("BEHIND"), "{err}");
    assert!(err.detail().unwrap().ends_with(" 100"), "the head ends the message: {err}");
    let stored: u64 = eval(checkpoint, &["c", "new", "7", "rewind"]).query_async(&mut raw).await.unwrap();
    assert_eq!(stored, 7);
    // The first checkpoint of a consumer is stored even when it is 0.
    let _: (u64, u64) = eval(lease, &["acquire", "fresh", "60000", "t"]).query_async(&mut raw).await.unwrap();
    let stored: u64 = eval(checkpoint, &["fresh", "t", "0"]).query_async(&mut raw).await.unwrap();
    assert_eq!((stored, server.stored_cursor("fresh").await), (0, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_whose_lease_is_taken_stops_consuming() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (worker, seen) = recording_worker(&server, "fenced", "f.*");
    // A second consumer of the same messages in the same worker, which nobody
    // fences: what it handles, the fenced one had the chance to handle too.
    let witnessed = Seen::default();
    let witness = witnessed.clone();
    let worker = worker.named_handler("fenced-witness", "f.*", move |id: MessageId| {
        let witness = witness.clone();
        async move { witness.lock().unwrap().push(id) }
    });
    let (listener, addr) = local_listener();
    let running =
        RunningWorker::start(worker.lease_ttl(Duration::from_millis(600)).metrics_listener(listener));
    let first = publish_spread(&client, "f", 1, 100).await;
    wait_for(Duration::from_secs(10), "the first messages", || seen.lock().unwrap().len() >= 100).await;
    server.wait_for_cursor("fenced", first[99].get(), Duration::from_secs(10)).await;
    // Another owner steals the lease (as if this process had paused past it),
    // for longer than the test needs: it gives the lease back below.
    let mut raw = server.connection().await;
    let _: () = redis::cmd("SET")
        .arg(lease_key("fenced"))
        .arg("999999")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut raw)
        .await
        .unwrap();
    wait_for_readiness(addr, "fenced", "standby").await;
    let before = seen.lock().unwrap().len();
    let second = publish_spread(&client, "f", 1, 100).await;
    wait_for(Duration::from_secs(10), "the witness to handle the next messages", || {
        witnessed.lock().unwrap().ends_with(&second)
    })
    .await;
    assert_eq!(seen.lock().unwrap().len(), before, "a fenced owner kept consuming");
    assert_eq!(server.stored_cursor("fenced").await, Some(100));
    // When the thief's lease lapses, the worker takes over again and catches up.
    let _: () = redis::cmd("DEL").arg(lease_key("fenced")).query_async(&mut raw).await.unwrap();
    wait_for(Duration::from_secs(10), "the worker to own the consumer again", || {
        seen.lock().unwrap().len() >= 200
    })
    .await;
    running.stop().await.unwrap();
}

#[derive(Clone)]
struct Greeting(&'static str);

#[derive(serde::Deserialize)]
struct Signup {
    account_id: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractors_state_and_handler_failures() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l1, l2) = (log.clone(), log.clone());
    let panicked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = test_worker(server.url())
        .state(Greeting("welcome"))
        .named_handler(
            "signups",
            "accounts.*",
            move |Json(s): Json<Signup>, Channel(c): Channel, State(g): State<Greeting>| {
                let (log, panicked) = (l1.clone(), panicked.clone());
                async move {
                    if s.account_id == 13 && !panicked.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        panic!("unlucky account");
                    }
                    log.lock().unwrap().push(format!("{} {} on {c}", g.0, s.account_id));
                }
            },
        )
        .named_handler("raw", "accounts.*", move |m: Message, body: String| {
            let log = l2.clone();
            async move {
                log.lock().unwrap().push(format!("raw {} {body}", m.id));
                if body.contains("fail") { Err(Error::permanent("business rule")) } else { Ok(()) }
            }
        });
    let running = RunningWorker::start(worker);
    let mut ids = Vec::new();
    for body in
        [r#"{"account_id":1}"#, "not json", r#"{"account_id":13}"#, r#"{"fail":1}"#, r#"{"account_id":2}"#]
    {
        // Ids come from the namespace's one counter, which dead letters use too,
        // so take them from the publishes.
        ids.push(client.publish("accounts.created", body).await.unwrap());
    }
    wait_for(Duration::from_secs(10), "both handlers to finish", || log.lock().unwrap().len() >= 8).await;
    let mut log = log.lock().unwrap().clone();
    let welcomes: Vec<_> = log.iter().filter(|l| l.starts_with("welcome")).cloned().collect();
    assert_eq!(
        welcomes,
        ["welcome 1 on accounts.created", "welcome 13 on accounts.created", "welcome 2 on accounts.created"],
        "the retried message holds back the next one"
    );
    log.sort();
    let mut expected = vec![
        format!("raw {} {{\"account_id\":1}}", ids[0]),
        format!("raw {} not json", ids[1]),
        format!("raw {} {{\"account_id\":13}}", ids[2]),
        format!("raw {} {{\"fail\":1}}", ids[3]),
        format!("raw {} {{\"account_id\":2}}", ids[4]),
        "welcome 1 on accounts.created".to_owned(),
        "welcome 13 on accounts.created".to_owned(),
        "welcome 2 on accounts.created".to_owned(),
    ];
    expected.sort();
    assert_eq!(
        log, expected,
        "bad JSON and a permanent error skip one message each; a panic is retried until it succeeds"
    );
    running.stop().await.unwrap();
    assert!(server.stored_cursor("signups").await >= Some(ids[4].get()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_consumers_start_where_configured() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let old = publish_spread(&client, "p", 1, 10).await;
    let (latest, seen_latest) = recording_worker(&server, "latest", "p.*");
    let (after, seen_after) = recording_worker(&server, "after", "p.*");
    let latest_running = RunningWorker::start(latest.start_from(StartFrom::Latest));
    let after_running = RunningWorker::start(after.start_from(StartFrom::After(old[4])));
    wait_for(Duration::from_secs(10), "the after consumer to replay", || {
        seen_after.lock().unwrap().len() >= 5
    })
    .await;
    // The latest consumer stores its start at once: a message published after
    // that comes after its start.
    server.wait_for_cursor("latest", old[9].get(), Duration::from_secs(10)).await;
    let new = client.publish("p.0", "new").await.unwrap();
    wait_for(Duration::from_secs(10), "the new message", || seen_latest.lock().unwrap().len() == 1).await;
    assert_eq!(*seen_latest.lock().unwrap(), [new]);
    wait_for(Duration::from_secs(10), "the new message", || seen_after.lock().unwrap().len() == 6).await;
    assert_eq!(seen_after.lock().unwrap()[..], [&old[5..], &[new][..]].concat());
    latest_running.stop().await.unwrap();
    after_running.stop().await.unwrap();
}

#[tokio::test]
async fn start_up_errors_are_clear() {
    let server = RedisServer::start();
    let noop = |_: MessageId| async {};
    let base = || Worker::new(server.url()).without_registered_handlers().without_signal_handlers();

    let err = base().run().await.unwrap_err();
    assert!(matches!(err, Error::NoHandlers), "{err}");

    let err =
        base().named_handler("same", "a.*", noop).named_handler("same", "b.*", noop).run().await.unwrap_err();
    assert!(matches!(err, Error::DuplicateConsumer { .. }) && err.to_string().contains("\"same\""), "{err}");

    let err = base().handler("", noop).run().await.unwrap_err();
    assert!(matches!(err, Error::InvalidPattern { .. }), "{err}");

    let err = base().handler("a.*", |_: State<Greeting>| async {}).run().await.unwrap_err();
    assert!(matches!(err, Error::MissingState { .. }) && err.to_string().contains("Greeting"), "{err}");

    let port = closed_port();
    let err = Worker::new(format!("redis://:pw@127.0.0.1:{port}"))
        .without_registered_handlers()
        .without_signal_handlers()
        .handler("a.*", noop)
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }) && !err.to_string().contains("pw@"), "{err}");
}

/// The checkpoint interval keeps running while a handler is stuck: what was
/// done before it is stored, so a crash now would not replay it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_handler_does_not_hold_back_the_checkpoint_of_what_is_done() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let ids = client.publish_batch("stuck", ["1", "2", "3"]).await.unwrap();
    let stuck = *ids.end();
    let worker = test_worker(server.url())
        .checkpoint_every(1000)
        .checkpoint_interval(Duration::from_millis(300))
        .named_handler("stuck", "stuck", move |id: MessageId| async move {
            if id == stuck {
                std::future::pending::<()>().await;
            }
        });
    let running = RunningWorker::start(worker);
    // The first two are done well within one interval of the start; only the
    // interval can store them now that the third never finishes.
    server.wait_for_cursor("stuck", stuck.get() - 1, Duration::from_secs(5)).await;
    assert_eq!(server.stored_cursor("stuck").await, Some(stuck.get() - 1), "not past the stuck one");
    running.crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_stores_its_start_at_once_even_on_an_empty_namespace() {
    let server = RedisServer::start();
    let (worker, _) = recording_worker(&server, "fresh", "*");
    let running = RunningWorker::start(
        worker.start_from(StartFrom::Latest).checkpoint_interval(Duration::from_secs(60)),
    );
    let stored = wait_until(Duration::from_secs(10), "the start position to be stored", async || {
        server.stored_cursor("fresh").await
    })
    .await;
    assert_eq!(stored, 0);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_entry_with_a_non_utf8_channel_is_skipped_not_fatal() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let before = client.publish("x.ok", "1").await.unwrap();
    // Something other than Remq registers a channel whose name is not UTF-8 and
    // stores an entry on it (the scripts refuse such names).
    let mut raw = server.connection().await;
    let bad: &[u8] = b"x.\xff";
    let _: () = redis::cmd("SADD").arg("remq:channels").arg(bad).query_async(&mut raw).await.unwrap();
    let _: () = redis::cmd("INCR").arg("remq:id").query_async(&mut raw).await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg(b"remq:channel:x.\xff")
        .arg("2-0")
        .arg("m")
        .arg("?")
        .query_async(&mut raw)
        .await
        .unwrap();
    let after = client.publish("x.ok", "3").await.unwrap();
    let (worker, seen) = recording_worker(&server, "tolerant", "x.*");
    let running = RunningWorker::start(worker);
    wait_for(Duration::from_secs(10), "the valid messages", || seen.lock().unwrap().len() >= 2).await;
    assert_eq!(*seen.lock().unwrap(), [before, after]);
    assert!(!running.is_finished(), "the worker must keep running");
    running.stop().await.unwrap();
}
