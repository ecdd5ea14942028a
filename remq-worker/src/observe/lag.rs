//! Consumer lag: how far behind the log a consumer is, in ids and in seconds.
//! A background task measures it from what the consuming loop reports, so a
//! handler that is stuck still shows a growing lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::metrics;
use crate::MessageId;
use crate::connection::Store;
use crate::log::{self, time_index};

/// What the consuming loop reports, for the lag task to read.
#[derive(Debug)]
pub(crate) struct Progress {
    /// The id up to which everything is processed.
    done: AtomicU64,
    /// Whether the feed follows live pushes with nothing buffered.
    caught_up: AtomicBool,
}

impl Progress {
    /// Progress starting at `done`, not caught up.
    pub(crate) fn new(done: MessageId) -> Arc<Self> {
        Arc::new(Progress { done: AtomicU64::new(done.get()), caught_up: AtomicBool::new(false) })
    }

    /// Everything up to `id` is processed.
    pub(crate) fn processed(&self, id: MessageId) {
        self.done.fetch_max(id.get(), Ordering::Relaxed);
    }

    /// Whether the consumer has nothing left to do for now.
    pub(crate) fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::Relaxed);
    }
}

/// Sets `remq_consumer_lag_messages` and `remq_consumer_lag_seconds` of
/// `consumer` every `every`, until dropped. Ids: the last id issued minus the
/// cursor. Seconds: how long ago the first message after the cursor was
/// published, by the time index (an upper bound, to a sample's precision).
/// Both are 0 when caught up; a failed read leaves the gauges as they were.
/// For one partition of a partitioned namespace, the gauges carry `partition`.
pub(crate) async fn watch(
    store: Store,
    consumer: Arc<str>,
    partition: Option<u32>,
    progress: Arc<Progress>,
    every: Duration,
) {
    let messages = metrics::handler_gauge(metrics::LAG, &consumer, partition);
    let seconds = metrics::handler_gauge(metrics::LAG_SECONDS, &consumer, partition);
    loop {
        tokio::time::sleep(every).await;
        if progress.caught_up.load(Ordering::Relaxed) {
            messages.set(0.0);
            seconds.set(0.0);
            continue;
        }
        let done = progress.done.load(Ordering::Relaxed);
        if let Ok(head) = log::head(&store).await {
            messages.set(head.get().saturating_sub(done) as f64);
        }
        let next = MessageId::new(done + 1);
        if let (Ok(Some(published)), Ok(now)) =
            (time_index::published_second(&store, next).await, log::server_time(&store).await)
        {
            seconds.set(now.as_secs().saturating_sub(published) as f64);
        }
    }
}
