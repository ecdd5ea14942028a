//! Retention on demand: [`Client::flush_with`] and [`Client::plan_flush`].

use crate::retention::{self, FlushPolicy, FlushReport};
use crate::{Client, Result};

impl Client {
    /// Applies `policy` once: removes what it allows, in steps of at most
    /// [`step`](FlushPolicy::step) messages per Redis call.
    ///
    /// # Errors
    /// [`Error::InvalidPattern`] for an empty pattern; [`Error::Redis`] when a
    /// call fails (what was removed before stays removed).
    pub async fn flush_with(&self, policy: &FlushPolicy) -> Result<FlushReport> {
        retention::apply(self.store(), policy).await
    }

    /// What [`flush_with`](Self::flush_with) would remove now, without removing
    /// anything (a dry run: it reads the ids it would remove to count them).
    ///
    /// # Errors
    /// As [`flush_with`](Self::flush_with).
    pub async fn plan_flush(&self, policy: &FlushPolicy) -> Result<FlushReport> {
        retention::dry_run(self.store(), policy).await
    }
}
