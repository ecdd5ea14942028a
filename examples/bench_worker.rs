//! End-to-end throughput and latency of the worker runtime against a real Redis:
//! one producer → one worker with a no-op handler.
//!
//! ```text
//! cargo run --release --example bench_worker
//! ```
//!
//! `REMQ_BENCH_ONLY=replay` (or `live`, `batches`, `concurrency`, `latency`,
//! comma-separated) runs a subset.
//!
//! Starts its own throwaway `redis-server` (no persistence, a free loopback port)
//! unless `REMQ_BENCH_URL` names a scratch server. Scenarios, 100-byte bodies:
//! - **live**: the worker is caught up and following pub/sub; one producer
//!   publishes [`LIVE`] messages over 100 channels with 256 publishes in flight;
//!   the time runs from the first publish until the handler has seen the last id.
//!   Baseline, same run: the same producer into a bare `PSUBSCRIBE` that only
//!   parses ids (the transport's ceiling without a worker).
//! - **batches**: the worker is caught up; the producer publishes [`LIVE`]
//!   messages with `publish_batch`, [`BATCH`] a call, [`BATCHES_IN_FLIGHT`]
//!   calls in flight, over 10 channels. Baseline, same run: a plain Redis
//!   Streams consumer group over 10 streams (`XADD` pipelines of [`BATCH`],
//!   [`BATCHES_IN_FLIGHT`] in flight; one consumer reading `XREADGROUP COUNT
//!   1000` and acknowledging each read with `XACK`).
//! - **replay**: [`STORED`] messages are in the log (on 1 channel, then on 10) before a new
//!   consumer starts from `earliest`; the time runs from `run()` until the
//!   handler has seen the last id. Baselines, same run: a bare loop of
//!   `consume` calls over the same messages, and (1 channel) raw `XRANGE` pages
//!   of 1000 over its stream, counted and not parsed (the ceiling of any
//!   reader); ratios of the worker to both are printed.
//! - **concurrency**: a handler that sleeps 1 ms, over 100 channels, at
//!   concurrency 1, 8 and 64 (`Worker::concurrency`); messages are stored first.
//! - **latency**: the producer publishes at a steady [`RATE`] messages a second
//!   for [`LATENCY_SECONDS`] s, each body carrying its send time; the handler
//!   records publish → handler latency, reported as p50 / p99 / max.
//!
//! Each row also gives the CPU time Redis (`INFO cpu`) and this process
//! (producer, worker and baseline readers together) spent per message: on 2
//! cores a run is bound by one or the other, and the columns tell which.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use remq::{Client, MessageId, StartFrom, Worker};
use remq_testkit::{RedisServer, RunningWorker};

/// Messages published while the worker follows live.
const LIVE: u64 = 500_000;
/// Messages stored before a consumer replays them.
const STORED: u64 = 1_000_000;
/// Messages per second in the latency scenario.
const RATE: u64 = 10_000;
/// How long the latency scenario publishes.
const LATENCY_SECONDS: u64 = 5;
/// Publishes in flight in the live scenario.
const DEPTH: usize = 256;
/// Messages a call in the batches scenario.
const BATCH: u64 = 100;
/// Calls in flight in the batches scenario.
const BATCHES_IN_FLIGHT: usize = 8;

/// What a handler saw: how many messages and the highest id.
#[derive(Default)]
struct Progress {
    /// Messages handled.
    count: AtomicU64,
    /// The highest id handled.
    last: AtomicU64,
}

impl Progress {
    /// Waits until the handler has seen `id`, polling every millisecond.
    async fn wait_for(&self, id: MessageId) {
        while self.last.load(Ordering::Acquire) < id.get() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// One row of the table: a scenario, its messages and time, and what Redis
/// and this process (producer, worker and baselines alike) spent on it.
struct Row {
    /// The scenario.
    name: &'static str,
    /// Messages handled.
    count: u64,
    /// Wall-clock time.
    elapsed: Duration,
    /// CPU time of Redis and of this process, when measured.
    cpu: Option<(Duration, Duration)>,
}

/// Where a measured run began: the clock, and the CPU time Redis and this
/// process had spent.
struct Meter {
    /// When the run began.
    began: Instant,
    /// Redis' CPU time then.
    redis: Duration,
    /// This process' CPU time then.
    process: Duration,
}

impl Row {
    /// Messages a second.
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

impl Meter {
    /// Starts measuring a run against the Redis behind `admin`.
    async fn start(admin: &mut redis::aio::MultiplexedConnection) -> Meter {
        let redis = remq_testkit::redis_cpu(admin).await;
        Meter { began: Instant::now(), redis, process: remq_testkit::process_cpu() }
    }

    /// The row of the run so far: `count` messages in the time since it began.
    async fn row(
        &self,
        admin: &mut redis::aio::MultiplexedConnection,
        name: &'static str,
        count: u64,
    ) -> Row {
        let elapsed = self.began.elapsed();
        let redis = remq_testkit::redis_cpu(admin).await.saturating_sub(self.redis);
        let process = remq_testkit::process_cpu().saturating_sub(self.process);
        Row { name, count, elapsed, cpu: Some((redis, process)) }
    }
}

/// A worker for `pattern` whose handler works for `work` (no time at all when
/// zero), then counts the message and notes the highest id seen.
fn counting_worker(
    url: &str,
    name: &str,
    pattern: &str,
    start: StartFrom,
    work: Duration,
    progress: Arc<Progress>,
) -> Worker {
    bench_worker(url).start_from(start).named_handler(name, pattern, move |id: MessageId| {
        let progress = progress.clone();
        async move {
            // A zero sleep would still wait for the timer's next tick.
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            progress.count.fetch_add(1, Ordering::Relaxed);
            progress.last.fetch_max(id.get(), Ordering::AcqRel);
        }
    })
}

/// A counting worker on `pattern` from the latest message, given half a
/// second to subscribe and catch up before the producer starts.
async fn caught_up_worker(url: &str, name: &str, pattern: &str) -> (RunningWorker, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let worker = counting_worker(url, name, pattern, StartFrom::Latest, Duration::ZERO, progress.clone());
    let running = RunningWorker::start(worker);
    tokio::time::sleep(Duration::from_millis(500)).await;
    (running, progress)
}

/// A worker that runs only the handler the scenario adds and ignores signals.
fn bench_worker(url: &str) -> Worker {
    Worker::new(url).without_registered_handlers().without_signal_handlers()
}

/// Publishes [`LIVE`] messages over 100 channels `<prefix>.N` with [`DEPTH`] calls
/// in flight, then waits until `progress` has seen the last id. Returns how
/// long publishing took.
async fn publish_live(
    client: &Client,
    prefix: &str,
    body: &Bytes,
    progress: &Progress,
) -> remq::Result<Duration> {
    let began = Instant::now();
    let last = stream::iter(0..LIVE)
        .map(|n| {
            let (client, body) = (client.clone(), body.clone());
            let channel = format!("{prefix}.{}", n % 100);
            async move { client.publish(&channel, body).await }
        })
        .buffered(DEPTH)
        .try_fold(MessageId::ZERO, |max, id| async move { Ok(max.max(id)) })
        .await?;
    let published = began.elapsed();
    progress.wait_for(last).await;
    Ok(published)
}

/// Publishes [`LIVE`] messages with `publish_batch` over 10 channels
/// `<prefix>.N` ([`BATCH`] a call, [`BATCHES_IN_FLIGHT`] calls in flight), then
/// waits until `progress` has seen the last id.
async fn publish_batches(
    client: &Client,
    prefix: &str,
    body: &Bytes,
    progress: &Progress,
) -> remq::Result<()> {
    let last = stream::iter(0..LIVE / BATCH)
        .map(|n| {
            let (client, body) = (client.clone(), body.clone());
            let channel = format!("{prefix}.{}", n % 10);
            async move { client.publish_batch(&channel, std::iter::repeat_n(&body, BATCH as usize)).await }
        })
        .buffered(BATCHES_IN_FLIGHT)
        .try_fold(MessageId::ZERO, |max, ids| async move { Ok(max.max(*ids.end())) })
        .await?;
    progress.wait_for(last).await;
    Ok(())
}

/// A stream entry as `XREADGROUP` returns it: its id and its fields.
type StreamEntry = (String, Vec<Vec<u8>>);

/// The baseline of the batches scenario: a Redis Streams consumer group over
/// 10 streams `<prefix>.N`. One consumer reads with `XREADGROUP COUNT 1000`
/// and acknowledges what it read with `XACK`; a producer adds [`LIVE`] entries
/// in pipelines of [`BATCH`] `XADD`s, [`BATCHES_IN_FLIGHT`] in flight, and
/// returns once the consumer acknowledged the last.
async fn consumer_group(url: &str, prefix: &str, body: &Bytes) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let producer = client.get_multiplexed_async_connection().await?;
    let mut reader = client.get_multiplexed_async_connection().await?;
    let streams: Vec<String> = (0..10).map(|n| format!("{prefix}.{n}")).collect();
    for stream in &streams {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg("g")
            .arg("$")
            .arg("MKSTREAM")
            .query_async(&mut reader)
            .await?;
    }
    let consumer = {
        let streams = streams.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while seen < LIVE {
                let mut read = redis::cmd("XREADGROUP");
                read.arg("GROUP").arg("g").arg("c").arg("COUNT").arg(1000).arg("BLOCK").arg(100);
                read.arg("STREAMS").arg(&streams).arg(vec![">"; streams.len()]);
                let reply: Option<Vec<(String, Vec<StreamEntry>)>> = read.query_async(&mut reader).await?;
                let mut ack = redis::pipe();
                for (stream, entries) in reply.unwrap_or_default() {
                    seen += entries.len() as u64;
                    let ids: Vec<&str> = entries.iter().map(|(id, _)| id.as_str()).collect();
                    ack.cmd("XACK").arg(&stream).arg("g").arg(ids).ignore();
                }
                let _: () = ack.query_async(&mut reader).await?;
            }
            redis::RedisResult::Ok(())
        })
    };
    stream::iter(0..LIVE / BATCH)
        .map(|n| {
            let (mut producer, body, stream) =
                (producer.clone(), body.clone(), streams[(n % 10) as usize].clone());
            async move {
                let mut pipe = redis::pipe();
                for _ in 0..BATCH {
                    pipe.cmd("XADD").arg(&stream).arg("*").arg("m").arg(&body[..]).ignore();
                }
                pipe.query_async::<()>(&mut producer).await
            }
        })
        .buffered(BATCHES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    consumer.await.expect("the consumer group reader panicked")
}

/// A bare `PSUBSCRIBE` that only parses each push's id into `progress`.
async fn raw_subscriber(
    url: &str,
    pattern: &str,
    progress: Arc<Progress>,
) -> redis::RedisResult<tokio::task::JoinHandle<()>> {
    let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
    pubsub.psubscribe(pattern).await?;
    Ok(tokio::spawn(async move {
        let mut pushes = pubsub.into_on_message();
        while let Some(push) = pushes.next().await {
            if let Ok(message) = remq::Message::from_frame(Bytes::copy_from_slice(push.get_payload_bytes())) {
                progress.count.fetch_add(1, Ordering::Relaxed);
                progress.last.store(message.id.get(), Ordering::Release);
            }
        }
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = match std::env::var("REMQ_BENCH_URL") {
        Ok(_) => None,
        Err(_) => Some(RedisServer::start()),
    };
    let url = std::env::var("REMQ_BENCH_URL").unwrap_or_else(|_| server.as_ref().expect("started").url());
    println!("worker bench against {url}\n");
    let client = Client::connect(&url).await?;
    let body = Bytes::from_static(&[b'x'; 100]);
    let mut admin = remq_testkit::connect(&url).await;
    let mut rows = Vec::new();

    let only = std::env::var("REMQ_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|s| s == name);

    // Live: the consumer is caught up before the producer starts. The baseline
    // is a bare PSUBSCRIBE on the same pushes, with no worker behind it.
    if wanted("live") {
        let progress = Arc::new(Progress::default());
        let pubsub = raw_subscriber(&url, "remq:channel:raw.*", progress.clone()).await?;
        let meter = Meter::start(&mut admin).await;
        let published = publish_live(&client, "raw", &body, &progress).await?;
        rows.push(meter.row(&mut admin, "baseline: producer → PSUBSCRIBE", LIVE).await);
        rows.push(Row { name: "  (of which publishing)", count: LIVE, elapsed: published, cpu: None });
        pubsub.abort();

        let (running, progress) = caught_up_worker(&url, "bench-live", "live.*").await;
        let meter = Meter::start(&mut admin).await;
        let published = publish_live(&client, "live", &body, &progress).await?;
        rows.push(meter.row(&mut admin, "live: producer → worker", LIVE).await);
        rows.push(Row { name: "  (of which publishing)", count: LIVE, elapsed: published, cpu: None });
        running.stop().await?;
    }

    // Live batches: the worker beside a plain Redis Streams consumer group.
    if wanted("batches") {
        let meter = Meter::start(&mut admin).await;
        consumer_group(&url, "group", &body).await?;
        rows.push(meter.row(&mut admin, "baseline: XADD → consumer group", LIVE).await);
        let (running, progress) = caught_up_worker(&url, "bench-batches", "batches.*").await;
        let meter = Meter::start(&mut admin).await;
        publish_batches(&client, "batches", &body, &progress).await?;
        rows.push(meter.row(&mut admin, "batches: producer → worker", LIVE).await);
        running.stop().await?;
    }

    // Replay: a million stored messages on 10 channels, read by a bare consume
    // loop (the baseline), then by a new consumer starting from earliest.
    let mut ratios = Vec::new();
    if wanted("replay") {
        let mut xrange_rate = None;
        for (channels, baseline_row, worker_row) in [
            (1, "baseline: consume loop, 1 ch", "replay: worker, 1 ch"),
            (10, "baseline: consume loop, 10 ch", "replay: worker, 10 ch"),
        ] {
            let pattern = format!("stored{channels}.*");
            for chunk in 0..STORED / 1000 {
                let channel = format!("stored{channels}.{}", chunk % channels);
                client.publish_batch(&channel, std::iter::repeat_n(&body, 1000)).await?;
            }
            let last = client.head().await?;
            let meter = Meter::start(&mut admin).await;
            let (mut cursor, mut count) = (MessageId::ZERO, 0);
            while cursor < last {
                let page = client.consume(&pattern, cursor, 1000).await?;
                cursor = page.last().map_or(last, |m| m.id);
                count += page.len() as u64;
            }
            let row = meter.row(&mut admin, baseline_row, count).await;
            let consume_rate = row.rate();
            rows.push(row);
            if channels == 1 {
                let meter = Meter::start(&mut admin).await;
                let count = raw_xrange(&url, "remq:channel:stored1.0").await?;
                let row = meter.row(&mut admin, "baseline: raw XRANGE, 1 ch", count).await;
                xrange_rate = Some(row.rate());
                rows.push(row);
            }

            let progress = Arc::new(Progress::default());
            let meter = Meter::start(&mut admin).await;
            let name = format!("bench-replay-{channels}");
            let worker =
                counting_worker(&url, &name, &pattern, StartFrom::Earliest, Duration::ZERO, progress.clone());
            let running = RunningWorker::start(worker);
            progress.wait_for(last).await;
            let row = meter.row(&mut admin, worker_row, progress.count.load(Ordering::Relaxed)).await;
            let worker_rate = row.rate();
            rows.push(row);
            running.stop().await?;
            ratios.push(format!(
                "replay {channels} ch: worker / consume loop = {:.3}",
                worker_rate / consume_rate
            ));
            if let (1, Some(xrange)) = (channels, xrange_rate) {
                ratios.push(format!("replay 1 ch: worker / raw XRANGE = {:.3}", worker_rate / xrange));
            }
        }
    }

    // Ordered concurrency: a handler that sleeps 1 ms, over 100 channels, at
    // concurrency 1, 8 and 64 (500 messages per unit of concurrency, so each
    // run takes about the same time).
    if wanted("concurrency") {
        for (concurrency, row) in [
            (1, "1 ms handler, concurrency 1"),
            (8, "1 ms handler, concurrency 8"),
            (64, "1 ms handler, concurrency 64"),
        ] {
            let count = 500 * concurrency as u64;
            let prefix = format!("conc{concurrency}");
            for chunk in 0..count / 100 {
                let channel = format!("{prefix}.{}", chunk % 100);
                client.publish_batch(&channel, std::iter::repeat_n(&body, 100)).await?;
            }
            let progress = Arc::new(Progress::default());
            let pattern = format!("{prefix}.*");
            let work = Duration::from_millis(1);
            let worker =
                counting_worker(&url, &prefix, &pattern, StartFrom::Earliest, work, progress.clone())
                    .concurrency(concurrency);
            let meter = Meter::start(&mut admin).await;
            let running = RunningWorker::start(worker);
            while progress.count.load(Ordering::Acquire) < count {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            rows.push(meter.row(&mut admin, row, count).await);
            running.stop().await?;
        }
    }

    // Latency at a steady rate: the body carries the send time in µs since `epoch`.
    if !wanted("latency") {
        print_rows(&rows);
        print_ratios(&ratios);
        return Ok(());
    }
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity((RATE * LATENCY_SECONDS) as usize)));
    let recorded = latencies.clone();
    let worker = bench_worker(&url).named_handler("bench-latency", "lat.*", move |body: String| {
        let recorded = recorded.clone();
        async move {
            let sent: u64 = body.parse().unwrap_or(0);
            let now = epoch.elapsed().as_micros() as u64;
            recorded.lock().unwrap().push(now.saturating_sub(sent));
        }
    });
    let running = RunningWorker::start(worker);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for n in 0..RATE * LATENCY_SECONDS {
        tick.tick().await;
        let sent = epoch.elapsed().as_micros().to_string();
        client.publish(&format!("lat.{}", n % 10), sent).await?;
    }
    while latencies.lock().unwrap().len() < (RATE * LATENCY_SECONDS) as usize {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.stop().await?;

    print_rows(&rows);
    print_ratios(&ratios);
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "\nlatency publish → handler at {RATE} msg/s over {LATENCY_SECONDS} s ({} messages): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

/// Reads the stream `key` from its start in `XRANGE` pages of 1000 on a plain
/// connection, only counting entries and keeping the last id: how fast Redis
/// hands out the messages, with no parsing behind it. Returns the count.
async fn raw_xrange(url: &str, key: &str) -> redis::RedisResult<u64> {
    let mut connection = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    let (mut start, mut count) = ("-".to_owned(), 0);
    loop {
        let page: redis::Value = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await?;
        let redis::Value::Array(entries) = page else { break };
        let Some(redis::Value::Array(last)) = entries.last() else { break };
        let Some(redis::Value::BulkString(id)) = last.first() else { break };
        count += entries.len() as u64;
        start = format!("({}", String::from_utf8_lossy(id));
    }
    Ok(count)
}

/// Prints the worker's throughput relative to its baselines.
fn print_ratios(ratios: &[String]) {
    if !ratios.is_empty() {
        println!();
    }
    for ratio in ratios {
        println!("{ratio}");
    }
}

/// Prints the throughput table, with the CPU time Redis and this process
/// spent per message.
fn print_rows(rows: &[Row]) {
    println!(
        "{:<32} {:>9} {:>8} {:>9} {:>14} {:>14}",
        "scenario", "messages", "seconds", "msg/s", "Redis µs/msg", "process µs/msg"
    );
    for row in rows {
        let per_message = |cpu: Duration| format!("{:.2}", cpu.as_secs_f64() * 1e6 / row.count as f64);
        let (redis, process) =
            row.cpu.map_or(("".into(), "".into()), |(r, p)| (per_message(r), per_message(p)));
        println!(
            "{:<32} {:>9} {:>8.3} {:>9.0} {redis:>14} {process:>14}",
            row.name,
            row.count,
            row.elapsed.as_secs_f64(),
            row.rate()
        );
    }
}
