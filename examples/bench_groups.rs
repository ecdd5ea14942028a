//! Consumer groups: how one consumer's work spreads over worker replicas.
//!
//! ```text
//! cargo run --release --example bench_groups
//! ```
//!
//! Starts a throwaway `redis-server`. For 1, 2 and 3 replicas (three rounds
//! each, interleaved), a fresh namespace with 12 partitions is filled with
//! [`MESSAGES`] messages keyed over 120 keys, then that many worker replicas
//! (each a `Worker` of its own, in this process) consume it as one group. The
//! handler takes 1 ms of a resource each replica has once (a mutex held across
//! a 1 ms sleep, as a process with one database connection would), so one
//! replica handles at most ~1,000 messages a second whatever the number of
//! partitions, and the figure shows how the group spreads the partitions. The
//! rate is from the first message handled to the last.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use remq::{Client, MessageId, StartFrom};
use remq_testkit::{RedisServer, RunningWorker};
use tokio::sync::Mutex;

/// Messages per round.
const MESSAGES: usize = 6_000;
/// Partitions of the namespace.
const PARTITIONS: u32 = 12;

/// Messages handled, and when the first was.
struct Progress {
    handled: AtomicUsize,
    first: std::sync::OnceLock<Instant>,
}

async fn round(server: &RedisServer, replicas: usize, n: usize) -> f64 {
    let ns = format!("remq:{{bench{replicas}x{n}}}");
    let client = Client::builder(server.url()).namespace(&ns).connect().await.expect("connect");
    client.create_partitions(PARTITIONS).await.expect("create");
    for chunk in 0..MESSAGES / 100 {
        let key = format!("k{}", chunk % 120);
        client.publish_batch_keyed("bench.x", key, vec![vec![b'x'; 100]; 100]).await.expect("publish");
    }
    let progress = Arc::new(Progress { handled: AtomicUsize::new(0), first: std::sync::OnceLock::new() });
    let workers: Vec<RunningWorker> = (0..replicas)
        .map(|_| {
            let (progress, resource) = (progress.clone(), Arc::new(Mutex::new(())));
            let worker = remq::Worker::new(server.url())
                .without_registered_handlers()
                .without_signal_handlers()
                .namespace(&ns)
                .start_from(StartFrom::Earliest)
                .lease_ttl(Duration::from_secs(2))
                .handler("bench.*", move |_: MessageId| {
                    let (progress, resource) = (progress.clone(), resource.clone());
                    async move {
                        let _held = resource.lock().await;
                        progress.first.get_or_init(Instant::now);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        progress.handled.fetch_add(1, Ordering::Relaxed);
                    }
                });
            RunningWorker::start(worker)
        })
        .collect();
    while progress.handled.load(Ordering::Relaxed) < MESSAGES {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = MESSAGES as f64 / progress.first.get().expect("handled").elapsed().as_secs_f64();
    for worker in workers {
        worker.stop().await.expect("stop");
    }
    rate
}

#[tokio::main]
async fn main() {
    let server = RedisServer::start();
    println!("{MESSAGES} messages, {PARTITIONS} partitions, handler 1 ms of a once-per-replica resource");
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for n in 0..3 {
        for replicas in 1..=3 {
            let rate = round(&server, replicas, n).await;
            println!("round {n}: {replicas} replica(s): {rate:.0} msg/s");
            rates[replicas - 1].push(rate);
        }
    }
    for (i, r) in rates.iter().enumerate() {
        let (min, max) = r.iter().fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        println!(
            "{} replica(s): {min:.0}–{max:.0} msg/s ({:.2}–{:.2} × one replica's best)",
            i + 1,
            min / rates[0].iter().cloned().fold(0., f64::max),
            max / rates[0].iter().cloned().fold(0., f64::max)
        );
    }
}
