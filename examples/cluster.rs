//! One worker following two namespaces of a Redis Cluster over one connection.
//!
//! ```text
//! cargo run --example cluster
//! REMQ_REDIS_URL=redis://10.0.0.1:7000,redis://10.0.0.2:7000 cargo run --example cluster
//! ```
//!
//! Without `REMQ_REDIS_URL` it starts a throwaway six-node cluster (three
//! masters, three replicas; `redis-server` and `redis-cli` must be installed)
//! and says so. Orders go to the namespace `remq:{orders}`, invoices to
//! `remq:{billing}`: the hash tags put them in different slots, usually on
//! different shards. The handler of invoices names its namespace; the other uses
//! the worker's. Once both have handled what this run published, the worker
//! stops (run it again against the same cluster and each consumer goes on
//! after its checkpoint).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use remq::{Client, Message, Worker};
use tokio_util::sync::CancellationToken;

/// Messages each namespace gets.
const EACH: usize = 5;
/// Messages handled so far, both handlers together.
static HANDLED: AtomicUsize = AtomicUsize::new(0);

/// Orders, in the worker's namespace.
#[remq::handler("orders.*", name = "cluster-orders")]
async fn order(message: Message) {
    println!("orders  {:>3} {} {}", message.id, message.channel, String::from_utf8_lossy(&message.body));
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

/// Invoices, in a namespace of their own.
#[remq::handler("invoices.*", name = "cluster-billing", namespace = "remq:{billing}")]
async fn invoice(message: Message) {
    println!("billing {:>3} {} {}", message.id, message.channel, String::from_utf8_lossy(&message.body));
    HANDLED.fetch_add(1, Ordering::Relaxed);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _cluster) = match std::env::var("REMQ_REDIS_URL").ok().filter(|url| !url.is_empty()) {
        Some(url) => (url, None),
        None => {
            eprintln!("REMQ_REDIS_URL is unset: starting a throwaway Redis Cluster (6 nodes on free ports)");
            let cluster = remq_testkit::RedisCluster::start();
            (cluster.seed_list(), Some(cluster))
        }
    };
    let orders = Client::builder(url.as_str()).namespace("remq:{orders}").connect().await?;
    let billing = orders.with_namespace("remq:{billing}")?;
    for i in 1..=EACH {
        orders.publish(&format!("orders.eu.{i}"), format!("order {i}")).await?;
        billing.publish("invoices.eu", format!("invoice {i}")).await?;
    }
    // A new consumer starts at the earliest message; a known one after its checkpoint.
    let worker = Worker::new(url.as_str()).namespace("remq:{orders}").start_from(remq::StartFrom::Earliest);
    let stop: CancellationToken = worker.shutdown_token();
    let running = tokio::spawn(worker.run());
    while HANDLED.load(Ordering::Relaxed) < 2 * EACH {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await??;
    println!("handled {} messages from two namespaces over one connection", 2 * EACH);
    Ok(())
}
