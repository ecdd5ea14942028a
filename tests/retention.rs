//! Retention against real redis-server processes: each flush policy, interest
//! across consumers, stale consumers and the hard cap, loss detection on replay,
//! bounded steps, the time index, and one flusher at a time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, FlushPolicy, FlushReport, MessageId, Worker};
use remq_testkit::{
    RedisServer, RunningWorker, http_get, local_listener, metric, scrape_until, test_worker, wait_for,
    wait_for_readiness, wait_until,
};

/// Ids a handler saw, in order.
type Seen = Arc<Mutex<Vec<MessageId>>>;

/// Publishes `count` messages to each channel, round robin, one batch per round
/// of 100; returns every id in order.
async fn publish_round_robin(client: &Client, channels: &[&str], count: usize) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for start in (0..count).step_by(100) {
        for channel in channels {
            let n = 100.min(count - start);
            let range = client
                .publish_batch(channel, (0..n).map(|i| format!("{channel} {}", start + i)))
                .await
                .unwrap();
            ids.extend((range.start().get()..=range.end().get()).map(MessageId::new));
        }
    }
    ids
}

/// Ids stored on `channel`, oldest first.
async fn stored(client: &Client, channel: &str) -> Vec<MessageId> {
    client.consume(channel, MessageId::ZERO, 10_000).await.unwrap().into_iter().map(|m| m.id).collect()
}

/// A worker whose consumer `name` records what it sees; it starts from the
/// earliest message and checkpoints often.
fn recording_worker(server: &RedisServer, name: &str, pattern: &str) -> (Worker, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let worker = test_worker(server.url()).named_handler(name, pattern, move |id: MessageId| {
        let record = record.clone();
        async move { record.lock().unwrap().push(id) }
    });
    (worker, seen)
}

/// Runs a recording consumer until its cursor reaches `upto`, then stops it.
async fn consume_upto(server: &RedisServer, name: &str, pattern: &str, upto: MessageId) -> Seen {
    let (worker, seen) = recording_worker(server, name, pattern);
    let running = RunningWorker::start(worker);
    server.wait_for_cursor(name, upto.get(), Duration::from_secs(20)).await;
    running.stop().await.unwrap();
    seen
}

#[tokio::test]
async fn keep_last_keeps_the_newest_of_each_channel() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    publish_round_robin(&client, &["k.a", "k.b", "other"], 250).await;
    let a_ids = stored(&client, "k.a").await;
    let policy = FlushPolicy::new("k.*").interest(false).keep_last(30);

    let plan = client.plan_flush(&policy).await.unwrap();
    assert_eq!(plan.removed(), 440, "{plan:?}");
    assert_eq!(stored(&client, "k.a").await.len(), 250, "a dry run removes nothing");

    let report = client.flush_with(&policy).await.unwrap();
    assert_eq!(report.removed(), 440);
    for channel in ["k.a", "k.b"] {
        assert_eq!(stored(&client, channel).await.len(), 30, "{channel}");
    }
    assert_eq!(stored(&client, "other").await.len(), 250, "a channel outside the pattern is untouched");
    // The newest 30 of k.a are exactly its last 30 ids.
    assert_eq!(stored(&client, "k.a").await, a_ids[a_ids.len() - 30..]);
    // Keeping more than a channel holds removes nothing; keep_last(0) empties it.
    assert_eq!(client.flush_with(&policy).await.unwrap().removed(), 0);
    let emptied = client.flush_with(&FlushPolicy::new("k.b").interest(false).keep_last(0)).await.unwrap();
    assert_eq!(emptied.removed(), 30);
    assert!(stored(&client, "k.b").await.is_empty());
}

#[tokio::test]
async fn max_age_uses_the_time_index() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut redis = server.connection().await;
    let now = server.time().await.as_secs();
    // The controllable clock: each batch is a sample of the index (its last id),
    // moved back in time by hand.
    let mut batch = async |count: usize, ago: u64| {
        let ids = client.publish_batch("t", (0..count).map(|i| i.to_string())).await.unwrap();
        let _: () = redis::cmd("ZADD")
            .arg("remq:time")
            .arg("XX")
            .arg(now - ago)
            .arg(ids.end().get())
            .query_async(&mut redis)
            .await
            .unwrap();
        ids
    };
    let two_hours = batch(50, 7200).await;
    let an_hour_and_a_bit = batch(30, 3700).await;
    let recent = batch(20, 0).await;
    let index = || async {
        let entries: Vec<(u64, u64)> = redis::cmd("ZRANGE")
            .arg("remq:time")
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut server.connection().await)
            .await
            .unwrap();
        entries.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    assert_eq!(index().await, [two_hours.end().get(), an_hour_and_a_bit.end().get(), recent.end().get()]);

    let older_than_an_hour = FlushPolicy::new("t").interest(false).max_age(Duration::from_secs(3600));
    assert_eq!(client.flush_with(&older_than_an_hour).await.unwrap().removed(), 80);
    let kept = stored(&client, "t").await;
    assert_eq!((kept.first(), kept.len()), (Some(recent.start()), 20));
    // The index keeps the sample just below the oldest message (it brackets the
    // next ones); the one before goes.
    assert_eq!(index().await, [an_hour_and_a_bit.end().get(), recent.end().get()]);
    assert_eq!(client.flush_with(&older_than_an_hour).await.unwrap().removed(), 0);
    // Once the recent batch's second is past, a 1 s limit removes it too.
    wait_until(Duration::from_secs(5), "the recent batch to be over a second old", async || {
        (server.time().await.as_secs() >= now + 2).then_some(())
    })
    .await;
    let older_than_a_second = FlushPolicy::new("t").interest(false).max_age(Duration::from_secs(1));
    assert_eq!(client.flush_with(&older_than_a_second).await.unwrap().removed(), 20);
}

#[tokio::test]
async fn interest_keeps_what_the_slowest_consumer_has_not_processed() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    // slow stopped after the first 200 messages; fast has all 600; only-b follows i.b.
    let mut ids = publish_round_robin(&client, &["i.a", "i.b"], 100).await;
    consume_upto(&server, "slow", "i.*", ids[199]).await;
    ids.extend(publish_round_robin(&client, &["i.a", "i.b"], 200).await);
    consume_upto(&server, "fast", "i.*", *ids.last().unwrap()).await;
    consume_upto(&server, "only-b", "i.b", *ids.last().unwrap()).await;
    let slow_cursor = MessageId::new(server.stored_cursor("slow").await.unwrap());
    assert_eq!(slow_cursor, ids[199]);

    let report = client.flush_with(&FlushPolicy::new("i.*")).await.unwrap();
    for channel in ["i.a", "i.b"] {
        let kept = stored(&client, channel).await;
        assert!(kept.first().unwrap() > &slow_cursor, "{channel}: everything slow processed is gone");
        assert!(
            kept.iter().filter(|&&id| id > slow_cursor).count()
                == ids.iter().filter(|&&id| id > slow_cursor).count() / 2,
            "{channel}: everything slow has not processed is kept"
        );
    }
    assert_eq!(report.removed() as usize, ids.iter().filter(|&&id| id <= slow_cursor).count());

    // With a size limit as well, interest still wins…
    let limited = FlushPolicy::new("i.*").keep_last(10);
    assert_eq!(client.flush_with(&limited).await.unwrap().removed(), 0);
    // …until the hard cap, which wins over a stuck consumer.
    let capped = client.flush_with(&limited.clone().hard_cap(40)).await.unwrap();
    assert!(capped.removed() > 0);
    for channel in ["i.a", "i.b"] {
        assert_eq!(stored(&client, channel).await.len(), 40, "{channel}");
    }
}

#[tokio::test]
async fn a_channel_without_consumers_is_left_alone_by_interest() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    // An empty namespace is no error (a worker's flush job may start first).
    assert_eq!(client.flush_with(&FlushPolicy::new("n.*")).await.unwrap(), FlushReport::default());
    publish_round_robin(&client, &["n.a"], 100).await;
    assert_eq!(client.flush_with(&FlushPolicy::new("n.*")).await.unwrap().removed(), 0);
    assert_eq!(client.flush_with(&FlushPolicy::new("n.*").keep_last(10)).await.unwrap().removed(), 90);
}

#[tokio::test]
async fn a_stale_consumer_stops_holding_messages_back() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let ids = publish_round_robin(&client, &["s"], 100).await;
    consume_upto(&server, "gone", "s", ids[99]).await;
    publish_round_robin(&client, &["s"], 200).await;
    let policy = FlushPolicy::new("s").keep_last(0).stale_after(Duration::from_secs(1));
    let held = client.flush_with(&policy).await.unwrap();
    assert!(held.stale_consumers.is_empty());
    assert!(stored(&client, "s").await.len() >= 200, "the consumer holds the rest back");

    wait_until(Duration::from_secs(5), "the consumer to be unseen for over a second", async || {
        // `unseen` is measured on the server's clock when the registry is read.
        let consumers = client.consumers().await.unwrap();
        consumers.iter().all(|c| c.unseen > Duration::from_secs(1)).then_some(())
    })
    .await;
    let report = client.flush_with(&policy).await.unwrap();
    assert_eq!(report.stale_consumers, vec!["gone".to_owned()]);
    assert!(stored(&client, "s").await.is_empty());
    let consumers = client.consumers().await.unwrap();
    assert_eq!(consumers.len(), 1);
    assert_eq!((consumers[0].name.as_str(), consumers[0].pattern.as_str()), ("gone", "s"));
}

#[tokio::test]
async fn a_consumer_notices_messages_retention_removed_and_goes_on() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut ids = publish_round_robin(&client, &["l.a"], 50).await;
    consume_upto(&server, "behind", "l.*", ids[49]).await;
    ids.extend(publish_round_robin(&client, &["l.a", "l.b"], 175).await);
    let cursor = MessageId::new(server.stored_cursor("behind").await.unwrap());
    // The hard cap removes what `behind` has not processed: only the newest 60 of each channel stay.
    let mut kept = Vec::new();
    for channel in ["l.a", "l.b"] {
        let all = stored(&client, channel).await;
        kept.extend_from_slice(&all[all.len() - 60..]);
    }
    kept.sort();
    client.flush_with(&FlushPolicy::new("l.*").hard_cap(60)).await.unwrap();
    assert_eq!(stored(&client, "l.*").await, kept);
    assert!(ids.len() > 120);

    let (listener, addr) = local_listener();
    let (worker, seen) = recording_worker(&server, "behind", "l.*");
    let running = RunningWorker::start(worker.metrics_listener(listener));
    wait_for(Duration::from_secs(20), "the kept messages", || seen.lock().unwrap().len() >= kept.len()).await;
    let (_, body) = http_get(addr, "/metrics").await;
    running.stop().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, kept, "it goes on from the oldest message kept, in order");
    assert!(seen[0] > cursor);
    assert_eq!(metric(&body, r#"remq_retention_gaps_total{handler="behind"}"#), Some(1.0), "{body}");
}

#[tokio::test]
async fn big_flushes_work_in_bounded_steps() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut redis = server.connection().await;
    let ids = publish_round_robin(&client, &["b.a", "b.b"], 5_000).await;
    let before = ids[7_000];
    // Through the protocol: at most `max` per call.
    let flush = redis::Script::new(include_str!("../scripts/flush.lua"));
    let (mut calls, mut total) = (0, 0);
    loop {
        let removed: u64 =
            flush.arg("b.*").arg(before.get()).arg(1000).invoke_async(&mut redis).await.unwrap();
        assert!(removed <= 1000);
        if removed == 0 {
            break;
        }
        (calls, total) = (calls + 1, total + removed);
    }
    assert_eq!(total, 7_000);
    // Interleaved channels take more calls than 7: a call cuts each channel by
    // an id span, which holds fewer of its messages than ids.
    assert!((7..=30).contains(&calls), "{calls} calls");
    assert_eq!(stored(&client, "b.*").await.first(), Some(&before));
    // The ledger of removed ids is what consumers compare their cursor with.
    let removed: Vec<(String, u64)> =
        redis::cmd("HGETALL").arg("remq:removed").query_async(&mut redis).await.unwrap();
    let highest = removed.iter().map(|(_, id)| *id).max().unwrap();
    assert_eq!(highest, ids[6_999].get());
}

#[tokio::test]
async fn one_flusher_at_a_time_and_a_crashed_one_blocks_only_until_its_lock_expires() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut redis = server.connection().await;
    publish_round_robin(&client, &["f"], 1_000).await;
    // A flusher that crashed holds the lock, for as long as the test needs: it
    // is given 500 ms more below, once a worker was seen to find it taken.
    let lock = "remq:flush:f:lock";
    let _: () = redis::cmd("SET")
        .arg(lock)
        .arg("crashed-owner")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut redis)
        .await
        .unwrap();
    // Small steps make a run of 20,000 messages last a few hundred ms, longer
    // than the interval, so the other worker certainly tries meanwhile.
    let policy = FlushPolicy::new("f").interest(false).keep_last(0).every(Duration::from_millis(50)).step(20);
    let worker = |name: &str| {
        test_worker(server.url())
            .named_handler(name, "unrelated", |_: MessageId| async {})
            .flush(policy.clone())
    };
    let locked = r#"remq_flush_runs_total{pattern="f",result="locked"}"#;
    let (listener, addr) = local_listener();
    let first = RunningWorker::start(worker("w1").metrics_listener(listener));
    scrape_until(addr, locked, |runs| runs >= 1.0).await;
    assert_eq!(stored(&client, "f").await.len(), 1_000, "nothing is flushed while the lock is held");
    let _: () = redis::cmd("PEXPIRE").arg(lock).arg(500).query_async(&mut redis).await.unwrap();
    wait_until(Duration::from_secs(5), "the lock to expire and the flush to run", async || {
        stored(&client, "f").await.is_empty().then_some(())
    })
    .await;

    // Two workers, one big flush each time: they take turns.
    let (second_listener, second_addr) = local_listener();
    let second = RunningWorker::start(worker("w2").metrics_listener(second_listener));
    wait_for_readiness(second_addr, "w2", "live").await;
    let (_, body) = http_get(addr, "/metrics").await;
    let locked_before = metric(&body, locked).unwrap_or(0.0);
    for _ in 0..3 {
        publish_round_robin(&client, &["f"], 20_000).await;
        wait_until(Duration::from_secs(20), "the flush to finish", async || {
            stored(&client, "f").await.is_empty().then_some(())
        })
        .await;
    }
    // A run's removals are counted when it ends, a moment after the log is empty.
    let body = scrape_until(addr, r#"remq_flush_removed_messages_total{pattern="f"}"#, |removed| {
        removed == 61_000.0
    })
    .await;
    first.stop().await.unwrap();
    second.stop().await.unwrap();
    let locked = metric(&body, locked).unwrap_or(0.0);
    assert!(locked > locked_before, "the second worker found the lock taken: {body}");
}

#[tokio::test]
async fn a_flush_trims_the_order_index_however_many_entries_it_has_to_catch_up() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut conn = server.connection().await;
    // 20,000 single publishes on one channel: 20,000 index entries, which the
    // few flush.lua calls of one channel's cut (1000 entries each) cannot trim.
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.cmd("EVAL").arg(include_str!("../scripts/publish.lua")).arg(0).arg("busy").arg(i);
    }
    let _: Vec<u64> = pipe.query_async(&mut conn).await.unwrap();
    let index_len = async |conn: &mut redis::aio::MultiplexedConnection| -> u64 {
        redis::cmd("XLEN").arg("remq:order").query_async(conn).await.unwrap()
    };
    assert_eq!(index_len(&mut conn).await, 20_000);
    let policy = FlushPolicy::new("busy").keep_last(10).interest(false);
    assert_eq!(client.flush_with(&policy).await.unwrap().removed(), 19_990);
    assert_eq!(index_len(&mut conn).await, 10, "the index holds the 10 messages kept, no more");
    let kept: Vec<_> =
        client.consume("*", MessageId::ZERO, 100).await.unwrap().into_iter().map(|m| m.id.get()).collect();
    assert_eq!(kept, (19_991..=20_000).collect::<Vec<_>>(), "a broad read after the trim");
}
