//! Replay from a point in time against a real redis-server: `Client::id_at`,
//! `StartFrom::Time` for a tail and a worker, and `REMQ_START_FROM` /
//! `StartFrom::from_str` with times and durations ago.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use remq::{Client, MessageId, StartFrom};
use remq_testkit::{RedisServer, RunningWorker, test_worker, wait_for};

/// The ids a tail from `start` yields, until it has `count`.
async fn tail_ids(client: &Client, start: StartFrom, count: usize) -> Vec<u64> {
    let mut tail = client.tail("t.*", start).await.unwrap();
    let mut ids = Vec::new();
    while ids.len() < count {
        let next =
            tokio::time::timeout(Duration::from_secs(10), tail.next()).await.expect("a message in time");
        ids.push(next.unwrap().id.get());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_starting_at_a_time_skips_nothing_published_since() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    // Before: a batch of 10 (ids 1..=10; the time index samples its last id).
    client.publish_batch("t.a", (0..10).map(|i| format!("before {i}"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let at = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // After: a batch of 10 and 5 single publishes (ids 11..=25).
    client.publish_batch("t.b", (0..10).map(|i| format!("after {i}"))).await.unwrap();
    for i in 0..5 {
        client.publish("t.c", format!("single {i}")).await.unwrap();
    }
    let after: Vec<u64> = (11..=25).collect();

    // Every id from the time on; here exactly those, since the sample before
    // the time is the before-batch's last id.
    assert_eq!(client.id_at(at).await.unwrap(), MessageId::new(11));
    assert_eq!(tail_ids(&client, StartFrom::Time(at), 15).await, after);

    // A worker's new consumer starts there too.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let worker = test_worker(server.url()).start_from(StartFrom::Time(at)).named_handler(
        "since",
        "t.*",
        move |id: MessageId| {
            record.lock().unwrap().push(id.get());
            async {}
        },
    );
    let running = RunningWorker::start(worker);
    wait_for(Duration::from_secs(10), "the 15 messages since the time", || seen.lock().unwrap().len() >= 15)
        .await;
    running.stop().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), after);

    // A time before the oldest message kept starts at the oldest.
    client.flush("t.*", MessageId::new(6)).await.unwrap();
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1);
    assert_eq!(client.id_at(long_ago).await.unwrap(), MessageId::new(1));
    assert_eq!(tail_ids(&client, StartFrom::Time(long_ago), 20).await, (6..=25).collect::<Vec<_>>());

    // A time still to come starts at the next message published.
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(client.id_at(later).await.unwrap(), MessageId::new(26));
    let mut tail = client.tail("t.*", StartFrom::Time(later)).await.unwrap();
    let next = client.publish("t.a", "next").await.unwrap();
    assert_eq!(tail.next().await.unwrap().id, next);
}

#[test]
fn start_points_parse_from_times_and_durations_ago_and_garbage_is_an_error() {
    let nine = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_115_600);
    assert_eq!("2026-12-01T09:00:00Z".parse::<StartFrom>(), Ok(StartFrom::Time(nine)));
    assert_eq!("42".parse::<StartFrom>(), Ok(StartFrom::After(MessageId::new(42))));
    let Ok(StartFrom::Time(ago)) = "-15m".parse::<StartFrom>() else { panic!("-15m is a time ago") };
    let expected = SystemTime::now() - Duration::from_secs(15 * 60);
    let off = expected.duration_since(ago).unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(5), "{off:?}");
    for garbage in
        ["yesterday", "-", "-15 parsecs", "2026-12-01T09:00:00+01:00", "2026-13-01T09:00:00Z", "-1"]
    {
        let error = garbage.parse::<StartFrom>().unwrap_err();
        assert!(error.contains("a UTC time such as 2026-12-01T09:00:00Z"), "{garbage}: {error}");
    }
}
