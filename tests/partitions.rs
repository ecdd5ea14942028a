//! Partitioned namespaces: creation and its mistakes, keys picking partitions
//! by the documented hash, each partition an ordinary namespace, and
//! partitions spread over a cluster's shards.

use std::collections::BTreeSet;
use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use remq::{Client, Error, FlushPolicy, MessageId, partition_for};
use remq_testkit::{RedisCluster, RedisServer, RunningWorker, test_worker, wait_until};

#[tokio::test]
async fn a_namespace_is_created_with_a_fixed_count_and_mistakes_are_clear_errors() {
    let server = RedisServer::start();
    let client = Client::builder(server.url()).namespace("remq:{orders}").connect().await.unwrap();
    assert_eq!(client.partitions().await.unwrap(), 1, "not partitioned until created");
    client.create_partitions(4).await.unwrap();
    client.create_partitions(4).await.unwrap();
    // Another client of the same namespace reads the stored count.
    let other = Client::builder(server.url()).namespace("remq:{orders}").connect().await.unwrap();
    assert_eq!(other.partitions().await.unwrap(), 4);
    let error = other.create_partitions(8).await.unwrap_err();
    assert!(matches!(error, Error::Partitions { .. }), "{error:?}");
    assert!(error.to_string().contains("created with 4 partitions"), "{error}");
    let error = other.partition(4).await.unwrap_err();
    assert!(error.to_string().contains("partition 4 does not exist: it has 4 (0 to 3)"), "{error}");
    for (client, count, says) in [
        (client.with_namespace("remq:{x}").unwrap(), 0, "1 to 1024 partitions, not 0"),
        (client.with_namespace("remq:{x}").unwrap(), 1025, "not 1025"),
        (Client::connect(&server.url()).await.unwrap(), 2, "REMQ_NAMESPACE=remq:{app}"),
    ] {
        let error = client.create_partitions(count).await.unwrap_err();
        assert!(error.to_string().contains(says), "{error}");
        assert!(error.is_permanent());
    }
    // A namespace that already holds messages of its own stays as it is.
    let used = client.with_namespace("remq:{used}").unwrap();
    used.publish("a", "1").await.unwrap();
    let error = used.create_partitions(2).await.unwrap_err();
    assert!(error.to_string().contains("already holds messages"), "{error}");
    assert_eq!(used.partitions().await.unwrap(), 1);
}

#[tokio::test]
async fn keys_pick_partitions_by_the_documented_hash_and_each_keeps_publish_order() {
    let server = RedisServer::start();
    let client = Client::builder(server.url()).namespace("remq:{orders}").connect().await.unwrap();
    client.create_partitions(4).await.unwrap();
    let mut expected: Vec<Vec<(MessageId, String)>> = vec![Vec::new(); 4];
    for i in 0..200 {
        let key = format!("user-{}", i % 17);
        let body = format!("{key} #{i}");
        let published = client.publish_keyed("orders.created", &key, &body).await.unwrap();
        assert_eq!(published.partition, partition_for(key.as_bytes(), 4), "{key}");
        expected[published.partition as usize].push((published.id, body));
    }
    // A batch goes to one partition; a plain publish is keyed by its channel.
    let batch = client.publish_batch_keyed("orders.bulk", "user-3", ["b1", "b2"]).await.unwrap();
    assert_eq!(batch.partition, partition_for(b"user-3", 4));
    expected[batch.partition as usize]
        .extend([(*batch.ids.start(), "b1".to_owned()), (*batch.ids.end(), "b2".to_owned())]);
    let plain = client.publish("orders.cancelled", "c").await.unwrap();
    expected[partition_for(b"orders.cancelled", 4) as usize].push((plain, "c".to_owned()));

    for (k, expected) in expected.iter().enumerate() {
        let partition = client.partition(k as u32).await.unwrap();
        assert_eq!(partition.namespace().base(), format!("remq:{{orders.{k}}}"));
        let page = partition.consume("orders.*", MessageId::ZERO, 1000).await.unwrap();
        let got: Vec<(MessageId, String)> =
            page.iter().map(|m| (m.id, String::from_utf8(m.body.to_vec()).unwrap())).collect();
        assert_eq!(&got, expected, "partition {k}: every message of its keys, in publish order");
        assert!(page.iter().all(|m| m.partition == k as u32));
        // Each partition counts its own ids from 1.
        assert_eq!(page.first().map(|m| m.id.get()), Some(1));
    }
    assert!(client.consume("orders.*", MessageId::ZERO, 10).await.unwrap().is_empty(), "the base holds none");
    // Tails of one partition carry it too.
    let partition = client.partition(2).await.unwrap();
    let mut tail = partition.tail("orders.*", remq::StartFrom::Earliest).await.unwrap();
    assert_eq!(tail.next().await.unwrap().partition, 2);
}

/// How many messages each partition of `client`'s namespace holds on `pattern`.
async fn held(client: &Client, pattern: &str) -> Vec<usize> {
    let mut held = Vec::new();
    for view in client.every_partition().await.unwrap() {
        held.push(view.consume(pattern, MessageId::ZERO, 1000).await.unwrap().len());
    }
    held
}

#[tokio::test]
async fn flushes_and_a_workers_flush_jobs_cover_every_partition() {
    let server = RedisServer::start();
    let client = Client::builder(server.url()).namespace("remq:{kept}").connect().await.unwrap();
    client.create_partitions(3).await.unwrap();
    for view in client.every_partition().await.unwrap() {
        for i in 0..20 {
            view.publish("k.a", format!("{i}")).await.unwrap();
        }
    }
    // A plan and a flush name each partition's channel, with that partition's ids.
    let keep_five = FlushPolicy::new("k.*").interest(false).keep_last(5);
    let plan = client.plan_flush(&keep_five).await.unwrap();
    let planned: Vec<(u32, &str, u64, u64)> =
        plan.channels.iter().map(|c| (c.partition, c.channel.as_str(), c.before.get(), c.removed)).collect();
    assert_eq!(planned, [(0, "k.a", 16, 15), (1, "k.a", 16, 15), (2, "k.a", 16, 15)]);
    assert_eq!(held(&client, "k.*").await, [20, 20, 20], "a plan removes nothing");
    assert_eq!(client.flush_with(&keep_five).await.unwrap(), plan);
    assert_eq!(held(&client, "k.*").await, [5, 5, 5]);

    // A worker's flush job, interest only, beside a consumer group member:
    // every partition is trimmed to what the consumer handled there.
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let worker = test_worker(server.url())
        .namespace("remq:{kept}")
        .flush(FlushPolicy::new("k.*").every(Duration::from_millis(100)))
        .named_handler("trimmer", "k.*", move |_: MessageId| {
            counter.fetch_add(1, Ordering::Relaxed);
            async {}
        });
    let running = RunningWorker::start(worker);
    wait_until(Duration::from_secs(20), "each partition flushed down to nothing", async || {
        (held(&client, "k.*").await == [0, 0, 0]).then_some(())
    })
    .await;
    assert_eq!(handled.load(Ordering::Relaxed), 15, "each message handled before it went");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_worker_expecting_another_partition_count_refuses_to_start() {
    let server = RedisServer::start();
    let client = Client::builder(server.url()).namespace("remq:{orders}").connect().await.unwrap();
    client.create_partitions(3).await.unwrap();
    for expected in [4, 1] {
        let worker = test_worker(server.url()).namespace("remq:{orders}").partitions(expected).named_handler(
            "p",
            "*",
            |_: MessageId| async {},
        );
        let error = tokio::time::timeout(Duration::from_secs(10), worker.run()).await.unwrap().unwrap_err();
        assert!(matches!(error, Error::Partitions { .. }), "{error:?}");
        assert!(error.to_string().contains(&format!("expects {expected} partitions")), "{error}");
        assert!(error.to_string().contains("the namespace has 3"), "{error}");
    }
}

#[tokio::test]
async fn partitions_spread_over_the_shards_of_a_cluster() {
    let cluster = RedisCluster::start();
    let client = Client::builder(cluster.seed_url()).namespace("remq:{orders}").connect().await.unwrap();
    client.create_partitions(12).await.unwrap();
    let mut masters = BTreeSet::new();
    for k in 0..12u32 {
        let partition = client.partition(k).await.unwrap();
        let id = partition.publish("o", format!("to {k}")).await.unwrap();
        assert_eq!(id, MessageId::new(1));
        masters.insert(cluster.master_port_for(partition.namespace().base()));
    }
    assert_eq!(masters.len(), 3, "12 partitions over 3 masters");
    for i in 0..60 {
        client.publish_keyed("o", format!("key {i}"), "x").await.unwrap();
    }
    let mut total = 0;
    for k in 0..12u32 {
        total += client.partition(k).await.unwrap().consume("*", MessageId::ZERO, 1000).await.unwrap().len();
    }
    assert_eq!(total, 72);
}
