//! Remq on a real Redis Cluster (three masters, three replicas): the client,
//! the tail and the worker, in namespaces with hash tags.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, Error, MessageId, StartFrom};
use remq_testkit::{RedisCluster, RunningWorker, test_worker, wait_for};

#[tokio::test]
async fn a_namespace_without_a_hash_tag_is_refused_on_a_cluster() {
    let cluster = RedisCluster::start();
    let error = Client::connect(&cluster.seed_url()).await.unwrap_err();
    assert!(matches!(error, Error::InvalidNamespace { .. }), "{error:?}");
    assert!(error.to_string().contains("remq:{app}"), "the error names the fix: {error}");
    let tagged = Client::builder(cluster.seed_url()).namespace("remq:{orders}").connect().await.unwrap();
    let error = tagged.with_namespace("other").unwrap_err();
    assert!(matches!(error, Error::InvalidNamespace { .. }), "{error:?}");
    assert_eq!(tagged.head().await.unwrap(), MessageId::ZERO, "nothing was written");
}

#[tokio::test]
async fn publish_consume_flush_and_tail_in_two_namespaces_on_a_cluster() {
    let cluster = RedisCluster::start();
    // The seed-list form of the URL works as well as one node's.
    let orders = Client::builder(cluster.seed_list()).namespace("remq:{orders}").connect().await.unwrap();
    let billing = orders.with_namespace("remq:{billing}").unwrap();
    let mut tail = orders.tail("o.*", StartFrom::Latest).await.unwrap();
    // 40 channels: more than a merge takes, so `o.*` follows the order index.
    let mut published = Vec::new();
    for i in 0..120u32 {
        let channel = format!("o.{}", i % 40);
        published.push((orders.publish(&channel, format!("order {i}")).await.unwrap(), channel));
        billing.publish("b.invoices", format!("invoice {i}")).await.unwrap();
    }
    let batch = orders.publish_batch("o.batch", ["x", "y", "z"]).await.unwrap();
    for id in batch.start().get()..=batch.end().get() {
        published.push((MessageId::new(id), "o.batch".to_owned()));
    }
    let all = orders.consume("o.*", MessageId::ZERO, 1000).await.unwrap();
    let got: Vec<_> = all.iter().map(|m| (m.id, m.channel.clone())).collect();
    assert_eq!(got, published, "every message of the namespace, in order");
    assert_eq!(billing.consume("*", MessageId::ZERO, 1000).await.unwrap().len(), 120, "the other namespace");
    assert_eq!(billing.head().await.unwrap(), MessageId::new(120), "each namespace has its own counter");
    for (id, _) in &published {
        let message = tokio::time::timeout(Duration::from_secs(5), tail.next()).await.unwrap().unwrap();
        assert_eq!(message.id, *id, "the tail saw every message live, in order");
    }
    let cut = published[60].0;
    assert_eq!(orders.flush("o.*", cut).await.unwrap(), 60);
    let kept = orders.consume("o.*", MessageId::ZERO, 1000).await.unwrap();
    assert_eq!(kept.first().map(|m| m.id), Some(cut), "the flush removed what was below the cut");
}

#[tokio::test]
async fn a_worker_handles_every_message_in_order_on_a_cluster() {
    let cluster = RedisCluster::start();
    let client = Client::builder(cluster.seed_url()).namespace("remq:{orders}").connect().await.unwrap();
    let mut expected = Vec::new();
    for i in 0..50u32 {
        expected.push(client.publish(&format!("o.{}", i % 5), "before").await.unwrap());
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let worker = test_worker(cluster.seed_url()).namespace("remq:{orders}").named_handler(
        "orders",
        "o.*",
        move |id: MessageId| {
            sink.lock().unwrap().push(id);
            async {}
        },
    );
    let running = RunningWorker::start(worker);
    for i in 0..50u32 {
        expected.push(client.publish(&format!("o.{}", i % 5), "live").await.unwrap());
    }
    wait_for(Duration::from_secs(20), "the worker handled all 100", || seen.lock().unwrap().len() >= 100)
        .await;
    running.stop().await.unwrap();
    assert_eq!(*seen.lock().unwrap(), expected, "replay then live, every id once, in order");
}
