//! `remq bench`: publish and consume throughput against the server, as a table
//! (like `nats bench`), with a progress bar on a terminal.

use std::future::ready;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{StreamExt, TryStreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use remq::{Client, MessageId, StartFrom};
use serde::Serialize;

use crate::cli::Context;
use crate::error::Result;
use crate::output::{Column, Record, human_count};

/// `publish_batch` calls in flight at once.
const BATCH_DEPTH: usize = 4;
/// Messages per `consume` call when reading back.
const PAGE: usize = 1000;
/// The pattern matching every bench channel (`bench.<n>`).
const PATTERN: &str = "bench.*";

/// Arguments of `remq bench`.
#[derive(Debug, Args)]
#[command(after_help = "Writes to the namespace <BASE>:bench (so `remq channels` of <BASE> stays clean) \
                        and flushes what it wrote when done. Point it at a server where the load does \
                        no harm.")]
pub(crate) struct BenchArgs {
    /// Messages per scenario.
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    messages: u64,
    /// Body size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 128)]
    size: usize,
    /// Channels the messages go round-robin over (bench.0, bench.1 …).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    channels: u64,
    /// Publishes in flight at once on the one connection.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pipeline: u64,
    /// Messages per publish_batch call.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch: u64,
}

/// One scenario's figures.
struct Run {
    /// What was measured.
    scenario: &'static str,
    /// How many messages.
    messages: u64,
    /// Body size.
    size: usize,
    /// How long it took.
    elapsed: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl BenchArgs {
    /// Runs every scenario and prints the table.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        let client = context.client().await?;
        let client = client.with_namespace(&format!("{}:bench", client.namespace()))?;
        eprintln!(
            "remq bench: {} messages of {} bytes per scenario over {} channels, against {} (namespace {})",
            human_count(self.messages),
            self.size,
            self.channels,
            client.addr(),
            client.namespace()
        );
        let bench = Bench {
            channels: (0..self.channels).map(|i| format!("bench.{i}")).collect(),
            body: vec![b'x'; self.size],
            client,
            args: self,
        };
        let start = bench.client.head().await?;
        let runs = [
            bench.publish().await?,
            bench.publish_batch().await?,
            bench.consume(start).await?,
            bench.publish_and_tail().await?,
        ];
        bench.client.flush("*", MessageId::new(bench.client.head().await?.get() + 1)).await?;
        let mut out = context.output();
        out.all(&runs)?;
        Ok(out.flush()?)
    }
}

/// What the scenarios share.
struct Bench {
    /// The bench namespace's client.
    client: Client,
    /// The arguments.
    args: BenchArgs,
    /// `bench.0` …
    channels: Vec<String>,
    /// Every message's body.
    body: Vec<u8>,
}

impl Bench {
    /// Single publishes, `--pipeline` in flight, round-robin over the channels.
    async fn publish(&self) -> Result<Run> {
        let bar = progress("publish", self.args.messages);
        let started = Instant::now();
        self.publish_pipelined(&bar).await?;
        Ok(self.finish(bar, "publish", self.args.messages, started))
    }

    /// `publish_batch` calls of `--batch` messages, a few in flight.
    async fn publish_batch(&self) -> Result<Run> {
        let (n, batch) = (self.args.messages, self.args.batch);
        let bar = progress("publish_batch", n);
        let started = Instant::now();
        stream::iter((0..n).step_by(batch as usize))
            .map(|first| {
                let size = batch.min(n - first) as usize;
                let channel = &self.channels[(first / batch) as usize % self.channels.len()];
                async move {
                    self.client.publish_batch(channel, std::iter::repeat_n(&self.body, size)).await?;
                    Ok::<_, remq::Error>(size as u64)
                }
            })
            .buffer_unordered(BATCH_DEPTH)
            .try_for_each(|size| {
                bar.inc(size);
                ready(Ok(()))
            })
            .await?;
        Ok(self.finish(bar, "publish_batch", n, started))
    }

    /// Reads back everything the publishes stored, in pages, across the channels.
    async fn consume(&self, after: MessageId) -> Result<Run> {
        let n = 2 * self.args.messages;
        let bar = progress("consume", n);
        let started = Instant::now();
        let (mut cursor, mut read) = (after, 0);
        while read < n {
            let page = self.client.consume(PATTERN, cursor, PAGE).await?;
            let Some(last) = page.last() else { break };
            cursor = last.id;
            read += page.len() as u64;
            bar.inc(page.len() as u64);
        }
        Ok(self.finish(bar, "consume", read, started))
    }

    /// Pipelined publishes while a [`remq::Tail`] follows them live; timed until
    /// the tail has them all.
    async fn publish_and_tail(&self) -> Result<Run> {
        let n = self.args.messages;
        let bar = progress("publish + tail", n);
        let mut tail = self.client.tail(PATTERN, StartFrom::Latest).await?;
        let started = Instant::now();
        let hidden = ProgressBar::hidden();
        let follow = async {
            for _ in 0..n {
                tail.next().await?;
                bar.inc(1);
            }
            Ok::<_, remq::Error>(())
        };
        let (published, followed) = tokio::join!(self.publish_pipelined(&hidden), follow);
        published?;
        followed?;
        Ok(self.finish(bar, "publish + tail", n, started))
    }

    /// Publishes `--messages` single messages, `--pipeline` in flight.
    async fn publish_pipelined(&self, bar: &ProgressBar) -> Result<()> {
        let depth = self.args.pipeline as usize;
        stream::iter(0..self.args.messages)
            .map(|i| self.client.publish(&self.channels[i as usize % self.channels.len()], &self.body))
            .buffer_unordered(depth)
            .try_for_each(|_| {
                bar.inc(1);
                ready(Ok(()))
            })
            .await?;
        Ok(())
    }

    /// Ends a scenario's progress bar and notes its figures.
    fn finish(&self, bar: ProgressBar, scenario: &'static str, messages: u64, started: Instant) -> Run {
        let elapsed = started.elapsed();
        bar.finish_and_clear();
        Run { scenario, messages, size: self.args.size, elapsed }
    }
}

/// A progress bar on stderr; drawn only when stderr is a terminal.
fn progress(scenario: &str, total: u64) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:>15} [{bar:32}] {human_pos}/{human_len} ({eta} left)")
        .expect("a valid template")
        .progress_chars("=> ");
    ProgressBar::new(total).with_style(style).with_prefix(scenario.to_owned())
}

impl Record for Run {
    fn columns() -> Vec<Column> {
        vec![
            Column::text("SCENARIO"),
            Column::number("MESSAGES"),
            Column::number("SIZE"),
            Column::number("SECONDS"),
            Column::number("MSG/S"),
            Column::number("MB/S"),
        ]
    }

    fn json(&self) -> impl Serialize {
        RunJson {
            scenario: self.scenario,
            messages: self.messages,
            body_bytes: self.size,
            seconds: self.elapsed.as_secs_f64(),
            messages_per_second: self.per_second().round(),
            megabytes_per_second: self.per_second() * self.size as f64 / 1e6,
        }
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.scenario.to_owned(),
            human_count(self.messages),
            self.size.to_string(),
            format!("{:.2}", self.elapsed.as_secs_f64()),
            human_count(self.per_second().round() as u64),
            format!("{:.1}", self.per_second() * self.size as f64 / 1e6),
        ]
    }
}

/// A scenario's figures in JSON.
#[derive(Serialize)]
struct RunJson {
    /// What was measured.
    scenario: &'static str,
    /// How many messages.
    messages: u64,
    /// Body size.
    body_bytes: usize,
    /// How long it took.
    seconds: f64,
    /// Throughput in messages.
    messages_per_second: f64,
    /// Throughput in body bytes, in millions.
    megabytes_per_second: f64,
}
