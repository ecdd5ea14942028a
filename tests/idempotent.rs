//! Idempotent publishes against a real redis-server: a retry with the same key
//! stores and pushes nothing, keys expire with the namespace's window, and
//! retries through killed connections and a Redis restart store exactly one
//! message per key.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use remq::{Client, MessageId, StartFrom};
use remq_testkit::{RedisServer, read_all};

async fn exists(server: &RedisServer, key: &str) -> bool {
    let mut conn = server.connection().await;
    redis::cmd("EXISTS").arg(key).query_async::<u32>(&mut conn).await.unwrap() == 1
}

#[tokio::test]
async fn a_publish_retried_with_its_key_is_stored_and_pushed_once() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let mut tail = client.tail("i.*", StartFrom::Latest).await.unwrap();
    let first = client.publish_idempotent("i.a", "order-1", "paid").await.unwrap();
    let again = client.publish_idempotent("i.a", "order-1", "paid").await.unwrap();
    assert_eq!(again, first, "the retry gets the first publish's id");
    let other = client.publish_idempotent("i.a", "order-2", "paid").await.unwrap();
    assert_eq!(other, MessageId::new(first.get() + 1), "the retry used no id");
    let batch = client.publish_batch_idempotent("i.b", "import-7", ["a", "b", "c"]).await.unwrap();
    assert_eq!(client.publish_batch_idempotent("i.b", "import-7", ["a", "b", "c"]).await.unwrap(), batch);
    let stored: Vec<u64> = read_all(&client, "i.*").await.iter().map(|m| m.id.get()).collect();
    assert_eq!(stored, [1, 2, 3, 4, 5]);
    let mut pushed = Vec::new();
    for _ in 0..5 {
        pushed.push(tail.next().await.unwrap().id.get());
    }
    assert_eq!(pushed, stored, "each message pushed once");
    assert_eq!(client.head().await.unwrap(), MessageId::new(5));

    let empty = client.publish_idempotent("i.a", "", "x").await.unwrap_err();
    assert!(matches!(empty, remq::Error::Config { .. }), "{empty:?}");
    // Flushing the message does not make its key publish again.
    client.flush("i.*", MessageId::new(100)).await.unwrap();
    assert_eq!(client.publish_idempotent("i.a", "order-1", "paid").await.unwrap(), first);
}

#[tokio::test]
async fn keys_expire_with_the_namespaces_window() {
    let server = RedisServer::start();
    let client = Client::builder(server.url()).namespace("remq:{shop}").connect().await.unwrap();
    let key = "remq:{shop}:once:order-1";
    client.publish_idempotent("o.a", "order-1", "x").await.unwrap();
    let mut conn = server.connection().await;
    let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
    assert!((110_000..=120_000).contains(&ttl), "2 minutes by default, got {ttl} ms");

    client.set_idempotency_window(Duration::from_millis(200)).await.unwrap();
    client.publish_idempotent("o.a", "order-2", "x").await.unwrap();
    assert!(exists(&server, "remq:{shop}:once:order-2").await);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!exists(&server, "remq:{shop}:once:order-2").await, "an expired key is gone");
    let later = client.publish_idempotent("o.a", "order-2", "x").await.unwrap();
    assert_eq!(later, MessageId::new(3), "after the window the key publishes again");
    let zero = client.set_idempotency_window(Duration::ZERO).await.unwrap_err();
    assert!(matches!(zero, remq::Error::Config { .. }), "{zero:?}");
}

/// A producer that retries every publish until it gets an id, while its
/// connection is killed every few milliseconds and Redis restarts once (with
/// every write on disk): some calls are stored but their replies lost, and
/// their retries must not store them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_killed_connections_and_a_restart_store_one_message_per_key() {
    let mut server =
        RedisServer::builder().arg("--appendonly").arg("yes").arg("--appendfsync").arg("always").start();
    let client = Client::connect(&server.url()).await.unwrap();
    let killing = Arc::new(AtomicBool::new(true));
    let killer = {
        let (killing, url) = (killing.clone(), server.url());
        tokio::spawn(async move {
            while killing.load(Ordering::Relaxed) {
                if let Ok(c) = redis::Client::open(url.as_str())
                    && let Ok(mut conn) = c.get_multiplexed_async_connection().await
                {
                    let mut kill = redis::cmd("CLIENT");
                    kill.arg("KILL").arg("TYPE").arg("normal");
                    let _: redis::RedisResult<u32> = kill.query_async(&mut conn).await;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let (mut ids, mut failures) = (Vec::new(), 0);
    for n in 0..400 {
        if n == 200 {
            server.kill();
            server.restart();
        }
        let key = format!("order-{n}");
        loop {
            match client.publish_idempotent("r.a", &key, format!("{n}")).await {
                Ok(id) => break ids.push(id.get()),
                Err(error) => {
                    assert!(error.is_retryable(), "{error}");
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }
    killing.store(false, Ordering::Relaxed);
    killer.await.unwrap();
    // The last kill may have come after the last publish: let the client reconnect.
    while client.head().await.is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stored = read_all(&client, "r.*").await;
    let bodies: Vec<String> = stored.iter().map(|m| String::from_utf8(m.body.to_vec()).unwrap()).collect();
    assert_eq!(bodies, (0..400).map(|n| n.to_string()).collect::<Vec<_>>(), "one message per key, in order");
    let stored_ids: Vec<u64> = stored.iter().map(|m| m.id.get()).collect();
    assert_eq!(ids, stored_ids, "each publish returned the id of its one stored message");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 400);
    eprintln!("{failures} failed calls retried");
    assert!(failures > 0, "the connection was never killed mid-way");
}
