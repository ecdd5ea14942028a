//! A big flush against a real Redis: how long removing 10,000,000 messages takes,
//! the longest single Redis call it made, and what it does to the latency of a
//! publisher working at the same time.
//!
//! ```text
//! cargo run --release --example bench_flush
//! REMQ_BENCH_MESSAGES=1000000 cargo run --release --example bench_flush
//! ```
//!
//! It starts its own throwaway `redis-server`, stores the messages (16-byte
//! bodies, over 10 channels `flush.0`…`flush.9`, with `publish_batch`), then:
//! 1. measures a publisher alone for 2 s (`publish`, awaited one at a time);
//! 2. flushes everything with [`Client::flush_with`] (steps of 1000 messages)
//!    while the same publisher runs on another connection, and reads the longest
//!    flush call from Redis' own `SLOWLOG` (server-side time of each `EVALSHA`);
//! 3. for contrast, stores 1,000,000 more and removes them with one unbounded
//!    `flush.lua` call (no max), the way a naive flush blocks the server.
//!
//! The publisher's latency percentiles during each phase show the flush's impact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use remq::{Client, FlushPolicy};
use remq_testkit::RedisServer;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Channels the messages are spread over.
const CHANNELS: usize = 10;
/// Messages per `publish_batch` call while loading.
const BATCH: usize = 1000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let messages: u64 =
        std::env::var("REMQ_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await?;
    let mut admin = server.connection().await;
    println!("remq bench_flush: {messages} messages, throwaway redis-server on port {}", server.port());

    let started = Instant::now();
    load(&client, messages).await?;
    let memory: String =
        redis::cmd("MEMORY").arg("STATS").query_async::<Vec<redis::Value>>(&mut admin).await.map(
            |stats| {
                stats
                    .chunks(2)
                    .find_map(|kv| match (&kv[0], &kv[1]) {
                        (redis::Value::BulkString(k), v) if k == b"total.allocated" => Some(format!("{v:?}")),
                        _ => None,
                    })
                    .unwrap_or_default()
            },
        )?;
    println!("loaded in {:.1} s (allocated: {memory})", started.elapsed().as_secs_f64());

    let alone = publisher_latencies(&client, None, Duration::from_secs(2)).await?;
    report("publisher alone (2 s)", &alone);

    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(0).query_async(&mut admin).await?;
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(1_000_000).query_async(&mut admin).await?;
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut admin).await?;
    let policy = FlushPolicy::new("flush.*").interest(false).keep_last(0);
    let busy = Arc::new(AtomicBool::new(true));
    let publisher = {
        let client = Client::connect(&server.url()).await?;
        let busy = busy.clone();
        tokio::spawn(async move { publisher_latencies(&client, Some(busy), Duration::from_secs(3600)).await })
    };
    let started = Instant::now();
    let flushed = client.flush_with(&policy).await.map_err(|e| format!("flush_with: {e:?}"))?;
    let took = started.elapsed();
    busy.store(false, Ordering::Relaxed);
    let during = publisher.await?.map_err(|e| format!("publisher: {e:?}"))?;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(10_000)
        .query_async(&mut admin)
        .await?;
    let (calls, longest) = longest_eval(&mut admin).await?;
    println!(
        "flush_with: removed {} in {:.2} s ({:.0} msg/s); {calls} script calls, the longest {longest} µs in Redis",
        flushed.removed(),
        took.as_secs_f64(),
        flushed.removed() as f64 / took.as_secs_f64()
    );
    report("publisher during the flush", &during);

    load(&client, 1_000_000).await?;
    let flush = redis::Script::new(include_str!("../scripts/flush.lua"));
    let head = client.head().await?;
    let started = Instant::now();
    let removed: u64 = flush.arg("flush.*").arg(head.get() + 1).invoke_async(&mut admin).await?;
    println!(
        "contrast: one unbounded flush.lua call removed {removed} in {:.0} ms, blocking Redis throughout",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Stores `count` 16-byte messages over the channels, 4 batches in flight.
async fn load(client: &Client, count: u64) -> Result<()> {
    let batches = count.div_ceil(BATCH as u64);
    stream::iter(0..batches)
        .map(|b| {
            let n = BATCH.min((count - b * BATCH as u64) as usize);
            async move {
                client.publish_batch(&format!("flush.{}", b as usize % CHANNELS), vec![[b'x'; 16]; n]).await
            }
        })
        .buffer_unordered(4)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

/// Publishes one message at a time for `limit`, or while `busy` holds; returns
/// each call's latency.
async fn publisher_latencies(
    client: &Client,
    busy: Option<Arc<AtomicBool>>,
    limit: Duration,
) -> Result<Vec<Duration>> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < limit && busy.as_ref().is_none_or(|b| b.load(Ordering::Relaxed)) {
        let sent = Instant::now();
        client.publish("latency.probe", "x").await?;
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

/// How many `EVALSHA` calls the slow log holds, and the longest one in µs.
async fn longest_eval(admin: &mut redis::aio::MultiplexedConnection) -> Result<(usize, u64)> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query_async(admin).await?;
    let mut longest = (0, 0);
    for entry in entries {
        let redis::Value::Array(fields) = entry else { continue };
        let (Some(redis::Value::Int(micros)), Some(redis::Value::Array(args))) =
            (fields.get(2), fields.get(3))
        else {
            continue;
        };
        // flush_with's steps: EVALSHA <sha> 0 <channel> <before> <max>, channel flush.<n>.
        let is_flush = args.len() == 6
            && matches!(args.get(3), Some(redis::Value::BulkString(p)) if p.starts_with(b"flush."));
        if matches!(args.first(), Some(redis::Value::BulkString(c)) if c.eq_ignore_ascii_case(b"EVALSHA"))
            && is_flush
        {
            longest = (longest.0 + 1, longest.1.max(*micros as u64));
        }
    }
    Ok(longest)
}

/// Prints percentiles of `latencies`.
fn report(what: &str, latencies: &[Duration]) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let at = |q: f64| sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!(
        "{what}: {} publishes, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        sorted.len(),
        ms(at(0.5)),
        ms(at(0.99)),
        ms(sorted.last())
    );
}
