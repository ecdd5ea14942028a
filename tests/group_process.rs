//! Consumer groups as processes: three `remq-test-worker` processes share the
//! 12 partitions of one consumer while a producer publishes across 100 keys; a
//! fourth joins, one is killed (SIGKILL), one is frozen (SIGSTOP) and thawed,
//! and all are replaced one by one (SIGTERM). Every message must be handled, each partition's in id order, each
//! partition by one process at a time; the pauses of partitions that moved and
//! of those that did not are measured and printed.
//!
//! The processes record `<id>,<unix-ms>,<label>` per partition (see the
//! binary's `TEST_PER_PARTITION`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remq::Client;
use remq_testkit::{RedisServer, WorkerProcess, wait_until, walk};
use tempfile::TempDir;

const NAMESPACE: &str = "remq:{g}";
const PARTITIONS: u32 = 12;
/// `REMQ_CHECKPOINT_EVERY`: the most messages handled after the last checkpoint
/// (with the 200 ms interval, fewer at this rate).
const CHECKPOINT_EVERY: usize = 50;
/// `REMQ_LEASE_TTL`.
const LEASE: Duration = Duration::from_secs(1);

/// One handling, as recorded.
#[derive(Clone, Debug)]
struct Record {
    id: u64,
    ms: u64,
    label: String,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn start(label: &str, dir: &TempDir, server: &RedisServer) -> WorkerProcess {
    let every = CHECKPOINT_EVERY.to_string();
    let lease = format!("{}ms", LEASE.as_millis());
    let vars = [
        ("REMQ_NAMESPACE", NAMESPACE),
        ("TEST_CONSUMER", "billing"),
        ("TEST_PATTERN", "orders.*"),
        ("TEST_RECORD_KEY", "rec"),
        ("TEST_PER_PARTITION", "1"),
        ("TEST_LABEL", label),
        ("REMQ_CHECKPOINT_EVERY", &*every),
        ("REMQ_CHECKPOINT_INTERVAL", "200ms"),
        ("REMQ_LEASE_TTL", &*lease),
        ("REMQ_SHUTDOWN_DEADLINE", "5s"),
    ];
    WorkerProcess::start(label, dir.path(), &server.url(), &vars)
}

/// A producer publishing across 100 keys, about 400 messages a second, until
/// stopped; yields partition → ids, ascending.
struct Producer {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeMap<u32, Vec<u64>>>,
}

impl Producer {
    fn start(client: Client) -> Producer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut ids: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let key = format!("customer-{}", n % 100);
                let published = client.publish_keyed("orders.created", key, n.to_string()).await.unwrap();
                ids.entry(published.partition).or_default().push(published.id.get());
                n += 1;
                if n.is_multiple_of(4) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            ids
        });
        Producer { stop, task }
    }

    async fn finish(self) -> BTreeMap<u32, Vec<u64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

async fn records(server: &RedisServer) -> BTreeMap<u32, Vec<Record>> {
    let mut conn = server.connection().await;
    let mut all = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("rec:{partition}"))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let parsed = raw
            .iter()
            .map(|r| {
                let mut parts = r.splitn(3, ',');
                let (id, ms, label) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
                Record { id: id.parse().unwrap(), ms: ms.parse().unwrap(), label: label.to_owned() }
            })
            .collect();
        all.insert(partition, parsed);
    }
    all
}

/// Waits until every published id was recorded, then checks each partition:
/// its ids walk the published ones in order (steps back only to a checkpoint),
/// and runs of one process's records never overlap in time with the next
/// (one owner at a time). Returns the records and, per partition, how many
/// messages were handled again.
async fn check(server: &RedisServer, expected: &BTreeMap<u32, Vec<u64>>) -> BTreeMap<u32, Vec<Record>> {
    let all = wait_until(Duration::from_secs(30), "every published message recorded", async || {
        let all = records(server).await;
        let done = expected.iter().all(|(p, ids)| {
            let got = &all[p];
            ids.iter().all(|id| got.iter().any(|r| r.id == *id))
        });
        done.then_some(all)
    })
    .await;
    assert_eq!(expected.len(), PARTITIONS as usize, "the keys reached every partition");
    for (partition, ids) in expected {
        let got = &all[partition];
        let walked = walk(ids, &got.iter().map(|r| r.id).collect::<Vec<_>>());
        assert_eq!((walked.first, walked.highest), (0, ids.len() - 1), "partition {partition}");
        for pair in runs(got).windows(2) {
            let (before, after) = (&got[pair[0].1], &got[pair[1].0]);
            assert!(
                after.ms >= before.ms,
                "partition {partition}: {} handled id {} at {} before {} stopped ({} at {})",
                after.label,
                after.id,
                after.ms,
                before.label,
                before.id,
                before.ms
            );
        }
    }
    all
}

/// The runs of one process's records: (first index, last index).
fn runs(records: &[Record]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        match runs.last_mut() {
            Some((first, last)) if records[*first].label == r.label => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs
}

/// Per partition, within `[from, to]` (unix ms, with the last handling before
/// `from`): whether its owner changed, and the longest time between two
/// consecutive handlings.
fn pauses(all: &BTreeMap<u32, Vec<Record>>, from: u64, to: u64) -> BTreeMap<u32, (bool, u64)> {
    all.iter()
        .map(|(&p, records)| {
            let before = records.iter().rposition(|r| r.ms < from).unwrap_or(0);
            let inside: Vec<&Record> = records[before..].iter().filter(|r| r.ms <= to).collect();
            let moved = inside.windows(2).any(|w| w[0].label != w[1].label);
            let longest = inside.windows(2).map(|w| w[1].ms.saturating_sub(w[0].ms)).max().unwrap_or(0);
            (p, (moved, longest))
        })
        .collect()
}

/// The longest pause of the partitions that moved and of those that did not.
fn report(what: &str, pauses: &BTreeMap<u32, (bool, u64)>) -> (u64, u64) {
    let of = |moved: bool| pauses.values().filter(|(m, _)| *m == moved).map(|(_, p)| *p).max().unwrap_or(0);
    let (moved, kept) = (of(true), of(false));
    let count = pauses.values().filter(|(m, _)| *m).count();
    eprintln!(
        "{what}: {count} partition(s) moved, longest pause {moved} ms; the others' longest pause {kept} ms"
    );
    (moved, kept)
}

async fn client(server: &RedisServer) -> Client {
    let client = Client::builder(server.url()).namespace(NAMESPACE).connect().await.unwrap();
    client.create_partitions(PARTITIONS).await.unwrap();
    client
}

/// Waits until the records show `labels` sharing the partitions evenly, each
/// partition's latest records by one of them.
async fn wait_for_owners(server: &RedisServer, labels: &[&str]) {
    wait_until(Duration::from_secs(20), &format!("{labels:?} to share the partitions"), async || {
        let all = records(server).await;
        let mut per: BTreeMap<&str, u32> = BTreeMap::new();
        let since = now_ms().saturating_sub(300);
        for records in all.values() {
            let recent: Vec<&Record> = records.iter().filter(|r| r.ms >= since).collect();
            let first = recent.first()?;
            if recent.iter().any(|r| r.label != first.label) {
                return None;
            }
            *per.entry(labels.iter().find(|l| **l == first.label)?).or_default() += 1;
        }
        let (low, high) = (PARTITIONS / labels.len() as u32, PARTITIONS.div_ceil(labels.len() as u32));
        (per.len() == labels.len() && per.values().all(|n| (low..=high).contains(n))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_partitions_a_joiner_takes_only_its_share_and_a_killed_ones_move_within_the_lease_time()
 {
    let server = RedisServer::start();
    let dir = TempDir::new().unwrap();
    let producer = Producer::start(client(&server).await);
    let mut workers: Vec<WorkerProcess> =
        ["w0", "w1", "w2"].iter().map(|l| start(l, &dir, &server)).collect();
    wait_for_owners(&server, &["w0", "w1", "w2"]).await;

    // A fourth joins: 3 partitions move to it, one from each; the rest flow on.
    let joined = now_ms();
    workers.push(start("w3", &dir, &server));
    wait_for_owners(&server, &["w0", "w1", "w2", "w3"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = now_ms();

    // One is killed: its partitions move within about the lease time.
    let killed = now_ms();
    workers[1].crash();
    wait_for_owners(&server, &["w0", "w2", "w3"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let recovered = now_ms();

    let expected = producer.finish().await;
    let all = check(&server, &expected).await;
    let join = pauses(&all, joined, settled);
    assert_eq!(join.values().filter(|(moved, _)| *moved).count(), 3, "a join moves 3 of 12: {join:?}");
    let (moved, kept) = report("join", &join);
    assert!(kept < 1_000, "partitions that did not move paused {kept} ms");
    assert!(moved < 3_000, "a graceful hand-off paused {moved} ms");
    let kill = pauses(&all, killed, recovered);
    assert_eq!(kill.values().filter(|(moved, _)| *moved).count(), 3, "the killed one's 3 move: {kill:?}");
    let (moved, kept) = report("SIGKILL", &kill);
    assert!(kept < 1_000, "partitions that did not move paused {kept} ms");
    assert!(moved < LEASE.as_millis() as u64 + 2_500, "the killed one's partitions paused {moved} ms");
    // Handled twice: only what followed the killed one's last checkpoints.
    let mut again = 0;
    for (partition, records) in &all {
        let rewinds = walk(&expected[partition], &records.iter().map(|r| r.id).collect::<Vec<_>>()).rewinds;
        for rewind in rewinds {
            assert_eq!(
                records[rewind.at - 1].label,
                "w1",
                "partition {partition}: a step back after a graceful move"
            );
            assert!(rewind.again <= CHECKPOINT_EVERY, "partition {partition}: {} again", rewind.again);
            again += rewind.again;
        }
    }
    eprintln!("handled again after the SIGKILL: {again} message(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_handles_nothing_twice() {
    let server = RedisServer::start();
    let dir = TempDir::new().unwrap();
    let producer = Producer::start(client(&server).await);
    let labels = ["a0", "a1", "a2"];
    let mut workers: Vec<WorkerProcess> = labels.iter().map(|l| start(l, &dir, &server)).collect();
    wait_for_owners(&server, &labels).await;
    let began = now_ms();
    let mut current: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    for n in 0..3 {
        // Replaced one by one: the new process starts, then the old gets SIGTERM.
        let label = format!("b{n}");
        let replacement = start(&label, &dir, &server);
        workers[n].signal("TERM");
        assert!(workers[n].wait_exit(Duration::from_secs(10)).await.success());
        workers[n] = replacement;
        current[n] = label;
        let now: Vec<&str> = current.iter().map(String::as_str).collect();
        wait_for_owners(&server, &now).await;
    }
    let ended = now_ms();
    let expected = producer.finish().await;
    let all = check(&server, &expected).await;
    let (moved, kept) = report("rolling restart", &pauses(&all, began, ended));
    assert!(moved < 3_000 && kept < 3_000, "pauses: {moved} ms, {kept} ms");
    let again: usize = all
        .iter()
        .map(|(p, records)| {
            let walked = walk(&expected[p], &records.iter().map(|r| r.id).collect::<Vec<_>>());
            walked.rewinds.iter().map(|r| r.again).sum::<usize>()
        })
        .sum();
    eprintln!("handled again during the rolling restart: {again} message(s)");
    assert_eq!(again, 0, "graceful hand-offs handle nothing twice");
}

/// A replica frozen (SIGSTOP) past the lease time loses its partitions to the
/// others; thawed, it rejoins the group, but the leases and checkpoints it
/// held are fenced: its renewals are refused and its partitions' consumers
/// stop, so it cannot move back a cursor that another replica now owns.
/// Nothing is lost, and a partition steps back at most one checkpoint's worth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_is_fenced_out_and_rejoins_without_moving_cursors_it_lost() {
    let server = RedisServer::start();
    let dir = TempDir::new().unwrap();
    let producer = Producer::start(client(&server).await);
    let workers: Vec<WorkerProcess> = ["f0", "f1", "f2"].iter().map(|l| start(l, &dir, &server)).collect();
    wait_for_owners(&server, &["f0", "f1", "f2"]).await;

    workers[1].signal("STOP");
    wait_for_owners(&server, &["f0", "f2"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    workers[1].signal("CONT");
    wait_until(Duration::from_secs(10), "the thawed replica to find its leases gone", async || {
        workers[1].logged("lost ownership; standing by again").then_some(())
    })
    .await;
    wait_for_owners(&server, &["f0", "f1", "f2"]).await;

    let expected = producer.finish().await;
    let all = wait_until(Duration::from_secs(30), "every published message recorded", async || {
        let all = records(&server).await;
        let done = expected.iter().all(|(p, ids)| ids.iter().all(|id| all[p].iter().any(|r| r.id == *id)));
        done.then_some(all)
    })
    .await;
    let mut again = 0;
    for (partition, ids) in &expected {
        let walked = walk(ids, &all[partition].iter().map(|r| r.id).collect::<Vec<_>>());
        assert_eq!((walked.first, walked.highest), (0, ids.len() - 1), "partition {partition}");
        for rewind in walked.rewinds {
            assert!(
                rewind.again <= CHECKPOINT_EVERY,
                "partition {partition}: {} handled again",
                rewind.again
            );
            again += rewind.again;
        }
    }
    eprintln!("handled again after the freeze: {again} message(s)");
    for mut worker in workers {
        worker.signal("TERM");
        assert!(worker.wait_exit(Duration::from_secs(10)).await.success());
    }
}
