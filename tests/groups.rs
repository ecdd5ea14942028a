//! Consumer groups over partitioned namespaces, in one process: the assignment
//! `group.lua` computes (balanced, sticky, no leader), and workers sharing the
//! partitions of one consumer, on one server and on a cluster. The same with
//! worker processes killed, added and restarted is in `tests/group_process.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use remq::{Client, Delivery};
use remq_testkit::{RedisCluster, RedisServer, RunningWorker, test_worker, wait_until};

const GROUP_LUA: &str = include_str!("../scripts/group.lua");

/// Calls `group.lua` as a member would; returns (live members, my partitions).
async fn sync(conn: &mut MultiplexedConnection, member: &str, ttl_ms: u64) -> (u32, Vec<u32>) {
    let (_, members, _, mine): (u64, u32, u8, Vec<u32>) = redis::Script::new(GROUP_LUA)
        .key("remq:{g}")
        .arg("sync")
        .arg("c")
        .arg(member)
        .arg(ttl_ms)
        .invoke_async(conn)
        .await
        .unwrap();
    (members, mine)
}

/// The stored assignment: partition → member.
async fn owners(conn: &mut MultiplexedConnection) -> BTreeMap<u32, String> {
    let stored: BTreeMap<String, String> =
        redis::cmd("HGETALL").arg("remq:{g}:group:c:assignment").query_async(conn).await.unwrap();
    let mut owners = BTreeMap::new();
    for (member, partitions) in stored {
        for p in partitions.split(',').filter(|p| !p.is_empty()) {
            assert!(owners.insert(p.parse().unwrap(), member.clone()).is_none(), "partition {p} given twice");
        }
    }
    owners
}

/// How many partitions changed owner between two assignments.
fn moved(before: &BTreeMap<u32, String>, after: &BTreeMap<u32, String>) -> usize {
    after.iter().filter(|(p, m)| before.get(p) != Some(m)).count()
}

fn loads(owners: &BTreeMap<u32, String>) -> Vec<usize> {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    owners.values().for_each(|m| *by.entry(m).or_default() += 1);
    let mut loads: Vec<usize> = by.into_values().collect();
    loads.sort_unstable();
    loads
}

#[tokio::test]
async fn the_assignment_is_balanced_and_moves_only_what_must_move() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let error = redis::Script::new(GROUP_LUA)
        .key("remq:{g}")
        .arg("sync")
        .arg("c")
        .arg("a")
        .arg(1000)
        .invoke_async::<redis::Value>(&mut conn)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("remq namespace create remq:{g} --partitions"), "{error}");
    let _: () = redis::cmd("SET").arg("remq:{g}:partitions").arg(12).query_async(&mut conn).await.unwrap();
    let long = 60_000;
    for member in ["a", "b", "c"] {
        sync(&mut conn, member, long).await;
    }
    let three = owners(&mut conn).await;
    assert_eq!((three.len(), loads(&three)), (12, vec![4, 4, 4]));
    // A join: the newcomer takes 3, one from each; nothing else moves.
    let (members, mine) = sync(&mut conn, "d", long).await;
    let four = owners(&mut conn).await;
    assert_eq!((members, mine.len(), loads(&four)), (4, 3, vec![3, 3, 3, 3]));
    assert_eq!(moved(&three, &four), 3, "{three:?} → {four:?}");
    // Five members: 2 or 3 each, and only the newcomer's 2 move.
    sync(&mut conn, "e", long).await;
    let five = owners(&mut conn).await;
    assert_eq!(loads(&five), vec![2, 2, 2, 3, 3]);
    assert_eq!(moved(&four, &five), 2);
    // A leave: only the leaver's partitions move.
    let _: u64 = redis::Script::new(GROUP_LUA)
        .key("remq:{g}")
        .arg("leave")
        .arg("c")
        .arg("b")
        .arg(0)
        .invoke_async(&mut conn)
        .await
        .unwrap();
    let left = owners(&mut conn).await;
    let of_b = five.values().filter(|m| *m == "b").count();
    assert_eq!(moved(&five, &left), of_b);
    assert_eq!(loads(&left), vec![3, 3, 3, 3]);
    // A member whose heartbeat expires loses its partitions to the others at
    // the next call of any member; a poll (ttl 0) never adds a member.
    sync(&mut conn, "short", 100).await;
    assert!(owners(&mut conn).await.values().any(|m| m == "short"));
    let (_, none) = sync(&mut conn, "poller", 0).await;
    assert!(none.is_empty());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (members, _) = sync(&mut conn, "a", 0).await;
    let after = owners(&mut conn).await;
    assert_eq!(members, 4);
    assert!(after.values().all(|m| m != "short" && m != "poller"), "{after:?}");
    assert_eq!(loads(&after), vec![3, 3, 3, 3]);
}

/// What the handlers saw: (worker, partition, id), in order of handling.
type Seen = Arc<Mutex<Vec<(usize, u32, u64)>>>;

fn member(url: String, ns: &str, n: usize, seen: &Seen) -> RunningWorker {
    let seen = seen.clone();
    RunningWorker::start(test_worker(url).namespace(ns).named_handler(
        "billing",
        "orders.*",
        move |d: Delivery| {
            let seen = seen.clone();
            async move { seen.lock().unwrap().push((n, d.partition(), d.message.id.get())) }
        },
    ))
}

/// Publishes `count` messages keyed over 50 keys; returns partition → ids.
async fn publish(client: &Client, count: usize) -> BTreeMap<u32, Vec<u64>> {
    let mut ids: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for n in 0..count {
        let published =
            client.publish_keyed("orders.created", format!("user-{}", n % 50), "x").await.unwrap();
        ids.entry(published.partition).or_default().push(published.id.get());
    }
    ids
}

/// Waits until every published id was handled; checks each partition's ids
/// came in order (each handled at most once here: nothing crashes) and
/// returns which workers handled each partition.
async fn delivered(seen: &Seen, expected: &BTreeMap<u32, Vec<u64>>) -> BTreeMap<u32, BTreeSet<usize>> {
    let total: usize = expected.values().map(Vec::len).sum();
    wait_until(Duration::from_secs(20), "every message handled", async || {
        (seen.lock().unwrap().len() >= total).then_some(())
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    let mut got: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut by: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    for &(worker, partition, id) in &seen {
        got.entry(partition).or_default().push(id);
        by.entry(partition).or_default().insert(worker);
    }
    assert_eq!(&got, expected, "every partition's messages, each once, in id order");
    by
}

/// Publishes rounds of 240 messages until, in one round, each of the
/// `partitions` was handled by one of `workers` alone and they share them
/// evenly; every round must deliver every message once, in order.
async fn settle(seen: &Seen, client: &Client, workers: &[usize], partitions: usize) {
    for round in 0..20 {
        seen.lock().unwrap().clear();
        let expected = publish(client, 240).await;
        let by = delivered(seen, &expected).await;
        let mut per_worker: BTreeMap<usize, usize> = BTreeMap::new();
        by.values()
            .filter(|w| w.len() == 1)
            .for_each(|w| *per_worker.entry(*w.first().unwrap()).or_default() += 1);
        let even = per_worker.values().all(|&n| n == partitions / workers.len());
        if by.len() == partitions
            && by.values().all(|w| w.len() == 1)
            && even
            && per_worker.keys().eq(workers)
        {
            eprintln!("settled after {round} round(s): {per_worker:?}");
            return;
        }
    }
    panic!("the partitions did not settle on workers {workers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_partitions_of_one_consumer_and_hand_them_over_when_one_stops() {
    let server = RedisServer::start();
    let ns = "remq:{orders}";
    let client = Client::builder(server.url()).namespace(ns).connect().await.unwrap();
    client.create_partitions(12).await.unwrap();
    let seen: Seen = Arc::default();
    let mut workers: Vec<_> = (0..3).map(|n| member(server.url(), ns, n, &seen)).collect();
    // Each worker runs 4 partitions once all three are in the group.
    wait_until(Duration::from_secs(15), "4 partitions assigned to each of 3 members", async || {
        let consumers = client.consumers().await.unwrap();
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        consumers.iter().filter_map(|c| c.assigned_to.clone()).for_each(|m| *by.entry(m).or_default() += 1);
        (consumers.len() == 12 && by.len() == 3 && by.values().all(|&n| n == 4)).then_some(())
    })
    .await;
    // The assignment is advice: a partition moves once its previous owner
    // (the first worker up ran all 12 for a moment) has stopped it. Round by
    // round, nothing is lost or handled twice, and within a few rounds each
    // worker runs 4 partitions alone.
    settle(&seen, &client, &[0, 1, 2], 12).await;
    // One stops gracefully: its 4 partitions move to the other two, from its
    // checkpoints, and nothing is lost or handled twice.
    workers.remove(2).stop().await.unwrap();
    settle(&seen, &client, &[0, 1], 12).await;
    let listed = client.consumers().await.unwrap();
    assert!(listed.iter().all(|c| c.head.get() >= c.cursor.get() && c.partition < 12), "{listed:?}");
    for worker in workers {
        worker.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_runs_on_a_cluster() {
    let cluster = RedisCluster::start();
    let ns = "remq:{orders}";
    let client = Client::builder(cluster.seed_url()).namespace(ns).connect().await.unwrap();
    client.create_partitions(6).await.unwrap();
    let seen: Seen = Arc::default();
    let workers: Vec<_> = (0..2).map(|n| member(cluster.seed_url(), ns, n, &seen)).collect();
    settle(&seen, &client, &[0, 1], 6).await;
    for worker in workers {
        worker.stop().await.unwrap();
    }
}
