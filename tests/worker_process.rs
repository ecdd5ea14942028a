//! The worker runtime as a process: crashes (SIGKILL), failover to a hot
//! standby, a frozen owner being fenced out (SIGSTOP), and graceful shutdown
//! (SIGTERM), with the `remq-test-worker` binary against throwaway redis-servers.
//!
//! The binary appends the id of every message it handles to a Redis list, so
//! what a process did survives its being killed; the assertions read those lists
//! and compare them with the ids the test published. Each worker's log
//! (`RUST_LOG=remq=info`) goes to a file, is used to see which process owns the
//! consumer, and is printed when a test fails.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use remq::Client;
use remq_testkit::{RedisServer, WorkerProcess, closed_port, scrape_until, wait_until, walk};
use tempfile::TempDir;

/// `REMQ_CHECKPOINT_EVERY` in the crash and failover tests: the most messages a
/// worker handles after the checkpoint it last stored.
const CHECKPOINT_EVERY: usize = 100;
/// `REMQ_LEASE_TTL` in the crash and failover tests, short so that the lease of
/// a killed owner lapses quickly.
const SHORT_LEASE: Duration = Duration::from_secs(1);
/// What the lease code logs when it takes ownership, and when it finds another owner.
const ACQUIRED: &str = "acquired the consumer lease";
const STANDING_BY: &str = "another process owns this consumer";

/// Reads what the workers recorded, and the consumer's keys.
#[derive(Clone)]
struct Db(MultiplexedConnection);

impl Db {
    async fn connect(server: &RedisServer) -> Db {
        Db(server.connection().await)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        cmd.query_async(&mut self.0.clone()).await.unwrap()
    }

    /// The ids recorded in the list `key`, in the order they were handled.
    async fn records(&self, key: &str) -> Vec<u64> {
        self.query(redis::cmd("LRANGE").arg(key).arg(0).arg(-1)).await
    }

    async fn len(&self, key: &str) -> usize {
        self.query(redis::cmd("LLEN").arg(key)).await
    }

    async fn lease_exists(&self, consumer: &str) -> bool {
        self.query(redis::cmd("EXISTS").arg(format!("remq:consumer:{consumer}:lease"))).await
    }
}

/// A random generator whose seed is printed (shown when a test fails) and can be
/// set with `REMQ_TEST_SEED` to replay a run's choices.
fn rng() -> fastrand::Rng {
    let seed = std::env::var("REMQ_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("REMQ_TEST_SEED={seed}");
    fastrand::Rng::with_seed(seed)
}

/// Publishes `count` messages on each channel, all channels at once, in batches
/// of 1 to 200 with pauses of `pause_ms` between them, so that a worker started
/// meanwhile sees both replay from the log and live pushes. Returns every id, ascending.
fn publish_stream(
    client: &Client,
    channels: &[&str],
    count: usize,
    pause_ms: std::ops::Range<u64>,
    seed: u64,
) -> tokio::task::JoinHandle<Vec<u64>> {
    let tasks: Vec<_> = channels
        .iter()
        .enumerate()
        .map(|(n, channel)| {
            let (client, channel, pause_ms) = (client.clone(), channel.to_string(), pause_ms.clone());
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(n as u64));
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(count);
                while ids.len() < count {
                    let batch = rng.usize(1..=200).min(count - ids.len());
                    let bodies: Vec<String> =
                        (0..batch).map(|i| format!("{channel}/{}", ids.len() + i)).collect();
                    let range = client.publish_batch(&channel, bodies).await.unwrap();
                    ids.extend(range.start().get()..=range.end().get());
                    tokio::time::sleep(Duration::from_millis(rng.u64(pause_ms.clone()))).await;
                }
                ids
            })
        })
        .collect();
    tokio::spawn(async move {
        let mut ids = Vec::new();
        for task in tasks {
            ids.extend(task.await.unwrap());
        }
        ids.sort_unstable();
        ids
    })
}

/// Waits until the list `key` grows, then until it has not grown for 50 ms: the
/// worker (whose handler takes 200 ms) is then well inside its next handler.
/// Returns the list's length then.
async fn wait_mid_handler(db: &Db, key: &str, at_least: usize) -> usize {
    let mut seen = db.len(key).await;
    wait_until(
        Duration::from_secs(10),
        &format!("a handler in flight after {at_least} records in {key}"),
        async || {
            let now = db.len(key).await;
            if now > seen && now >= at_least {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let again = db.len(key).await;
                if again == now {
                    return Some(now);
                }
                seen = again;
            } else {
                seen = now;
            }
            None
        },
    )
    .await
}

/// Sends SIGTERM to `worker` while it is inside a 200 ms handler (see
/// [`wait_mid_handler`]). Returns when it was sent, and how long the list `key`
/// must end up: one more than when the signal arrived — the handler in flight
/// finishes and no other message is taken. That is a range only when this
/// process was stalled past the handler's end; normally it is one number.
async fn terminate_mid_handler(
    db: &Db,
    worker: &WorkerProcess,
    key: &str,
    at_least: usize,
) -> (Instant, std::ops::RangeInclusive<usize>) {
    wait_mid_handler(db, key, at_least).await;
    let before = db.len(key).await;
    let signalled = Instant::now();
    worker.signal("TERM");
    let after = db.len(key).await;
    (signalled, before + 1..=after + 1)
}

/// Two worker processes on one consumer of `jobs.*`, each recording to its own list.
struct Pair {
    /// The processes.
    workers: [WorkerProcess; 2],
    /// Their record lists.
    keys: [&'static str; 2],
    /// The producer: 3,000 messages on each of three channels; yields every id.
    stream: tokio::task::JoinHandle<Vec<u64>>,
    /// Index of the process that owns the consumer.
    owner: usize,
    /// Index of the one standing by.
    standby: usize,
}

/// Starts a [`Pair`] on `consumer` (checkpoint every [`CHECKPOINT_EVERY`] or
/// 500 ms, lease [`SHORT_LEASE`]) and the producer, and returns once one process
/// owns the consumer and the other stands by.
async fn start_pair(
    consumer: &str,
    dir: &std::path::Path,
    server: &RedisServer,
    client: &Client,
    seed: u64,
) -> Pair {
    let every = CHECKPOINT_EVERY.to_string();
    let keys = ["rec:0", "rec:1"];
    let workers = [0, 1].map(|n| {
        let vars = [
            ("TEST_CONSUMER", consumer),
            ("TEST_PATTERN", "jobs.*"),
            ("TEST_RECORD_KEY", keys[n]),
            ("REMQ_CHECKPOINT_EVERY", &*every),
            ("REMQ_CHECKPOINT_INTERVAL", "500ms"),
            ("REMQ_LEASE_TTL", "1s"),
        ];
        WorkerProcess::start(&format!("worker-{n}"), dir, &server.url(), &vars)
    });
    let stream = publish_stream(client, &["jobs.a", "jobs.b", "jobs.c"], 3_000, 10..40, seed);
    let (owner, standby) = roles(&workers).await;
    Pair { workers, keys, stream, owner, standby }
}

/// Waits until one of two workers owns the consumer and the other stands by;
/// returns `(owner, standby)` as indices into `workers`.
async fn roles(workers: &[WorkerProcess; 2]) -> (usize, usize) {
    let (owner, standby) = wait_until(
        Duration::from_secs(10),
        "one worker to own the consumer and the other to stand by",
        async || {
            let acquired = [workers[0].logged(ACQUIRED), workers[1].logged(ACQUIRED)];
            assert!(!(acquired[0] && acquired[1]), "both workers acquired the lease");
            let owner = acquired.iter().position(|&a| a)?;
            workers[1 - owner].logged(STANDING_BY).then_some((owner, 1 - owner))
        },
    )
    .await;
    eprintln!("{} owns the consumer, {} stands by", workers[owner].label, workers[standby].label);
    (owner, standby)
}

/// A worker is SIGKILLed at random points of a 20,000-message stream, 3 to 5
/// times, and restarted each time; the stream is published while this goes on.
/// Every message must be handled, in order, and each crash may cost at most one
/// checkpoint's worth of messages handled again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_worker_restarts_from_its_checkpoint_and_loses_nothing() {
    let server = RedisServer::start();
    let dir = TempDir::new().unwrap();
    let (client, db) = (Client::connect(&server.url()).await.unwrap(), Db::connect(&server).await);
    let mut rng = rng();
    let every = CHECKPOINT_EVERY.to_string();
    let vars = [
        ("TEST_CONSUMER", "crash"),
        ("TEST_PATTERN", "crash.*"),
        ("TEST_RECORD_KEY", "rec"),
        ("REMQ_CHECKPOINT_EVERY", &*every),
        ("REMQ_CHECKPOINT_INTERVAL", "500ms"),
        ("REMQ_LEASE_TTL", "1s"),
    ];
    let started = Instant::now();
    // 4 × 5,000 messages on the pattern over about 3 s, and some on a channel
    // the pattern does not match (their ids must never be handled).
    let stream =
        publish_stream(&client, &["crash.a", "crash.b", "crash.c", "crash.d"], 5_000, 20..80, rng.u64(..));
    let noise = publish_stream(&client, &["other.x"], 1_000, 20..80, rng.u64(..));

    let kills = rng.usize(3..=5);
    let mut workers = vec![WorkerProcess::start("crash-0", dir.path(), &server.url(), &vars)];
    // Where in the record list each restarted process began.
    let mut restarts = Vec::new();
    for run in 1..=kills {
        // Kill after a random number of messages (at most 5 × 3,000, so always
        // mid-stream), at a random point relative to the checkpoints.
        let target = db.len("rec").await + rng.usize(200..3_000);
        wait_until(Duration::from_secs(30), &format!("run {run} to record {target} ids"), async || {
            (db.len("rec").await >= target).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.u64(0..20))).await;
        let connections = workers.last().unwrap().redis_ports(server.port());
        assert!(!connections.is_empty(), "no connection of the worker to Redis was found");
        workers.last_mut().unwrap().crash();
        // Redis has run whatever the dead process had already sent once it has
        // closed all of its connections.
        wait_until(Duration::from_secs(5), "Redis to close the dead worker's connections", async || {
            let clients: String = db.query(redis::cmd("CLIENT").arg("LIST")).await;
            connections
                .iter()
                .all(|port| !clients.contains(&format!(" addr=127.0.0.1:{port} ")))
                .then_some(())
        })
        .await;
        restarts.push(db.len("rec").await);
        // The new process stands by until the dead one's lease lapses (≤ 1 s).
        workers.push(WorkerProcess::start(&format!("crash-{run}"), dir.path(), &server.url(), &vars));
    }
    let expected = stream.await.unwrap();
    noise.await.unwrap();
    let last = *expected.last().unwrap();
    wait_until(Duration::from_secs(30), "the last worker to checkpoint the last id", async || {
        (server.stored_cursor("crash").await == Some(last)).then_some(())
    })
    .await;
    assert!(workers.last_mut().unwrap().is_running(), "the last worker died");

    let records = db.records("rec").await;
    let walk = walk(&expected, &records);
    assert_eq!(walk.first, 0, "the first message handled is the first published");
    assert_eq!(walk.highest, expected.len() - 1, "every message was handled");
    for rewind in &walk.rewinds {
        // Within one process the feed never goes back; only a restart does, and
        // by no more than what the dead process did since its last checkpoint.
        assert!(
            restarts.contains(&rewind.at),
            "a step back at record #{} where no process restarted (restarts at {restarts:?})",
            rewind.at
        );
        assert!(rewind.again <= CHECKPOINT_EVERY, "a restart handled {} messages again", rewind.again);
    }
    // The bound on duplicates: a worker stores its cursor after every
    // CHECKPOINT_EVERY handled messages (the timer only adds checkpoints), so when
    // it is killed at most CHECKPOINT_EVERY recorded messages are past the stored
    // cursor — CHECKPOINT_EVERY - 1 counted ones plus one whose handler recorded it
    // just before the kill, or CHECKPOINT_EVERY when the kill hits the checkpoint
    // write itself. Its successor starts from that cursor and handles exactly
    // those again, so each kill costs at most CHECKPOINT_EVERY duplicates.
    let duplicates = records.len() - expected.len();
    assert!(duplicates <= kills * CHECKPOINT_EVERY, "{duplicates} duplicates after {kills} kills");

    // One more crash, while idle with everything checkpointed: the next process
    // must start exactly at the next message (the crashes above all come with a
    // rewind, which would hide a restart that skips the message after the cursor).
    workers.last_mut().unwrap().crash();
    let more = client.publish_batch("crash.a", ["x", "y", "z"]).await.unwrap();
    let more: Vec<u64> = (more.start().get()..=more.end().get()).collect();
    workers.push(WorkerProcess::start("crash-idle", dir.path(), &server.url(), &vars));
    wait_until(Duration::from_secs(10), "the restarted worker to checkpoint the new messages", async || {
        (server.stored_cursor("crash").await == more.last().copied()).then_some(())
    })
    .await;
    assert_eq!(
        db.records("rec").await[records.len()..],
        more,
        "after a crash at a checkpoint, nothing is redone or skipped"
    );
    eprintln!(
        "{} messages, {kills} kills, {} restarts from an older checkpoint, {duplicates} duplicates, {:?}",
        expected.len(),
        walk.rewinds.len(),
        started.elapsed()
    );
}

/// Two processes run the same consumer; the one that owns it is SIGKILLed
/// mid-stream and the hot standby takes over once the lease lapses, from the
/// last checkpoint, and finishes the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_from_a_killed_owner() {
    let server = RedisServer::start();
    let dir = TempDir::new().unwrap();
    let (client, db) = (Client::connect(&server.url()).await.unwrap(), Db::connect(&server).await);
    let mut rng = rng();
    let Pair { mut workers, keys, stream, owner, standby } =
        start_pair("failover", dir.path(), &server, &client, rng.u64(..)).await;

    let target = rng.usize(500..4_000);
    wait_until(Duration::from_secs(20), "the owner to make progress", async || {
        (db.len(keys[owner]).await >= target).then_some(())
    })
    .await;
    assert_eq!(db.len(keys[standby]).await, 0, "the standby handled messages while the owner was alive");
    let killed = Instant::now();
    workers[owner].crash();
    let takeover = wait_until(SHORT_LEASE + Duration::from_secs(3), "the standby to take over", async || {
        workers[standby].logged(ACQUIRED).then(|| killed.elapsed())
    })
    .await;

    let expected = stream.await.unwrap();
    let last = *expected.last().unwrap();
    wait_until(Duration::from_secs(30), "the standby to checkpoint the last id", async || {
        (server.stored_cursor("failover").await == Some(last)).then_some(())
    })
    .await;
    let (before, after) = (db.records(keys[owner]).await, db.records(keys[standby]).await);
    let (first, second) = (walk(&expected, &before), walk(&expected, &after));
    assert!(
        first.first == 0 && first.rewinds.is_empty() && second.rewinds.is_empty(),
        "{first:?} {second:?}"
    );
    assert_eq!(second.highest, expected.len() - 1, "the standby finished the stream");
    // The standby starts from the owner's last checkpoint: no later than the
    // message after the owner's last (nothing skipped), and no earlier than
    // CHECKPOINT_EVERY messages before it (see the crash test for why).
    assert!(
        second.first <= first.highest + 1,
        "the standby skipped from {} to {}",
        first.highest,
        second.first
    );
    let overlap = first.highest + 1 - second.first;
    assert!(overlap <= CHECKPOINT_EVERY, "{overlap} messages were handled by both");
    eprintln!(
        "takeover {takeover:?} after the kill; {} + {} records, {overlap} handled by both",
        before.len(),
        after.len()
    );
}

/// The owner is frozen (SIGSTOP) until its lease lapses and the standby has
/// taken over, then thawed: its renewals and checkpoints are refused, so it
/// stops and stands by, having handled at most one checkpoint's worth of
/// messages that the new owner handles too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_is_fenced_out_by_the_standby() {
    let server = RedisServer::start();
    let dir = TempDir::new().unwrap();
    let (client, db) = (Client::connect(&server.url()).await.unwrap(), Db::connect(&server).await);
    let mut rng = rng();
    let Pair { mut workers, keys, stream, owner, standby } =
        start_pair("fenced", dir.path(), &server, &client, rng.u64(..)).await;

    let target = rng.usize(500..3_000);
    wait_until(Duration::from_secs(20), "the owner to make progress", async || {
        (db.len(keys[owner]).await >= target).then_some(())
    })
    .await;
    workers[owner].signal("STOP");
    wait_until(SHORT_LEASE + Duration::from_secs(3), "the standby to take over", async || {
        workers[standby].logged(ACQUIRED).then_some(())
    })
    .await;
    wait_until(Duration::from_secs(20), "the standby to make progress", async || {
        (db.len(keys[standby]).await >= 300).then_some(())
    })
    .await;
    let frozen_at = db.len(keys[owner]).await;
    workers[owner].signal("CONT");
    wait_until(Duration::from_secs(5), "the thawed owner to notice it lost the lease", async || {
        workers[owner].logged("lost ownership; standing by again").then_some(())
    })
    .await;

    let expected = stream.await.unwrap();
    let last = *expected.last().unwrap();
    wait_until(Duration::from_secs(30), "the new owner to checkpoint the last id", async || {
        (server.stored_cursor("fenced").await == Some(last)).then_some(())
    })
    .await;
    assert!(workers[owner].is_running() && workers[standby].is_running(), "a worker died");
    assert_eq!(workers[owner].log().matches(ACQUIRED).count(), 1, "the old owner took the lease back");
    // The old owner now stands by; SIGTERM stops it at once, leaving the lease
    // and the cursor of the new owner alone.
    workers[owner].signal("TERM");
    assert_eq!(workers[owner].wait_exit(Duration::from_secs(3)).await.code(), Some(0));
    assert!(workers[standby].is_running() && db.lease_exists("fenced").await);
    assert!(!workers[owner].logged("released the consumer lease"));
    assert_eq!(server.stored_cursor("fenced").await, Some(last));
    let (before, after) = (db.records(keys[owner]).await, db.records(keys[standby]).await);
    let (first, second) = (walk(&expected, &before), walk(&expected, &after));
    assert!(
        first.first == 0 && first.rewinds.is_empty() && second.rewinds.is_empty(),
        "{first:?} {second:?}"
    );
    assert_eq!(second.highest, expected.len() - 1, "the new owner finished the stream");
    assert!(
        second.first <= first.highest + 1,
        "the new owner skipped from {} to {}",
        first.highest,
        second.first
    );
    // The old owner's checkpoints are fenced once the new owner holds the lease,
    // so the new owner starts from the old owner's last stored checkpoint and
    // the old owner cannot go on past CHECKPOINT_EVERY messages after it (its
    // next count-triggered checkpoint is refused and stops it).
    let overlap = first.highest + 1 - second.first;
    assert!(overlap <= CHECKPOINT_EVERY, "{overlap} messages were handled by both");
    eprintln!(
        "the thawed owner handled {} more; {} + {} records, {overlap} handled by both",
        before.len() - frozen_at,
        before.len(),
        after.len()
    );
}

/// Settings for the graceful-shutdown tests: slow handlers, a long lease, and no
/// checkpoint but the final one (the count and the timer are never reached).
const GRACEFUL: [(&str, &str); 6] = [
    ("TEST_CONSUMER", "graceful"),
    ("TEST_PATTERN", "jobs.*"),
    ("REMQ_CHECKPOINT_EVERY", "1000"),
    ("REMQ_CHECKPOINT_INTERVAL", "1h"),
    ("REMQ_LEASE_TTL", "10s"),
    ("REMQ_SHUTDOWN_DEADLINE", "5s"),
];

/// SIGTERM while a 200 ms handler runs: the worker takes no new message, lets the
/// handler finish, stores the final checkpoint, releases the lease and exits 0.
/// A second owner resumes right after it, and a standby waiting meanwhile takes
/// over at once when that one is stopped the same way — not a lease time later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_handler_checkpoints_and_hands_over_at_once() {
    let server = RedisServer::start();
    let dir = TempDir::new().unwrap();
    let (client, db) = (Client::connect(&server.url()).await.unwrap(), Db::connect(&server).await);
    let expected: Vec<u64> = {
        let ids = client.publish_batch("jobs.a", (0..40).map(|i| i.to_string())).await.unwrap();
        (ids.start().get()..=ids.end().get()).collect()
    };
    let slow = |key| [("TEST_RECORD_KEY", key), ("TEST_DELAY_MS", "200")];
    let start = |label: &str, extra: &[(&'static str, &'static str)]| {
        let vars: Vec<_> = GRACEFUL.iter().chain(extra).copied().collect();
        WorkerProcess::start(label, dir.path(), &server.url(), &vars)
    };
    let deadline = Duration::from_secs(5);

    // One worker alone.
    let mut first = start("first", &slow("rec"));
    let (signalled, final_len) = terminate_mid_handler(&db, &first, "rec", 2).await;
    let status = first.wait_exit(deadline + Duration::from_secs(3)).await;
    let stopped_in = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");
    let records = db.records("rec").await;
    assert!(
        final_len.contains(&records.len()),
        "{} records, expected {final_len:?}: the handler in flight finishes, and no new message is taken",
        records.len()
    );
    assert_eq!(records, expected[..records.len()]);
    let done = records.len() - 1;
    assert_eq!(
        server.stored_cursor("graceful").await,
        records.last().copied(),
        "the final checkpoint covers the last message handled"
    );
    assert!(!db.lease_exists("graceful").await, "the lease was released");
    assert!(first.logged("released the consumer lease"));

    // A new owner, then a standby; the owner is stopped the same way.
    let mut second = start("second", &slow("rec"));
    wait_until(Duration::from_secs(5), "the second worker to resume", async || {
        (db.len("rec").await > done + 1).then_some(())
    })
    .await;
    assert_eq!(
        db.records("rec").await[done + 1],
        expected[done + 1],
        "the second worker resumed right after the final checkpoint"
    );
    let mut standby = start("standby", &[("TEST_RECORD_KEY", "rec:standby")]);
    wait_until(Duration::from_secs(5), "the standby to stand by", async || {
        standby.logged(STANDING_BY).then_some(())
    })
    .await;
    let (signalled, final_len) = terminate_mid_handler(&db, &second, "rec", done + 2).await;
    let takeover = wait_until(Duration::from_secs(5), "the standby to take over", async || {
        standby.logged(ACQUIRED).then(|| signalled.elapsed())
    })
    .await;
    // The lease lasts 10 s: only a released lease is taken this fast (the standby
    // looks every 200 ms, and the owner first finishes its 200 ms handler).
    assert!(takeover < Duration::from_secs(2), "the standby took over {takeover:?} after SIGTERM");
    assert_eq!(second.wait_exit(deadline + Duration::from_secs(3)).await.code(), Some(0));
    let done = db.len("rec").await;
    assert!(
        final_len.contains(&done),
        "{done} records, expected {final_len:?}: the handler in flight finishes, and no new message is taken"
    );
    let rest = expected.len() - done;
    wait_until(Duration::from_secs(10), "the standby to handle the rest", async || {
        (db.len("rec:standby").await >= rest).then_some(())
    })
    .await;
    // Stopped while idle, it checkpoints everything (its count and timer never fired).
    standby.signal("TERM");
    assert_eq!(standby.wait_exit(deadline + Duration::from_secs(3)).await.code(), Some(0));
    assert_eq!(server.stored_cursor("graceful").await, expected.last().copied());
    let mut records = db.records("rec").await;
    records.extend(db.records("rec:standby").await);
    assert_eq!(records, expected, "graceful hand-overs handle every message exactly once, in order");
    eprintln!(
        "first worker exited {stopped_in:?} after SIGTERM; standby took over {takeover:?} after SIGTERM"
    );
}

/// SIGTERM while a handler runs longer than the shutdown deadline: the worker
/// exits 0 at the deadline without checkpointing that message, and the next
/// owner handles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_the_shutdown_deadline_is_abandoned_and_delivered_again() {
    let server = RedisServer::start();
    let dir = TempDir::new().unwrap();
    let (client, db) = (Client::connect(&server.url()).await.unwrap(), Db::connect(&server).await);
    let ids = client.publish_batch("jobs.a", ["a", "b", "c"]).await.unwrap();
    let expected: Vec<u64> = (ids.start().get()..=ids.end().get()).collect();
    let vars = |delay| {
        let mut vars: Vec<_> =
            GRACEFUL.into_iter().filter(|(name, _)| *name != "REMQ_SHUTDOWN_DEADLINE").collect();
        vars.extend([
            ("REMQ_SHUTDOWN_DEADLINE", "300ms"),
            ("TEST_RECORD_KEY", "rec"),
            ("TEST_DELAY_MS", delay),
        ]);
        vars
    };
    // Its /metrics shows when the handler is running.
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], closed_port()));
    let metrics_addr = metrics.to_string();
    let mut slow = vars("4000");
    slow.push(("REMQ_METRICS_ADDR", &metrics_addr));
    let mut worker = WorkerProcess::start("slow", dir.path(), &server.url(), &slow);
    scrape_until(metrics, r#"remq_handlers_in_flight{handler="graceful"}"#, |running| running == 1.0).await;
    let signalled = Instant::now();
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(3)).await;
    let stopped_in = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");
    // The handler needed 4 s; the worker gave it 0.3 s.
    assert!(stopped_in < Duration::from_secs(2), "exited {stopped_in:?} after SIGTERM");
    assert!(worker.logged("abandoned"), "the worker says it abandoned the handler");
    assert_eq!(db.len("rec").await, 0);
    assert_eq!(
        server.stored_cursor("graceful").await.unwrap_or(0),
        0,
        "the abandoned message was not checkpointed"
    );
    assert!(!db.lease_exists("graceful").await, "the lease was released");

    let _next = WorkerProcess::start("next", dir.path(), &server.url(), &vars("0"));
    wait_until(Duration::from_secs(10), "the next worker to handle the messages", async || {
        (db.len("rec").await >= expected.len()).then_some(())
    })
    .await;
    assert_eq!(db.records("rec").await, expected, "the abandoned message was delivered again");
}
