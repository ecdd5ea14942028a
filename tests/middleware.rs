//! The handler middleware against a real redis-server: retries, timeouts, dead
//! letters (and what happens when they cannot be stored), application layers,
//! shutdown in the middle of a retry loop, and redriving dead letters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use remq::middleware::DeadLetterEnvelope;
use remq::{Client, Delivery, Error, HandlerOptions, MessageId, RetryPolicy, StartFrom, Worker};
use remq_testkit::{RedisServer, RunningWorker, wait_for, wait_until};
use tokio::time::{Instant, sleep};

/// The kit's worker for `server` (only the handlers a test adds), with retries
/// a few milliseconds apart.
fn test_worker(server: &RedisServer) -> Worker {
    remq_testkit::test_worker(server.url()).retry(
        RetryPolicy::new().initial_backoff(Duration::from_millis(5)).max_backoff(Duration::from_millis(20)),
    )
}

/// Polls until `channel` holds `count` messages, and returns them.
async fn wait_for_messages(client: &Client, channel: &str, count: usize) -> Vec<remq::Message> {
    wait_until(Duration::from_secs(10), &format!("{count} messages on {channel}"), async || {
        let messages = client.consume(channel, MessageId::ZERO, 100).await.unwrap();
        (messages.len() >= count).then_some(messages)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_lettered_at_once_and_the_cursor_moves_on() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let worker = test_worker(&server).named_handler("billing", "orders.*", move |body: String| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if body.contains("declined") {
                Err(Error::permanent("card declined\nby the bank"))
            } else {
                Ok(())
            }
        }
    });
    let running = RunningWorker::start(worker);
    let bad = client.publish("orders.created", b"{\"card\":\"declined\"}\n\0binary").await.unwrap();
    let good = client.publish("orders.created", "{\"card\":\"ok\"}").await.unwrap();
    let dead = wait_for_messages(&client, "dead.orders.created", 1).await;
    let envelope = DeadLetterEnvelope::parse(&dead[0].body).unwrap();
    assert_eq!(envelope.message.channel, "orders.created");
    assert_eq!(envelope.message.id, bad);
    assert_eq!(envelope.message.body, Bytes::from_static(b"{\"card\":\"declined\"}\n\0binary"));
    assert_eq!((envelope.handler.as_str(), envelope.attempts), ("billing", 1));
    assert!(envelope.error.contains("card declined by the bank"), "{}", envelope.error);
    let text = String::from_utf8_lossy(&dead[0].body);
    assert!(text.starts_with("remq-dead-letter: 1\nchannel: orders.created\n"), "{text}");
    server.wait_for_cursor("billing", good.get(), Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a permanent failure is not retried");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_and_timeouts_are_retried_then_dead_lettered() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let (flaky_calls, slow_calls) = (calls.clone(), Arc::new(AtomicU32::new(0)));
    let slow_counter = slow_calls.clone();
    let options = HandlerOptions::DEFAULT.retries(2).dead_letter("dlq.flaky");
    let timeout = HandlerOptions::DEFAULT.retries(1).timeout(Duration::from_millis(50));
    let worker = test_worker(&server)
        .configured_handler("flaky", "f.*", options, move |d: Delivery| {
            let calls = flaky_calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::retryable(format!("down on attempt {}", d.attempt)))
            }
        })
        .configured_handler("slow", "s.*", timeout, move |_: MessageId| {
            let calls = slow_counter.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_secs(5)).await;
            }
        });
    let running = RunningWorker::start(worker);
    let flaky = client.publish("f.1", "x").await.unwrap();
    let slow = client.publish("s.1", "y").await.unwrap();
    let dead = wait_for_messages(&client, "dlq.flaky", 1).await;
    let envelope = DeadLetterEnvelope::parse(&dead[0].body).unwrap();
    assert_eq!((envelope.message.id, envelope.attempts), (flaky, 3), "1 attempt + 2 retries");
    assert!(envelope.error.contains("down on attempt 3"), "{}", envelope.error);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let dead = wait_for_messages(&client, "dead.s.1", 1).await;
    let envelope = DeadLetterEnvelope::parse(&dead[0].body).unwrap();
    assert_eq!((envelope.message.id, envelope.attempts), (slow, 2));
    assert!(envelope.error.contains("timeout"), "{}", envelope.error);
    assert_eq!(slow_calls.load(Ordering::SeqCst), 2, "each attempt was cut off by the timeout");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_dead_letter_cannot_be_stored_the_cursor_does_not_move() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let before = client.publish("d.x", "fine").await.unwrap();
    // The dead-letter channel's stream key is taken by a string: XADD fails.
    let mut raw = server.connection().await;
    let _: () = redis::cmd("SET")
        .arg("remq:channel:dead.d.x")
        .arg("not a stream")
        .query_async(&mut raw)
        .await
        .unwrap();
    let failing = client.publish("d.x", "fail").await.unwrap();
    let worker = test_worker(&server).named_handler("doomed", "d.*", |body: String| async move {
        if body == "fail" { Err(Error::permanent("no")) } else { Ok(()) }
    });
    let err = tokio::time::timeout(Duration::from_secs(10), worker.run()).await.unwrap().unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    let stored = server.stored_cursor("doomed").await.unwrap_or(0);
    assert!(
        stored >= before.get() && stored < failing.get(),
        "the cursor moved past an undead-lettered message: {stored}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_layers_run_once_per_attempt() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let layer_seen = seen.clone();
    let failed_once = Arc::new(AtomicU32::new(0));
    let worker = test_worker(&server)
        .layer(tower::util::MapRequestLayer::new(move |d: Delivery| {
            layer_seen.fetch_add(1, Ordering::SeqCst);
            d
        }))
        .named_handler("layered", "l.*", move |_: MessageId| {
            let failed_once = failed_once.clone();
            async move {
                if failed_once.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(Error::retryable("once"))
                } else {
                    Ok(())
                }
            }
        });
    let running = RunningWorker::start(worker);
    let id = client.publish("l.1", "x").await.unwrap();
    server.wait_for_cursor("layered", id.get(), Duration::from_secs(10)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 2, "the layer saw the first attempt and the retry");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_retry_loop_without_checkpointing_or_dead_lettering() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let layer_calls = Arc::new(AtomicU32::new(0));
    let layer_counter = layer_calls.clone();
    let worker = test_worker(&server)
        .retry(RetryPolicy::new().max_attempts(100).initial_backoff(Duration::from_millis(200)))
        .layer(tower::util::MapRequestLayer::new(move |d: Delivery| {
            layer_counter.fetch_add(1, Ordering::SeqCst);
            d
        }))
        .named_handler("stubborn", "r.*", move |_: MessageId| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::retryable("still down"))
            }
        });
    let running = RunningWorker::start(worker);
    let id = client.publish("r.1", "x").await.unwrap();
    wait_for(Duration::from_secs(10), "a retry", || calls.load(Ordering::SeqCst) >= 2).await;
    let stopping = Instant::now();
    let stopped = running.stop();
    let layer_calls_at_stop = layer_calls.load(Ordering::SeqCst);
    stopped.await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2), "shutdown waited for the retry loop");
    assert_eq!(
        layer_calls.load(Ordering::SeqCst),
        layer_calls_at_stop,
        "an attempt ran through the layers after shutdown"
    );
    assert!(server.stored_cursor("stubborn").await < Some(id.get()), "the message was checkpointed");
    assert!(client.consume("dead.*", MessageId::ZERO, 10).await.unwrap().is_empty(), "it was dead-lettered");
}

#[tokio::test]
async fn dead_letters_can_be_redriven_to_their_channel() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let worker = test_worker(&server)
        .named_handler("once", "o.*", |_: MessageId| async { Err::<(), _>(Error::permanent("not today")) });
    let running = RunningWorker::start(worker);
    let original = client.publish("o.1", "retry me").await.unwrap();
    wait_for_messages(&client, "dead.o.1", 1).await;
    running.stop().await.unwrap();
    let last = remq::redrive(&client, "dead.o.1", MessageId::ZERO, 100).await.unwrap();
    assert!(last > MessageId::ZERO);
    let replayed = client.consume("o.1", original, 10).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].body, "retry me");
    assert!(replayed[0].id > original, "a redriven message is a new message");
}

/// (channel, id) of every handled message, in the order the handler finished them.
type Handled = Arc<std::sync::Mutex<Vec<(String, MessageId)>>>;

/// A worker at `concurrency` whose handler sleeps `delay(id)` and records.
fn lanes_worker(
    server: &RedisServer,
    concurrency: usize,
    delay: fn(MessageId) -> Duration,
) -> (Worker, Handled) {
    let handled = Handled::default();
    let record = handled.clone();
    let worker = test_worker(server).concurrency(concurrency).named_handler(
        "lanes",
        "c.*",
        move |m: remq::Message| {
            let record = record.clone();
            async move {
                sleep(delay(m.id)).await;
                record.lock().unwrap().push((m.channel, m.id));
            }
        },
    );
    (worker, handled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_keeps_each_channel_in_order_and_speeds_up() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut elapsed = Vec::new();
    for (round, concurrency) in [1, 8].into_iter().enumerate() {
        let mut published: Vec<(String, MessageId)> = Vec::new();
        for i in 0..400 {
            let channel = format!("c.{round}.{}", i % 20);
            published.push((channel.clone(), client.publish(&channel, "m").await.unwrap()));
        }
        // Random-ish delays of 0 to 3 ms, so completions come out of order.
        let (worker, handled) =
            lanes_worker(&server, concurrency, |id| Duration::from_micros(id.get() * 7919 % 3000));
        let worker = worker.start_from(StartFrom::After(MessageId::new(published[0].1.get() - 1)));
        let began = Instant::now();
        let running = RunningWorker::start(worker);
        wait_for(Duration::from_secs(30), "all 400 to be handled", || {
            handled.lock().unwrap().len() >= published.len()
        })
        .await;
        elapsed.push(began.elapsed());
        running.stop().await.unwrap();
        let handled = handled.lock().unwrap().clone();
        for channel in (0..20).map(|c| format!("c.{round}.{c}")) {
            let expected: Vec<_> =
                published.iter().filter(|(c, _)| *c == channel).map(|(_, id)| *id).collect();
            let got: Vec<_> = handled.iter().filter(|(c, _)| *c == channel).map(|(_, id)| *id).collect();
            assert_eq!(got, expected, "channel {channel} at concurrency {concurrency}");
        }
        // The next round reuses the consumer name: forget this round's cursor so
        // it starts where it is told to.
        let _: () = redis::cmd("DEL")
            .arg("remq:consumer:lanes:cursor")
            .query_async(&mut server.connection().await)
            .await
            .unwrap();
    }
    assert!(elapsed[1] * 3 < elapsed[0], "concurrency 8 should be several times faster: {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_waits_for_the_oldest_unfinished_message() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let slow = client.publish("c.slow", "slow").await.unwrap();
    let mut fast = Vec::new();
    for _ in 0..20 {
        fast.push(client.publish("c.fast", "fast").await.unwrap());
    }
    let slow_id = slow.get();
    // The slow message is still running when the worker is crashed below.
    let (worker, handled) =
        lanes_worker(&server, 4, |id| if id.get() == 1 { Duration::from_secs(60) } else { Duration::ZERO });
    assert_eq!(slow_id, 1, "the delay function keys on id 1");
    // A consumer of other messages in the same worker, whose cursor shows its
    // checkpoint interval coming up.
    let worker = worker.named_handler("lanes-clock", "clock", |_: MessageId| async {});
    let running = RunningWorker::start(worker);
    wait_for(Duration::from_secs(10), "the fast channel to finish", || {
        handled.lock().unwrap().len() >= fast.len()
    })
    .await;
    // Everything of the fast channel is done, the slow message is not: the
    // checkpoint must not pass it, so a crash now would replay it. Two stores of
    // the clock consumer, each a checkpoint interval after the one before, span
    // an interval of the lanes consumer too: its checkpoint had its chance.
    for _ in 0..2 {
        let tick = client.publish("clock", "tick").await.unwrap();
        server.wait_for_cursor("lanes-clock", tick.get(), Duration::from_secs(10)).await;
    }
    assert!(
        server.stored_cursor("lanes").await.unwrap_or(0) < slow_id,
        "the checkpoint skipped an unfinished message"
    );
    running.crash().await;
    // The next owner handles the slow message again (the crashed owner's lease is
    // deleted, as if it had lapsed).
    let (worker, handled) = lanes_worker(&server, 4, |_| Duration::ZERO);
    let _ = redis::cmd("DEL")
        .arg("remq:consumer:lanes:lease")
        .query_async::<()>(&mut server.connection().await)
        .await;
    let running = RunningWorker::start(worker);
    wait_for(Duration::from_secs(10), "the unfinished message to be delivered again", || {
        handled.lock().unwrap().iter().any(|(_, id)| *id == slow)
    })
    .await;
    server.wait_for_cursor("lanes", fast.last().unwrap().get(), Duration::from_secs(10)).await;
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_the_configured_number_run_at_once() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (now, max) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (in_flight, peak) = (now.clone(), max.clone());
    let worker = test_worker(&server).concurrency(3).named_handler("bounded", "b.*", move |_: MessageId| {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        async move {
            let running = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(running, Ordering::SeqCst);
            sleep(Duration::from_millis(5)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    });
    let running = RunningWorker::start(worker);
    let mut last = MessageId::ZERO;
    for i in 0..200 {
        last = client.publish(&format!("b.{}", i % 50), "m").await.unwrap();
    }
    server.wait_for_cursor("bounded", last.get(), Duration::from_secs(10)).await;
    running.stop().await.unwrap();
    assert_eq!(max.load(Ordering::SeqCst), 3, "in flight at most 3, and 3 reached with 50 channels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_layer_wraps_only_its_handler() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let layer_seen = seen.clone();
    let worker = test_worker(&server)
        .named_handler("wrapped", "w.*", |_: MessageId| async {})
        .named_handler("plain", "p.*", |_: MessageId| async {})
        .handler_layer(
            "wrapped",
            tower::util::MapRequestLayer::new(move |d: Delivery| {
                layer_seen.fetch_add(1, Ordering::SeqCst);
                d
            }),
        );
    let running = RunningWorker::start(worker);
    let wrapped = client.publish("w.1", "x").await.unwrap();
    let plain = client.publish("p.1", "y").await.unwrap();
    server.wait_for_cursor("wrapped", wrapped.get(), Duration::from_secs(10)).await;
    server.wait_for_cursor("plain", plain.get(), Duration::from_secs(10)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    running.stop().await.unwrap();

    let err = test_worker(&server)
        .named_handler("real", "r.*", |_: MessageId| async {})
        .handler_layer("typo", tower::util::MapRequestLayer::new(|d: Delivery| d))
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("typo"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_spaces_the_attempts() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut last = MessageId::ZERO;
    for i in 0..21 {
        last = client.publish(&format!("rl.{}", i % 3), "m").await.unwrap();
    }
    let options = HandlerOptions::DEFAULT.rate_limit(50).concurrency(4);
    let worker = test_worker(&server).configured_handler("limited", "rl.*", options, |_: MessageId| async {});
    let began = Instant::now();
    let running = RunningWorker::start(worker);
    server.wait_for_cursor("limited", last.get(), Duration::from_secs(10)).await;
    // 21 attempts at 50 a second: the last starts 20 × 20 ms after the first.
    assert!(began.elapsed() >= Duration::from_millis(400), "{:?}", began.elapsed());
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_configured_as_permanent_is_dead_lettered_without_retries() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let options = HandlerOptions::DEFAULT.timeout(Duration::from_millis(30)).timeout_permanent(true);
    let worker = test_worker(&server).configured_handler("strict", "t.*", options, move |_: MessageId| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_secs(5)).await;
        }
    });
    let running = RunningWorker::start(worker);
    let id = client.publish("t.1", "slow").await.unwrap();
    let dead = wait_for_messages(&client, "dead.t.1", 1).await;
    let envelope = DeadLetterEnvelope::parse(&dead[0].body).unwrap();
    assert_eq!((envelope.message.id, envelope.attempts), (id, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a permanent timeout is not retried");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_is_not_dead_lettered_again() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    // A catch-all handler that rejects everything also sees its own dead letters.
    let worker = test_worker(&server)
        .named_handler("everything", "*", |_: MessageId| async { Err::<(), _>(Error::permanent("no")) });
    let running = RunningWorker::start(worker);
    client.publish("x", "m").await.unwrap();
    let dead = wait_for_messages(&client, "dead.x", 1).await;
    // Past the dead letter: its own failure was dealt with (a dead letter is
    // stored before the cursor moves on), so a second one would be there now.
    server.wait_for_cursor("everything", dead[0].id.get(), Duration::from_secs(10)).await;
    running.stop().await.unwrap();
    assert!(client.consume("dead.dead.*", MessageId::ZERO, 10).await.unwrap().is_empty());
    assert_eq!(client.head().await.unwrap(), dead[0].id, "nothing was published after the first dead letter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_on_its_own_dead_letter_channel_stops_there() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    // The handler's own dead-letter channel matches its pattern.
    let options = HandlerOptions::DEFAULT.dead_letter("dl.all");
    let worker = test_worker(&server).configured_handler("loop", "*", options, |_: MessageId| async {
        Err::<(), _>(Error::permanent("no"))
    });
    let running = RunningWorker::start(worker);
    client.publish("y", "m").await.unwrap();
    let dead = wait_for_messages(&client, "dl.all", 1).await;
    // Past the dead letter: a second one would have been stored before that.
    server.wait_for_cursor("loop", dead[0].id.get(), Duration::from_secs(10)).await;
    running.stop().await.unwrap();
    assert_eq!(
        client.consume("dl.all", MessageId::ZERO, 10).await.unwrap().len(),
        1,
        "no chain of dead letters"
    );

    let err = test_worker(&server)
        .dead_letter_prefix("")
        .named_handler("any", "a.*", |_: MessageId| async {})
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
}
