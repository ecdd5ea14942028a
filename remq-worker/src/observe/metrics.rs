//! Prometheus metrics: every series Remq exports, named in this one file, and the
//! process-wide recorder that the `/metrics` endpoint renders.
//!
//! Labels are bounded: a handler's durable name, a flush pattern, a fixed reason
//! or outcome; never a raw channel or a message id. The series (all documented in
//! `docs/operations.md`, "Metrics and health"):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `remq_messages_handled_total` | counter | `handler`, `outcome` = `ok`, `retried`, `dead_lettered`, `dropped` |
//! | `remq_handler_duration_seconds` | histogram | `handler` |
//! | `remq_handlers_in_flight` | gauge | `handler` |
//! | `remq_consumer_lag_messages` | gauge | `handler` |
//! | `remq_consumer_lag_seconds` | gauge | `handler` |
//! | `remq_checkpoint_id` | gauge | `handler` |
//! | `remq_replayed_messages_total` | counter | `handler` |
//! | `remq_gap_replays_total` | counter | `handler`, `reason` = `startup`, `disconnect`, `overflow` |
//! | `remq_redis_reconnects_total` | counter | `handler` |
//! | `remq_lease_owner` | gauge | `handler` (1 owner, 0 standby) |
//! | `remq_retention_gaps_total` | counter | `handler` |
//! | `remq_counter_resets_total` | counter | `handler` |
//! | `remq_flush_runs_total` | counter | `pattern`, `result` = `ok`, `error`, `locked` |
//! | `remq_flush_removed_messages_total` | counter | `pattern` |
//! | `remq_flush_stale_consumers_total` | counter | `pattern` |

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram, Unit, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::{Error, Result};

/// Messages finished by a handler, by outcome; `retried` counts retry attempts.
pub(crate) const HANDLED: &str = "remq_messages_handled_total";
/// Time one handler attempt took.
pub(crate) const DURATION: &str = "remq_handler_duration_seconds";
/// Handler attempts running now.
pub(crate) const IN_FLIGHT: &str = "remq_handlers_in_flight";
/// The last id issued minus the consumer's cursor; 0 when it follows live pushes
/// with nothing buffered.
pub(crate) const LAG: &str = "remq_consumer_lag_messages";
/// How long ago the first message after the cursor was published (by the time
/// index: an upper bound, to a sample's precision); 0 when caught up.
pub(crate) const LAG_SECONDS: &str = "remq_consumer_lag_seconds";
/// The id up to which the consumer has processed everything.
pub(crate) const CHECKPOINT: &str = "remq_checkpoint_id";
/// Messages read from the log to catch up after a gap (not the live ones,
/// which are checked against the log too).
pub(crate) const REPLAYED: &str = "remq_replayed_messages_total";
/// Times a consumer went back to the log, by reason.
pub(crate) const GAP_REPLAYS: &str = "remq_gap_replays_total";
/// Pub/sub connections re-established after a failure.
pub(crate) const RECONNECTS: &str = "remq_redis_reconnects_total";
/// 1 while this process owns the consumer's lease, 0 while it stands by.
pub(crate) const LEASE_OWNER: &str = "remq_lease_owner";
/// The live members of a consumer group, as this member last saw them.
pub(crate) const GROUP_MEMBERS: &str = "remq_group_members";
/// The partitions the group assigns to this member.
pub(crate) const GROUP_ASSIGNED: &str = "remq_group_assigned_partitions";
/// Ranges of messages removed by retention before this consumer processed them.
pub(crate) const RETENTION_GAPS: &str = "remq_retention_gaps_total";
/// Times a consumer found the id counter had gone backwards and rewound.
pub(crate) const COUNTER_RESETS: &str = "remq_counter_resets_total";
/// Flush job runs, by result.
pub(crate) const FLUSH_RUNS: &str = "remq_flush_runs_total";
/// Messages removed by flush jobs.
pub(crate) const FLUSH_REMOVED: &str = "remq_flush_removed_messages_total";
/// Registered consumers a flush run ignored because they were not seen recently.
pub(crate) const FLUSH_STALE: &str = "remq_flush_stale_consumers_total";

/// Buckets of the handler duration histogram, in seconds: 100 µs to 30 s.
pub const DURATION_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0];

/// The recorder this process installed, shared by every worker in it.
static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
/// Metrics recorded before this are not kept, so the worker calls it before any
/// consumer starts.
///
/// # Errors
/// [`Error::Config`] when the application installed another `metrics` recorder.
pub(crate) fn install() -> Result<&'static PrometheusHandle> {
    if let Some(handle) = RECORDER.get() {
        return Ok(handle);
    }
    // Two workers starting at once must not both try to install one.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handle) = RECORDER.get() {
        return Ok(handle);
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(DURATION.to_owned()),
            &DURATION_BUCKETS,
        )
        .expect("the bucket list is not empty")
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| Error::Config {
        name: "REMQ_METRICS_ADDR",
        value: "a metrics recorder".to_owned(),
        reason: "another `metrics` recorder is already installed in this process; serve its output yourself \
                 instead of Worker::metrics"
            .to_owned(),
    })?;
    describe();
    Ok(RECORDER.get_or_init(|| handle))
}

/// The HELP lines.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(HANDLED, "Messages finished by a handler, by outcome; retried counts retry attempts");
    describe_histogram!(DURATION, Unit::Seconds, "Time one handler attempt took");
    describe_gauge!(IN_FLIGHT, "Handler attempts running now");
    describe_gauge!(
        LAG,
        "Last id issued minus the consumer's cursor (0 when following live with nothing buffered)"
    );
    describe_gauge!(
        LAG_SECONDS,
        Unit::Seconds,
        "How long ago the first message after the cursor was published (0 when caught up)"
    );
    describe_gauge!(CHECKPOINT, "The id up to which the consumer has processed everything");
    describe_counter!(REPLAYED, "Messages read from the log to catch up after a gap");
    describe_counter!(GAP_REPLAYS, "Times a consumer went back to the log, by reason");
    describe_counter!(RECONNECTS, "Pub/sub connections re-established after a failure");
    describe_gauge!(LEASE_OWNER, "1 while this process owns the consumer's lease, 0 while it stands by");
    describe_gauge!(GROUP_MEMBERS, "Live members of the consumer group, as this member last saw them");
    describe_gauge!(GROUP_ASSIGNED, "Partitions the consumer group assigns to this member");
    describe_counter!(
        RETENTION_GAPS,
        "Ranges of messages removed by retention before the consumer processed them"
    );
    describe_counter!(
        COUNTER_RESETS,
        "Times the consumer found the id counter had gone backwards and rewound"
    );
    describe_counter!(FLUSH_RUNS, "Flush job runs, by result");
    describe_counter!(FLUSH_REMOVED, "Messages removed by flush jobs");
    describe_counter!(
        FLUSH_STALE,
        "Registered consumers a flush run ignored because they were not seen recently"
    );
}

/// The handles of one handler's per-attempt series, looked up once.
#[derive(Clone)]
pub(crate) struct AttemptMetrics {
    /// `outcome="ok"`.
    pub(crate) ok: Counter,
    /// `outcome="retried"`.
    pub(crate) retried: Counter,
    /// The duration histogram.
    pub(crate) duration: Histogram,
    /// The in-flight gauge.
    pub(crate) in_flight: Gauge,
}

impl AttemptMetrics {
    /// The series of `handler`.
    pub(crate) fn new(handler: &str) -> Self {
        let label = handler.to_owned();
        AttemptMetrics {
            ok: counter!(HANDLED, "handler" => label.clone(), "outcome" => "ok"),
            retried: counter!(HANDLED, "handler" => label.clone(), "outcome" => "retried"),
            duration: histogram!(DURATION, "handler" => label.clone()),
            in_flight: gauge!(IN_FLIGHT, "handler" => label),
        }
    }
}

impl std::fmt::Debug for AttemptMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptMetrics")
    }
}

/// `remq_messages_handled_total{handler, outcome}` for the rarer outcomes.
pub(crate) fn handled(handler: &str, outcome: &'static str) -> Counter {
    counter!(HANDLED, "handler" => handler.to_owned(), "outcome" => outcome)
}

/// A counter labelled with a handler's durable name.
pub(crate) fn handler_counter(name: &'static str, handler: &str) -> Counter {
    counter!(name, "handler" => handler.to_owned())
}

/// A gauge labelled with a handler's durable name and, for one partition of a
/// partitioned namespace, the partition (at most `MAX_PARTITIONS` series per
/// handler, and only for the partitions a process has owned).
pub(crate) fn handler_gauge(name: &'static str, handler: &str, partition: Option<u32>) -> Gauge {
    match partition {
        Some(partition) => {
            gauge!(name, "handler" => handler.to_owned(), "partition" => partition.to_string())
        }
        None => gauge!(name, "handler" => handler.to_owned()),
    }
}

/// `remq_gap_replays_total{handler, reason}`.
pub(crate) fn gap_replay(handler: &str, reason: &'static str) {
    counter!(GAP_REPLAYS, "handler" => handler.to_owned(), "reason" => reason).increment(1);
}

/// A flush job's series for `pattern`: runs by `result`, or removed messages.
pub(crate) fn for_flush(name: &'static str, pattern: &str, result: Option<&'static str>) -> Counter {
    match result {
        Some(result) => counter!(name, "pattern" => pattern.to_owned(), "result" => result),
        None => counter!(name, "pattern" => pattern.to_owned()),
    }
}
