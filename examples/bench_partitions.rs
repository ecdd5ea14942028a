//! Partitions: publish and consume throughput on 1 and on 4 partitions, on
//! one server and on a 3-master cluster, each beside raw Redis (issue 15).
//!
//! ```text
//! cargo run --release --example bench_partitions
//! ```
//!
//! Starts one throwaway `redis-server` and one throwaway cluster (three
//! masters, three replicas), all on this machine. Three rounds, interleaved
//! (server P=1, server P=4, cluster P=1, cluster P=4, then again), each in
//! fresh namespaces: P=1 is a plain namespace (never `create_partitions`),
//! P=4 one made with `create_partitions(4)`. On the cluster, the P=4
//! namespaces are picked so that their 4 partitions' slots lie on all 3
//! masters (as in bench_cluster, the name is searched for). Per round:
//! - **publish**: [`MESSAGES`] `publish_keyed("bench.x", key, 100 B)` over
//!   [`KEYS`] keys, [`IN_FLIGHT`] in flight; rate = messages / elapsed.
//!   Baseline: the same number of raw `XADD <stream> * m <100 B>`, as many in
//!   flight, each into the stream of the partition its key picks (a stream
//!   per partition, in that partition's slot).
//! - **batches**: [`BATCHES`] `publish_batch_keyed` of [`BATCH`] messages
//!   over the keys, [`BATCHES_IN_FLIGHT`] in flight, in a namespace of their
//!   own. Baseline: pipelines of [`BATCH`] `XADD`s, as many in flight.
//! - **consume**: of the batches' messages, by one `remq::Worker` (in this
//!   process, started once the messages are stored, from the earliest) whose
//!   handler on `bench.*` only counts; rate = messages / (first handled ..
//!   last handled). For P=4 also by 2 replicas of the worker consuming as one
//!   group (a second durable consumer over the same messages; its figure
//!   includes the group's hand-off of partitions from the replica that
//!   joined first, and the line says how many messages each replica
//!   handled). Baseline: the raw batches' streams read back with
//!   `XRANGE … COUNT 1000`, all streams at once.
//!
//! On the cluster the publishes push the classic way (`PUBLISH`, carried by
//! the cluster bus to every node): no worker or tail has subscribed to these
//! fresh namespaces yet, so none has switched them to sharded pushes
//! (bench_cluster's `bus` section measures the difference).
//!
//! Everything (the nodes, the client, the workers) shares this machine's
//! cores, so the figures say how the pieces compare here, not what a
//! deployment on separate machines would do.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use remq::{Client, MessageId, StartFrom, Worker};
use remq_testkit::{RedisCluster, RedisServer, RunningWorker};

/// Single publishes per round.
const MESSAGES: usize = 40_000;
/// Distinct partition keys the publishes cycle through.
const KEYS: usize = 1_000;
/// Single publishes (and raw `XADD`s) in flight.
const IN_FLIGHT: usize = 64;
/// Batch publishes per round.
const BATCHES: usize = 2_000;
/// Messages per batch.
const BATCH: usize = 100;
/// Messages each consume figure reads: those of the batches.
const BACKLOG: usize = BATCHES * BATCH;
/// Batch publishes (and raw pipelines) in flight.
const BATCHES_IN_FLIGHT: usize = 8;
/// Size of every message body.
const BODY: usize = 100;
/// Longest a consume may go on before the run stops as stalled.
const STALL: Duration = Duration::from_secs(120);
/// Rounds of the whole grid.
const ROUNDS: usize = 3;

/// A raw connection to a target, for the baselines: plain commands over one
/// multiplexed connection, as the Remq client has.
#[derive(Clone)]
enum Raw {
    /// One server.
    Server(MultiplexedConnection),
    /// The cluster, routing each command by its key's slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Raw {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Raw::Server(c) => c.req_packed_command(cmd),
            Raw::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Raw::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Raw::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Raw::Server(c) => c.get_db(),
            Raw::Cluster(c) => c.get_db(),
        }
    }
}

/// Where a round runs: one server or the cluster.
struct Target<'a> {
    /// How the output names it.
    name: &'static str,
    /// The URL clients and workers connect to.
    url: String,
    /// The connection the baselines use.
    raw: Raw,
    /// The cluster, to place namespaces on its masters; `None` for one server.
    cluster: Option<&'a RedisCluster>,
}

impl<'a> Target<'a> {
    /// The throwaway server.
    async fn server(server: &RedisServer) -> Target<'a> {
        let raw = Raw::Server(remq_testkit::connect(&server.url()).await);
        Target { name: "server", url: server.url(), raw, cluster: None }
    }

    /// The throwaway cluster, reached through its seed node.
    async fn cluster(cluster: &'a RedisCluster) -> Target<'a> {
        let connection = redis::cluster::ClusterClientBuilder::new(vec![cluster.seed_url()])
            .response_timeout(Duration::from_secs(30))
            .build()
            .expect("a cluster client")
            .get_async_connection()
            .await
            .expect("connect to the cluster");
        Target {
            name: "cluster",
            url: cluster.seed_url(),
            raw: Raw::Cluster(connection),
            cluster: Some(cluster),
        }
    }

    /// A fresh hash tag for a namespace of `partitions` partitions (`what`
    /// and `round` keep the namespaces of a run apart). On the cluster, a tag
    /// of several partitions is searched for until they lie on every master.
    fn tag(&self, partitions: u32, what: &str, round: usize) -> String {
        let tag = |n: usize| format!("bp{partitions}{what}{round}n{n}");
        let Some(cluster) = self.cluster.filter(|_| partitions > 1) else { return tag(0) };
        (0..)
            .map(tag)
            .find(|tag| {
                let mut masters: Vec<u16> = stream_names(tag, partitions)
                    .iter()
                    .map(|stream| cluster.master_port_for(stream))
                    .collect();
                masters.sort_unstable();
                masters.dedup();
                masters.len() == 3
            })
            .expect("a tag on every master")
    }

    /// A client of namespace `remq:{<tag>}`, created with `partitions`
    /// partitions when that is more than 1.
    async fn client(&self, tag: &str, partitions: u32) -> Client {
        let client = Client::builder(&self.url).namespace(namespace(tag)).connect().await.expect("connect");
        if partitions > 1 {
            client.create_partitions(partitions).await.expect("create_partitions");
        }
        client
    }
}

/// The namespace of `tag`.
fn namespace(tag: &str) -> String {
    format!("remq:{{{tag}}}")
}

/// The raw baseline's streams for `tag`: one per partition, each in the slot
/// of that partition's namespace (`{tag.k}`, as Remq names partition `k`).
fn stream_names(tag: &str, partitions: u32) -> Vec<String> {
    if partitions == 1 {
        return vec![format!("{{{tag}}}:raw")];
    }
    (0..partitions).map(|k| format!("{{{tag}.{k}}}:raw")).collect()
}

/// The partition key of the `i`-th publish.
fn key(i: usize) -> String {
    format!("k{}", i % KEYS)
}

/// The raw stream the `i`-th publish goes to: the one of the partition its
/// key picks.
fn stream_for(streams: &[String], i: usize) -> &str {
    &streams[remq::partition_for(key(i).as_bytes(), streams.len() as u32) as usize]
}

/// Runs `calls`, `limit` at a time, and returns `messages` per second of the
/// time it took.
async fn rate<F: Future<Output = ()>>(messages: usize, limit: usize, calls: impl Iterator<Item = F>) -> f64 {
    let started = Instant::now();
    futures_util::stream::iter(calls).buffer_unordered(limit).for_each(|_| async {}).await;
    messages as f64 / started.elapsed().as_secs_f64()
}

/// Remq single publishes per second.
async fn publish_singles(client: &Client) -> f64 {
    let calls = (0..MESSAGES).map(|i| async move {
        client.publish_keyed("bench.x", key(i), [b'x'; BODY]).await.expect("publish_keyed");
    });
    rate(MESSAGES, IN_FLIGHT, calls).await
}

/// Raw `XADD`s per second, into the stream of each publish's key.
async fn raw_singles(raw: &Raw, streams: &[String]) -> f64 {
    let calls = (0..MESSAGES).map(|i| {
        let mut raw = raw.clone();
        let mut xadd = redis::cmd("XADD");
        xadd.arg(stream_for(streams, i)).arg("*").arg("m").arg(&[b'x'; BODY]);
        async move { xadd.query_async::<()>(&mut raw).await.expect("XADD") }
    });
    rate(MESSAGES, IN_FLIGHT, calls).await
}

/// Remq batched messages per second.
async fn publish_batches(client: &Client) -> f64 {
    let calls = (0..BATCHES).map(|i| async move {
        let bodies = vec![[b'x'; BODY]; BATCH];
        client.publish_batch_keyed("bench.x", key(i), bodies).await.expect("publish_batch_keyed");
    });
    rate(BACKLOG, BATCHES_IN_FLIGHT, calls).await
}

/// Raw pipelined `XADD`s per second, a pipeline of [`BATCH`] per batch.
async fn raw_batches(raw: &Raw, streams: &[String]) -> f64 {
    let calls = (0..BATCHES).map(|i| {
        let mut raw = raw.clone();
        let mut pipeline = redis::pipe();
        for _ in 0..BATCH {
            pipeline.cmd("XADD").arg(stream_for(streams, i)).arg("*").arg("m").arg(&[b'x'; BODY]).ignore();
        }
        async move { pipeline.query_async::<()>(&mut raw).await.expect("pipelined XADD") }
    });
    rate(BACKLOG, BATCHES_IN_FLIGHT, calls).await
}

/// Entries per second read back from `streams` with `XRANGE … COUNT 1000`,
/// every stream at once.
async fn raw_read(raw: &Raw, streams: &[String]) -> f64 {
    let started = Instant::now();
    let counts = join_all(streams.iter().map(|stream| read_stream(raw.clone(), stream))).await;
    let read: usize = counts.iter().sum();
    assert_eq!(read, BACKLOG, "the raw streams hold what was added");
    read as f64 / started.elapsed().as_secs_f64()
}

/// Reads `stream` page by page to its end; returns how many entries it held.
async fn read_stream(mut raw: Raw, stream: &str) -> usize {
    let (mut from, mut read) = ("-".to_owned(), 0);
    loop {
        let page: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut raw)
            .await
            .expect("XRANGE");
        let Some((last, _)) = page.last() else { return read };
        read += page.len();
        from = format!("({last}");
    }
}

/// Messages a consume has handled, by whom, and when the first and the
/// last were.
#[derive(Default)]
struct Progress {
    /// Messages handled so far (by every replica).
    handled: AtomicUsize,
    /// Messages each replica handled.
    by_replica: Vec<AtomicUsize>,
    /// When the first was.
    first: OnceLock<Instant>,
    /// When the [`BACKLOG`]-th was.
    last: OnceLock<Instant>,
}

/// Worker replica `replica`, whose durable consumer `consumer` counts every
/// message of `bench.*` in `progress`.
fn counting_worker(
    target: &Target<'_>,
    tag: &str,
    partitions: u32,
    consumer: &str,
    (progress, replica): (&Arc<Progress>, usize),
) -> Worker {
    let progress = progress.clone();
    let worker = Worker::new(&target.url)
        .without_registered_handlers()
        .without_signal_handlers()
        .namespace(namespace(tag))
        .start_from(StartFrom::Earliest)
        .named_handler(consumer, "bench.*", move |_: MessageId| {
            let progress = progress.clone();
            async move {
                progress.first.get_or_init(Instant::now);
                progress.by_replica[replica].fetch_add(1, Ordering::Relaxed);
                if progress.handled.fetch_add(1, Ordering::Relaxed) + 1 == BACKLOG {
                    progress.last.get_or_init(Instant::now);
                }
            }
        });
    if partitions > 1 { worker.partitions(partitions) } else { worker }
}

/// Messages per second that `replicas` worker replicas of durable consumer
/// `consumer` handle, from the first to the [`BACKLOG`]-th, and how many
/// each replica handled; stops them after.
///
/// # Panics
/// When a worker stops by itself, or the consume stalls for [`STALL`]; says
/// how many messages were handled by then. A count other than [`BACKLOG`]
/// once the workers stopped is printed, not hidden.
async fn consume(
    target: &Target<'_>,
    tag: &str,
    partitions: u32,
    replicas: usize,
    consumer: &str,
) -> (f64, Vec<usize>) {
    let by_replica = (0..replicas).map(|_| AtomicUsize::new(0)).collect();
    let progress = Arc::new(Progress { by_replica, ..Progress::default() });
    let workers: Vec<RunningWorker> = (0..replicas)
        .map(|r| RunningWorker::start(counting_worker(target, tag, partitions, consumer, (&progress, r))))
        .collect();
    let started = Instant::now();
    while progress.last.get().is_none() {
        let handled = progress.handled.load(Ordering::Relaxed);
        assert!(
            workers.iter().all(|w| !w.is_finished()),
            "a worker of {consumer} stopped by itself after {handled} of {BACKLOG} messages"
        );
        assert!(
            started.elapsed() < STALL,
            "{consumer} stalled: {handled} of {BACKLOG} messages in {STALL:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for worker in workers {
        worker.stop().await.expect("the worker stops cleanly");
    }
    let handled = progress.handled.load(Ordering::Relaxed);
    if handled != BACKLOG {
        println!("    !! {consumer}: {handled} messages handled for {BACKLOG} published");
    }
    let (first, last) = (progress.first.get().expect("a first"), progress.last.get().expect("a last"));
    let split = progress.by_replica.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    (BACKLOG as f64 / (*last - *first).as_secs_f64(), split)
}

/// One measured figure: Remq's rate and the raw-Redis rate it is compared with.
struct Figure {
    /// What was measured.
    what: &'static str,
    /// Remq's messages per second.
    remq: f64,
    /// Raw Redis's messages per second.
    raw: f64,
}

/// One round on `target` with `partitions` partitions; prints its lines and
/// returns its figures.
async fn round(target: &Target<'_>, partitions: u32, round: usize) -> Vec<Figure> {
    let tag = target.tag(partitions, "s", round);
    let client = target.client(&tag, partitions).await;
    let mut figures = vec![Figure {
        what: "publish",
        remq: publish_singles(&client).await,
        raw: raw_singles(&target.raw, &stream_names(&tag, partitions)).await,
    }];
    let tag = target.tag(partitions, "b", round);
    let streams = stream_names(&tag, partitions);
    let client = target.client(&tag, partitions).await;
    figures.push(Figure {
        what: "batches",
        remq: publish_batches(&client).await,
        raw: raw_batches(&target.raw, &streams).await,
    });
    let read = raw_read(&target.raw, &streams).await;
    let (remq, _) = consume(target, &tag, partitions, 1, "one").await;
    figures.push(Figure { what: "consume", remq, raw: read });
    let mut split = String::new();
    if partitions > 1 {
        let (remq, by_replica) = consume(target, &tag, partitions, 2, "two").await;
        figures.push(Figure { what: "consume, 2 replicas", remq, raw: read });
        split = format!(" (handled {by_replica:?})");
    }
    let cells: Vec<String> = figures
        .iter()
        .map(|f| format!("{} {:.0} ({:.0}, {:.2})", f.what, f.remq, f.raw, f.remq / f.raw))
        .collect();
    println!("  round {round} {} P={partitions}: {}", target.name, cells[..2].join(" | "));
    println!("      {}{split}", cells[2..].join(" | "));
    figures
}

/// The smallest and largest of `values`.
fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(min, max), x| (min.min(x), max.max(x)))
}

/// Prints the min–max over the rounds of each figure of one target and
/// partition count.
fn summary(label: &str, rounds: &[Vec<Figure>]) {
    for (i, figure) in rounds[0].iter().enumerate() {
        let (remq, raw) =
            (min_max(rounds.iter().map(|r| r[i].remq)), min_max(rounds.iter().map(|r| r[i].raw)));
        let ratio = min_max(rounds.iter().map(|r| r[i].remq / r[i].raw));
        println!(
            "  {label:<12} {:<20} remq {:>6.0}–{:>6.0} msg/s | raw {:>7.0}–{:>7.0} | ratio {:.2}–{:.2}",
            figure.what, remq.0, remq.1, raw.0, raw.1, ratio.0, ratio.1
        );
    }
}

#[tokio::main]
async fn main() {
    eprintln!("starting a throwaway server and a throwaway Redis Cluster (6 nodes)");
    let (server, cluster) = (RedisServer::start(), RedisCluster::start());
    let targets = [Target::server(&server).await, Target::cluster(&cluster).await];
    println!(
        "{MESSAGES} publish_keyed of {BODY} B over {KEYS} keys, {IN_FLIGHT} in flight | {BATCHES} batches of \
         {BATCH}, {BATCHES_IN_FLIGHT} in flight | consume of the batches' {BACKLOG} messages by workers whose \
         handler only counts"
    );
    println!("each figure: remq msg/s (raw Redis msg/s: XADD, pipelined XADD, XRANGE; remq / raw)");
    let grid: Vec<(&Target<'_>, u32)> = targets.iter().flat_map(|t| [(t, 1), (t, 4)]).collect();
    let mut results: Vec<Vec<Vec<Figure>>> = grid.iter().map(|_| Vec::new()).collect();
    for n in 1..=ROUNDS {
        for ((target, partitions), rounds) in grid.iter().zip(&mut results) {
            rounds.push(round(target, *partitions, n).await);
        }
    }
    println!("over {ROUNDS} rounds, min–max:");
    for ((target, partitions), rounds) in grid.iter().zip(&results) {
        summary(&format!("{} P={partitions}", target.name), rounds);
    }
}
