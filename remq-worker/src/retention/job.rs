//! The periodic flush job of a worker.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::FlushPolicy;
use crate::Client;
use crate::observe::metrics;
use crate::ownership::lease::LeaseGuard;
use crate::protocol::LeaseKey;

/// The flush job of a worker: runs `policy` every interval until `shutdown`,
/// holding the pattern's flush lock ([`LeaseKey::FlushLock`], a lease of its
/// own kind) while it runs, so one worker of a deployment flushes a pattern at
/// a time. In a partitioned namespace one run flushes every partition, under
/// one lock in the base namespace.
pub(crate) async fn run_periodically(client: Client, policy: FlushPolicy, shutdown: CancellationToken) {
    let lock = LeaseKey::FlushLock(policy.pattern.as_str().into());
    let pattern = policy.pattern.as_str();
    let (ok, failed, locked) = (
        metrics::for_flush(metrics::FLUSH_RUNS, pattern, Some("ok")),
        metrics::for_flush(metrics::FLUSH_RUNS, pattern, Some("error")),
        metrics::for_flush(metrics::FLUSH_RUNS, pattern, Some("locked")),
    );
    let removed = metrics::for_flush(metrics::FLUSH_REMOVED, pattern, None);
    let stale = metrics::for_flush(metrics::FLUSH_STALE, pattern, None);
    // Held long enough for a big flush; renewed while it runs, and released after.
    let ttl = policy.every.max(Duration::from_secs(30));
    loop {
        let run = async {
            let Some(guard) = LeaseGuard::try_acquire(client.store(), &lock, ttl).await?.ok() else {
                return Ok(None);
            };
            let report = client.flush_with(&policy).await;
            guard.release().await;
            report.map(Some)
        };
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            outcome = run => outcome,
        };
        match outcome {
            Ok(Some(report)) => {
                ok.increment(1);
                removed.increment(report.removed());
                for name in &report.stale_consumers {
                    stale.increment(1);
                    tracing::warn!(pattern, consumer = name, stale_after = ?policy.stale_after, "flush ignored a consumer not seen recently; its unprocessed messages may be removed");
                }
                tracing::info!(
                    pattern,
                    removed = report.removed(),
                    channels = report.channels.len(),
                    "flush done"
                );
            }
            Ok(None) => {
                locked.increment(1);
                tracing::debug!(pattern, "another worker is flushing this pattern; skipped");
            }
            Err(error) => {
                failed.increment(1);
                tracing::warn!(pattern, %error, "flush failed; trying again at the next interval");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(policy.every) => {}
        }
    }
}
