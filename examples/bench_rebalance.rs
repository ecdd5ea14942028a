//! Consumer-group rebalances: how long a partition pauses when a replica
//! joins, leaves gracefully, and is killed.
//!
//! ```text
//! cargo run --release --example bench_rebalance
//! ```
//!
//! Starts a throwaway `redis-server`. Each round, a fresh namespace with
//! [`PARTITIONS`] partitions gets a steady stream of keyed publishes
//! ([`RATE`] msg/s over 120 keys) while worker replicas, each a process of
//! its own (this program started again with `BENCH_REPLICA` set), consume it
//! as one group with a [`LEASE`] lease. Three replicas start; then a fourth
//! **joins**, one replica **leaves** (SIGTERM), and one is **killed**
//! (SIGKILL), [`PHASE`] apart. Every replica prints what it handled
//! (partition, id, replica, when), and for each event this prints, over the
//! partitions that moved and those that did not, the longest time between two
//! messages handled in one partition (the pause), beside the longest such gap
//! in the phase before any event (the normal gap at this rate); the messages
//! handled a second time after each event; and those never handled.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use remq::{Client, Delivery, StartFrom};
use remq_testkit::RedisServer;

/// Partitions of the namespace.
const PARTITIONS: u32 = 12;
/// Messages published per second, over all partitions.
const RATE: u64 = 2_000;
/// The replicas' lease time (`REMQ_LEASE_TTL`).
const LEASE: Duration = Duration::from_secs(2);
/// Time between two events (and before the first).
const PHASE: Duration = Duration::from_secs(5);
/// Rounds, each in a fresh namespace.
const ROUNDS: usize = 3;

/// One message a replica handled.
#[derive(Clone, Copy, Debug)]
struct Handled {
    partition: u32,
    id: u64,
    replica: usize,
    /// Microseconds since the Unix epoch.
    at: u64,
}

/// Microseconds since the Unix epoch (the replicas and this process share the clock).
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_micros() as u64
}

/// A replica: runs the group's worker until SIGTERM, printing each message it handles.
async fn replica(url: String, namespace: String, label: usize) {
    let worker = remq::Worker::new(url)
        .without_registered_handlers()
        .namespace(&namespace)
        .start_from(StartFrom::Earliest)
        .lease_ttl(LEASE)
        .handler("bench.*", move |delivery: Delivery| async move {
            println!("{} {} {label} {}", delivery.partition(), delivery.message.id, now_us());
        });
    worker.run().await.expect("the replica's worker");
}

/// A replica process and what it printed.
struct Replica {
    child: Child,
}

impl Replica {
    /// Starts replica `label`; its lines go into `handled`.
    fn start(url: &str, namespace: &str, label: usize, handled: &Arc<Mutex<Vec<Handled>>>) -> Replica {
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .env("BENCH_REPLICA", format!("{url} {namespace} {label}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a replica");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let handled = handled.clone();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let f: Vec<u64> = line.split(' ').map(|f| f.parse().expect("a number")).collect();
                let h = Handled { partition: f[0] as u32, id: f[1], replica: f[2] as usize, at: f[3] };
                handled.lock().expect("not poisoned").push(h);
            }
        });
        Replica { child }
    }

    /// SIGTERM: a graceful leave.
    fn terminate(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        assert!(status.expect("kill(1)").success());
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one event did, over the partitions that moved and those that did not.
#[derive(Debug, Default)]
struct EventFigures {
    moved: usize,
    /// Longest pause of a moved partition, ms.
    moved_pause: f64,
    /// Longest pause of a partition that stayed, ms.
    stayed_pause: f64,
    /// Messages handled a second time in the window.
    twice: usize,
}

/// The longest gap between consecutive handlings of one partition in
/// `[from, to)`, counting from its last handling before `from`; and who
/// handled it last before `from` and last before `to`.
fn partition_window(times: &[(u64, usize)], from: u64, to: u64) -> (f64, Option<usize>, Option<usize>) {
    let before = times.iter().rev().find(|(at, _)| *at < from);
    let inside: Vec<&(u64, usize)> = times.iter().filter(|(at, _)| (from..to).contains(at)).collect();
    let mut longest = 0u64;
    let mut last = before.map(|(at, _)| *at);
    for (at, _) in &inside {
        if let Some(last) = last {
            longest = longest.max(at - last);
        }
        last = Some(*at);
    }
    (longest as f64 / 1000.0, before.map(|b| b.1), inside.last().map(|i| i.1))
}

/// Figures of the event at `from`, over the window up to `to`; `again` holds
/// when each message handled a second time was.
fn event(by_partition: &BTreeMap<u32, Vec<(u64, usize)>>, again: &[u64], from: u64, to: u64) -> EventFigures {
    let mut figures = EventFigures {
        twice: again.iter().filter(|at| (from..to).contains(*at)).count(),
        ..EventFigures::default()
    };
    for times in by_partition.values() {
        let (pause, owner_before, owner_after) = partition_window(times, from, to);
        if owner_before != owner_after {
            figures.moved += 1;
            figures.moved_pause = figures.moved_pause.max(pause);
        } else {
            figures.stayed_pause = figures.stayed_pause.max(pause);
        }
    }
    figures
}

/// Publishes `RATE` keyed messages a second until `stop`; returns every
/// (partition, id) stored.
async fn produce(client: Client, stop: tokio_util::sync::CancellationToken) -> BTreeSet<(u32, u64)> {
    let mut published = BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut n = 0u64;
    while !stop.is_cancelled() {
        tick.tick().await;
        let calls = (0..RATE / 100).map(|i| {
            let key = format!("key-{}", (n + i) % 120);
            let client = client.clone();
            async move { client.publish_keyed("bench.x", key, b"0123456789").await.expect("publish") }
        });
        for at in join_all(calls).await {
            published.insert((at.partition, at.id.get()));
        }
        n += RATE / 100;
    }
    published
}

/// One round: three replicas, then a join, a leave and a kill.
async fn round(server: &RedisServer, n: usize) -> [EventFigures; 4] {
    let namespace = format!("remq:{{rebalance{n}}}");
    let client = Client::builder(server.url()).namespace(&namespace).connect().await.expect("connect");
    client.create_partitions(PARTITIONS).await.expect("create");
    let handled = Arc::new(Mutex::new(Vec::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let producer = tokio::spawn(produce(client.clone(), stop.clone()));
    let mut replicas: Vec<Replica> =
        (0..3).map(|label| Replica::start(&server.url(), &namespace, label, &handled)).collect();
    let settled = now_us() + 2 * PHASE.as_micros() as u64 / 5;
    tokio::time::sleep(PHASE).await;
    let joined = now_us();
    replicas.push(Replica::start(&server.url(), &namespace, 3, &handled));
    tokio::time::sleep(PHASE).await;
    let left = now_us();
    replicas[0].terminate();
    tokio::time::sleep(PHASE).await;
    let killed = now_us();
    let _ = replicas[1].child.kill();
    tokio::time::sleep(PHASE + LEASE).await;
    let end = now_us();
    stop.cancel();
    let published = producer.await.expect("the producer");
    // Let the survivors catch up, then stop them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for replica in &replicas[2..] {
        replica.terminate();
    }
    for mut replica in replicas {
        let _ = replica.child.wait();
    }

    let mut handled = handled.lock().expect("not poisoned").clone();
    handled.sort_unstable_by_key(|h| h.at);
    let mut by_partition: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
    let mut seen: BTreeSet<(u32, u64)> = BTreeSet::new();
    let mut again = Vec::new();
    for h in &handled {
        by_partition.entry(h.partition).or_default().push((h.at, h.replica));
        if !seen.insert((h.partition, h.id)) {
            again.push(h.at);
        }
    }
    let lost = published.difference(&seen).count();
    println!(
        "round {n}: {} published, {} handled, {lost} never handled, {} handled twice",
        published.len(),
        handled.len(),
        again.len()
    );
    [
        event(&by_partition, &again, settled, joined),
        event(&by_partition, &again, joined, left),
        event(&by_partition, &again, left, killed),
        event(&by_partition, &again, killed, end),
    ]
}

fn main() {
    if let Ok(args) = std::env::var("BENCH_REPLICA") {
        let args: Vec<&str> = args.split(' ').collect();
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(replica(args[0].to_owned(), args[1].to_owned(), args[2].parse().expect("a label")));
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let server = RedisServer::start();
        println!(
            "{PARTITIONS} partitions, {RATE} msg/s over 120 keys, lease {LEASE:?}, events {PHASE:?} apart; \
             pauses in ms"
        );
        let names = ["steady (no event)", "a 4th joins", "one leaves (SIGTERM)", "one is killed (SIGKILL)"];
        let mut all: Vec<Vec<EventFigures>> = (0..4).map(|_| Vec::new()).collect();
        for n in 0..ROUNDS {
            for (i, figures) in round(&server, n).await.into_iter().enumerate() {
                println!(
                    "  {:<24} moved {:>2}: longest pause {:>7.1}   stayed: longest pause {:>6.1}   twice {:>4}",
                    names[i], figures.moved, figures.moved_pause, figures.stayed_pause, figures.twice
                );
                all[i].push(figures);
            }
        }
        println!("over {ROUNDS} rounds (min–max):");
        for (name, figures) in names.iter().zip(&all) {
            let range = |f: &dyn Fn(&EventFigures) -> f64| {
                let values: Vec<f64> = figures.iter().map(f).collect();
                let (min, max) = values.iter().fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
                format!("{min:.0}–{max:.0}")
            };
            println!(
                "  {name:<24} moved {}: pause {} ms   stayed: pause {} ms   twice {}",
                range(&|f| f.moved as f64),
                range(&|f| f.moved_pause),
                range(&|f| f.stayed_pause),
                range(&|f| f.twice as f64)
            );
        }
    });
}
