//! Throughput of the Remq client against a real Redis: publishing (awaited one at
//! a time, pipelined, batched) and replaying the log (`consume.lua` versus raw
//! `XRANGE`), with `redis-benchmark` figures for the same server as a yardstick.
//!
//! ```text
//! cargo run --release --example bench
//! REMQ_BENCH_URL=redis://127.0.0.1:6379 cargo run --release --example bench
//! ```
//!
//! By default the bench starts its own throwaway `redis-server` (no persistence, a
//! free loopback port), so no other data or clients disturb the figures. With
//! `REMQ_BENCH_URL` it uses that server instead: point it at a scratch Redis, since
//! the bench writes about two million messages into the default `remq` namespace,
//! plus `redis-benchmark`'s own keys, and removes nothing.
//!
//! Every message has a 100-byte body. The scenarios, in order:
//! - **publish, awaited**: [`Client::publish`] one message at a time, each awaited
//!   before the next, round-robin over the 100 channels `bench.0`…`bench.99`;
//! - **publish, pipelined**: the same with [`PIPELINE_DEPTH`] publishes in flight on
//!   one [`Client`], whose multiplexed connection pipelines them;
//! - **publish_batch**: [`Client::publish_batch`] with [`BATCH`] messages per call,
//!   all onto one channel: first one call at a time, then [`BATCH_DEPTH`] calls in
//!   flight, which store the 1,000,000 messages the replay reads;
//! - **replay**: those messages read back in pages of 1000, three ways (see
//!   [`Way`]): [`Client::consume`] (`consume.lua … packed`, pattern = the channel
//!   name), `consume.lua`'s plain frames on a raw connection, and raw
//!   `XRANGE remq:channel:<c> (<last> + COUNT 1000`, in [`REPLAY_PASSES`] passes.
//!   A pass reads every page each way, one right after the other (the order
//!   rotates from page to page), and checks that all read the same ids; each
//!   way's row is the sum of its own page times. So every way sees the same
//!   moments of a noisy machine, and the ratios compare like with like. Then,
//!   for the merge across channels, everything the single publishes stored is
//!   read with the pattern `bench.*`, through the client and as frames;
//! - **redis-benchmark** (when it is on `PATH`): `SET`, `XADD` and `EVALSHA` of
//!   `publish.lua` from 50 clients with 16-deep pipelines, and `EVALSHA` from one
//!   client without pipelining. Its rows use its own request rate.
//!
//! The figures end in one table (scenario, messages, seconds, msg/s) followed by
//! the ratios against the project's targets. The whole run takes about 90 s on two cores.
//!
//! The client runs on a current-thread runtime, i.e. one producer thread: the
//! server needs a core of its own, and on a small machine a multi-threaded
//! runtime mostly adds wake-ups between threads (it measured about 15% slower for
//! pipelined publishes on two cores).

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use redis::aio::MultiplexedConnection;
use remq::{Client, Message, MessageId};
use remq_testkit::RedisServer;

/// The body of every message.
const BODY: [u8; 100] = [b'x'; 100];
/// How many channels the single publishes go round-robin over (`bench.<n>`).
const CHANNELS: usize = 100;
/// The pattern that matches those channels, and nothing else the bench writes.
const CHANNELS_PATTERN: &str = "bench.*";
/// Messages published one at a time, each awaited.
const AWAITED: u64 = 20_000;
/// Messages published with many calls in flight.
const PIPELINED: u64 = 500_000;
/// How many `publish` futures are in flight at once in the pipelined scenario.
const PIPELINE_DEPTH: usize = 256;
/// Messages per `publish_batch` call.
const BATCH: usize = 1000;
/// How many `publish_batch` calls are in flight at once when storing the replay log.
const BATCH_DEPTH: usize = 4;
/// Messages stored with awaited `publish_batch` calls (on their own channel).
const BATCHED_AWAITED: u64 = 500_000;
/// Messages stored with `publish_batch` calls in flight, and then replayed.
const STORED: u64 = 1_000_000;
/// The channel of the awaited batches.
const BATCH_CHANNEL: &str = "batch";
/// The channel that holds the replayed messages.
const REPLAY_CHANNEL: &str = "replay";
/// Messages per `consume` call or `XRANGE` page.
const PAGE: usize = 1000;
/// How many times the single-channel log is read both ways, page by page.
const REPLAY_PASSES: usize = 5;
/// Requests per pipelined `redis-benchmark` run.
const RB_REQUESTS: u64 = 500_000;
/// Requests of the unpipelined, one-client `redis-benchmark` run.
const RB_REQUESTS_SINGLE: u64 = 20_000;

/// Target for pipelined publishes from one producer, in msg/s.
const TARGET_PIPELINED: f64 = 150_000.0;
/// Target for `publish_batch`, in msg/s.
const TARGET_BATCH: f64 = 300_000.0;
/// What the issue measured for `redis-benchmark -P 16 -c 50` running a
/// stream-based publish script on the machine its targets were set on; a
/// publish target scaled to this machine is multiplied by this run's figure
/// over this one.
const REFERENCE_PUBLISH_SCRIPT: f64 = 195_000.0;
/// The same for raw `XADD`, which scales the batch targets.
const REFERENCE_XADD: f64 = 470_000.0;
/// Target for replay through `consume.lua`, as a fraction of raw `XRANGE`.
const TARGET_REPLAY_RATIO: f64 = 0.75;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What a row measures, as far as the targets care.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    PipelinedPublish,
    AwaitedBatches,
    BatchesInFlight,
    ReplayConsume,
    ReplayFrames,
    ReplayXrange,
    /// `redis-benchmark` running `publish.lua` pipelined: what the pipelined
    /// publish target is scaled by.
    YardstickPublish,
    /// `redis-benchmark` running `XADD` pipelined: what the batch targets are
    /// scaled by.
    YardstickXadd,
    /// Everything the targets do not look at.
    Other,
}

/// One line of the results table.
struct Row {
    kind: Kind,
    scenario: String,
    messages: u64,
    seconds: f64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

/// Runs one scenario, which returns how many messages it handled, and times it.
/// Prints the figure as soon as it is known, so a long run shows progress.
async fn timed(kind: Kind, scenario: String, run: impl Future<Output = Result<u64>>) -> Result<Row> {
    let start = Instant::now();
    let messages = run.await?;
    let row = Row { kind, scenario, messages, seconds: start.elapsed().as_secs_f64() };
    eprintln!("  {}: {:.0} msg/s", row.scenario, row.rate());
    Ok(row)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let (url, _server) = match std::env::var("REMQ_BENCH_URL") {
        Ok(url) if !url.is_empty() => {
            println!("server: {url} (from REMQ_BENCH_URL)");
            (url, None)
        }
        _ => {
            let server = RedisServer::start();
            println!(
                "server: throwaway redis-server at {} (set REMQ_BENCH_URL to use another)",
                server.url()
            );
            (server.url(), Some(server))
        }
    };
    let client = Client::connect(&url).await?;
    let mut raw = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut raw).await?;
    let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("unknown");
    println!("redis_version: {version}; body: {} bytes\n", BODY.len());

    let channels: Vec<String> = (0..CHANNELS).map(|i| format!("bench.{i}")).collect();
    let singles_start = client.head().await?;
    let mut rows = vec![
        timed(
            Kind::Other,
            format!("publish, awaited, {CHANNELS} channels"),
            publish_awaited(&client, &channels),
        )
        .await?,
        timed(
            Kind::PipelinedPublish,
            format!("publish, {PIPELINE_DEPTH} in flight, {CHANNELS} channels"),
            publish_pipelined(&client, &channels),
        )
        .await?,
        timed(
            Kind::AwaitedBatches,
            format!("publish_batch x{BATCH}, awaited, 1 channel"),
            publish_batches(&client, BATCH_CHANNEL, BATCHED_AWAITED, 1),
        )
        .await?,
    ];
    let replay_start = client.head().await?;
    rows.push(
        timed(
            Kind::BatchesInFlight,
            format!("publish_batch x{BATCH}, {BATCH_DEPTH} in flight, 1 channel"),
            publish_batches(&client, REPLAY_CHANNEL, STORED, BATCH_DEPTH),
        )
        .await?,
    );
    let single = Replay { pattern: REPLAY_CHANNEL, after: replay_start, expected: STORED, ways: &Way::ALL };
    for pass in 1..=REPLAY_PASSES {
        rows.extend(single.run(&client, &mut raw, &format!("1 channel, pass {pass}")).await?);
    }
    let merge = Replay {
        pattern: CHANNELS_PATTERN,
        after: singles_start,
        expected: AWAITED + PIPELINED,
        ways: &[Way::Client, Way::Frames],
    };
    let label = format!("{CHANNELS} channels ({CHANNELS_PATTERN})");
    rows.extend(
        merge.run(&client, &mut raw, &label).await?.into_iter().map(|row| Row { kind: Kind::Other, ..row }),
    );
    rows.extend(redis_benchmarks(&url, &mut raw).await?);

    println!();
    print_table(&rows);
    println!();
    print_targets(&rows);
    Ok(())
}

/// Publishes [`AWAITED`] messages, awaiting each before sending the next.
async fn publish_awaited(client: &Client, channels: &[String]) -> Result<u64> {
    for i in 0..AWAITED {
        client.publish(&channels[i as usize % channels.len()], BODY).await?;
    }
    Ok(AWAITED)
}

/// Publishes [`PIPELINED`] messages with [`PIPELINE_DEPTH`] calls in flight.
async fn publish_pipelined(client: &Client, channels: &[String]) -> Result<u64> {
    stream::iter(0..PIPELINED)
        .map(|i| client.publish(&channels[i as usize % channels.len()], BODY))
        .buffer_unordered(PIPELINE_DEPTH)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(PIPELINED)
}

/// Stores `count` messages on `channel`, [`BATCH`] per call, `depth` calls in flight.
async fn publish_batches(client: &Client, channel: &str, count: u64, depth: usize) -> Result<u64> {
    stream::iter(0..count / BATCH as u64)
        .map(|_| client.publish_batch(channel, [BODY; BATCH]))
        .buffer_unordered(depth)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(count)
}

/// The ways the replay reads a page.
#[derive(Clone, Copy)]
enum Way {
    /// [`Client::consume`]: `consume.lua … packed`, decoded into messages.
    Client,
    /// `consume.lua`'s plain reply, one frame per message, as a client without
    /// MessagePack reads it: `EVALSHA` on a raw connection, each frame parsed
    /// with [`Message::from_frame`].
    Frames,
    /// Raw `XRANGE` on the channel's stream, typed as `[(id, [field, value])]`
    /// (so for a pattern that is one channel's name only).
    Xrange,
}

impl Way {
    const ALL: [Way; 3] = [Way::Client, Way::Frames, Way::Xrange];

    /// The kind of its rows, and its name in them.
    fn describe(self) -> (Kind, &'static str) {
        match self {
            Way::Client => (Kind::ReplayConsume, "Client::consume (consume.lua packed)"),
            Way::Frames => (Kind::ReplayFrames, "consume.lua frames, raw EVALSHA"),
            Way::Xrange => (Kind::ReplayXrange, "raw XRANGE"),
        }
    }

    /// Reads the page after `cursor`; returns its ids and how long the read took
    /// (the call and the parsing into Rust types, not the collecting of ids).
    async fn read(
        self,
        client: &Client,
        conn: &mut MultiplexedConnection,
        consume: &redis::Script,
        pattern: &str,
        cursor: MessageId,
    ) -> Result<(Vec<u64>, Duration)> {
        let start = Instant::now();
        Ok(match self {
            Way::Client => {
                let page = client.consume(pattern, cursor, PAGE).await?;
                let elapsed = start.elapsed();
                (page.iter().map(|m| m.id.get()).collect(), elapsed)
            }
            Way::Frames => {
                let frames: Vec<Bytes> =
                    consume.arg(pattern).arg(cursor.get()).arg(PAGE).invoke_async(conn).await?;
                let page = frames.into_iter().map(Message::from_frame).collect::<remq::Result<Vec<_>>>()?;
                let elapsed = start.elapsed();
                (page.iter().map(|m| m.id.get()).collect(), elapsed)
            }
            Way::Xrange => {
                // Each entry is [id, [field, value, …]].
                let page: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                    .arg(format!("remq:channel:{pattern}"))
                    .arg(format!("({cursor}-0"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(conn)
                    .await?;
                let elapsed = start.elapsed();
                let ids = page.iter().map(|(id, _)| id.strip_suffix("-0").and_then(|id| id.parse().ok()));
                (ids.collect::<Option<_>>().ok_or("an XRANGE id is not <id>-0")?, elapsed)
            }
        })
    }
}

/// A replay of the log after `after` through `pattern`, which must read exactly
/// `expected` messages, compared between some [`Way`]s.
struct Replay<'a> {
    pattern: &'a str,
    after: MessageId,
    expected: u64,
    ways: &'a [Way],
}

impl Replay<'_> {
    /// One pass over the log, every page read each way back to back, the order
    /// rotating from page to page, and the ids checked equal. Returns one row
    /// per way, each the sum of that way's page times.
    async fn run(&self, client: &Client, conn: &mut MultiplexedConnection, label: &str) -> Result<Vec<Row>> {
        let consume = redis::Script::new(include_str!("../scripts/consume.lua"));
        let ways = self.ways.len();
        let (mut cursor, mut read) = (self.after, 0);
        let mut times = vec![Duration::ZERO; ways];
        for page_number in 0.. {
            let mut pages = vec![Vec::new(); ways];
            for turn in 0..ways {
                let i = (page_number + turn) % ways;
                let (ids, elapsed) = self.ways[i].read(client, conn, &consume, self.pattern, cursor).await?;
                pages[i] = ids;
                times[i] += elapsed;
            }
            if pages.iter().any(|ids| *ids != pages[0]) {
                return Err(format!("the ways of reading disagree on the page after {cursor}").into());
            }
            let Some(&last) = pages[0].last() else { break };
            cursor = MessageId::new(last);
            read += pages[0].len() as u64;
        }
        expect(read, self.expected)?;
        Ok(self
            .ways
            .iter()
            .zip(times)
            .map(|(way, elapsed)| {
                let (kind, name) = way.describe();
                let row = Row {
                    kind,
                    scenario: format!("replay {name}, {label}"),
                    messages: read,
                    seconds: elapsed.as_secs_f64(),
                };
                eprintln!("  {}: {:.0} msg/s", row.scenario, row.rate());
                row
            })
            .collect())
    }
}

/// A replay must read exactly the messages stored for it, or its figure means nothing.
fn expect(read: u64, expected: u64) -> Result<u64> {
    if read == expected {
        Ok(read)
    } else {
        Err(format!("replay read {read} messages, expected {expected}").into())
    }
}

/// One `redis-benchmark` run: how hard it pushes, and the command it sends.
struct RedisBenchmark {
    /// What the table calls it.
    name: &'static str,
    /// Whether a target is scaled by it.
    kind: Kind,
    /// Parallel connections (`-c`).
    clients: u32,
    /// Requests in flight per connection (`-P`).
    pipeline: u32,
    /// Total requests (`-n`).
    requests: u64,
    /// The command: `-t <test> …` or a literal command line.
    command: Vec<String>,
}

impl RedisBenchmark {
    /// Runs it against `url` and returns its row, timed by redis-benchmark itself.
    async fn run(self, url: &str) -> Result<Row> {
        let mut args: Vec<String> = ["-u", url, "-q"].map(String::from).to_vec();
        for (flag, value) in
            [("-c", u64::from(self.clients)), ("-P", u64::from(self.pipeline)), ("-n", self.requests)]
        {
            args.extend([flag.to_owned(), value.to_string()]);
        }
        args.extend(self.command);
        let output =
            tokio::task::spawn_blocking(move || Command::new("redis-benchmark").args(&args).output())
                .await??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let rate = parse_rps(&stdout)
            .ok_or_else(|| format!("no rate in redis-benchmark's output for {}: {stdout:?}", self.name))?;
        let scenario = format!("redis-benchmark {}, -P {} -c {}", self.name, self.pipeline, self.clients);
        eprintln!("  {scenario}: {rate:.0} requests/s");
        Ok(Row { kind: self.kind, scenario, messages: self.requests, seconds: self.requests as f64 / rate })
    }
}

/// Runs `redis-benchmark` against the same server, if it is installed: `SET`,
/// `XADD` and `EVALSHA publish.lua` pipelined from 50 clients, and `EVALSHA
/// publish.lua` from one client awaiting each reply.
async fn redis_benchmarks(url: &str, conn: &mut MultiplexedConnection) -> Result<Vec<Row>> {
    if Command::new("redis-benchmark").arg("--version").output().is_err() {
        eprintln!("redis-benchmark is not on PATH: skipping the raw Redis figures");
        return Ok(Vec::new());
    }
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(include_str!("../scripts/publish.lua"))
        .query_async(conn)
        .await?;
    let body = String::from_utf8_lossy(&BODY).into_owned();
    let words = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let publish = words(&["EVALSHA", &sha, "0", "rb.publish", &body]);
    let pipelined = |name, kind, command| RedisBenchmark {
        name,
        kind,
        clients: 50,
        pipeline: 16,
        requests: RB_REQUESTS,
        command,
    };
    let runs = [
        pipelined("SET", Kind::Other, words(&["-t", "set", "-d", &BODY.len().to_string()])),
        pipelined("XADD", Kind::YardstickXadd, words(&["XADD", "rb:stream", "*", "m", &body])),
        pipelined("EVALSHA publish.lua", Kind::YardstickPublish, publish.clone()),
        RedisBenchmark {
            name: "EVALSHA publish.lua",
            kind: Kind::Other,
            clients: 1,
            pipeline: 1,
            requests: RB_REQUESTS_SINGLE,
            command: publish,
        },
    ];
    let mut rows = Vec::new();
    for run in runs {
        rows.push(run.run(url).await?);
    }
    Ok(rows)
}

/// The rate from `redis-benchmark -q` output: its last line is
/// `<command>: <rate> requests per second, p50=<latency> msec`.
fn parse_rps(output: &str) -> Option<f64> {
    let line = output.split(['\r', '\n']).rfind(|l| l.contains(" requests per second"))?;
    let before = &line[..line.find(" requests per second")?];
    before.rsplit(' ').next()?.parse().ok()
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.scenario.len()).max().unwrap_or(0).max("scenario".len());
    println!("{:<width$}  {:>9}  {:>8}  {:>9}", "scenario", "messages", "seconds", "msg/s");
    println!("{:-<width$}  {:->9}  {:->8}  {:->9}", "", "", "", "");
    for row in rows {
        println!("{:<width$}  {:>9}  {:>8.3}  {:>9.0}", row.scenario, row.messages, row.seconds, row.rate());
    }
}

/// The median rate of the rows of one kind (NaN when there are none).
fn median_rate(rows: &[Row], kind: Kind) -> f64 {
    median(rows.iter().filter(|r| r.kind == kind).map(Row::rate).collect())
}

/// The rate of one way of replaying over raw `XRANGE`'s, in each pass, in pass order.
fn replay_ratios(rows: &[Row], kind: Kind) -> Vec<f64> {
    let of = |kind| rows.iter().filter(move |r| r.kind == kind);
    of(kind).zip(of(Kind::ReplayXrange)).map(|(c, x)| c.rate() / x.rate()).collect()
}

/// The median of some figures (NaN when there are none).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Figures as a space-separated list with two decimals.
fn list(values: &[f64]) -> String {
    values.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
}

fn print_targets(rows: &[Row]) {
    let ratios = replay_ratios(rows, Kind::ReplayConsume);
    let frames = replay_ratios(rows, Kind::ReplayFrames);
    let median_ratio = median(ratios.clone());
    // A machine slower than the targets' own scales them down, by how much less
    // redis-benchmark gets from the same server in the same run.
    let scale = |kind, reference: f64| (median_rate(rows, kind) / reference).min(1.0);
    let (publish_scale, xadd_scale) =
        (scale(Kind::YardstickPublish, REFERENCE_PUBLISH_SCRIPT), scale(Kind::YardstickXadd, REFERENCE_XADD));
    let checks = [
        (
            "pipelined publish, msg/s",
            median_rate(rows, Kind::PipelinedPublish),
            TARGET_PIPELINED,
            publish_scale,
        ),
        ("batch publish, awaited, msg/s", median_rate(rows, Kind::AwaitedBatches), TARGET_BATCH, xadd_scale),
        (
            "batch publish, in flight, msg/s",
            median_rate(rows, Kind::BatchesInFlight),
            TARGET_BATCH,
            xadd_scale,
        ),
    ];
    for (what, value, target, scale) in checks {
        let verdict = |target| if value >= target { "met" } else { "MISSED" };
        println!(
            "{what:<50} {value:>8.0}  target >= {target:.0}: {}; scaled to this machine ({scale:.2}) >= {:.0}: {}",
            verdict(target),
            target * scale,
            verdict(target * scale)
        );
    }
    let verdict = if median_ratio >= TARGET_REPLAY_RATIO { "met" } else { "MISSED" };
    println!(
        "{:<50} {median_ratio:>8.2}  target >= {TARGET_REPLAY_RATIO:.2}: {verdict}",
        "replay Client::consume / raw XRANGE (median pass)"
    );
    println!(
        "replay, 1 channel, medians: Client::consume {:.0} msg/s, frames {:.0}, raw XRANGE {:.0}",
        median_rate(rows, Kind::ReplayConsume),
        median_rate(rows, Kind::ReplayFrames),
        median_rate(rows, Kind::ReplayXrange),
    );
    println!("  Client::consume / raw XRANGE per pass: {}", list(&ratios));
    println!(
        "  consume.lua frames / raw XRANGE per pass: {} (median {:.2})",
        list(&frames),
        median(frames.clone())
    );
}
