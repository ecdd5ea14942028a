//! Remq on a Redis Cluster against one server, measured in one run.
//!
//! ```text
//! cargo run --release --example bench_cluster
//! ```
//!
//! `REMQ_BENCH_ONLY=shards` (or `bus`, `acks`, comma-separated) runs a subset.
//! Starts a throwaway six-node cluster (three masters, three replicas) and one
//! throwaway server, all on this machine, then:
//! - **shards**, three rounds: [`MESSAGES`] single publishes of 100 bytes per
//!   namespace, [`IN_FLIGHT`] in flight, over 10 channels, while a live
//!   `tail` of the namespace receives them: one namespace on the server, one
//!   on the cluster, then three namespaces at once on the server and three on
//!   the cluster (one per master). Reported per namespace: the publish rate
//!   and the live rate (first publish until the tail has the last message).
//! - **bus**: the same publishes in one namespace pushed the classic way
//!   (`PUBLISH`, no push mode set) and sharded (`SPUBLISH`), with what the
//!   nodes outside the namespace's shard spent per 1,000 messages: CPU
//!   (`INFO cpu`), cluster-bus messages received (`CLUSTER INFO`) and bytes
//!   read by the process (`/proc/<pid>/io` `rchar`).
//! - **acks**, three rounds, in `remq:{bench}`: the single publishes with
//!   `replicas(0)` and `replicas(1)` (the publish script and `WAIT 1` in one
//!   pipeline); [`SEQUENTIAL`] publishes one after another, p50 and p99; and
//!   200 `publish_batch` calls of 100 messages, 8 in flight, both ways.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use remq::{Client, StartFrom};
use remq_testkit::{RedisCluster, RedisServer};

/// Messages per throughput measurement (per namespace).
const MESSAGES: usize = 20_000;
/// Calls in flight during it.
const IN_FLIGHT: usize = 64;
/// Calls per latency measurement.
const SEQUENTIAL: usize = 2_000;

/// Single publishes per second, `IN_FLIGHT` at a time.
async fn throughput(client: &Client) -> f64 {
    let body = vec![b'x'; 100];
    let started = Instant::now();
    futures_util::stream::iter(0..MESSAGES)
        .map(|i| {
            let (client, body) = (client.clone(), body.clone());
            async move { client.publish(&format!("bench.{}", i % 10), body).await.expect("publish") }
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(|_| async {})
        .await;
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// Publish rate and live rate of `MESSAGES` publishes into `client`'s
/// namespace while a tail follows it live.
async fn publish_and_follow(client: Client) -> (f64, f64) {
    let mut tail = client.tail("bench.*", StartFrom::Latest).await.expect("tail");
    let received = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            tail.next().await.expect("a live message");
        }
        Instant::now()
    });
    let started = Instant::now();
    let published = throughput(&client).await;
    let live = MESSAGES as f64 / (received.await.expect("the tail") - started).as_secs_f64();
    (published, live)
}

/// Runs `publish_and_follow` in every namespace at once; prints and returns
/// the per-namespace rates.
async fn shards_row(label: &str, clients: &[Client]) -> Vec<(f64, f64)> {
    let rates = join_all(clients.iter().cloned().map(publish_and_follow)).await;
    let cells: Vec<String> =
        rates.iter().map(|(published, live)| format!("{published:>7.0} / {live:>7.0}")).collect();
    let (sum_published, sum_live) = rates.iter().fold((0.0, 0.0), |(p, l), (rp, rl)| (p + rp, l + rl));
    println!("  {label:<34} {}   sum {sum_published:>7.0} / {sum_live:>7.0}", cells.join("   "));
    rates
}

/// Three hash-tagged namespaces whose slots are on three different masters.
fn one_namespace_per_master(cluster: &RedisCluster) -> Vec<String> {
    let mut namespaces: Vec<(String, u16)> = Vec::new();
    for n in 0.. {
        let namespace = format!("remq:{{bench{n}}}");
        let master = cluster.master_port_for(&namespace);
        if namespaces.iter().all(|(_, m)| *m != master) {
            namespaces.push((namespace, master));
        }
        if namespaces.len() == 3 {
            break;
        }
    }
    namespaces.into_iter().map(|(namespace, _)| namespace).collect()
}

/// Clients of `namespaces` on `url`.
async fn clients(url: &str, namespaces: &[String]) -> Vec<Client> {
    let mut clients = Vec::new();
    for namespace in namespaces {
        clients.push(Client::builder(url).namespace(namespace.as_str()).connect().await.expect("connect"));
    }
    clients
}

/// One namespace alone and three at once, on one server and on the cluster.
async fn shards(cluster: &RedisCluster) {
    let server = RedisServer::start();
    let namespaces = one_namespace_per_master(cluster);
    let (single, clustered) =
        (clients(&server.url(), &namespaces).await, clients(&cluster.seed_url(), &namespaces).await);
    println!(
        "shards: {MESSAGES} publishes of 100 B per namespace, {IN_FLIGHT} in flight, a live tail each; publish / live msg/s"
    );
    for round in 1..=3 {
        println!(" round {round}");
        shards_row("one server, 1 namespace", &single[..1]).await;
        shards_row("cluster, 1 namespace", &clustered[..1]).await;
        shards_row("one server, 3 namespaces at once", &single).await;
        shards_row("cluster, 3 namespaces on 3 masters", &clustered).await;
    }
    // What a publish costs the server that runs it: the ceiling of one core.
    let mut ports = vec![server.port()];
    ports.extend(namespaces.iter().map(|namespace| cluster.master_port_for(namespace)));
    for (port, what) in ports.into_iter().zip(["one server", "master 1", "master 2", "master 3"]) {
        let stats = redis_cli(port, &["info", "commandstats"]);
        let per_call: f64 = stats
            .lines()
            .find_map(|l| {
                l.strip_prefix("cmdstat_evalsha:")?.split(',').find_map(|f| f.strip_prefix("usec_per_call="))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN);
        println!(
            "  {what:<10} server time per publish (EVALSHA usec_per_call) {per_call:>5.2} µs: one core's ceiling {:>7.0} publishes/s",
            1e6 / per_call
        );
    }
}

/// What `redis-cli -p <port> <args>` printed.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output();
    String::from_utf8_lossy(&out.expect("redis-cli runs").stdout).into_owned()
}

/// What one node has spent so far: CPU seconds, cluster-bus messages
/// received, bytes its process read.
fn node_usage(cluster: &RedisCluster, port: u16) -> [f64; 3] {
    let field = remq_testkit::info_field;
    let cpu = redis_cli(port, &["info", "cpu"]);
    let bus = redis_cli(port, &["cluster", "info"]);
    let io = std::fs::read_to_string(format!("/proc/{}/io", cluster.pid_of(port))).unwrap_or_default();
    [
        field(&cpu, "used_cpu_sys") + field(&cpu, "used_cpu_user"),
        field(&bus, "cluster_stats_messages_received"),
        field(&io, "rchar"),
    ]
}

/// Classic against sharded pushes: what the nodes outside the shard spend.
async fn bus(cluster: &RedisCluster) -> Result<(), Box<dyn std::error::Error>> {
    let namespace = "remq:{busbench}";
    let client = Client::builder(cluster.seed_url()).namespace(namespace).connect().await?;
    let shard = cluster.shard_ports_for(namespace);
    let others: Vec<u16> = cluster.ports().into_iter().filter(|p| !shard.contains(p)).collect();
    let mut admin = remq_testkit::connect(&format!("redis://127.0.0.1:{}", shard[0])).await;
    println!(
        "bus: {MESSAGES} publishes of 100 B in {namespace}; per 1,000 messages, summed over the {} nodes outside its shard",
        others.len()
    );
    for round in 1..=2 {
        for mode in ["classic", "sharded"] {
            let key = format!("{namespace}:push-mode");
            if mode == "sharded" {
                redis::cmd("SET").arg(&key).arg("sharded").query_async::<()>(&mut admin).await?;
            } else {
                redis::cmd("DEL").arg(&key).query_async::<()>(&mut admin).await?;
            }
            let before: Vec<[f64; 3]> = others.iter().map(|&p| node_usage(cluster, p)).collect();
            let rate = throughput(&client).await;
            let after: Vec<[f64; 3]> = others.iter().map(|&p| node_usage(cluster, p)).collect();
            let per_1000 = |i: usize| {
                before.iter().zip(&after).map(|(b, a)| a[i] - b[i]).sum::<f64>() * 1000.0 / MESSAGES as f64
            };
            println!(
                "  round {round} {mode:<8} {rate:>7.0} msg/s | CPU {:>6.2} ms | bus messages {:>7.1} | bytes read {:>8.0}",
                per_1000(0) * 1000.0,
                per_1000(1),
                per_1000(2)
            );
        }
    }
    Ok(())
}

/// Batched messages per second: 200 batches of 100, 8 in flight.
async fn batches(client: &Client) -> f64 {
    let bodies = vec![vec![b'x'; 100]; 100];
    let started = Instant::now();
    futures_util::stream::iter(0..200)
        .map(|i| {
            let (client, bodies) = (client.clone(), bodies.clone());
            async move { client.publish_batch(&format!("bench.{}", i % 10), bodies).await.expect("publish_batch") }
        })
        .buffer_unordered(8)
        .for_each(|_| async {})
        .await;
    20_000.0 / started.elapsed().as_secs_f64()
}

/// p50 and p99 of `SEQUENTIAL` publishes, one after another.
async fn latency(client: &Client) -> (Duration, Duration) {
    let mut calls = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL {
        let started = Instant::now();
        client.publish(&format!("bench.{}", i % 10), [b'x'; 100]).await.expect("publish");
        calls.push(started.elapsed());
    }
    calls.sort();
    (calls[SEQUENTIAL / 2], calls[SEQUENTIAL * 99 / 100])
}

/// What `replicas(1)` costs against `replicas(0)`.
async fn acks(cluster: &RedisCluster) -> Result<(), Box<dyn std::error::Error>> {
    let builder = Client::builder(cluster.seed_url()).namespace("remq:{bench}");
    let plain = builder.clone().connect().await?;
    let acked = builder.replicas(1).connect().await?;
    println!(
        "acks: {MESSAGES} single publishes of 100 B, {IN_FLIGHT} in flight; then {SEQUENTIAL} one at a time"
    );
    for round in 1..=3 {
        let (without, with) = (throughput(&plain).await, throughput(&acked).await);
        let ((p50, p99), (ack_p50, ack_p99)) = (latency(&plain).await, latency(&acked).await);
        let (batched, batched_acked) = (batches(&plain).await, batches(&acked).await);
        println!(
            "  round {round}: replicas(0) {without:>7.0} msg/s, p50 {p50:>7.1?}, p99 {p99:>7.1?} | replicas(1) {with:>7.0} msg/s, p50 {ack_p50:>7.1?}, p99 {ack_p99:>7.1?} | throughput ratio {:.2}",
            with / without
        );
        println!(
            "           batches: replicas(0) {batched:>7.0} msg/s | replicas(1) {batched_acked:>7.0} msg/s | ratio {:.2}",
            batched_acked / batched
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let only = std::env::var("REMQ_BENCH_ONLY").unwrap_or_default();
    let runs = |name: &str| only.is_empty() || only.split(',').any(|o| o.trim() == name);
    eprintln!("starting a throwaway Redis Cluster (6 nodes on free ports)");
    let cluster = RedisCluster::start();
    if runs("shards") {
        shards(&cluster).await;
    }
    if runs("bus") {
        bus(&cluster).await?;
    }
    if runs("acks") {
        acks(&cluster).await?;
    }
    Ok(())
}
