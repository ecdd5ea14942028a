//! The minimal ACL docs/protocol.md documents ("ACLs"): a user confined to `remq:` keys and
//! channels, with only the commands Remq needs, runs the client (publish,
//! consume, flush, retention) and a worker (leases, checkpoints, the consumer
//! registry, dead letters, metrics); anything else is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, Error, FlushPolicy, MessageId, StartFrom};
use remq_testkit::{RedisServer, RunningWorker, wait_for, wait_until};

/// The `ACL SETUSER` rules of docs/protocol.md, after `ACL SETUSER <name> on ><password>`.
/// The subscription pattern `&remq:channel:acl.*` is the one the worker below
/// subscribes with (Redis matches PSUBSCRIBE patterns literally).
const MINIMAL_RULES: &str = "resetkeys ~remq:* resetchannels &remq:* &remq:channel:acl.* -@all \
    +ping +evalsha +script|load +psubscribe \
    +get +time +xlen +xrange +xrevrange +sscan +hmget +hset +zadd +zrange +zcard +zremrangebyrank \
    +incr +incrby +xadd +sadd +publish +sismember +xtrim +hget +set +pexpire +pttl +del \
    +hlen +setnx +unlink +zlexcount +zrangebylex";

#[tokio::test]
async fn the_minimal_acl_runs_the_client_and_a_worker() {
    let server = RedisServer::start();
    let rules: Vec<&str> = MINIMAL_RULES.split_whitespace().collect();
    let url = server.acl_user("app", "app-pass", &rules).await;
    let client = Client::connect(&url).await.unwrap();
    let first = client.publish("acl.a", "1").await.unwrap();
    client.publish_batch("acl.b", ["2", "3", "poison"]).await.unwrap();
    assert_eq!(client.consume("acl.*", MessageId::ZERO, 10).await.unwrap().len(), 4);
    assert_eq!(client.head().await.unwrap().get(), 4);
    // What the `remq` tool reads: channels (memory unknown without MEMORY
    // USAGE, which is not in the list) and a tail.
    let channels = client.channels("acl.*").await.unwrap();
    let counts: Vec<_> = channels.iter().map(|c| (c.name.as_str(), c.messages, c.memory_bytes)).collect();
    assert_eq!(counts, [("acl.a", 1, None), ("acl.b", 3, None)]);
    let mut tail = client.tail("acl.*", StartFrom::Earliest).await.unwrap();
    assert_eq!(tail.next().await.unwrap().id, first);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let worker = remq_testkit::test_worker(url.clone())
        .lease_ttl(Duration::from_millis(300))
        .retry(remq::RetryPolicy::new().max_attempts(1))
        .metrics_listener(remq_testkit::local_listener().0)
        .flush(FlushPolicy::new("acl.*").every(Duration::from_millis(100)))
        .named_handler("acl-consumer", "acl.*", move |message: remq::Message| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(message.id);
                if &message.body[..] == b"poison" { Err(Error::permanent("poison")) } else { Ok(()) }
            }
        });
    let running = RunningWorker::start(worker);
    wait_for(Duration::from_secs(10), "the four messages", || seen.lock().unwrap().len() == 4).await;
    server.wait_for_cursor("acl-consumer", 4, Duration::from_secs(10)).await;
    let dead = client.consume("dead.acl.b", MessageId::ZERO, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the dead letter was published");
    // Interest retention ran as this user too: what the consumer processed is gone.
    wait_until(Duration::from_secs(10), "the flush job to run", async || {
        client.consume("acl.*", MessageId::ZERO, 10).await.unwrap().is_empty().then_some(())
    })
    .await;
    // The lease (300 ms) is renewed as this user: its remaining time, read as
    // the admin, is seen going back up three times.
    let mut admin = server.connection().await;
    let (mut remaining, mut renewals) = (i64::MAX, 0);
    wait_until(Duration::from_secs(10), "three renewals of the lease", async || {
        let now: i64 =
            redis::cmd("PTTL").arg("remq:consumer:acl-consumer:lease").query_async(&mut admin).await.unwrap();
        if now > remaining && remaining > 0 {
            renewals += 1;
        }
        remaining = now;
        (renewals >= 3).then_some(())
    })
    .await;
    let consumers = client.consumers().await.unwrap();
    assert_eq!(consumers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["acl-consumer"]);
    assert!(!running.is_finished(), "no permission error stopped the worker");
    running.stop().await.unwrap();
    assert_eq!(first.get(), 1);

    // Size-based retention and the one-call flush.
    client.publish_batch("acl.c", ["1", "2", "3", "4"]).await.unwrap();
    let kept = client.flush_with(&FlushPolicy::new("acl.c").interest(false).keep_last(1)).await.unwrap();
    assert_eq!(kept.removed(), 3);
    assert_eq!(client.flush("acl.c", MessageId::new(100)).await.unwrap(), 1);

    // The confinement is real.
    let mut conn = remq_testkit::connect(&url).await;
    let err = redis::cmd("KEYS").arg("*").query_async::<()>(&mut conn).await.unwrap_err();
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
    let err = redis::cmd("SET").arg("other").arg("x").query_async::<()>(&mut conn).await.unwrap_err();
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
}

/// What a cluster adds to [`MINIMAL_RULES`], as docs/cluster.md lists it.
const CLUSTER_RULES: &str = "+info +cluster|slots +ssubscribe +spublish +readonly +wait";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_acl_with_the_cluster_rules_runs_the_client_and_a_worker_on_a_cluster() {
    let cluster = remq_testkit::RedisCluster::start();
    let rules: Vec<&str> = MINIMAL_RULES.split_whitespace().chain(CLUSTER_RULES.split_whitespace()).collect();
    let url = cluster.acl_user("app", "app-pass", &rules);
    let client = Client::builder(&url).namespace("remq:{acl}").replicas(1).connect().await.unwrap();
    let first = client.publish("acl.a", "1").await.unwrap();
    client.publish_batch("acl.b", ["2", "poison"]).await.unwrap();
    assert_eq!(client.consume("acl.*", MessageId::ZERO, 10).await.unwrap().len(), 3);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (listener, addr) = remq_testkit::local_listener();
    let worker = remq_testkit::test_worker(url.clone())
        .namespace("remq:{acl}")
        .lease_ttl(Duration::from_millis(500))
        .retry(remq::RetryPolicy::new().max_attempts(1))
        .metrics_listener(listener)
        .flush(FlushPolicy::new("acl.*").every(Duration::from_millis(100)))
        .named_handler("acl-cluster", "acl.*", move |message: remq::Message| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(message.id);
                if &message.body[..] == b"poison" { Err(Error::permanent("poison")) } else { Ok(()) }
            }
        });
    let running = RunningWorker::start(worker);
    wait_for(Duration::from_secs(20), "the three stored messages", || seen.lock().unwrap().len() == 3).await;
    // Live, through the sharded subscription this user may make.
    remq_testkit::wait_for_readiness(addr, "acl-cluster", "live").await;
    let live = client.publish("acl.c", "4").await.unwrap();
    wait_for(Duration::from_secs(10), "the live message", || seen.lock().unwrap().len() == 4).await;
    assert_eq!(seen.lock().unwrap()[0], first);
    assert_eq!(seen.lock().unwrap()[3], live);
    let dead = client.consume("dead.acl.b", MessageId::ZERO, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the dead letter was published");
    wait_until(Duration::from_secs(10), "the flush job to run", async || {
        client.consume("acl.*", MessageId::ZERO, 10).await.unwrap().is_empty().then_some(())
    })
    .await;
    assert!(!running.is_finished(), "no permission error stopped the worker");
    running.stop().await.unwrap();

    // Without the cluster rules the same user is refused with what to grant.
    let minimal: Vec<&str> = MINIMAL_RULES.split_whitespace().filter(|rule| *rule != "+info").collect();
    let url = cluster.acl_user("bare", "bare-pass", &minimal);
    let error = Client::builder(&url).namespace("remq:{acl}").connect().await.map(|_| ()).unwrap_err();
    assert!(matches!(error, Error::Permission { op: "connect", .. }), "{error:?}");
    assert!(error.to_string().contains("ACL SETUSER <user> +info"), "{error}");
}

/// What consumer groups add to [`MINIMAL_RULES`], as docs/cluster.md lists it.
const GROUP_RULES: &str = "+zremrangebyscore +zrem +zscore +hgetall +exists";

#[tokio::test]
async fn the_minimal_acl_with_the_group_rules_runs_a_consumer_group() {
    let server = RedisServer::start();
    let admin = Client::builder(server.url()).namespace("remq:{acl}").connect().await.unwrap();
    admin.create_partitions(2).await.unwrap();
    // PSUBSCRIBE patterns are matched literally: one channel rule per partition.
    let partitions = "&remq:{acl.0}:channel:acl.* &remq:{acl.1}:channel:acl.*";
    let rules: Vec<&str> =
        [MINIMAL_RULES, GROUP_RULES, partitions].iter().flat_map(|r| r.split_whitespace()).collect();
    let url = server.acl_user("app", "app-pass", &rules).await;
    let client = Client::builder(&url).namespace("remq:{acl}").connect().await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (listener, addr) = remq_testkit::local_listener();
    let worker = remq_testkit::test_worker(url.clone())
        .namespace("remq:{acl}")
        .metrics_listener(listener)
        .flush(FlushPolicy::new("acl.*").every(Duration::from_millis(100)))
        .named_handler("acl-group", "acl.*", move |delivery: remq::Delivery| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((delivery.partition(), delivery.message.id));
            }
        });
    let running = RunningWorker::start(worker);
    for key in ["a", "b", "c", "d"] {
        client.publish_keyed("acl.x", key, key).await.unwrap();
    }
    for partition in ["0", "1"] {
        remq_testkit::wait_for_readiness(addr, &format!("acl-group partition {partition}"), "live").await;
    }
    let live = client.publish_keyed("acl.x", "e", "e").await.unwrap();
    wait_for(Duration::from_secs(10), "the five messages", || seen.lock().unwrap().len() == 5).await;
    assert!(seen.lock().unwrap().contains(&(live.partition, live.id)));
    wait_until(Duration::from_secs(10), "the flush job to empty both partitions", async || {
        let mut left = 0;
        for view in client.every_partition().await.unwrap() {
            left += view.consume("acl.*", MessageId::ZERO, 10).await.unwrap().len();
        }
        (left == 0).then_some(())
    })
    .await;
    let consumers = client.consumers().await.unwrap();
    assert_eq!(consumers.len(), 2);
    assert!(consumers.iter().all(|c| c.assigned_to.is_some()), "{consumers:?}");
    assert!(!running.is_finished(), "no permission error stopped the worker");
    running.stop().await.unwrap();
}
