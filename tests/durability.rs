//! Durability: with `appendonly yes` and `appendfsync always`, a publish that
//! returned an id survives Redis being killed (SIGKILL) in the middle of a
//! stream of concurrent publishes. See "Durability" in docs/operations.md for what the
//! other AOF settings lose.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, MessageId};
use remq_testkit::{RedisServer, wait_for, wait_until};

/// Acknowledged publishes: id → body.
type Acked = Arc<Mutex<BTreeMap<MessageId, String>>>;

/// Publishes from one task until a call fails (the server is gone), recording
/// every id that came back. Even tasks publish one message at a time, odd ones
/// in batches of 10.
async fn publish_until_failure(client: Client, task: usize, acked: Acked) -> usize {
    let channel = format!("durable.{}", task % 3);
    for seq in 0.. {
        if task.is_multiple_of(2) {
            let body = format!("{task}/{seq}");
            match client.publish(&channel, &body).await {
                Ok(id) => assert!(acked.lock().unwrap().insert(id, body).is_none(), "id {id} issued twice"),
                Err(_) => return seq,
            }
        } else {
            let bodies: Vec<String> = (0..10).map(|i| format!("{task}/{seq}/{i}")).collect();
            match client.publish_batch(&channel, &bodies).await {
                Ok(ids) => {
                    let mut acked = acked.lock().unwrap();
                    for (id, body) in (ids.start().get()..=ids.end().get()).zip(bodies) {
                        assert!(acked.insert(MessageId::new(id), body).is_none(), "id {id} issued twice");
                    }
                }
                Err(_) => return seq,
            }
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_publishes_survive_a_redis_crash_with_appendfsync_always() {
    let mut server =
        RedisServer::builder().arg("--appendonly").arg("yes").arg("--appendfsync").arg("always").start();
    let client = Client::connect(&server.url()).await.unwrap();
    let acked = Acked::default();
    let tasks: Vec<_> =
        (0..8).map(|task| tokio::spawn(publish_until_failure(client.clone(), task, acked.clone()))).collect();
    // Kill mid-stream, once a few thousand messages were acknowledged.
    wait_for(Duration::from_secs(30), "3,000 acknowledged publishes", || {
        acked.lock().unwrap().len() >= 3_000
    })
    .await;
    server.kill();
    for task in tasks {
        task.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let last_acked = *acked.keys().next_back().unwrap();

    server.restart();
    // Redis answers `-LOADING` while it replays the AOF: a retryable error.
    let client =
        wait_until(
            Duration::from_secs(30),
            "a connection after the restart",
            async || match Client::connect(&server.url()).await {
                Ok(client) => Some(client),
                Err(e) if e.is_retryable() => None,
                Err(e) => panic!("cannot reconnect after the restart: {e}"),
            },
        )
        .await;
    let stored: BTreeMap<_, _> =
        remq_testkit::read_all(&client, "durable.*").await.into_iter().map(|m| (m.id, m.body)).collect();
    let lost: Vec<_> = acked.keys().filter(|id| !stored.contains_key(id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged publishes were lost in the crash, the first: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    for (id, body) in &acked {
        assert_eq!(stored[id], body.as_bytes(), "message {id} came back with another body");
    }
    // The counter did not go back: no id is issued twice after the restart.
    assert!(client.head().await.unwrap() >= last_acked);
    assert!(client.publish("durable.0", "after").await.unwrap() > last_acked);
    println!(
        "{} acknowledged before the kill; {} stored after the restart (acknowledged or in flight)",
        acked.len(),
        stored.len()
    );
}
