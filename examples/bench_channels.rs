//! Many channels: what a glob over many per-entity channels costs, with the
//! scripts as they are and as they were before the order index, in one run.
//!
//! ```text
//! cargo run --release --example bench_channels
//! REMQ_BENCH_CHANNELS=1000000 REMQ_BENCH_PER_CHANNEL=1 cargo run --release --example bench_channels
//! ```
//!
//! Starts its own throwaway `redis-server` (no persistence, a free loopback port).
//! For each channel count N (default 1,000, 10,000 and 100,000), the server is
//! emptied and N channels `user.<i>` get 10 messages of 5 bytes each
//! (`REMQ_BENCH_PER_CHANNEL`), published
//! one at a time in a shuffled order (256 in flight), beside one channel `solo`
//! with 200,000 messages. Then:
//! - **replay, worker**: a worker with a no-op handler starts from `earliest` on
//!   `user.*`, then another on `solo`; msg/s from `run()` to the last id, and the
//!   ratio of the two (the target: at least 0.5).
//! - **replay, consume.lua**: pages of 1000 over `user.*` read with the frames of
//!   today's `consume.lua`, and with the one from before the order index
//!   (`tests/fixtures/consume_before_order_index.lua`) for at most 5 s.
//! - **head**: the mean round trip of a caught-up consumer's call (an empty page
//!   at the head), and of a page of 10 new messages, both ways.
//! - **narrow**: `user.1234?` (ten channels by their prefix) read with today's script.
//! - **slowest call**: the longest script call `SLOWLOG` saw (calls over 1 ms are
//!   logged), with its command: during the worker replays (`packed` calls, which
//!   stop early to stay short), and during the rest with today's scripts (the
//!   seed's calls, which return complete pages of 1000).
//!
//! Then, on 1 channel and on 1,000: `used_memory` per 5-byte message and
//! single-publish throughput (200,000 messages, 256 in flight), each with
//! today's publish script and the one from before.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};
use remq::{Client, MessageId, StartFrom, Worker};
use remq_testkit::RedisServer;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const PUBLISH: &str = include_str!("../scripts/publish.lua");
const CONSUME: &str = include_str!("../scripts/consume.lua");
const PUBLISH_BEFORE: &str = include_str!("../tests/fixtures/publish_before_order_index.lua");
const CONSUME_BEFORE: &str = include_str!("../tests/fixtures/consume_before_order_index.lua");
const SOLO: u64 = 200_000;
const BODY: &[u8] = b"hello";

#[tokio::main]
async fn main() -> Result<()> {
    let sizes: Vec<usize> = std::env::var("REMQ_BENCH_CHANNELS")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<std::result::Result<_, _>>()?;
    let server = RedisServer::start();
    println!("server: throwaway redis-server at {}", server.url());
    let client = Client::connect(&server.url()).await?;
    let mut conn = server.connection().await;
    for n in sizes {
        channels(&server, &client, &mut conn, n).await?;
    }
    memory_and_publish(&mut conn).await?;
    Ok(())
}

/// Fills the server with `n` channels and measures what the module docs list.
async fn channels(
    server: &RedisServer,
    client: &Client,
    conn: &mut MultiplexedConnection,
    n: usize,
) -> Result<()> {
    let per_channel: u64 = std::env::var("REMQ_BENCH_PER_CHANNEL").map_or(Ok(10), |v| v.parse())?;
    let _: () = redis::cmd("FLUSHALL").query_async(conn).await?;
    let mut order: Vec<usize> = (0..n * per_channel as usize).map(|i| i % n).collect();
    fastrand::Rng::with_seed(7).shuffle(&mut order);
    let started = Instant::now();
    futures_util::stream::iter(order)
        .map(|i| {
            let client = client.clone();
            async move { client.publish(&format!("user.{i}"), BODY).await }
        })
        .buffer_unordered(256)
        .for_each(|r| async move {
            r.expect("publish");
        })
        .await;
    let published = (n as u64 * per_channel) as f64 / started.elapsed().as_secs_f64();
    for _ in 0..SOLO / 1000 {
        client.publish_batch("solo", std::iter::repeat_n(BODY, 1000)).await?;
    }
    println!(
        "\n{n} channels x {per_channel} messages (published at {published:.0} msg/s, singles, 256 in flight)"
    );

    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(1000).query_async(conn).await?;
    let _: () = redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(100_000).query_async(conn).await?;
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(conn).await?;

    let total = n as u64 * per_channel;
    let glob = worker_replay(server, "user.*", total).await?;
    let solo = worker_replay(server, "solo", SOLO).await?;
    println!("  replay, worker, user.*:          {glob:>10.0} msg/s");
    println!("  replay, worker, solo:            {solo:>10.0} msg/s   (user.* / solo = {:.2})", glob / solo);

    let (longest, command) = slowest(conn).await?;
    println!("  slowest call of the workers:     {:>10.3} ms ({command})", longest as f64 / 1e3);
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(conn).await?;

    let now = Script::new(CONSUME);
    let frames = frames_replay(conn, &now, "user.*", None).await?;
    println!("  replay, consume.lua frames:      {frames:>10.0} msg/s");
    let narrow = frames_replay(conn, &now, "user.1234?", None).await?;
    println!("  narrow user.1234?, frames:       {narrow:>10.0} msg/s");
    let head = client.head().await?.get();
    let empty = round_trip(conn, &now, head, 50).await?;
    let fresh = new_page(client, conn, &now).await?;
    println!("  empty page at the head:          {:>10.3} ms", empty * 1e3);
    println!("  page of 10 new messages:         {:>10.3} ms", fresh * 1e3);
    let (longest, command) = slowest(conn).await?;
    println!("  slowest call since (seed's):     {:>10.3} ms ({command})", longest as f64 / 1e3);

    let before = Script::new(CONSUME_BEFORE);
    let frames = frames_replay(conn, &before, "user.*", Some(Duration::from_secs(5))).await?;
    println!("  before: replay, frames (<= 5 s): {frames:>10.0} msg/s");
    let head = client.head().await?.get();
    let empty = round_trip(conn, &before, head, 5).await?;
    let fresh = new_page(client, conn, &before).await?;
    println!("  before: empty page at the head:  {:>10.3} ms", empty * 1e3);
    println!("  before: page of 10 new messages: {:>10.3} ms", fresh * 1e3);
    Ok(())
}

/// A worker on `pattern` from `earliest`, until its handler has seen `expect`
/// messages: msg/s.
async fn worker_replay(server: &RedisServer, pattern: &str, expect: u64) -> Result<f64> {
    let seen = Arc::new(AtomicU64::new(0));
    let count = seen.clone();
    let worker = Worker::new(server.url())
        .without_registered_handlers()
        .without_signal_handlers()
        .start_from(StartFrom::Earliest)
        .named_handler(format!("bench {pattern}"), pattern, move |_: MessageId| {
            count.fetch_add(1, Ordering::Relaxed);
            async {}
        });
    let shutdown = worker.shutdown_token();
    let started = Instant::now();
    let running = tokio::spawn(worker.run());
    while seen.load(Ordering::Relaxed) < expect {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = expect as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await??;
    Ok(rate)
}

/// Reads `pattern` from the start in pages of 1000 frames (`consume.lua` as the
/// seed calls it), for at most `cap`: msg/s.
async fn frames_replay(
    conn: &mut MultiplexedConnection,
    script: &Script,
    pattern: &str,
    cap: Option<Duration>,
) -> Result<f64> {
    let (started, mut after, mut read) = (Instant::now(), 0u64, 0u64);
    loop {
        let page: Vec<Vec<u8>> = script.arg(pattern).arg(after).arg(1000).invoke_async(conn).await?;
        read += page.len() as u64;
        if let Some(last) = page.last() {
            after = remq::Message::from_frame(last.clone().into())?.id.get();
        }
        if page.len() < 1000 || cap.is_some_and(|cap| started.elapsed() > cap) {
            return Ok(read as f64 / started.elapsed().as_secs_f64());
        }
    }
}

/// The mean round trip of `calls` calls at the head with `state` (an empty page).
async fn round_trip(conn: &mut MultiplexedConnection, script: &Script, head: u64, calls: u32) -> Result<f64> {
    let started = Instant::now();
    for _ in 0..calls {
        let page: Vec<Value> =
            script.arg("user.*").arg(head).arg(1000).arg("state").invoke_async(conn).await?;
        assert_eq!(page.len(), 1, "nothing after the head");
    }
    Ok(started.elapsed().as_secs_f64() / f64::from(calls))
}

/// Publishes 10 messages on random `user.*` channels and times the call that
/// reads them from the previous head.
async fn new_page(client: &Client, conn: &mut MultiplexedConnection, script: &Script) -> Result<f64> {
    let head = client.head().await?.get();
    for i in 0..10 {
        client.publish(&format!("user.{}", i * 7), BODY).await?;
    }
    let started = Instant::now();
    let page: Vec<Value> = script.arg("user.*").arg(head).arg(1000).arg("state").invoke_async(conn).await?;
    let took = started.elapsed().as_secs_f64();
    assert_eq!(page.len(), 11, "the state and 10 messages");
    Ok(took)
}

/// The longest call in `SLOWLOG` (µs) and its command name.
async fn slowest(conn: &mut MultiplexedConnection) -> Result<(u64, String)> {
    let log: Vec<Vec<Value>> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query_async(conn).await?;
    let mut worst = (0, "none over 1 ms".to_owned());
    for entry in log {
        let micros: u64 = redis::from_redis_value(entry[2].clone())?;
        let args: Vec<Vec<u8>> = redis::from_redis_value(entry[3].clone())?;
        if micros > worst.0 {
            // EVALSHA <sha> <numkeys> <args…>: name the script by its first argument.
            let shown: Vec<String> =
                args.iter().skip(3).take(3).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            worst = (micros, format!("{} … {}", String::from_utf8_lossy(&args[0]), shown.join(" ")));
        }
    }
    Ok(worst)
}

/// `used_memory` per 5-byte message and single-publish throughput, with today's
/// publish script and the one from before the order index.
async fn memory_and_publish(conn: &mut MultiplexedConnection) -> Result<()> {
    for channels in [1, 1000] {
        println!("\npublish and memory ({channels} channel(s), 5-byte bodies)");
        for (name, source) in [("today", PUBLISH), ("before", PUBLISH_BEFORE)] {
            publish_and_measure(conn, name, source, channels).await?;
        }
    }
    Ok(())
}

/// Publishes 200,000 5-byte messages over `channels` channels with the publish
/// script `source`: msg/s and `used_memory` per message.
async fn publish_and_measure(
    conn: &mut MultiplexedConnection,
    name: &str,
    source: &str,
    channels: u64,
) -> Result<()> {
    let script = Script::new(source);
    let _: () = redis::cmd("FLUSHALL").query_async(conn).await?;
    let used = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let start: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    let started = Instant::now();
    let messages = 200_000u64;
    futures_util::stream::iter(0..messages)
        .map(|i| {
            let (mut conn, script) = (conn.clone(), script.clone());
            async move {
                script.arg(format!("user.{}", i % channels)).arg(BODY).invoke_async::<u64>(&mut conn).await
            }
        })
        .buffer_unordered(256)
        .for_each(|r| async move {
            r.expect("publish");
        })
        .await;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    let end: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    let per = (used(end) - used(start)) as f64 / messages as f64;
    println!("  {name:>6}: publish {rate:>8.0} msg/s; {per:.1} B a message");
    Ok(())
}
