//! Retention on demand: [`Client::flush_with`] and [`Client::plan_flush`].

use crate::retention::{self, FlushPolicy, FlushReport};
use crate::{Client, Result};

impl Client {
    /// Applies `policy` once: removes what it allows, in steps of at most
    /// [`step`](FlushPolicy::step) messages per Redis call. In a partitioned
    /// namespace it flushes every partition (each on its own ids, consumers
    /// and time index), and each [`ChannelFlush`](crate::ChannelFlush) says
    /// which partition it was in.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] for an empty pattern; [`Error::Redis`] when a
    /// call fails (what was removed before stays removed).
    pub async fn flush_with(&self, policy: &FlushPolicy) -> Result<FlushReport> {
        self.flush_partitions(policy, Removal::Remove).await
    }

    /// What [`flush_with`](Self::flush_with) would remove now, without removing
    /// anything (a dry run: it reads the ids it would remove to count them).
    ///
    /// # Errors
    /// As [`flush_with`](Self::flush_with).
    pub async fn plan_flush(&self, policy: &FlushPolicy) -> Result<FlushReport> {
        self.flush_partitions(policy, Removal::Plan).await
    }

    /// Flushes (or plans) every partition, one after another, with the
    /// reports joined (channels in partition order; a stale consumer named
    /// once).
    async fn flush_partitions(&self, policy: &FlushPolicy, removal: Removal) -> Result<FlushReport> {
        let mut joined = FlushReport::default();
        for view in self.every_partition().await? {
            let report = match removal {
                Removal::Remove => retention::apply(view.store(), policy).await?,
                Removal::Plan => retention::dry_run(view.store(), policy).await?,
            };
            let partition = view.partition_index();
            joined
                .channels
                .extend(report.channels.into_iter().map(|c| crate::ChannelFlush { partition, ..c }));
            for name in report.stale_consumers {
                if !joined.stale_consumers.contains(&name) {
                    joined.stale_consumers.push(name);
                }
            }
        }
        Ok(joined)
    }
}

/// Whether a flush removes, or only counts what it would remove.
#[derive(Clone, Copy)]
enum Removal {
    /// [`Client::flush_with`].
    Remove,
    /// [`Client::plan_flush`].
    Plan,
}
