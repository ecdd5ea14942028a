//! When Redis loses writes, the namespace's id counter goes backwards and new
//! messages get ids a consumer believes it has processed. These tests reset the
//! counter below a running or stopped consumer's cursor, as a restore from an old
//! snapshot or a failover to a lagging replica does, and check the consumer
//! notices, says so with both ids, counts it, and skips nothing new.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, FlushPolicy, MessageId, Worker};
use remq_testkit::{RedisServer, RunningWorker, http_get, local_listener, metric, wait_for, wait_until};

/// (channel, id) pairs a handler saw, in order. (Tests use their own consumer
/// names: the metrics recorder is shared by the process.)
type Seen = Arc<Mutex<Vec<(String, MessageId)>>>;

fn recording_worker(server: &RedisServer, name: &str, seen: &Seen) -> Worker {
    let record = seen.clone();
    remq_testkit::test_worker(server.url()).named_handler(name, "r.*", move |message: remq::Message| {
        let record = record.clone();
        async move { record.lock().unwrap().push((message.channel, message.id)) }
    })
}

/// The ids `seen` holds for `channel`, in order.
fn ids_on(seen: &Seen, channel: &str) -> Vec<u64> {
    seen.lock().unwrap().iter().filter(|(c, _)| c == channel).map(|(_, id)| id.get()).collect()
}

/// Publishes a marker on `r.marker` and waits until the handler saw it: the
/// worker has then gone past everything published before (ids only grow from
/// here), so a duplicate among those would be in `seen`. Returns its id.
async fn handled_marker(client: &Client, seen: &Seen) -> MessageId {
    let marker = client.publish("r.marker", "marker").await.unwrap();
    wait_for(Duration::from_secs(10), "the marker", || ids_on(seen, "r.marker") == [marker.get()]).await;
    marker
}

async fn set_counter(server: &RedisServer, to: u64) {
    let mut redis = server.connection().await;
    let _: () = redis::cmd("SET").arg("remq:id").arg(to).query_async(&mut redis).await.unwrap();
}

#[tokio::test]
async fn a_live_consumer_rewinds_when_the_counter_goes_back() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let seen = Seen::default();
    let (listener, addr) = local_listener();
    let running =
        RunningWorker::start(recording_worker(&server, "live-reset", &seen).metrics_listener(listener));
    client.publish_batch("r.old", (0..100).map(|i| i.to_string())).await.unwrap();
    wait_for(Duration::from_secs(10), "the first 100", || seen.lock().unwrap().len() == 100).await;
    // Everything processed is flushed (interest), then a replica that was 50 ids
    // behind takes over: the counter stands at 50.
    server.wait_for_cursor("live-reset", 100, Duration::from_secs(5)).await;
    assert_eq!(client.flush_with(&FlushPolicy::new("r.*")).await.unwrap().removed(), 100);
    set_counter(&server, 50).await;
    let new = client.publish_batch("r.new", (0..20).map(|i| i.to_string())).await.unwrap();
    assert_eq!(new.start().get(), 51, "ids below the consumer's cursor");
    wait_for(Duration::from_secs(10), "the new messages", || ids_on(&seen, "r.new").len() >= 20).await;
    let marker = handled_marker(&client, &seen).await;
    assert_eq!(ids_on(&seen, "r.new"), (51..=70).collect::<Vec<_>>(), "each new message once, in order");
    let (_, body) = http_get(addr, "/metrics").await;
    assert_eq!(metric(&body, r#"remq_counter_resets_total{handler="live-reset"}"#), Some(1.0), "{body}");
    running.stop().await.unwrap();
    assert_eq!(server.stored_cursor("live-reset").await, Some(marker.get()));
}

#[tokio::test]
async fn a_restored_snapshot_brings_the_consumer_back_to_its_checkpoint() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut redis = server.connection().await;
    let seen = Seen::default();
    let running = RunningWorker::start(recording_worker(&server, "restored", &seen));
    client.publish_batch("r.a", (0..60).map(|i| i.to_string())).await.unwrap();
    wait_for(Duration::from_secs(10), "60 messages", || seen.lock().unwrap().len() == 60).await;
    server.wait_for_cursor("restored", 60, Duration::from_secs(5)).await;
    // The snapshot: counter 60, checkpoint 60.
    let _: () = redis::cmd("SAVE").query_async(&mut redis).await.unwrap();
    let snapshot = std::fs::read(server.dir().join("dump.rdb")).unwrap();
    client.publish_batch("r.a", (60..100).map(|i| i.to_string())).await.unwrap();
    wait_for(Duration::from_secs(10), "100 messages", || seen.lock().unwrap().len() == 100).await;

    // Redis dies and comes back from the old snapshot, while the worker runs.
    let mut server = server;
    server.kill();
    std::fs::write(server.dir().join("dump.rdb"), snapshot).unwrap();
    server.restart();
    // The client may need a moment to reconnect.
    let new = wait_until(Duration::from_secs(10), "a publish after the restore", async || {
        client.publish_batch("r.b", (0..10).map(|i| i.to_string())).await.ok()
    })
    .await;
    assert_eq!(new.start().get(), 61);
    wait_for(Duration::from_secs(15), "the messages published after the restore", || {
        ids_on(&seen, "r.b").len() >= 10
    })
    .await;
    handled_marker(&client, &seen).await;
    assert_eq!(ids_on(&seen, "r.b"), (61..=70).collect::<Vec<_>>());
    let old: Vec<u64> = ids_on(&seen, "r.a");
    assert_eq!(
        old,
        (1..=100).collect::<Vec<_>>(),
        "nothing from the restored log again: it was checkpointed"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn publishing_below_a_channels_last_id_says_the_counter_went_back() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    client.publish_batch("r.a", ["1", "2", "3"]).await.unwrap();
    set_counter(&server, 1).await;
    let error = client.publish("r.a", "x").await.unwrap_err();
    assert!(error.to_string().contains("id counter behind") && error.is_permanent(), "{error}");
    let error = client.publish_batch("r.a", ["x", "y"]).await.unwrap_err();
    assert!(error.to_string().contains("went backwards"), "{error}");
}
