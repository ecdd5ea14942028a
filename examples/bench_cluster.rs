//! What replica acknowledgements cost on a Redis Cluster, measured in one run.
//!
//! ```text
//! cargo run --release --example bench_cluster
//! ```
//!
//! Starts a throwaway six-node cluster (three masters, three replicas, on this
//! machine: replication is a loopback round trip), then, three times over, in
//! the namespace `remq:{bench}`:
//! - **throughput**: 20,000 single publishes of 100 bytes, 64 in flight, with
//!   `replicas(0)` and with `replicas(1)` (the publish script and `WAIT 1` in one
//!   pipeline);
//! - **latency**: 2,000 publishes one after another, p50 and p99 of each call,
//!   both ways;
//! - **batches**: 200 `publish_batch` calls of 100 messages of 100 bytes, 8 in
//!   flight, both ways (one `WAIT` per batch).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use remq::Client;

/// Messages per throughput measurement.
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("starting a throwaway Redis Cluster (6 nodes on free ports)");
    let cluster = remq_testkit::RedisCluster::start();
    let builder = Client::builder(cluster.seed_url()).namespace("remq:{bench}");
    let plain = builder.clone().connect().await?;
    let acked = builder.replicas(1).connect().await?;
    println!("{MESSAGES} single publishes of 100 B, {IN_FLIGHT} in flight; then {SEQUENTIAL} one at a time");
    for round in 1..=3 {
        let (without, with) = (throughput(&plain).await, throughput(&acked).await);
        let ((p50, p99), (ack_p50, ack_p99)) = (latency(&plain).await, latency(&acked).await);
        let (batched, batched_acked) = (batches(&plain).await, batches(&acked).await);
        println!(
            "round {round}: replicas(0) {without:>7.0} msg/s, p50 {p50:>7.1?}, p99 {p99:>7.1?} | replicas(1) {with:>7.0} msg/s, p50 {ack_p50:>7.1?}, p99 {ack_p99:>7.1?} | throughput ratio {:.2}",
            with / without
        );
        println!(
            "         batches: replicas(0) {batched:>7.0} msg/s | replicas(1) {batched_acked:>7.0} msg/s | ratio {:.2}",
            batched_acked / batched
        );
    }
    Ok(())
}
