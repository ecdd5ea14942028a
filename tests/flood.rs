//! Bounded memory under a flood: messages published at full speed (batch
//! publish) to a worker whose handler is slow at first. The live buffer
//! overflows, the worker falls back to reading the log a page at a time, and
//! catches up; its memory stays bounded instead of growing with the backlog,
//! and every message is handled once, in order. The overflow is checked, in
//! the worker's log: without one, the test would prove nothing about the
//! fallback. (Not on `/metrics`: the worker drains its histogram samples only
//! when `/metrics` is scraped, so serving it unscraped here raised the peak
//! from 16 to 31 MiB.)
//!
//! Its own test binary: the resident set size (`VmRSS` of /proc/self/status)
//! is the whole process's, so nothing else may run in it. It includes the
//! publisher too, so it bounds the worker's from above.
//!
//! In a debug build on two cores the 1,000,000 messages take 11 to 20 s:
//! 5 to 10 s to publish, the rest to catch up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, MessageId};
use remq_testkit::{RedisServer, RunningWorker, capture_logs, test_worker, wait_for};
use tokio::time::{Instant, sleep};

/// The most resident memory the test process may use, in MiB. Measured peaks:
/// 12 to 15 MiB (8 to 10 MiB before the flood) in debug builds. A worker that buffered
/// its backlog instead fails it: with `buffer_size(2_000_000)` the peak was
/// 79 MiB.
const RSS_BOUND_MIB: u64 = 32;

/// How long the handler is slow (1 ms per message) after the worker starts.
const SLOW_START: Duration = Duration::from_secs(2);

/// The process's resident set size, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
}

/// What the handler saw: the last id, how many, and how many came out of order.
#[derive(Default)]
struct Tally {
    last: u64,
    handled: u64,
    out_of_order: u64,
}

async fn flood(total: u64, limit: Duration) {
    // Only the live feed's lines: with every target on, each delivery would
    // make a span, a million of them, and the test would time the logging.
    let logs = capture_logs("remq::feed=info");
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let record = tally.clone();
    let started = Instant::now();
    // The default lease: a renewal may be late while two cores are flooded.
    let worker = test_worker(server.url()).lease_ttl(Duration::from_secs(10)).named_handler(
        "flooded",
        "flood",
        move |id: MessageId| {
            let record = record.clone();
            async move {
                if started.elapsed() < SLOW_START {
                    sleep(Duration::from_millis(1)).await;
                }
                let mut tally = record.lock().unwrap();
                // One channel and nothing else publishing: ids are consecutive.
                if id.get() != tally.last + 1 {
                    tally.out_of_order += 1;
                }
                tally.last = id.get();
                tally.handled += 1;
            }
        },
    );
    let running = RunningWorker::start(worker);
    let baseline = rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let bodies: Vec<String> = (0..1_000).map(|i| format!("message {i:04}")).collect();
    let mut published = 0;
    while published < total {
        let ids = client.publish_batch("flood", &bodies).await.unwrap();
        published = ids.end().get();
    }
    let published_in = started.elapsed();

    wait_for(limit, "every message to be handled", || tally.lock().unwrap().handled >= total).await;
    let handled_in = started.elapsed();
    // Once a marker published after the flood is handled, the worker has gone
    // past every message of it: a duplicate would have been counted.
    let marker = client.publish("flood", "marker").await.unwrap();
    assert_eq!(marker.get(), total + 1);
    wait_for(Duration::from_secs(10), "the marker", || tally.lock().unwrap().last == marker.get()).await;
    running.stop().await.unwrap();
    let overflows = logs
        .lines("live feed ended; replaying from the log")
        .into_iter()
        .filter(|l| l.contains(r#"consumer="flooded""#) && l.contains("reason=overflow"))
        .count();
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    let tally = tally.lock().unwrap();
    println!(
        "{total} messages: published in {published_in:.1?}, handled in {handled_in:.1?}; \
         VmRSS {} MiB before, peak {} MiB (bound {RSS_BOUND_MIB} MiB); the live buffer overflowed {} time(s)",
        baseline / 1024,
        peak / 1024,
        overflows
    );
    assert!(overflows > 0, "the live buffer never overflowed, so the fallback was not exercised");
    assert_eq!(
        (tally.handled, tally.last, tally.out_of_order),
        (total + 1, total + 1, 0),
        "every message once, in order (and the marker after them)"
    );
    assert!(peak < RSS_BOUND_MIB * 1024, "peak VmRSS {} MiB is above {RSS_BOUND_MIB} MiB", peak / 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_1_000_000_messages_is_handled_in_order_in_bounded_memory() {
    flood(1_000_000, Duration::from_secs(90)).await;
}
