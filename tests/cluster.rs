//! Remq on a real Redis Cluster (three masters, three replicas): the client,
//! the tail and the worker, in namespaces with hash tags.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, Error, MessageId, StartFrom};
use remq_testkit::{
    RedisCluster, RunningWorker, local_listener, metric, test_worker, wait_for, wait_for_readiness,
    wait_until,
};

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
    // 50 before the worker starts (replayed), 50 after (live).
    let mut expected = publish_some(&client, 50).await;
    let (running, seen, _) = recording_worker(&cluster, "orders", Duration::from_secs(1));
    expected.extend(publish_some(&client, 50).await);
    handled_exactly(&seen, &expected).await;
    running.stop().await.unwrap();
}

/// A worker on `remq:{orders}` whose handler `name` (metrics are per process,
/// so each test has its own) records the ids of `o.*` it handles; it serves
/// `/metrics` and `/readyz`. Its lease lasts `lease`.
fn recording_worker(
    cluster: &RedisCluster,
    name: &str,
    lease: Duration,
) -> (RunningWorker, Arc<Mutex<Vec<MessageId>>>, std::net::SocketAddr) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let (listener, addr) = local_listener();
    let worker = test_worker(cluster.seed_url())
        .namespace("remq:{orders}")
        .metrics_listener(listener)
        .lease_ttl(lease)
        .named_handler(name, "o.*", move |id: MessageId| {
            sink.lock().unwrap().push(id);
            async {}
        });
    (RunningWorker::start(worker), seen, addr)
}

/// Publishes `count` messages over five channels `o.<n>`, retrying each until
/// it is stored (a failover refuses writes for a while), and returns the ids.
async fn publish_some(client: &Client, count: u32) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for i in 0..count {
        loop {
            match client.publish(&format!("o.{}", i % 5), "m").await {
                Ok(id) => break ids.push(id),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    ids
}

/// Waits until the worker handled `expected.len()` ids and checks they are `expected`.
async fn handled_exactly(seen: &Mutex<Vec<MessageId>>, expected: &[MessageId]) {
    wait_for(Duration::from_secs(30), "the worker handled every message", || {
        seen.lock().unwrap().len() >= expected.len()
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), expected, "every id once, in order");
}

#[tokio::test]
async fn live_pushes_on_a_cluster_are_sharded_to_the_namespace_slot() {
    let cluster = RedisCluster::start();
    let client = Client::builder(cluster.seed_url()).namespace("remq:{orders}").connect().await.unwrap();
    let (running, seen, addr) = recording_worker(&cluster, "sharded", Duration::from_secs(1));
    wait_for_readiness(addr, "sharded", "live").await;
    let master =
        redis::Client::open(format!("redis://127.0.0.1:{}", cluster.master_port_for("remq:{orders}")))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
    let mode: String =
        redis::cmd("GET").arg("remq:{orders}:push-mode").query_async(&mut master.clone()).await.unwrap();
    assert_eq!(mode, "sharded", "the worker switched the namespace to sharded pushes");
    let (_, subscribers): (String, u32) = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg("remq:{orders}:pushes")
        .query_async(&mut master.clone())
        .await
        .unwrap();
    assert_eq!(subscribers, 1, "one sharded subscription, on the namespace's master");
    let patterns: u32 = redis::cmd("PUBSUB").arg("NUMPAT").query_async(&mut master.clone()).await.unwrap();
    assert_eq!(patterns, 0, "no classic pattern subscription");
    // Other channels of the namespace are pushed too, and filtered out here.
    client.publish("x.ignored", "not for o.*").await.unwrap();
    let expected = publish_some(&client, 30).await;
    handled_exactly(&seen, &expected).await;
    let body = remq_testkit::scrape_until(
        addr,
        r#"remq_gap_replays_total{handler="sharded",reason="startup"}"#,
        |n| n == 1.0,
    )
    .await;
    assert_eq!(
        metric(&body, r#"remq_gap_replays_total{handler="sharded",reason="disconnect"}"#),
        None,
        "live, no gap"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_slot_migration_ends_the_sharded_subscription_and_the_worker_replays_the_gap() {
    let cluster = RedisCluster::start();
    let client = Client::builder(cluster.seed_url()).namespace("remq:{orders}").connect().await.unwrap();
    let mut expected = publish_some(&client, 20).await;
    let (running, seen, addr) = recording_worker(&cluster, "migrated", Duration::from_secs(1));
    wait_for_readiness(addr, "migrated", "live").await;
    let before = cluster.master_port_for("remq:{orders}");
    let after = cluster.migrate_slot_of("remq:{orders}");
    assert_ne!(before, after);
    expected.extend(publish_some(&client, 40).await);
    handled_exactly(&seen, &expected).await;
    let disconnects = r#"remq_gap_replays_total{handler="migrated",reason="disconnect"}"#;
    remq_testkit::scrape_until(addr, disconnects, |n| n >= 1.0).await;
    running.stop().await.unwrap();
}

/// A cluster, a client on `remq:{orders}` and a recording worker `name`
/// that has handled ids 1..=30 and stored its checkpoint, with every write on
/// the replica: the state before a failover. The worker's lease (10 s, the
/// default) outlives a failover here (a few seconds), so it keeps the lease and
/// only its subscription and requests fail over.
async fn settled(
    name: &str,
) -> (RedisCluster, Client, RunningWorker, Arc<Mutex<Vec<MessageId>>>, std::net::SocketAddr, Vec<MessageId>) {
    let cluster = RedisCluster::start();
    let client = Client::builder(cluster.seed_url()).namespace("remq:{orders}").connect().await.unwrap();
    let (running, seen, addr) = recording_worker(&cluster, name, Duration::from_secs(10));
    let expected = publish_some(&client, 30).await;
    handled_exactly(&seen, &expected).await;
    let checkpoint = format!(r#"remq_checkpoint_id{{handler="{name}"}}"#);
    remq_testkit::scrape_until(addr, &checkpoint, |id| id == 30.0).await;
    cluster.wait_for_replicas_of("remq:{orders}");
    (cluster, client, running, seen, addr, expected)
}

#[tokio::test]
async fn a_worker_follows_a_master_failover_without_a_restart() {
    let (mut cluster, client, running, seen, addr, mut expected) = settled("failover").await;
    // Nothing is lost or handled twice (no replica acks here).
    let master = cluster.kill_master_for("remq:{orders}");
    let promoted = cluster.wait_for_failover("remq:{orders}", master);
    assert_ne!(promoted, master);
    expected.extend(publish_some(&client, 30).await);
    handled_exactly(&seen, &expected).await;
    assert!(!running.is_finished(), "the worker went on without a restart");
    let disconnects = r#"remq_gap_replays_total{handler="failover",reason="disconnect"}"#;
    remq_testkit::scrape_until(addr, disconnects, |n| n >= 1.0).await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_failover_to_a_replica_that_missed_writes_is_detected_as_a_counter_reset() {
    let (mut cluster, client, running, seen, addr, mut expected) = settled("lossy").await;
    // The replica misses ids 31..=40, which the worker handles; then the
    // master dies and the replica takes over with the counter at 30.
    let frozen = cluster.freeze_replicas_of("remq:{orders}");
    expected.extend(publish_some(&client, 10).await);
    handled_exactly(&seen, &expected).await;
    let master = cluster.kill_master_for("remq:{orders}");
    cluster.resume(&frozen);
    cluster.wait_for_failover("remq:{orders}", master);
    let again = publish_some(&client, 20).await;
    assert_eq!(again.first(), Some(&MessageId::new(31)), "the new master's counter went back to 30");
    // The worker notices the ids it already handled come again, rewinds to
    // its checkpoint on the new master (30), and handles each new message
    // once, in order.
    expected.extend(again);
    handled_exactly(&seen, &expected).await;
    let resets = r#"remq_counter_resets_total{handler="lossy"}"#;
    remq_testkit::scrape_until(addr, resets, |n| n == 1.0).await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_namespace_set_to_sharded_pushes_on_a_single_server_is_a_clear_error() {
    let server = remq_testkit::RedisServer::start();
    let mut redis = server.connection().await;
    let _: () =
        redis::cmd("SET").arg("remq:{x}:push-mode").arg("sharded").query_async(&mut redis).await.unwrap();
    let client = Client::builder(server.url()).namespace("remq:{x}").connect().await.unwrap();
    let mut tail = client.tail("*", StartFrom::Earliest).await.unwrap();
    let error = tokio::time::timeout(Duration::from_secs(5), tail.next()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error:?}");
    assert!(error.to_string().contains("DEL remq:{x}:push-mode"), "the error names the fix: {error}");
}

#[tokio::test]
async fn a_publish_acked_by_replicas_says_so_and_fails_with_its_ids_when_they_do_not_confirm() {
    let cluster = RedisCluster::start();
    let builder = Client::builder(cluster.seed_url()).namespace("remq:{orders}");
    let acked =
        builder.clone().replicas(1).replicas_timeout(Duration::from_millis(200)).connect().await.unwrap();
    let id = acked.publish("o.1", "confirmed").await.unwrap();
    let batch = acked.publish_batch("o.1", ["a", "b"]).await.unwrap();
    assert_eq!(batch.start().get(), id.get() + 1);
    let too_many = builder.replicas(2).replicas_timeout(Duration::from_millis(100)).connect().await.unwrap();
    let error = too_many.publish("o.1", "one replica only").await.unwrap_err();
    let Error::NotReplicated { ids, acked: confirmed, wanted, .. } = &error else { panic!("{error:?}") };
    assert_eq!((ids.start().get(), ids.end().get(), *confirmed, *wanted), (4, 4, 1, 2), "{error}");
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("REMQ_PUBLISH_REPLICAS"), "{error}");
    let frozen = cluster.freeze_replicas_of("remq:{orders}");
    let error = acked.publish_batch("o.1", ["c", "d"]).await.unwrap_err();
    cluster.resume(&frozen);
    let Error::NotReplicated { ids, acked: 0, .. } = &error else { panic!("{error:?}") };
    assert_eq!((ids.start().get(), ids.end().get()), (5, 6), "the batch's ids: {error}");
    let stored = acked.consume("o.*", MessageId::ZERO, 100).await.unwrap();
    assert_eq!(stored.len(), 6, "an unconfirmed publish is still stored on the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_acked_by_a_replica_survive_a_failover_of_their_master() {
    let mut cluster = RedisCluster::start();
    let client = Client::builder(cluster.seed_url())
        .namespace("remq:{orders}")
        .replicas(1)
        .replicas_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let worker = test_worker(cluster.seed_url())
        .namespace("remq:{orders}")
        .lease_ttl(Duration::from_secs(10))
        .named_handler("acked", "o.*", move |message: remq::Message| {
            sink.lock().unwrap().push(message.body);
            async {}
        });
    let running = RunningWorker::start(worker);
    // One publish in flight at a time, without pause, while the replica falls
    // behind and the master dies: only an acknowledged one counts. (Without
    // replica acks, the publishes while the replica is frozen are acknowledged
    // and then lost with the master.)
    let failed_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (client, failed_over) = (client.clone(), failed_over.clone());
        async move {
            let mut acknowledged = Vec::new();
            let (mut i, mut after_failover) = (0, 0);
            // After the failover the new master has no replica left, so
            // every publish fails (NotReplicated); a few tries show that.
            while after_failover < 10 {
                if failed_over.load(std::sync::atomic::Ordering::Relaxed) {
                    after_failover += 1;
                }
                i += 1;
                let body = format!("m{i}");
                match client.publish(&format!("o.{}", i % 5), &body).await {
                    Ok(_) => acknowledged.push(body),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            acknowledged
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let frozen = cluster.freeze_replicas_of("remq:{orders}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let master = cluster.kill_master_for("remq:{orders}");
    cluster.resume(&frozen);
    tokio::task::block_in_place(|| cluster.wait_for_failover("remq:{orders}", master));
    failed_over.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = publisher.await.unwrap();
    assert!(acknowledged.len() > 100, "publishes were acknowledged before the freeze");
    // The new master's log holds every acknowledged message, in publish order
    // (an unacknowledged one may sit between them, or be gone).
    let stored: Vec<_> = remq_testkit::read_all(&client, "o.*").await.into_iter().map(|m| m.body).collect();
    assert_in_order(&acknowledged, &stored, "the log");
    // The worker, which went on by itself, handled each of them, in order.
    wait_for(Duration::from_secs(30), "the worker handled the last acknowledged message", || {
        seen.lock().unwrap().iter().any(|b| b.as_ref() == acknowledged.last().unwrap().as_bytes())
    })
    .await;
    assert!(!running.is_finished());
    assert_in_order(&acknowledged, &seen.lock().unwrap(), "the worker's deliveries");
    running.stop().await.unwrap();
}

/// Checks that `bodies` appear in `found` in this order (other bodies may sit
/// between them).
fn assert_in_order(bodies: &[String], found: &[bytes::Bytes], what: &str) {
    let mut position = 0;
    for body in bodies {
        let at = found[position..].iter().position(|b| b.as_ref() == body.as_bytes());
        position +=
            at.unwrap_or_else(|| panic!("acknowledged {body} is missing from {what}, or out of order")) + 1;
    }
}

#[tokio::test]
async fn one_worker_follows_two_namespaces_over_one_cluster_connection() {
    let cluster = RedisCluster::start();
    let orders = Client::builder(cluster.seed_url()).namespace("remq:{orders}").connect().await.unwrap();
    let billing = orders.with_namespace("remq:{billing}").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (to_orders, to_billing) = (seen.clone(), seen.clone());
    let worker = test_worker(cluster.seed_url())
        .namespace("remq:{orders}")
        .retry(remq::RetryPolicy::new().max_attempts(1))
        .named_handler("two-orders", "o.*", move |m: remq::Message| {
            let poison = m.body.as_ref() == b"poison";
            to_orders.lock().unwrap().push(("orders", m.id));
            async move { if poison { Err(Error::permanent("poison")) } else { Ok(()) } }
        })
        .configured_handler(
            "two-billing",
            "b.*",
            remq::HandlerOptions::DEFAULT.namespace("remq:{billing}"),
            move |m: remq::Message| {
                let poison = m.body.as_ref() == b"poison";
                to_billing.lock().unwrap().push(("billing", m.id));
                async move { if poison { Err(Error::permanent("poison")) } else { Ok(()) } }
            },
        );
    let running = RunningWorker::start(worker);
    let mut expected = Vec::new();
    for i in 0..20u32 {
        expected.push(("orders", orders.publish("o.1", format!("order {i}")).await.unwrap()));
        expected.push(("billing", billing.publish("b.1", format!("invoice {i}")).await.unwrap()));
    }
    expected.push(("billing", billing.publish("b.1", "poison").await.unwrap()));
    expected.push(("orders", orders.publish("o.2", "poison").await.unwrap()));
    wait_for(Duration::from_secs(20), "both handlers handled everything", || {
        seen.lock().unwrap().len() >= 42
    })
    .await;
    running.stop().await.unwrap();
    let by = |ns: &str, list: &[(&str, MessageId)]| -> Vec<MessageId> {
        list.iter().filter(|(n, _)| *n == ns).map(|(_, id)| *id).collect()
    };
    let seen = seen.lock().unwrap().clone();
    assert_eq!(by("orders", &seen), by("orders", &expected), "each namespace in its own id order");
    assert_eq!(by("billing", &seen), by("billing", &expected));
    // Each dead letter went to the namespace of its message, and is redriven there.
    for (client, channel) in [(&billing, "b.1"), (&orders, "o.2")] {
        let dead = client.consume("dead.*", MessageId::ZERO, 10).await.unwrap();
        assert_eq!(dead.iter().map(|m| m.channel.as_str()).collect::<Vec<_>>(), [format!("dead.{channel}")]);
        let head = client.head().await.unwrap();
        let redriven = remq::redrive_page(client, "dead.*", MessageId::ZERO, 10).await.unwrap();
        assert_eq!(redriven.len(), 1);
        assert_eq!((redriven[0].channel.as_str(), redriven[0].dead_id), (channel, dead[0].id));
        let again = client.consume(channel, head, 10).await.unwrap();
        assert_eq!((again[0].id, &again[0].body[..]), (redriven[0].id, &b"poison"[..]));
    }
    // Each consumer's cursor lives in its own namespace.
    let consumers = billing.consumers().await.unwrap();
    assert!(consumers.iter().any(|c| c.name == "two-billing"), "{consumers:?}");
    assert!(!orders.consumers().await.unwrap().iter().any(|c| c.name == "two-billing"));
}

#[tokio::test]
async fn a_handler_namespace_without_a_hash_tag_stops_a_worker_on_a_cluster_at_start() {
    let cluster = RedisCluster::start();
    let worker = test_worker(cluster.seed_url()).namespace("remq:{orders}").configured_handler(
        "untagged",
        "*",
        remq::HandlerOptions::DEFAULT.namespace("billing"),
        |_: MessageId| async {},
    );
    let error = tokio::time::timeout(Duration::from_secs(10), worker.run()).await.unwrap().unwrap_err();
    assert!(matches!(error, Error::InvalidNamespace { .. }), "{error:?}");
}

#[tokio::test]
async fn a_seed_list_with_a_bad_entry_is_an_invalid_url_and_a_dead_seed_is_skipped() {
    let cluster = RedisCluster::start();
    let garbage = format!("{},not a url", cluster.seed_url());
    let error = Client::builder(garbage).namespace("remq:{o}").connect().await.unwrap_err();
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error:?}");
    assert!(error.to_string().contains("not a url"), "names the entry: {error}");
    // A seed that does not answer is passed over for the next one.
    let dead_first = format!("redis://127.0.0.1:{},{}", remq_testkit::closed_port(), cluster.seed_url());
    let client = Client::builder(dead_first).namespace("remq:{o}").connect().await.unwrap();
    assert_eq!(client.publish("o", "x").await.unwrap(), MessageId::new(1));
    // A list of several servers that are not a cluster is refused.
    let single = remq_testkit::RedisServer::start();
    let two = format!("{},{}", single.url(), single.url());
    let error = Client::connect(&two).await.unwrap_err();
    assert!(error.to_string().contains("single server: give only its URL"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_is_down_is_a_retryable_cluster_down_error() {
    let mut cluster = RedisCluster::start();
    let client = Client::builder(cluster.seed_list()).namespace("remq:{orders}").connect().await.unwrap();
    client.publish("o", "before").await.unwrap();
    // The namespace's master and its replica both die: its slot has no owner.
    let frozen = cluster.freeze_replicas_of("remq:{orders}");
    cluster.kill_master_for("remq:{orders}");
    // At first the master's connection is refused (the other nodes have not
    // yet agreed that it is gone); once they have, the error says the
    // cluster is down. Every error on the way is retryable.
    let error = wait_until(Duration::from_secs(60), "the cluster to be reported down", async || {
        let error = client.publish("o", "during").await.expect_err("no master serves the slot");
        assert!(error.is_retryable(), "a master that is down may come back: {error}");
        matches!(error, Error::ClusterDown { .. }).then_some(error)
    })
    .await;
    cluster.resume(&frozen);
    assert!(matches!(error, Error::ClusterDown { op: "publish", .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("Redis Cluster is down") && text.contains("redis-cli --cluster check"), "{text}");
    assert!(error.is_retryable(), "a cluster that is down may come back: {error}");
}
