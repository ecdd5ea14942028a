//! The handler middleware against a real redis-server: retries, timeouts, dead
//! letters (and what happens when they cannot be stored), application layers,
//! shutdown in the middle of a retry loop, and redriving dead letters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use remq::middleware::DeadLetterEnvelope;
use remq::{Client, Delivery, Error, HandlerOptions, MessageId, RetryPolicy, StartFrom, Worker};
use remq_testkit::RedisServer;
use tokio::time::{Instant, sleep};

/// A worker for `server` that runs only the handlers a test adds, with retries
/// a few milliseconds apart.
fn test_worker(server: &RedisServer) -> Worker {
    Worker::new(server.url())
        .without_registered_handlers()
        .without_signal_handlers()
        .start_from(StartFrom::Earliest)
        .checkpoint_interval(Duration::from_millis(50))
        .retry(
            RetryPolicy::new()
                .initial_backoff(Duration::from_millis(5))
                .max_backoff(Duration::from_millis(20)),
        )
}

async fn cursor(server: &RedisServer, consumer: &str) -> Option<u64> {
    let mut raw =
        redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET").arg(format!("remq:consumer:{consumer}:cursor")).query_async(&mut raw).await.unwrap()
}

/// Polls until `channel` holds `count` messages, and returns them.
async fn wait_for_messages(client: &Client, channel: &str, count: usize) -> Vec<remq::Message> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let messages = client.consume(channel, MessageId::ZERO, 100).await.unwrap();
        if messages.len() >= count {
            return messages;
        }
        assert!(Instant::now() < deadline, "{channel} holds {} messages, expected {count}", messages.len());
        sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_cursor(server: &RedisServer, consumer: &str, id: MessageId) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cursor(server, consumer).await < Some(id.get()) {
        assert!(Instant::now() < deadline, "the cursor of {consumer} never reached {id}");
        sleep(Duration::from_millis(20)).await;
    }
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
    let stop = worker.shutdown_token();
    let run = tokio::spawn(worker.run());
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
    wait_for_cursor(&server, "billing", good).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "a permanent failure is not retried");
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_and_timeouts_are_retried_then_dead_lettered() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let (flaky_calls, slow_calls) = (calls.clone(), Arc::new(AtomicU32::new(0)));
    let slow_counter = slow_calls.clone();
    let options =
        HandlerOptions { retries: Some(2), dead_letter: Some("dlq.flaky"), ..HandlerOptions::DEFAULT };
    let timeout = HandlerOptions {
        retries: Some(1),
        timeout: Some(Duration::from_millis(50)),
        ..HandlerOptions::DEFAULT
    };
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
    let stop = worker.shutdown_token();
    let run = tokio::spawn(worker.run());
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
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_dead_letter_cannot_be_stored_the_cursor_does_not_move() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let before = client.publish("d.x", "fine").await.unwrap();
    // The dead-letter channel's stream key is taken by a string: XADD fails.
    let mut raw =
        redis::Client::open(server.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
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
    let stored = cursor(&server, "doomed").await.unwrap_or(0);
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
    let stop = worker.shutdown_token();
    let run = tokio::spawn(worker.run());
    let id = client.publish("l.1", "x").await.unwrap();
    wait_for_cursor(&server, "layered", id).await;
    assert_eq!(seen.load(Ordering::SeqCst), 2, "the layer saw the first attempt and the retry");
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_retry_loop_without_checkpointing_or_dead_lettering() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let worker = test_worker(&server)
        .retry(RetryPolicy::new().max_attempts(100).initial_backoff(Duration::from_millis(200)))
        .named_handler("stubborn", "r.*", move |_: MessageId| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::retryable("still down"))
            }
        });
    let stop = worker.shutdown_token();
    let run = tokio::spawn(worker.run());
    let id = client.publish("r.1", "x").await.unwrap();
    while calls.load(Ordering::SeqCst) < 2 {
        sleep(Duration::from_millis(10)).await;
    }
    let stopping = Instant::now();
    stop.cancel();
    run.await.unwrap().unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2), "shutdown waited for the retry loop");
    assert!(cursor(&server, "stubborn").await < Some(id.get()), "the message was checkpointed");
    assert!(client.consume("dead.*", MessageId::ZERO, 10).await.unwrap().is_empty(), "it was dead-lettered");
}

#[tokio::test]
async fn dead_letters_can_be_redriven_to_their_channel() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let worker = test_worker(&server)
        .named_handler("once", "o.*", |_: MessageId| async { Err::<(), _>(Error::permanent("not today")) });
    let stop = worker.shutdown_token();
    let run = tokio::spawn(worker.run());
    let original = client.publish("o.1", "retry me").await.unwrap();
    wait_for_messages(&client, "dead.o.1", 1).await;
    stop.cancel();
    run.await.unwrap().unwrap();
    let last = remq::redrive(&client, "dead.o.1", MessageId::ZERO, 100).await.unwrap();
    assert!(last > MessageId::ZERO);
    let replayed = client.consume("o.1", original, 10).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].body, "retry me");
    assert!(replayed[0].id > original, "a redriven message is a new message");
}
