//! Bounded memory under a flood: messages published at full speed (batch
//! publish) to a worker whose handler is slow at first. The live buffer
//! overflows, the worker falls back to reading the log a page at a time, and
//! catches up; its memory stays bounded instead of growing with the backlog,
//! and every message is handled once, in order.
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

use remq::{Client, MessageId, StartFrom, Worker};
use remq_testkit::{RedisServer, RunningWorker};
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
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let record = tally.clone();
    let started = Instant::now();
    let worker = Worker::new(server.url())
        .without_registered_handlers()
        .without_signal_handlers()
        .start_from(StartFrom::Earliest)
        .named_handler("flooded", "flood", move |id: MessageId| {
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
        });
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

    let deadline = Instant::now() + limit;
    while tally.lock().unwrap().handled < total {
        assert!(
            Instant::now() < deadline,
            "handled {} of {total} within {limit:?}",
            tally.lock().unwrap().handled
        );
        sleep(Duration::from_millis(20)).await;
    }
    let handled_in = started.elapsed();
    sleep(Duration::from_millis(200)).await;
    running.stop().await.unwrap();
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    let tally = tally.lock().unwrap();
    println!(
        "{total} messages: published in {published_in:.1?}, handled in {handled_in:.1?}; \
         VmRSS {} MiB before, peak {} MiB (bound {RSS_BOUND_MIB} MiB)",
        baseline / 1024,
        peak / 1024
    );
    assert_eq!(
        (tally.handled, tally.last, tally.out_of_order),
        (total, total, 0),
        "every message once, in order"
    );
    assert!(peak < RSS_BOUND_MIB * 1024, "peak VmRSS {} MiB is above {RSS_BOUND_MIB} MiB", peak / 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_1_000_000_messages_is_handled_in_order_in_bounded_memory() {
    flood(1_000_000, Duration::from_secs(90)).await;
}
